"""Root pytest configuration: strict notebook comparison when ``HFC_EDU_NBVAL=strict``.

The README's test command (``pytest``) runs the unit tests and the book's notebooks. Notebooks run
in nbval's lax mode by default, because exact numbers depend on the machine (CPU model, thread
count, library versions). CI runs on the machine class that produced the stored outputs and sets
``HFC_EDU_NBVAL=strict``, which compares every stored output exactly (after the sanitizers in
``tests/nbval_sanitize.cfg``).
"""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    opt = config.option
    if os.environ.get("HFC_EDU_NBVAL", "").lower() == "strict" and getattr(opt, "nbval_lax", False):
        opt.nbval_lax = False
        opt.nbval = True
