"""Equal layers are interchangeable: equal initializers, the same apply, one compile."""

import jax
import jax.numpy as jnp
import pytest

from jcnn import layers as L
from jcnn import models
from jcnn.layers import initializers as inits

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_events: list[str] = []
jax.monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: _events.append(name))


def compiles() -> int:
    return _events.count(COMPILE_EVENT)


def small_net(width: int = 8) -> L.Layer:
    return L.serial(
        L.Conv(width, 3, kernel_init=inits.he_normal(), bias_init=inits.torch_bias()),
        L.Relu(),
        L.residual(L.serial(L.Conv(width, 3, padding=1), L.BatchNorm())),
        L.Flatten(),
        L.Dense(2, kernel_init=inits.glorot_uniform()),
    )


@pytest.mark.parametrize(
    "make",
    [
        inits.he_normal,
        inits.he_uniform,
        inits.lecun_normal,
        inits.glorot_normal,
        inits.glorot_uniform,
        inits.torch_kernel,
        inits.torch_bias,
        lambda: inits.normal(0.02),
        lambda: inits.uniform(0.1),
        lambda: inits.constant(0.5),
    ],
)
def test_initializers_are_values(make):
    assert make() == make() and hash(make()) == hash(make())


def test_equal_settings_equal_initializers_and_layers():
    assert L.Conv(8, 3, kernel_init=inits.he_normal()) == L.Conv(
        8, 3, kernel_init=inits.he_normal()
    )
    assert inits.normal(0.02) != inits.normal(0.01)
    assert L.Conv(8, 3, kernel_init=inits.he_normal()) != L.Conv(
        8, 3, kernel_init=inits.he_uniform()
    )


def test_initializer_values_draw_what_jax_draws():
    key, shape = jax.random.key(3), (3, 3, 4, 8)
    pairs = [
        (inits.he_normal(), jax.nn.initializers.he_normal()),
        (inits.glorot_uniform(), jax.nn.initializers.glorot_uniform()),
        (inits.lecun_normal(), jax.nn.initializers.lecun_normal()),
        (inits.normal(0.3), jax.nn.initializers.normal(0.3)),
    ]
    for mine, theirs in pairs:
        assert jnp.array_equal(mine(key, shape), theirs(key, shape))


def test_equal_networks_share_apply_and_compile_once():
    a, b = small_net(), small_net()
    assert a == b and a is not b and a.apply is b.apply and a.init is b.init
    _, params, state = a.init(jax.random.key(0), (6, 6, 1))
    x = jnp.ones((6, 6, 1))
    jax.jit(a.apply)(params, state, x)
    before = compiles()
    jax.jit(b.apply)(params, state, x)
    assert compiles() == before  # the equal network hit the first one's compiled program
    other = small_net(width=4)
    _, params4, state4 = other.init(jax.random.key(0), (6, 6, 1))
    before = compiles()
    jax.jit(other.apply)(params4, state4, x)
    assert compiles() > before  # a different network compiles: the count can move


def test_zoo_builders_give_equal_models():
    assert models.resnet18() == models.resnet18()
    assert models.resnet18().apply is models.resnet18().apply
    assert models.resnet18(num_classes=10) != models.resnet18()
