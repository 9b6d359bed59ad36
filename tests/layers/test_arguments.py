"""The argument validators (jcnn/layers/arguments.py): what each accepts, refuses and says."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from jcnn.layers import arguments as A
from jcnn.layers import shapes
from jcnn.layers.shapes import ShapeError


def test_shapes_reexports_the_validators():
    assert shapes.positive_int is A.positive_int
    assert shapes.as_int is A.as_int and shapes.is_int is A.is_int


@pytest.mark.parametrize(
    ("value", "is_int", "is_real"),
    [
        (3, True, True),
        (np.int8(3), True, True),
        (np.uint64(3), True, True),
        (2.5, False, True),
        (np.float32(2.5), False, True),
        (math.inf, False, True),
        (math.nan, False, True),
        (True, False, False),
        (np.bool_(False), False, False),
        ("3", False, False),
        (None, False, False),
        (np.array(3), False, False),  # an array is not a number, even 0-d
        (1 + 2j, False, False),
    ],
)
def test_is_int_and_is_real(value, is_int, is_real):
    assert A.is_int(value) is is_int
    assert A.is_real(value) is is_real


# --------------------------------------------------------------------------- as_int, positive_int


@pytest.mark.parametrize("value", [1, 7, np.int64(7), np.int32(1)])
def test_positive_int_accepts_python_and_numpy_ints(value):
    got = A.positive_int(value, "Conv out_channels")
    assert got == value and type(got) is int
    assert type(A.as_int(value, "Conv out_channels")) is int


def test_as_int_accepts_zero_and_negatives():
    assert A.as_int(0, "n") == 0 and A.as_int(np.int16(-2), "n") == -2


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, "Conv groups must be an int, got True (bool)"),
        (np.bool_(True), "Conv groups must be an int, got np.True_ (bool)"),
        (2.0, "Conv groups must be an int, got 2.0 (float)"),
        ("2", "Conv groups must be an int, got '2' (str)"),
        (None, "Conv groups must be an int, got None (NoneType)"),
        (0, "Conv groups must be a positive int, got 0"),
        (np.int64(-3), "Conv groups must be a positive int, got -3"),
    ],
)
def test_positive_int_refuses_with_a_shape_error(value, words):
    with pytest.raises(ShapeError) as info:
        A.positive_int(value, "Conv groups")
    assert str(info.value) == words
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- int_at_least


@pytest.mark.parametrize(("value", "minimum"), [(0, 0), (5, 1), (np.int64(5), 5), (-1, -1)])
def test_int_at_least_accepts(value, minimum):
    got = A.int_at_least(value, "Checkpointer.save: step", minimum)
    assert got == value and type(got) is int


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (True, TypeError, "fsdp_spec: num_shards must be an int, got bool True"),
        (2.0, TypeError, "fsdp_spec: num_shards must be an int, got float 2.0"),
        ("2", TypeError, "fsdp_spec: num_shards must be an int, got str '2'"),
        (None, TypeError, "fsdp_spec: num_shards must be an int, got NoneType None"),
        (0, ValueError, "fsdp_spec: num_shards must be an int >= 1, got 0"),
        (np.int8(-4), ValueError, "fsdp_spec: num_shards must be an int >= 1, got -4"),
    ],
)
def test_int_at_least_refuses(value, error, words):
    with pytest.raises(error) as info:
        A.int_at_least(value, "fsdp_spec: num_shards", 1)
    assert str(info.value) == words


def test_int_at_least_hint_follows_the_expectation_in_both_errors():
    hint = "(or None to keep every one)"
    with pytest.raises(
        ValueError, match=r"keep must be an int >= 1 \(or None to keep every one\), got 0"
    ):
        A.int_at_least(0, "Checkpointer: keep", 1, hint=hint)
    with pytest.raises(TypeError, match=r"keep must be an int \(or None .*\), got float 2.5"):
        A.int_at_least(2.5, "Checkpointer: keep", 1, hint=hint)


# --------------------------------------------------------------------------- count


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (1, {}, 1),
        (np.int32(128), {}, 128),
        (0, {"minimum": 0}, 0),
        (-7, {"minimum": None}, -7),
        (3, {"maximum": 3}, 3),
        (None, {"optional": True}, None),
    ],
)
def test_count_accepts(value, kwargs, expected):
    got = A.count(value, "fit: batch_size", **kwargs)
    assert got == expected and (got is None or type(got) is int)


@pytest.mark.parametrize(
    ("value", "kwargs", "words"),
    [
        (0, {}, "fit: epochs must be a positive int, got 0 (int)"),
        (8.0, {}, "fit: epochs must be a positive int, got 8.0 (float)"),
        (True, {}, "fit: epochs must be a positive int, got True (bool)"),
        ("8", {}, "fit: epochs must be a positive int, got '8' (str)"),
        (None, {}, "fit: epochs must be a positive int, got None (NoneType)"),
        (-1, {"minimum": 0}, "fit: epochs must be an int >= 0, got -1 (int)"),
        (True, {"optional": True}, "fit: epochs must be a positive int or None, got True (bool)"),
        (1.5, {"minimum": None}, "fit: epochs must be an int, got 1.5 (float)"),
        (5, {"maximum": 3}, "fit: epochs must be an int in 1..3, got 5 (int)"),
        (5, {"minimum": None, "maximum": 3}, "fit: epochs must be an int <= 3, got 5 (int)"),
    ],
)
def test_count_refuses_with_a_value_error(value, kwargs, words):
    with pytest.raises(ValueError) as info:
        A.count(value, "fit: epochs", **kwargs)
    assert str(info.value) == words


# --------------------------------------------------------------------------- real_number


@pytest.mark.parametrize(
    ("value", "kwargs"),
    [
        (0.5, {}),
        (np.float32(0.5), {}),
        (3, {}),
        (np.int64(3), {}),
        (math.inf, {}),
        (0.0, {"low": 0}),
        (1e-9, {"low": 0, "open_low": True, "finite": True}),
        (1.0, {"low": 0, "high": 1}),
    ],
)
def test_real_number_accepts_and_returns_a_float(value, kwargs):
    got = A.real_number(value, "x", **kwargs)
    assert got == float(value) and type(got) is float


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.1", None, [0.1], np.ones(1), 1j])
def test_real_number_refuses_non_numbers_and_bools(value):
    with pytest.raises(TypeError, match=r"min_delta must be a real number >= 0, got "):
        A.real_number(value, "EarlyStopping: min_delta", low=0)
    with pytest.raises(ValueError, match=r"l2_clip must be a real number > 0, got "):
        A.real_number(value, "DPSGD: l2_clip", low=0, open_low=True, type_error=ValueError)


def test_real_number_type_error_names_the_type():
    with pytest.raises(
        TypeError, match=r"LayerScale init_value must be a real number, got str '1'"
    ):
        A.real_number("1", "LayerScale init_value")


@pytest.mark.parametrize(
    ("value", "kwargs", "words"),
    [
        (-0.1, {"low": 0, "finite": True}, "m must be a finite number >= 0, got -0.1"),
        (math.inf, {"low": 0, "finite": True}, "m must be a finite number >= 0, got inf"),
        (math.nan, {"low": 0}, "m must be a number >= 0, got nan"),
        (math.nan, {"finite": True}, "m must be a finite number, got nan"),
        (0.0, {"low": 0, "open_low": True}, "m must be a number > 0, got 0.0"),
        (2, {"high": 1}, "m must be a number <= 1, got 2"),
        (1.0, {"high": 1, "open_high": True}, "m must be a number < 1, got 1.0"),
        (1.0, {"low": 0, "high": 1, "open_high": True}, "m must be in [0, 1), got 1.0"),
        (0, {"low": 0, "high": 1, "open_low": True}, "m must be in (0, 1], got 0"),
        (math.nan, {"low": 0, "high": 1}, "m must be in [0, 1], got nan"),
        (
            np.float64(-1),
            {"low": 0, "hint": "(a hint)"},
            "m must be a number >= 0 (a hint), got -1.0",
        ),
    ],
)
def test_real_number_refuses_out_of_range_with_a_value_error(value, kwargs, words):
    with pytest.raises(ValueError) as info:
        A.real_number(value, "m", **kwargs)
    assert str(info.value) == words


# --------------------------------------------------------------------------- probability


@pytest.mark.parametrize("value", [0, 0.0, 0.5, np.float32(0.25), np.float64(0.999)])
def test_probability_accepts(value):
    got = A.probability(value, "Dropout rate")
    assert got == float(value) and type(got) is float


def test_probability_one_only_when_included():
    assert A.probability(1, "StochasticDepth p", include_one=True) == 1.0
    with pytest.raises(ValueError, match=r"Dropout rate must be in \[0, 1\), got 1"):
        A.probability(1, "Dropout rate")


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (-0.1, "got -0.1"),
        (1.5, "got 1.5"),
        (math.nan, "got nan"),
        (True, "got bool True"),
        ("0.5", "got str '0.5'"),
        (None, "got NoneType None"),
    ],
)
def test_probability_refuses_everything_else_with_a_value_error(value, got):
    with pytest.raises(ValueError) as info:
        A.probability(value, "Dropout rate", hint="(probability of dropping)")
    assert str(info.value) == f"Dropout rate must be in [0, 1) (probability of dropping), {got}"


# --------------------------------------------------------------------------- as_path


@pytest.mark.parametrize("value", ["runs/a", Path("runs/a")])
def test_as_path_accepts_strings_and_paths(value):
    assert A.as_path(value, "TensorBoard: logdir") == Path("runs/a")


@pytest.mark.parametrize("value", [3, None, b"runs", ["runs"], True])
def test_as_path_refuses_the_rest(value):
    with pytest.raises(
        TypeError, match=r"MetricsLogger: path must be a path \(str or os.PathLike\), got"
    ):
        A.as_path(value, "MetricsLogger: path")


def test_as_path_cuts_a_long_value():
    with pytest.raises(TypeError) as info:
        A.as_path(list(range(1000)), "KeepBest: directory")
    assert len(str(info.value)) < 150
