#!/usr/bin/env python
"""Write the student edition of the book's notebooks: solutions removed, outputs cleared.

    python scripts/make_student_edition.py            # book/*.ipynb -> student_edition/*.ipynb
    python scripts/make_student_edition.py --check    # write nothing; exit 1 if a notebook has
                                                      # unbalanced markers, or if student_edition/
                                                      # exists and is out of date

For every notebook:

* markdown cells from a ``{solution-start}`` directive to the matching ``{solution-end}``
  (inclusive, with every cell in between) are dropped, and so are ``{solution}`` directive
  blocks inside markdown cells;
* in code cells, every block from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (inclusive) is
  replaced by ``# YOUR CODE HERE`` / ``raise NotImplementedError`` at the same indentation;
* outputs and execution counts are cleared; metadata and tags are kept.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
OUT = REPO / "student_edition"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")

# A directive opening line in MyST: ```{name} or :::{name} (3 or more fence characters).
_OPEN = r"^\s*(?P<fence>`{3,}|:{3,})\s*\{%s\}"
_SOL_START = re.compile(_OPEN % "solution-start", re.MULTILINE)
_SOL_END = re.compile(_OPEN % "solution-end", re.MULTILINE)
_SOL_BLOCK = re.compile(_OPEN % "solution", re.MULTILINE)


class MarkerError(ValueError):
    """Unbalanced solution markers in a notebook."""


def strip_code(source: str, where: str = "cell") -> str:
    """Replace each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block by the stub."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{where}: '{BEGIN}' inside another solution block.")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in STUB)
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{where}: '{END}' without a preceding '{BEGIN}'.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed by '{END}'.")
    return "\n".join(out)


def strip_solution_blocks(source: str) -> str:
    """Remove ``{solution}`` directive blocks (up to their closing fence) from markdown."""
    out: list[str] = []
    lines = iter(source.splitlines())
    for line in lines:
        m = _SOL_BLOCK.match(line)
        if m is None:
            out.append(line)
            continue
        fence = m.group("fence")
        for inner in lines:  # skip to the closing fence: same character, at least as long
            s = inner.strip()
            if s and set(s) == {fence[0]} and len(s) >= len(fence):
                break
    return "\n".join(out).strip("\n")


def student_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A copy of ``nb`` without solutions and outputs. Raises :class:`MarkerError`."""
    nb = copy.deepcopy(nb)
    cells = []
    start: int | None = None  # index of the open solution-start cell
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        is_md = cell.cell_type == "markdown"
        if is_md and _SOL_START.search(cell.source):
            if start is not None:
                raise MarkerError(
                    f"{where}: solution-start inside the solution opened at cell {start}."
                )
            start = i
        if start is not None:
            if is_md and _SOL_END.search(cell.source):
                start = None
            continue
        if is_md and _SOL_END.search(cell.source):
            raise MarkerError(f"{where}: solution-end without a preceding solution-start.")
        if is_md and _SOL_BLOCK.search(cell.source):
            cell.source = strip_solution_blocks(cell.source)
            if not cell.source.strip():
                continue
        if cell.cell_type == "code":
            cell.source = strip_code(cell.source, where)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    if start is not None:
        raise MarkerError(f"{name}, cell {start}: solution-start is never closed by solution-end.")
    nb.cells = cells
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The exact text written to disk for ``nb``."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build(sources: list[Path]) -> dict[str, str]:
    """File name -> text of the student notebook, for every source notebook."""
    return {
        p.name: render(student_notebook(nbformat.read(p, as_version=4), p.name)) for p in sources
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: book/*.ipynb)")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: student_edition/)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if stale or invalid"
    )
    args = parser.parse_args(argv)

    sources = args.paths or sorted(BOOK.glob("*.ipynb"))
    if not sources:
        print("error: no notebooks found.", file=sys.stderr)
        return 1
    try:
        editions = build(sources)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    if args.check:  # markers are valid (build() passed); compare with the folder if it exists
        if not args.out.is_dir():
            print(f"ok: {len(editions)} notebooks, markers balanced ({args.out} not built)")
            return 0
        stale = [n for n, text in editions.items() if not _same(args.out / n, text)]
        if stale:
            print(
                f"{args.out} is out of date for: {', '.join(stale)}. "
                "Run `python scripts/make_student_edition.py`.",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {len(editions)} notebooks, markers balanced, {args.out} up to date")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in editions.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(editions)} notebooks to {args.out}")
    return 0


def _same(path: Path, text: str) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == text


if __name__ == "__main__":
    sys.exit(main())
