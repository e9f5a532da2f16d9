"""The adaptive baselines: the detector-aware terms are the detectors' own statistics and formulas.

Moved here from tests/test_hfc_loss.py (the baselines now build on hfc_edu.detectors), with the
same reference computations, plus the check that each term equals its detector's score.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf

from hfc_edu.detectors import KD, MAHA, FeatureSet
from hfc_edu.hfc import FeatureMatchingLoss, KDLoss, MahalanobisLoss


@pytest.fixture(scope="module")
def train_feats():
    g = torch.Generator().manual_seed(5)
    y = torch.arange(90) % 3
    return {
        "a": torch.randn(90, 4, generator=g, dtype=torch.float64) + y[:, None],
        "b": torch.randn(90, 6, generator=g, dtype=torch.float64) * 2 - y[:, None],
    }, y


def test_feature_matching(train_feats):
    feats, y = train_feats
    fm = FeatureMatchingLoss.from_features(feats, y, 3)
    assert fm.layers == ["b"] and fm.needs_features
    g = torch.Generator().manual_seed(7)
    q = {"b": 3 * torch.randn(5, 6, generator=g, dtype=torch.float64)}
    t = torch.tensor([0, 1, 2, 0, 1])
    mu = torch.stack([feats["b"][y == c].mean(0) for c in range(3)])
    ref = ((q["b"] - mu[t]) ** 2).sum(1) / 6
    torch.testing.assert_close(fm(None, t, q), ref)


def test_mahalanobis_baseline(train_feats):
    feats, y = train_feats
    ml = MahalanobisLoss.from_features(feats, y, 3)
    assert ml.layers == ["a", "b"]
    q = {n: f[:7] + 0.3 for n, f in feats.items()}
    t = torch.tensor([2, 1, 0, 2, 1, 0, 0])
    ref = 0
    for n, f in feats.items():
        mu = torch.stack([f[y == c].mean(0) for c in range(3)])
        prec = np.linalg.inv(LedoitWolf().fit((f - mu[y]).numpy()).covariance_)
        diff = (q[n] - mu[t]).numpy()
        ref = ref + np.einsum("nd,de,ne->n", diff, prec, diff) / f.shape[1]
    np.testing.assert_allclose(ml(None, t, q).numpy(), ref, rtol=1e-8)
    qs = tuple(v.clone().requires_grad_(True) for v in q.values())
    assert torch.autograd.gradcheck(lambda a, b: ml(None, t, {"a": a, "b": b}), qs)
    # float32 features: float32 values close to the float64 ones
    q32 = {n: v.float() for n, v in q.items()}
    out32 = ml(None, t, q32)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=1e-4)


def test_kd_baseline(train_feats):
    feats, y = train_feats
    bw = 1.5
    kd = KDLoss.from_features(feats, y, 3, layer="a", bandwidth=bw)
    q = feats["a"][:8] + 0.5
    t = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ref = []
    for i, c in enumerate(t.tolist()):
        f = feats["a"][y == c].numpy()
        d2 = ((q[i].numpy() - f) ** 2).sum(1)
        ref.append(
            logsumexp(-d2 / (2 * bw**2)) - math.log(len(f)) - 2 * math.log(2 * math.pi * bw**2)
        )
    np.testing.assert_allclose(kd.log_density(q, t).numpy(), ref, rtol=1e-10)
    np.testing.assert_allclose(kd(None, t, {"a": q}).numpy(), -np.array(ref), rtol=1e-10)
    assert torch.autograd.gradcheck(
        lambda h: kd(None, t, {"a": h}), (q.clone().requires_grad_(True),)
    )
    # float32 features give float32 values close to the float64 ones
    np.testing.assert_allclose(kd(None, t, {"a": q.float()}).numpy(), -np.array(ref), rtol=1e-4)


def test_terms_are_their_detectors_scores(train_feats):
    """KDLoss = the KD detector's score had the classifier predicted the target; MahalanobisLoss =
    the MAHA detector's squared distance to the target mean, per channel. Built from the fitted
    detectors, the terms hold the detectors' statistics (nothing refitted)."""
    feats, y = train_feats
    fs = FeatureSet(feats)
    q = {n: f[:9] * 0.8 + 0.2 for n, f in feats.items()}
    t = torch.tensor([0, 1, 2] * 3)

    kd = KD(bandwidth=0.7, layers="all").fit(fs, y)
    term = KDLoss.from_detector(kd)  # default: the last fitted layer
    assert term.layers == ["b"] and term.class_features is kd.data_["b"]
    expected = kd.score(FeatureSet(q, pred=t))
    np.testing.assert_allclose(term(None, t, q).numpy(), expected, rtol=1e-12)
    a = KDLoss.from_detector(kd, layer="a")(None, t, q)
    np.testing.assert_allclose(a.numpy(), kd.score_layers(FeatureSet(q, pred=t))[:, 0], rtol=1e-12)

    maha = MAHA().fit(fs, y)
    term = MahalanobisLoss.from_detector(maha, layers=["a"])
    assert term.gaussians["a"] is maha.gaussians_["a"]
    d2 = maha.distances(q)["a"][torch.arange(9), t]
    torch.testing.assert_close(term(None, t, q), d2 / 4, rtol=1e-10, atol=0)
    # the detector's score is half the smallest of these distances
    closest = maha.distances(q)["a"].argmin(1)
    np.testing.assert_allclose(
        0.5 * 4 * term(None, closest, q).numpy(), maha.score_layers(q)[:, 0], rtol=1e-5
    )


def test_baseline_bad_input(train_feats):
    feats, y = train_feats
    with pytest.raises(ValueError, match="not in the features"):
        KDLoss.from_features(feats, y, 3, layer="zzz")
    with pytest.raises(ValueError, match="needs training features"):
        FeatureMatchingLoss.from_features(feats, y, 4)
    with pytest.raises(ValueError, match="every class"):
        KDLoss.from_features(feats, y, 4, layer="a")
    with pytest.raises(ValueError, match="needs training features"):
        MahalanobisLoss.from_features(feats, y, 4)
    kd = KDLoss.from_features(feats, y, 3, layer="a")
    with pytest.raises(ValueError, match="features do not contain"):
        kd(None, y[:3], {"b": feats["b"][:3]})
    with pytest.raises(ValueError, match="bandwidth"):
        KDLoss.from_features(feats, y, 3, layer="a", bandwidth=0.0)
    with pytest.raises(TypeError, match="fitted KD"):
        KDLoss.from_detector(KD())
    with pytest.raises(TypeError, match="fitted MAHA"):
        MahalanobisLoss.from_detector(MAHA())
    with pytest.raises(ValueError, match="not fitted"):
        MahalanobisLoss.from_detector(MAHA(layers="a").fit(FeatureSet(feats), y), layers=["b"])
    two = (y[y < 2], {n: f[y < 2] for n, f in feats.items()})
    with pytest.raises(ValueError, match="every class"):  # classes 0 and 2: a gap at 1
        KDLoss.from_detector(KD().fit(FeatureSet(feats), torch.where(y == 1, 2, y)))
    assert KDLoss.from_detector(KD().fit(FeatureSet(two[1]), two[0])).num_classes == 2
