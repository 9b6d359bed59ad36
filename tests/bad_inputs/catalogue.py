"""One place that lists every bad-input case of the catalogue.

A :class:`Case` is a mistake a user makes (or a fault: a killed process, a damaged file) and what
jcnn answers: the exception type and words of its message, or, for ``raises=None``, the documented
valid behaviour that ``call`` asserts itself. Each area module (``cases_*.py``) defines
``CASES``; :data:`CASES` gathers them. ``test_catalogue.py`` runs every case, and
``docs/errors.md`` is written from this list by ``python -m tests.bad_inputs.write_errors_doc``
(a test checks that the page is current, so the two cannot drift).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AREAS = ("layers", "training", "checkpoints", "data", "distributed")


@dataclass(frozen=True)
class Case:
    """One mistake and jcnn's answer.

    Attributes:
        area: one of :data:`AREAS`.
        name: a short id (unique within the area), used as the pytest id.
        mistake: what the user did, in words (a column of docs/errors.md).
        call: ``call(tmp_path)``: makes the mistake. For ``raises=None`` it also asserts the
            documented valid behaviour and returns normally.
        raises: the exception type expected, or None for a documented valid result.
        says: fragments that must all appear in the message (the doc quotes them).
        valid: for ``raises=None``: the behaviour in words.
    """

    area: str
    name: str
    mistake: str
    call: Callable[[Path], Any]
    raises: type[BaseException] | None = None
    says: Sequence[str] = ()
    valid: str = ""

    def __post_init__(self) -> None:
        if self.area not in AREAS:
            raise ValueError(f"unknown area {self.area!r}")
        if (self.raises is None) == (not self.valid):
            raise ValueError(f"{self.name}: give raises= and says=, or valid= (not both)")

    @property
    def id(self) -> str:
        return f"{self.area}/{self.name}"


def load_cases() -> list[Case]:
    """Every case of every area module, in area order."""
    cases: list[Case] = []
    for area in AREAS:
        module = importlib.import_module(f"tests.bad_inputs.cases_{area}")
        cases.extend(module.CASES)
    ids = [c.id for c in cases]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ValueError(f"duplicate case ids: {duplicated}")
    return cases


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_errors_doc(cases: Sequence[Case]) -> str:
    """The text of docs/errors.md for ``cases``."""
    lines = [
        "# What jcnn checks, and what it says",
        "",
        "Every row is a case of the catalogue in `tests/bad_inputs/` (run by the test suite);",
        "this page is written from it by `python -m tests.bad_inputs.write_errors_doc`, and a test",
        'fails when the two differ. "Says" lists words the message must contain; the full',
        "messages also name the layer's path, the shapes or values given, and the fix.",
        "",
    ]
    counts = {area: sum(c.area == area for c in cases) for area in AREAS}
    lines.append(
        f"{len(cases)} cases: " + ", ".join(f"{area} {n}" for area, n in counts.items()) + "."
    )
    for area in AREAS:
        lines += [
            "",
            f"## {area.capitalize()}",
            "",
            "| case | mistake | answer | says |",
            "|---|---|---|---|",
        ]
        for c in cases:
            if c.area != area:
                continue
            answer = c.raises.__name__ if c.raises is not None else f"valid: {c.valid}"
            says = "; ".join(f"`{s}`" for s in c.says) if c.says else "-"
            lines.append(f"| `{c.name}` | {_cell(c.mistake)} | {_cell(answer)} | {_cell(says)} |")
    return "\n".join(lines) + "\n"
