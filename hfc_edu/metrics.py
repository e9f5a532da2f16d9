"""Detection metrics, their bootstrap confidence intervals, and the one results table.

Conventions: detector scores are "higher = more adversarial" (the one sign convention of
:mod:`hfc_edu.detectors.base`; nothing here flips signs, unlike the HFC code's AUC); negatives are
clean and noisy images, positives are successful adversarial examples.

* AUC: ``roc_auc_score`` with positives = 1; ties count one half.
* TPR at a TNR of t: the threshold is the t-quantile of the negative scores (NumPy's default
  linear interpolation), so a fraction ≈ t of negatives score at or below it;
  ``TPR = mean(pos > thr)``. (The HFC code's "10th percentile of normal scores" is the same rule
  with its scores sign-flipped.)
* Confidence intervals (:func:`bootstrap_ci`): stratified percentile bootstrap (negatives and
  positives resampled separately, so every resample keeps both counts), seeded. Detection tables
  often rest on a few dozen positives, where an AUC of 0.90 can mean anything from 0.8 to 0.97.

:func:`result_row` and :func:`results_table` build the one results table, columns
:data:`RESULT_COLUMNS`, that :func:`~hfc_edu.experiments.detection.run_detection` and
:meth:`~hfc_edu.experiments.detection.DetectionRun.evaluate` return; for a detector scored by
hand, ``result_row(s[is_adv == 0], s[is_adv == 1], detector="mine", ...)`` gives its row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

#: Columns of every detection results table, in order. ``eps`` is the L∞ budget in pixel units
#: (``eps_256`` = ``eps · 256``); ``auc_low``/``auc_high`` bound the AUC's bootstrap confidence
#: interval; ``success_rate`` is the attack's success on all attacked images.
RESULT_COLUMNS = [
    "dataset",
    "attack",
    "eps",
    "eps_256",
    "detector",
    "auc",
    "auc_low",
    "auc_high",
    "tpr90",
    "tpr95",
    "n_pos",
    "n_neg",
    "success_rate",
]

#: Bootstrap resamples behind ``auc_low``/``auc_high``.
N_BOOTSTRAP = 1000


def _scores(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty: need at least one score.")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return a


def roc_auc(neg, pos) -> float:
    """Area under the ROC curve of scores ``neg`` (label 0) vs ``pos`` (label 1)."""
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    y = np.r_[np.zeros(neg.size), np.ones(pos.size)]
    return float(roc_auc_score(y, np.r_[neg, pos]))


def tpr_at_tnr(neg, pos, tnr: float = 0.9) -> float:
    """Fraction of positives above the ``tnr``-quantile of the negative scores."""
    _check_tnr(tnr)
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    thr = np.quantile(neg, tnr)
    return float(np.mean(pos > thr))


def class_matched_auc(neg, neg_classes, pos, pos_classes) -> float:
    """AUC with every positive compared only with negatives of its own class.

    ``neg_classes`` are the true classes of the negatives, ``pos_classes`` the classes the
    positives are classified as (their attack targets). Per class ``c``: the AUC of the
    negatives of class ``c`` against the positives of class ``c``; the result is their mean
    weighted by the positives per class. Classes with positives but no negatives raise.

    A detector that only tells the classes apart reads 0.5 here, whereas the plain AUC rewards it
    whenever the positives' classes are mixed differently from the negatives' (binary tasks:
    every attack flips the class, so they always are).
    """
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    nc = np.asarray(torch.as_tensor(neg_classes).cpu()).reshape(-1)
    pc = np.asarray(torch.as_tensor(pos_classes).cpu()).reshape(-1)
    if nc.size != neg.size or pc.size != pos.size:
        raise ValueError(
            f"Classes must align with the scores: {nc.size} negative classes for {neg.size} "
            f"scores, {pc.size} positive classes for {pos.size}."
        )
    total = 0.0
    for c in np.unique(pc):
        if not (nc == c).any():
            raise ValueError(f"Positives of class {c} have no negatives of that class to compare.")
        total += (pc == c).sum() * roc_auc(neg[nc == c], pos[pc == c])
    return float(total / pos.size)


def _check_tnr(tnr: float) -> None:
    if not 0.0 < tnr < 1.0:
        raise ValueError(f"tnr must be in (0, 1), got {tnr}.")


def detection_metrics(neg, pos) -> dict[str, float | int]:
    """``{"auc", "tpr90", "tpr95", "n_pos", "n_neg"}`` for one detector on one test set."""
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    return {
        "auc": roc_auc(neg, pos),
        "tpr90": tpr_at_tnr(neg, pos, 0.90),
        "tpr95": tpr_at_tnr(neg, pos, 0.95),
        "n_pos": int(pos.size),
        "n_neg": int(neg.size),
    }


def _bootstrap_aucs(
    neg: np.ndarray, pos: np.ndarray, idx_neg: np.ndarray, idx_pos: np.ndarray
) -> np.ndarray:
    """``(B,)`` AUCs of the resamples ``neg[idx_neg[b]]`` vs ``pos[idx_pos[b]]``, exactly (ties
    one half), in O(B·(n + m)): resampling = integer weights on the original scores, and the
    Mann–Whitney count of a positive is the weight of the negatives below it (plus half the tied
    ones), a difference of cumulative weights over the sorted negatives."""
    n, m = neg.size, pos.size
    order = np.argsort(neg, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    sorted_neg = neg[order]
    below = np.searchsorted(sorted_neg, pos, side="left")  # negatives < pos_j
    not_above = np.searchsorted(sorted_neg, pos, side="right")  # negatives <= pos_j
    n_boot = idx_neg.shape[0]
    offsets = np.arange(n_boot)[:, None]
    w_neg = np.bincount((rank[idx_neg] + n * offsets).ravel(), minlength=n_boot * n)
    w_pos = np.bincount((idx_pos + m * offsets).ravel(), minlength=n_boot * m)
    cum = np.zeros((n_boot, n + 1), dtype=np.int64)  # cum[:, i] = weight of the i lowest negatives
    np.cumsum(w_neg.reshape(n_boot, n), axis=1, out=cum[:, 1:])
    twice_wins = cum[:, below] + cum[:, not_above]  # (B, m): 2 per negative below, 1 per tie
    return (w_pos.reshape(n_boot, m) * twice_wins).sum(1) / (2.0 * n * m)


def _bootstrap_tprs(
    neg: np.ndarray, pos: np.ndarray, idx_neg: np.ndarray, idx_pos: np.ndarray, tnr: float
) -> np.ndarray:
    """``(B,)`` TPR at ``tnr`` of the resamples (NumPy's linear quantile, per resample)."""
    thr = np.quantile(neg[idx_neg], tnr, axis=1)
    return (pos[idx_pos] > thr[:, None]).mean(1)


def bootstrap_ci(
    neg,
    pos,
    metric: str = "auc",
    *,
    n_boot: int = N_BOOTSTRAP,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified percentile-bootstrap confidence interval of a detection metric.

    Each of ``n_boot`` resamples draws ``len(neg)`` negatives and ``len(pos)`` positives with
    replacement, each group on its own (stratified: the class balance of the test set is kept);
    the interval is the ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled metric.

    Args:
        neg, pos: scores of negatives (label 0) and positives (label 1), higher = more adversarial.
        metric: ``"auc"``, ``"tpr90"`` or ``"tpr95"``.
        n_boot: resamples (1,000 by default).
        level: coverage of the interval.
        seed: seeds ``numpy.random.default_rng`` (the same seed gives the same interval).

    Returns:
        ``(low, high)``.
    """
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    if metric not in ("auc", "tpr90", "tpr95"):
        raise ValueError(f"metric must be 'auc', 'tpr90' or 'tpr95', got {metric!r}.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot must be an int >= 2, got {n_boot!r}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    rng = np.random.default_rng(seed)
    idx_neg = rng.integers(0, neg.size, (n_boot, neg.size))
    idx_pos = rng.integers(0, pos.size, (n_boot, pos.size))
    if metric == "auc":
        stats = _bootstrap_aucs(neg, pos, idx_neg, idx_pos)
    else:
        stats = _bootstrap_tprs(neg, pos, idx_neg, idx_pos, 0.90 if metric == "tpr90" else 0.95)
    low, high = np.quantile(stats, [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(low), float(high)


def result_row(
    neg,
    pos,
    *,
    dataset: str = "",
    attack: str = "",
    eps: float = math.nan,
    detector: str = "",
    success_rate: float = math.nan,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> dict:
    """One row of the results table (:data:`RESULT_COLUMNS`) for one detector on one test set."""
    metrics = detection_metrics(neg, pos)
    low, high = bootstrap_ci(neg, pos, "auc", n_boot=n_boot, seed=seed)
    eps = float(eps)
    return {
        "dataset": dataset,
        "attack": attack,
        "eps": eps,
        "eps_256": eps * 256,
        "detector": detector,
        "auc": metrics["auc"],
        "auc_low": low,
        "auc_high": high,
        "tpr90": metrics["tpr90"],
        "tpr95": metrics["tpr95"],
        "n_pos": metrics["n_pos"],
        "n_neg": metrics["n_neg"],
        "success_rate": float(success_rate),
    }


def results_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """The results table: one row per (dataset, attack, ε, detector), columns
    :data:`RESULT_COLUMNS` first (extra columns of the rows follow). No rows: an empty table."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS).astype({"n_pos": int, "n_neg": int})
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"Result rows lack column(s) {missing}; build them with result_row.")
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return df[RESULT_COLUMNS + extra].astype({"n_pos": int, "n_neg": int})


__all__ = [
    "N_BOOTSTRAP",
    "RESULT_COLUMNS",
    "bootstrap_ci",
    "class_matched_auc",
    "detection_metrics",
    "result_row",
    "results_table",
    "roc_auc",
    "tpr_at_tnr",
]
