"""Root pytest configuration: how the book's notebooks are compared on this machine.

The README's test command (``pytest``) runs the unit tests and executes every chapter. What a
chapter is checked against depends on the machine:

* **claim checks, everywhere.** Every chapter executes top to bottom without error, and its
  hidden check cells (:mod:`hfc_edu.claims`) assert the numbers its prose relies on, with
  tolerances measured across seeds and CPU kernels.
* **byte-exact outputs, where they can repeat.** Floats depend on the CPU kernels torch, oneDNN
  and MKL pick, so stored outputs are compared exactly only for notebooks whose recorded machine
  fingerprint (``metadata.hfc_edu.machine``, written by ``scripts/execute_notebooks.py``) equals
  this machine's (:func:`hfc_edu.machine.machine_fingerprint`); elsewhere nbval runs lax.

``HFC_EDU_NBVAL=strict`` forces exact comparison for every notebook, ``HFC_EDU_NBVAL=lax`` turns
it off; unset (or ``auto``) decides per notebook. The header of the test run says which mode
each notebook runs in, and why.

**Two workers, planned.** pytest runs on two xdist workers with ``--dist loadgroup``. Every test
module and every notebook is one group (its cells on one kernel, its module fixtures built
once), except the chapters of :data:`BOOK_WORKERS`: each of its two lists runs on one worker, in
chapter order, so that chapters sharing cached work (the 128 px chest X-ray mixtures of chapters
6, 7 and 8; the dermoscopy mixtures of chapters 7 and 10) fit it once, and the two workers get
about the same notebook time. The unit tests fill in behind them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

MODE_ENV = "HFC_EDU_NBVAL"

#: The chapters each xdist worker runs, by number, with about the same CPU time in each list
#: (course guide's run times) and chapters sharing cached mixtures together. A chapter not
#: listed is a group of its own and goes to whichever worker is free.
BOOK_WORKERS: tuple[tuple[str, ...], ...] = (
    ("01", "03", "04", "05", "09"),
    ("02", "06", "07", "08", "10"),
)


def _mode_setting() -> str:
    mode = os.environ.get(MODE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "strict", "lax"):
        raise ValueError(f"${MODE_ENV} must be 'auto', 'strict' or 'lax', got {mode!r}.")
    return mode


def _recorded(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text()).get("metadata", {})
    except (OSError, ValueError):
        return None
    return meta.get("hfc_edu", {}).get("machine")


def notebook_mode(path: Path, fingerprint: dict) -> tuple[bool, str]:
    """``(strict, reason)`` for one notebook on this machine."""
    from hfc_edu.machine import fingerprint_diff

    setting = _mode_setting()
    if setting != "auto":
        return setting == "strict", f"forced by ${MODE_ENV}={setting}"
    recorded = _recorded(path)
    if recorded is None:
        return False, "lax: no machine fingerprint recorded with the stored outputs"
    diff = fingerprint_diff(recorded, fingerprint)
    if not diff:
        return True, "strict: this machine's fingerprint equals the stored outputs'"
    what = "; ".join(f"{k} {a!r} stored vs {b!r} here" for k, (a, b) in diff.items())
    return False, f"lax (claim checks only): {what}"


def _notebooks(config) -> list[Path]:
    return sorted(Path(config.rootpath, "book").glob("*.ipynb"))


def _nbval_active(config) -> bool:
    opt = config.option
    return bool(getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False))


def pytest_configure(config) -> None:
    if not _nbval_active(config) or hasattr(config, "workerinput"):
        return  # xdist workers inherit the fingerprint through the environment
    from hfc_edu.machine import FINGERPRINT_ENV, machine_fingerprint

    os.environ[FINGERPRINT_ENV] = json.dumps(machine_fingerprint())


def pytest_report_header(config) -> list[str]:
    if not _nbval_active(config):
        return []
    from hfc_edu.machine import machine_fingerprint

    fp = machine_fingerprint()
    lines = ["hfc-edu machine fingerprint: " + ", ".join(f"{k}={v}" for k, v in fp.items())]
    for path in _notebooks(config):
        lines.append(f"  {path.name}: {notebook_mode(path, fp)[1]}")
    return lines


def _xdist_group(nodeid: str) -> str:
    """The group of a test: its file, or the chapter list of :data:`BOOK_WORKERS` it is in."""
    path = nodeid.split("::")[0]
    name = Path(path).name
    for i, chapters in enumerate(BOOK_WORKERS):
        if path.startswith("book/") and name[:2] in chapters:
            return f"book-worker-{i}"
    return path


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_xdist_group(item.nodeid)))
    if not _nbval_active(config):
        return
    from nbval.plugin import IPyNbCell, find_comment_markers, find_metadata_tags

    from hfc_edu.machine import machine_fingerprint

    fp = machine_fingerprint()
    modes: dict[str, bool] = {}
    for item in items:
        if not isinstance(item, IPyNbCell):
            continue
        path = Path(str(item.parent.fspath))
        if str(path) not in modes:
            modes[str(path)] = notebook_mode(path, fp)[0]
        explicit = dict(find_metadata_tags(item.cell.metadata) or ())
        explicit.update(find_comment_markers(item.cell.source))
        if "check" not in explicit:  # NBVAL_IGNORE_OUTPUT / NBVAL_CHECK_OUTPUT win
            item.options["check"] = modes[str(path)]
