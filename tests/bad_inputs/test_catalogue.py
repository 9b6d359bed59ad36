"""Runs every case of the catalogue; checks that docs/errors.md is written from it."""

from __future__ import annotations

import pytest

from tests.bad_inputs.catalogue import AREAS, load_cases, render_errors_doc
from tests.bad_inputs.write_errors_doc import DOC

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path):
    if case.raises is None:
        case.call(tmp_path)  # asserts the documented valid behaviour itself
        return
    with pytest.raises(case.raises) as info:
        case.call(tmp_path)
    message = str(info.value)
    for fragment in case.says:
        assert fragment in message, f"{case.id}: {fragment!r} not in {message!r}"


def test_catalogue_is_large_and_covers_every_area():
    assert len(CASES) >= 60
    assert {c.area for c in CASES} == set(AREAS)


def test_errors_doc_is_written_from_the_catalogue():
    assert DOC.read_text() == render_errors_doc(CASES), (
        "docs/errors.md is stale: run python -m tests.bad_inputs.write_errors_doc"
    )
