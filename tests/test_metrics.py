"""Metrics: AUC and TPR at a TNR against hand-computed values and scikit-learn; results table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from hfc_edu.detectors import SVM, FeatureSet
from hfc_edu.metrics import (
    RESULT_COLUMNS,
    attack_success_rate,
    detection_metrics,
    evaluate_detector,
    results_table,
    roc_auc,
    tpr_at_tnr,
)


def test_auc_by_hand_and_against_sklearn():
    neg = [0.1, 0.4, 0.35, 0.8]
    pos = [0.9, 0.35, 0.7]
    # pairs (pos > neg) + 0.5 ties: 0.9 beats 4; 0.35 beats 0.1, ties 0.35, loses to 0.4, 0.8; 0.7 beats 3
    assert roc_auc(neg, pos) == pytest.approx((4 + 1.5 + 3) / 12)
    rng = np.random.default_rng(0)
    n, p = rng.normal(size=200), rng.normal(0.7, size=150)
    assert roc_auc(n, p) == pytest.approx(
        roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[n, p])
    )


def test_tpr_at_tnr_by_hand():
    neg = np.arange(10.0)  # 0..9: 90% quantile (linear) = 8.1, 95% = 8.55
    pos = np.array([8.0, 8.2, 8.6, 9.5, 3.0])
    assert tpr_at_tnr(neg, pos, 0.9) == pytest.approx(3 / 5)  # 8.2, 8.6, 9.5 > 8.1
    assert tpr_at_tnr(neg, pos, 0.95) == pytest.approx(2 / 5)  # 8.6, 9.5 > 8.55
    m = detection_metrics(neg, pos)
    assert m == {
        "auc": pytest.approx(roc_auc(neg, pos)),
        "tpr90": 0.6,
        "tpr95": 0.4,
        "n_pos": 5,
        "n_neg": 10,
    }


def test_tpr_at_tnr_matches_the_roc_curve_on_continuous_scores():
    rng = np.random.default_rng(1)
    neg, pos = rng.normal(size=1000), rng.normal(1.5, size=1000)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(1000), np.ones(1000)], np.r_[neg, pos])
    assert tpr_at_tnr(neg, pos, 0.9) == pytest.approx(np.interp(0.1, fpr, tpr), abs=0.01)


def test_attack_success_rate():
    y = torch.tensor([0, 1, 1, 0])
    assert attack_success_rate(torch.tensor([1, 1, 0, 1]), y) == 0.75
    assert (
        attack_success_rate(torch.tensor([1, 1, 0, 1]), torch.tensor([1, 0, 0, 0]), targeted=True)
        == 0.5
    )


def test_evaluate_detector_and_results_table():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g) + 3])
    lab = torch.cat([torch.zeros(60), torch.ones(60)]).long()
    fs = FeatureSet({"z": x})
    row = evaluate_detector(
        SVM(), fs, lab, fit_data=fs, fit_is_adv=lab, dataset="toy", attack="shift"
    )
    assert row["detector"] == "SVM" and row["n_pos"] == 60 and row["auc"] > 0.95
    df = results_table([row, {**row, "detector": "other", "eps": 1}])
    assert list(df.columns) == [*RESULT_COLUMNS, "eps"] and len(df) == 2
    with pytest.raises(ValueError, match="lack column"):
        results_table([{"auc": 1.0}])
    with pytest.raises(ValueError, match="both"):
        evaluate_detector(SVM(), fs, lab, fit_data=fs)


def test_metric_errors():
    with pytest.raises(ValueError, match="empty"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        tpr_at_tnr([0.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="tnr"):
        tpr_at_tnr([0.0], [1.0], tnr=90)
    with pytest.raises(ValueError, match="length"):
        attack_success_rate(torch.tensor([1, 0]), torch.tensor([1]))
