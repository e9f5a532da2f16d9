"""Detection and attack metrics, and the tidy results table the book prints and plots.

Conventions: detector scores are "higher = more adversarial"; negatives are clean and noisy
images, positives are successful adversarial examples.

* AUC: ``roc_auc_score`` with positives = 1 (no sign flipping heuristics, unlike the HFC code).
* TPR at a TNR of t: the threshold is the t-quantile of the negative scores (NumPy's default
  linear interpolation), so a fraction ≈ t of negatives score at or below it;
  ``TPR = mean(pos > thr)``. (The HFC code's "10th percentile of normal scores" is the same rule
  with its scores sign-flipped.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

RESULT_COLUMNS = ["dataset", "attack", "detector", "auc", "tpr90", "tpr95", "n_pos", "n_neg"]


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
    if not 0.0 < tnr < 1.0:
        raise ValueError(f"tnr must be in (0, 1), got {tnr}.")
    neg, pos = _scores(neg, "Negative scores"), _scores(pos, "Positive scores")
    thr = np.quantile(neg, tnr)
    return float(np.mean(pos > thr))


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


def attack_success_rate(pred, y, targeted: bool = False) -> float:
    """Untargeted: fraction with ``pred != y`` (true labels). Targeted: ``pred == y`` (targets)."""
    pred = torch.as_tensor(pred).reshape(-1)
    y = torch.as_tensor(y).reshape(-1)
    if pred.shape != y.shape:
        raise ValueError(f"pred and y differ in length: {pred.numel()} vs {y.numel()}.")
    if pred.numel() == 0:
        raise ValueError("No predictions given.")
    hit = pred == y if targeted else pred != y
    return float(hit.float().mean())


def evaluate_detector(
    detector,
    test,
    test_is_adv,
    *,
    fit_data=None,
    fit_is_adv=None,
    dataset: str = "",
    attack: str = "",
    name: str | None = None,
) -> dict:
    """Optionally fit a supervised detector, score a labelled test set and return one result row.

    Args:
        detector: any hfc_edu detector (``score`` = higher is more adversarial).
        test, test_is_adv: what ``detector.score`` reads, and ``(N,)`` labels (1 = adversarial).
        fit_data, fit_is_adv: detector-training data; when given, ``detector.fit`` is called first.
        dataset, attack, name: labels of the row (``name`` defaults to the detector's class name).
    """
    if (fit_data is None) != (fit_is_adv is None):
        raise ValueError("Pass both fit_data and fit_is_adv, or neither.")
    if fit_data is not None:
        detector.fit(fit_data, fit_is_adv)
    s = np.asarray(detector.score(test), dtype=np.float64)
    lab = np.asarray(torch.as_tensor(test_is_adv).cpu()).reshape(-1)
    if lab.shape[0] != s.shape[0]:
        raise ValueError(f"{s.shape[0]} scores but {lab.shape[0]} labels.")
    row = {"dataset": dataset, "attack": attack, "detector": name or type(detector).__name__}
    row.update(detection_metrics(s[lab == 0], s[lab == 1]))
    return row


def results_table(rows: Iterable[Mapping]) -> pd.DataFrame:
    """A DataFrame with one row per (dataset, attack, detector) and the metric columns."""
    df = pd.DataFrame(list(rows))
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"Result rows lack column(s) {missing}; build them with evaluate_detector."
        )
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return df[RESULT_COLUMNS + extra].astype({"n_pos": int, "n_neg": int})


__all__ = [
    "RESULT_COLUMNS",
    "attack_success_rate",
    "detection_metrics",
    "evaluate_detector",
    "results_table",
    "roc_auc",
    "tpr_at_tnr",
]
