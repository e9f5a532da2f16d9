"""Metrics: AUC and TPR at a TNR against hand-computed values and scikit-learn; results table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from hfc_edu.detectors import SVM, FeatureSet
from hfc_edu.metrics import (
    RESULT_COLUMNS,
    bootstrap_ci,
    class_matched_auc,
    detection_metrics,
    result_row,
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


def _naive_bootstrap(neg, pos, metric, n_boot, level, seed):
    """The definition, one resample at a time: the same seeded draws as bootstrap_ci."""
    rng = np.random.default_rng(seed)
    idx_neg = rng.integers(0, len(neg), (n_boot, len(neg)))
    idx_pos = rng.integers(0, len(pos), (n_boot, len(pos)))
    stats = []
    for b in range(n_boot):
        n, p = neg[idx_neg[b]], pos[idx_pos[b]]
        if metric == "auc":
            stats.append(roc_auc_score(np.r_[np.zeros(len(n)), np.ones(len(p))], np.r_[n, p]))
        else:
            stats.append(np.mean(p > np.quantile(n, 0.9)))
    return tuple(np.quantile(stats, [(1 - level) / 2, (1 + level) / 2]))


@pytest.mark.parametrize("metric", ["auc", "tpr90"])
def test_bootstrap_ci_equals_the_resampling_definition(metric):
    """Stratified percentile bootstrap: identical to resampling negatives and positives separately
    and recomputing the metric (ties included: scores rounded to one decimal)."""
    rng = np.random.default_rng(0)
    neg, pos = np.round(rng.normal(size=120), 1), np.round(rng.normal(1.0, size=35), 1)
    ours = bootstrap_ci(neg, pos, metric, n_boot=200, level=0.9, seed=3)
    np.testing.assert_allclose(
        ours, _naive_bootstrap(neg, pos, metric, 200, 0.9, seed=3), atol=1e-12
    )
    assert bootstrap_ci(neg, pos, metric, n_boot=200, level=0.9, seed=3) == ours  # seeded


def test_bootstrap_ci_brackets_the_auc_and_narrows_with_more_positives():
    rng = np.random.default_rng(1)
    neg = rng.normal(size=300)
    few, many = rng.normal(1.0, size=30), rng.normal(1.0, size=600)
    lo_f, hi_f = bootstrap_ci(neg, few)
    lo_m, hi_m = bootstrap_ci(neg, many)
    assert lo_f < roc_auc(neg, few) < hi_f and lo_m < roc_auc(neg, many) < hi_m
    assert hi_m - lo_m < 0.6 * (hi_f - lo_f)
    # coverage of the true AUC (Φ(1/√2) ≈ 0.760 for N(0,1) vs N(1,1)) over independent test sets
    hits = 0
    for s in range(40):
        r = np.random.default_rng(100 + s)
        lo, hi = bootstrap_ci(r.normal(size=200), r.normal(1.0, size=40), n_boot=500, seed=s)
        hits += lo <= 0.7602 <= hi
    assert hits >= 33, hits  # nominal 95 %: 38 of 40 expected
    # perfectly separated scores: a degenerate interval at 1
    assert bootstrap_ci([0.0, 0.1, 0.2], [1.0, 2.0]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="metric"):
        bootstrap_ci(neg, few, "f1")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(neg, few, n_boot=1)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(neg, few, level=95)


def test_result_row_is_a_row_of_the_one_table():
    rng = np.random.default_rng(2)
    neg, pos = rng.normal(size=50), rng.normal(2.0, size=20)
    row = result_row(neg, pos, dataset="toy", attack="PGD", eps=2 / 256, detector="KD",
                     success_rate=0.5, seed=7)  # fmt: skip
    assert list(row) == RESULT_COLUMNS
    assert row["eps_256"] == pytest.approx(2.0) and row["n_pos"] == 20 and row["n_neg"] == 50
    assert (row["auc_low"], row["auc_high"]) == bootstrap_ci(neg, pos, seed=7)
    assert row["auc"] == pytest.approx(roc_auc(neg, pos))


def test_results_table_from_a_detector_scored_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(60, 4, generator=g), torch.randn(60, 4, generator=g) + 3])
    lab = torch.cat([torch.zeros(60), torch.ones(60)]).long()
    fs = FeatureSet({"z": x})
    s = SVM().fit(fs, lab).score(fs)
    row = result_row(
        s[lab.numpy() == 0], s[lab.numpy() == 1], dataset="toy", attack="shift", detector="SVM"
    )
    assert row["detector"] == "SVM" and row["n_pos"] == 60 and row["auc"] > 0.95
    assert row["auc_low"] <= row["auc"] <= row["auc_high"] and np.isnan(row["eps"])
    df = results_table([row, {**row, "detector": "other", "note": 1}])
    assert list(df.columns) == [*RESULT_COLUMNS, "note"] and len(df) == 2
    with pytest.raises(ValueError, match="lack column"):
        results_table([{"auc": 1.0}])
    assert results_table([]).empty and list(results_table([]).columns) == RESULT_COLUMNS


def test_metric_errors():
    with pytest.raises(ValueError, match="empty"):
        roc_auc([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        tpr_at_tnr([0.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="tnr"):
        tpr_at_tnr([0.0], [1.0], tnr=90)


def test_class_matched_auc_ignores_a_class_only_detector():
    """A score that only tells the classes apart: plain AUC rewards the class mix, matched is 0.5."""
    neg_classes = np.array([0] * 30 + [1] * 10)
    pos_classes = np.array([1] * 20 + [0] * 5)  # attacks flip the class: the mix differs
    neg, pos = neg_classes.astype(float), pos_classes.astype(float)
    assert roc_auc(neg, pos) > 0.7
    assert class_matched_auc(neg, neg_classes, pos, pos_classes) == pytest.approx(0.5)
    # by hand: weighted mean of the per-class AUCs
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(size=40), rng.normal(size=25) + 1
    want = (20 * roc_auc(neg[neg_classes == 1], pos[:20]) + 5 * roc_auc(neg[:30], pos[20:])) / 25
    assert class_matched_auc(neg, neg_classes, pos, pos_classes) == pytest.approx(want)
    with pytest.raises(ValueError, match="no negatives"):
        class_matched_auc(neg[:30], neg_classes[:30], pos, pos_classes)
    with pytest.raises(ValueError, match="align"):
        class_matched_auc(neg, neg_classes[:3], pos, pos_classes)
