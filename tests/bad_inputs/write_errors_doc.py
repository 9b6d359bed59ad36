"""Writes docs/errors.md from the catalogue: ``python -m tests.bad_inputs.write_errors_doc``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bad_inputs.catalogue import load_cases, render_errors_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def main() -> None:
    text = render_errors_doc(load_cases())
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, DOC)  # atomic
    print(f"wrote {DOC} ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
