"""The papers' claims that a reproduction can be held against, and the verdict on each.

Only statements the papers make in their abstracts are listed as *the papers' claims* (the full
texts' tables were not available to the authors of this book). Each claim says how it is
measured from the results tables; :func:`judge` returns ``"holds"``, ``"differs"`` or ``"not
comparable"`` with the reason, and the measured value beside the claim. The book's own
criteria (for example "near chance" = AUC in [0.4, 0.6]) are marked as the book's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOLDS, DIFFERS, NOT_COMPARABLE = "holds", "differs", "not comparable"

#: "Near chance": an AUC this close to 0.5 (the book's criterion, used for every detector).
NEAR_CHANCE = (0.4, 0.6)
CONVENTIONAL_DETECTORS = ("KD", "LID", "DFeat", "QFeat")


@dataclass(frozen=True)
class Verdict:
    claim: str
    source: str
    measured: str
    verdict: str
    reason: str


@dataclass(frozen=True)
class Claim:
    """One claim: its words, where it is stated, and how to judge it from the tables."""

    key: str
    text: str
    source: str
    judge: Callable[[dict[str, pd.DataFrame]], tuple[str, str, str]]


def _missing(tables: dict[str, pd.DataFrame], *names: str) -> str | None:
    gone = [n for n in names if n not in tables or tables[n].empty]
    return f"no {', '.join(gone)} results in this run" if gone else None


def _ma_detection(tables):
    if why := _missing(tables, "detection"):
        return "-", NOT_COMPARABLE, why
    df = tables["detection"]
    df = df[df.detector.isin(CONVENTIONAL_DETECTORS)]
    best = df.groupby(["attack", "eps_256"]).auc.max()
    measured = "; ".join(f"{a} {e:g}/256: {v:.3f}" for (a, e), v in best.items())
    if (best >= 0.98).all():
        return measured, HOLDS, "the best of KD, LID, DFeat and QFeat reaches 0.98 for every attack"
    low = best[best < 0.98]
    return (
        measured,
        DIFFERS,
        (
            f"{len(low)} of {len(best)} (attack, ε) rows stay under 0.98; the papers used ImageNet-"
            "pretrained ResNet-50s at 224 px, this run the profile's model and size"
        ),
    )


def _yao_outliers(tables):
    if why := _missing(tables, "detection"):
        return "-", NOT_COMPARABLE, why
    df = tables["detection"]
    pgd = df[df.attack.isin(["PGD", "BIM"])]
    if pgd.empty:
        return "-", NOT_COMPARABLE, "neither PGD nor BIM was run"
    best = pgd.groupby("detector").auc.max()
    measured = ", ".join(f"{d} {v:.2f}" for d, v in best.items())
    strong = int((best >= 0.9).sum())
    if strong >= 3:
        return measured, HOLDS, f"{strong} feature-space detectors reach AUC ≥ 0.9 on BIM/PGD"
    return measured, DIFFERS, f"only {strong} detector(s) reach AUC ≥ 0.9 on BIM/PGD"


def _yao_direction(tables):
    if why := _missing(tables, "theory"):
        return "-", NOT_COMPARABLE, why
    df = tables["theory"]
    if "cosine_min" not in df:
        return "-", NOT_COMPARABLE, "the direction check did not run"
    cmin = float(df.cosine_min.min())
    if int(df.num_classes.max()) != 2:
        return f"{cmin:.4f}", NOT_COMPARABLE, "the claim is about binary diagnosis networks"
    if cmin >= 0.99:
        return f"min cos {cmin:.4f}", HOLDS, "the penultimate gradient is parallel to w_t − w_o"
    return f"min cos {cmin:.4f}", DIFFERS, "the penultimate gradient turns away from w_t − w_o"


def _near_chance(row_aucs: pd.Series) -> int:
    lo, hi = NEAR_CHANCE
    return int(((row_aucs >= lo) & (row_aucs <= hi)).sum())


def _yao_hfc(tables):
    if why := _missing(tables, "hfc"):
        return "-", NOT_COMPARABLE, why
    df = tables["hfc"]
    counts = df.groupby("attack").auc.apply(_near_chance)
    n_det = df.detector.nunique()
    measured = "; ".join(f"{a}: {c}/{n_det} near chance" for a, c in counts.items())
    hfc = [a for a in counts.index if "HFC" in a]
    others = [a for a in counts.index if a not in hfc and a != "PGD"]
    if not hfc or not others:
        return measured, NOT_COMPARABLE, "HFC and an adaptive baseline are both needed"
    best_hfc = max(counts[a] for a in hfc)
    best_other = max(counts[a] for a in others)
    if best_hfc > best_other:
        return measured, HOLDS, "HFC puts more detectors near chance than any adaptive baseline"
    return (
        measured,
        DIFFERS,
        (
            f"HFC puts {best_hfc} detectors near chance, an adaptive baseline {best_other} "
            "(near chance: AUC in [0.4, 0.6], the book's criterion)"
        ),
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "ma-detect",
        "Simple detectors achieve over 98% detection AUC against state-of-the-art attacks.",
        "Ma et al., Pattern Recognition 2021, abstract",
        _ma_detection,
    ),
    Claim(
        "yao-outliers",
        "Conventional attacks that optimise the logits are easy to distinguish in feature space.",
        "Yao et al., TMI 2023, abstract",
        _yao_outliers,
    ),
    Claim(
        "yao-direction",
        "Conventional attacks change the outputs by continuously optimising vulnerable features "
        "in a fixed direction.",
        "Yao et al., TMI 2023 (and MICCAI 2021: binary diagnosis networks), abstract",
        _yao_direction,
    ),
    Claim(
        "yao-hfc",
        "HFC bypasses an array of state-of-the-art adversarial detectors more efficiently than "
        "competing adaptive attacks.",
        "Yao et al., MICCAI 2021, abstract",
        _yao_hfc,
    ),
)


def judge(tables: dict[str, pd.DataFrame]) -> list[Verdict]:
    """A verdict for every claim, from the run's tables (missing tables: "not comparable")."""
    out = []
    for c in CLAIMS:
        try:
            measured, verdict, reason = c.judge(tables)
        except (KeyError, ValueError) as err:  # a table without the columns a claim reads
            measured, verdict, reason = "-", NOT_COMPARABLE, f"cannot be read ({err})"
        out.append(Verdict(c.text, c.source, measured, verdict, reason))
    return out


def distance_from_chance(auc: pd.Series | np.ndarray) -> np.ndarray:
    """``|AUC − 0.5|``: how far a detector is from chance, whichever way its sign points."""
    return np.abs(np.asarray(auc, dtype=float) - 0.5)


__all__ = [
    "CLAIMS",
    "DIFFERS",
    "HOLDS",
    "NEAR_CHANCE",
    "NOT_COMPARABLE",
    "Claim",
    "Verdict",
    "distance_from_chance",
    "judge",
]
