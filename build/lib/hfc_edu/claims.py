"""Claim checks: the numbers a chapter's prose relies on, asserted with measured tolerances.

Each chapter ends its sections with cells hidden from the rendered page (tag ``remove-cell``)
that check what the prose says, on whatever machine runs the notebook::

    from hfc_edu.claims import check
    check("PGD at 4/256 fools nearly every chest X-ray", success, low=0.95)
    check("MAHA separates PGD from clean images", auc, low=0.90, high=1.0)

A failed check raises :class:`ClaimError` naming the claim, the value measured and the range
allowed. A range must sit outside the variation measured across seeds and CPU kernels (see
``scripts/measure_claims.py``), never inside it: with ``$HFC_EDU_CLAIMS_LOG`` set to a file,
every check appends ``{"claim", "value", "low", "high", "notebook"}`` as a JSON line there, which
that script collects over repeated runs.
"""

from __future__ import annotations

import json
import math
import os

#: Where :func:`check` appends its measurements (one JSON line each), when set.
CLAIMS_LOG_ENV = "HFC_EDU_CLAIMS_LOG"
#: ``measure``: log every claim but raise for none, so one run collects every value
#: (``scripts/measure_claims.py`` sets it; never set it in tests).
CLAIMS_MODE_ENV = "HFC_EDU_CLAIMS_MODE"


def _measuring() -> bool:
    return os.environ.get(CLAIMS_MODE_ENV, "") == "measure"


class ClaimError(AssertionError):
    """A chapter's claim does not hold on this run."""


def _log(claim: str, value: float, low: float | None, high: float | None) -> None:
    path = os.environ.get(CLAIMS_LOG_ENV)
    if not path:
        return
    row = {
        "claim": claim,
        "value": value,
        "low": low,
        "high": high,
        "notebook": os.environ.get("HFC_EDU_NOTEBOOK", ""),
    }
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def check(claim: str, value: float, low: float | None = None, high: float | None = None) -> float:
    """Assert ``low <= value <= high`` (either bound may be None) and return ``value``.

    Raises :class:`ClaimError` with the claim in words, the value measured and the range
    allowed. ``value`` is anything ``float()`` accepts (a Python number, a 0-d tensor or array).
    """
    if low is None and high is None:
        raise ValueError(f"Claim {claim!r} needs a lower bound, an upper bound or both.")
    v = float(value)
    _log(claim, v, low, high)
    ok = math.isfinite(v) and (low is None or v >= low) and (high is None or v <= high)
    if not ok and not _measuring():
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ClaimError(
            f"Claim does not hold: {claim}. Measured {v:.4g}; allowed [{lo}, {hi}]. The prose "
            "relies on this number: find out why it moved before changing the range."
        )
    return v


def check_true(claim: str, condition: bool, detail: str = "") -> None:
    """Assert a claim that is a yes/no statement (an ordering, an equality of two tables)."""
    _log(claim, float(bool(condition)), 1.0, 1.0)
    if not condition and not _measuring():
        raise ClaimError(f"Claim does not hold: {claim}." + (f" {detail}" if detail else ""))


__all__ = ["CLAIMS_LOG_ENV", "CLAIMS_MODE_ENV", "ClaimError", "check", "check_true"]
