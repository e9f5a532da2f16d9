"""Detectors on synthetic features: closed forms, separation, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.covariance import EmpiricalCovariance, LedoitWolf

from hfc_edu.detectors import (
    KD,
    LID,
    MAHA,
    SVM,
    ClassGaussians,
    DFeat,
    FeatureSet,
    QFeat,
    ScoreLR,
    cv_bandwidth,
    gaussian_kde_log_density,
    lid_mle,
    median_bandwidth,
)
from hfc_edu.metrics import roc_auc

LAYERS = {"a": 8, "b": 16}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one thread avoids thread contention on busy 2-core runners."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def clouds(
    n: int, shift: float = 0.0, seed: int = 0, scale: float = 1.0
) -> tuple[FeatureSet, torch.Tensor]:
    """Two classes (means 0 and 3·e₀) of unit Gaussians in two layers; ``shift`` moves everything."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    feats = {}
    for name, d in LAYERS.items():
        mu = torch.zeros(2, d)
        mu[1, 0] = 3.0
        feats[name] = (mu[y] + torch.randn(n, d, generator=g)) * scale + shift
    return FeatureSet(feats, pred=y), y


# ------------------------------------------------------------------------------------------- KD
def test_kd_log_density_equals_gaussian_mixture():
    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.float64)
    q = torch.randn(5, 3, dtype=torch.float64) * 2
    h = 0.7
    ours = gaussian_kde_log_density(q, x, h).numpy()
    comps = np.stack(
        [multivariate_normal(mean=xi, cov=h**2 * np.eye(3)).logpdf(q.numpy()) for xi in x.numpy()]
    )
    expected = logsumexp(comps, axis=0) - np.log(7)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    # Chunking does not change anything.
    np.testing.assert_allclose(
        gaussian_kde_log_density(q, x, h, chunk_size=2).numpy(), ours, rtol=1e-13
    )


def test_kd_scores_under_predicted_class_and_stays_exact_in_high_dimension():
    torch.manual_seed(0)
    d = 512
    x0, x1 = torch.randn(50, d), torch.randn(50, d) + 1.0
    kd = KD(bandwidth=1.0).fit({"z": torch.cat([x0, x1])}, torch.tensor([0] * 50 + [1] * 50))
    q = x1[:3] + 0.01
    s_right = kd.score(FeatureSet({"z": q}, pred=torch.tensor([1, 1, 1])))
    s_wrong = kd.score(FeatureSet({"z": q}, pred=torch.tensor([0, 0, 0])))
    assert (s_wrong > s_right + 100).all()  # far from the wrong class's samples: much lower density
    # exact: −log density straight from the definition in NumPy float64
    d2 = ((q.double()[:, None] - x1.double()[None]) ** 2).sum(-1).numpy()
    exact = -(logsumexp(-d2 / 2, axis=1) - np.log(50) - d / 2 * np.log(2 * np.pi))
    np.testing.assert_allclose(s_right, exact, rtol=1e-12)


def test_kd_bandwidth_choices():
    torch.manual_seed(0)
    x = torch.randn(200, 4, dtype=torch.float64)
    assert median_bandwidth(x) == pytest.approx(np.median(pdist(x.numpy())), rel=1e-9)
    # For tightly clustered data (scale 0.05) the held-out likelihood wants a small bandwidth.
    y = torch.randint(0, 2, (200,))
    h = cv_bandwidth(0.05 * x, y)
    assert 0.005 < h < 0.1
    fs = FeatureSet({"z": 0.05 * x}, pred=y)
    assert KD(bandwidth="cv").fit(fs, y).bandwidths_["z"] == pytest.approx(h)


# ------------------------------------------------------------------------------------------- LID
@pytest.mark.parametrize("d", [2, 5, 8])
def test_lid_estimates_subspace_dimension(d):
    """Gaussian points on a d-dimensional linear subspace of R^32 (with an offset): mean LID within 20%."""
    g = torch.Generator().manual_seed(d)
    basis, _ = torch.linalg.qr(torch.randn(32, d, generator=g))
    ref = torch.randn(5000, d, generator=g) @ basis.T + 3.0
    q = torch.randn(300, d, generator=g) @ basis.T + 3.0
    est = lid_mle(q, ref, k=20).mean().item()
    assert abs(est - d) < 0.2 * d, est


def test_lid_duplicates_and_skip_nearest():
    """A query inside the reference: skip_nearest=False ignores itself; True drops it (the reference rule)."""
    torch.manual_seed(0)
    ref = torch.randn(200, 10)
    q = torch.randn(1, 10)
    f64 = dict(k=20, dtype=torch.float64)
    without = lid_mle(q, ref, **f64)
    with_self = torch.cat([ref, q])
    torch.testing.assert_close(lid_mle(q, with_self, **f64), without, rtol=1e-10, atol=0)
    torch.testing.assert_close(
        lid_mle(q, with_self, skip_nearest=True, **f64), without, rtol=1e-10, atol=0
    )
    # float32 ("auto") agrees to float32 precision
    torch.testing.assert_close(lid_mle(q, with_self, k=20), without, rtol=1e-5, atol=0)
    # For a query outside the reference, skip_nearest drops a genuine neighbour: a different value.
    assert not torch.allclose(lid_mle(q, ref, skip_nearest=True, **f64), without)


def test_lid_float32_auto_matches_float64():
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(32, 2, generator=g))
    ref = torch.randn(5000, 2, generator=g) @ basis.T + 3.0  # dense: neighbours ≪ spread
    q = torch.randn(300, 2, generator=g) @ basis.T + 3.0
    exact = lid_mle(q, ref, dtype=torch.float64)
    torch.testing.assert_close(
        lid_mle(q, ref), exact, rtol=1e-9, atol=0
    )  # auto falls back to float64
    assert (lid_mle(q, ref, dtype=torch.float32) - exact).abs().max() > 1e-3  # plain float32 is off


def test_lid_detector_equals_function_on_its_reference_batches():
    tr, _ = clouds(500, seed=1)
    q, _ = clouds(250, seed=2)
    det = LID(k=10, batch_size=100, dtype=torch.float64).fit(tr)
    idx = det._reference_indices(3)
    s = det.score_layers(q)
    for j, name in enumerate(["a", "b"]):
        for c in range(3):
            exp = lid_mle(
                q.feats[name][c * 100 : (c + 1) * 100],
                tr.feats[name][idx[c]],
                k=10,
                dtype=torch.float64,
            )
            np.testing.assert_allclose(s[c * 100 : (c + 1) * 100, j], exp.numpy(), rtol=1e-10)


# ------------------------------------------------------------------------------------------- MAHA
def test_maha_distances_equal_closed_form():
    tr, y = clouds(300, seed=1)
    q, _ = clouds(20, seed=2)
    x = tr.feats["b"].double().numpy()
    means = np.stack([x[y.numpy() == c].mean(0) for c in (0, 1)])
    centred = x - means[y.numpy()]
    for shrinkage, est in (
        ("ledoit_wolf", LedoitWolf(assume_centered=True)),
        (None, EmpiricalCovariance(assume_centered=True)),
    ):
        prec = est.fit(centred).precision_
        diff = q.feats["b"].double().numpy()[:, None] - means[None]
        expected = np.einsum("nkd,de,nke->nk", diff, prec, diff)
        det = MAHA(layers="b", shrinkage=shrinkage).fit(tr, y)
        np.testing.assert_allclose(det.distances(q)["b"].numpy(), expected, rtol=1e-9)
        np.testing.assert_allclose(
            det.score(q), 0.5 * expected.min(1), rtol=1e-5
        )  # float32 fast path


def test_maha_covariance_well_conditioned_with_fewer_samples_than_dims():
    g = torch.Generator().manual_seed(0)
    x = torch.relu(
        torch.randn(40, 8, generator=g) @ torch.randn(8, 100, generator=g)
    )  # rank ≤ 8, 100 dims
    y = torch.arange(40) % 2
    cg = ClassGaussians(x, y, "ledoit_wolf")
    assert cg.condition_number < 1e4
    assert torch.linalg.matrix_rank(ClassGaussians(x, y, 0.5).covariance) == 100
    emp = EmpiricalCovariance(assume_centered=True).fit(x.double().numpy()).covariance_
    assert np.linalg.matrix_rank(emp) < 100  # what the shrinkage fixes
    s = MAHA().fit({"z": x}, y).score({"z": x + 0.1})
    assert np.isfinite(s).all()


# ------------------------------------------------------------------------------------------- all
def _fitted(name: str, tr: FeatureSet, y: torch.Tensor, sup: FeatureSet, is_adv: torch.Tensor):
    if name == "KD":
        return KD().fit(tr, y)
    if name == "KD-cv":
        return KD(bandwidth="cv", layers="all").fit(tr, y)
    if name == "MAHA":
        return MAHA().fit(tr, y)
    if name == "LID":
        return LID(k=20).fit(tr)
    if name == "LID+LR":
        return ScoreLR(LID(k=20).fit(tr)).fit(sup, is_adv)
    if name == "MAHA+LR":
        return ScoreLR(MAHA().fit(tr, y)).fit(sup, is_adv)
    if name == "KD+LR":
        return ScoreLR(KD(layers="all").fit(tr, y)).fit(sup, is_adv)
    cls = {"DFeat": DFeat, "QFeat": QFeat, "SVM": SVM}[name]
    return cls().fit(sup, is_adv)


DETECTORS = ["KD", "KD-cv", "MAHA", "LID", "LID+LR", "MAHA+LR", "KD+LR", "DFeat", "QFeat", "SVM"]


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_separate_clouds_and_not_identical_ones(name):
    """Positives shifted by 3 in every dimension: AUC > 0.95. Positives from the negatives'
    distribution: AUC within 0.1 of 0.5. With 300 + 300 test scores, the null AUC has standard
    deviation sqrt((n₀+n₁+1)/(12 n₀ n₁)) ≈ 0.024, so 0.1 is > 4 sd (and the seeds are fixed);
    supervised detectors are trained and tested on fresh, independent samples."""
    tr, y = clouds(600, seed=1)
    neg_tr, _ = clouds(300, seed=2)
    neg_te, _ = clouds(300, seed=3)
    labels = torch.cat([torch.zeros(300), torch.ones(300)]).long()
    # separated
    sup = FeatureSet.concat([neg_tr, clouds(300, shift=3.0, seed=4)[0]])
    det = _fitted(name, tr, y, sup, labels)
    assert roc_auc(det.score(neg_te), det.score(clouds(300, shift=3.0, seed=5)[0])) > 0.95
    # identical
    sup = FeatureSet.concat([neg_tr, clouds(300, seed=6)[0]])
    det = _fitted(name, tr, y, sup, labels)
    auc = roc_auc(det.score(neg_te), det.score(clouds(300, seed=7)[0]))
    assert abs(auc - 0.5) < 0.1, auc


def test_score_lr_uses_every_layer_and_scaler_fitted_on_train_only():
    tr, y = clouds(400, seed=1)
    sup = FeatureSet.concat([clouds(200, seed=2)[0], clouds(200, shift=1.0, seed=3)[0]])
    lab = torch.cat([torch.zeros(200), torch.ones(200)]).long()
    det = ScoreLR(MAHA().fit(tr, y)).fit(sup, lab)
    assert det.features(sup).shape == (400, 2)
    mean_before = det.pipeline_[0].mean_.copy()
    det.score(clouds(50, shift=10.0, seed=4)[0])
    np.testing.assert_array_equal(det.pipeline_[0].mean_, mean_before)


def test_qfeat_quantisation_is_fitted_on_train():
    sup = FeatureSet.concat([clouds(100, seed=2)[0], clouds(100, shift=3.0, seed=3)[0]])
    lab = torch.cat([torch.zeros(100), torch.ones(100)]).long()
    det = QFeat(n_bins=4).fit(sup, lab)
    x = sup.feats["b"].double().numpy()
    np.testing.assert_allclose(det.edges_, np.quantile(x, [0.25, 0.5, 0.75], axis=0))


# ------------------------------------------------------------------------------------------- errors
def test_bad_input_errors():
    tr, y = clouds(100, seed=1)
    nan = FeatureSet({k: v.clone() for k, v in tr.feats.items()}, pred=tr.pred)
    nan.feats["b"][3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        KD().fit(nan, y)
    with pytest.raises(ValueError, match="NaN"):
        MAHA().fit(tr, y).score(nan)
    with pytest.raises(ValueError, match="NaN"):
        LID().fit(tr).score(nan)
    # fewer samples than classes / than k
    with pytest.raises(ValueError, match="more samples"):
        MAHA().fit({"z": torch.randn(2, 3)}, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="k=20"):
        LID(k=20).fit({"z": torch.randn(10, 3)})
    with pytest.raises(ValueError, match="k=20"):
        lid_mle(torch.randn(3, 4), torch.randn(15, 4), k=20)
    # a single class
    with pytest.raises(ValueError, match="single class"):
        KD().fit(tr, torch.zeros(100))
    with pytest.raises(ValueError, match="single class"):
        SVM().fit(tr, torch.zeros(100))
    with pytest.raises(ValueError, match="single class"):
        ScoreLR(LID().fit(tr)).fit(tr, torch.zeros(100))
    with pytest.raises(ValueError, match="0 \\(clean or noisy\\) or 1"):
        DFeat().fit(tr, torch.arange(100) % 3)
    # mismatched dimensions and layer names between fit and score
    det = MAHA().fit(tr, y)
    with pytest.raises(ValueError, match="fitted on 16 features"):
        det.score({"a": torch.randn(5, 8), "b": torch.randn(5, 17)})
    with pytest.raises(ValueError, match="lack \\['b'\\]"):
        det.score({"a": torch.randn(5, 8), "c": torch.randn(5, 16)})
    with pytest.raises(ValueError, match="Unknown layer"):
        KD(layers="c").fit(tr, y)
    # scoring before fitting
    for d in (KD(), MAHA(), LID(), DFeat(), QFeat(), SVM()):
        with pytest.raises(RuntimeError, match="not fitted"):
            d.score(tr)
    with pytest.raises(RuntimeError, match="not fitted"):
        ScoreLR(KD()).fit(tr, torch.arange(100) % 2)
    # KD needs predictions; unknown predicted class
    kd = KD().fit(tr, y)
    with pytest.raises(ValueError, match="pred"):
        kd.score(dict(tr.feats))
    with pytest.raises(ValueError, match="no training samples"):
        kd.score(FeatureSet(tr.feats, pred=torch.full((100,), 5)))
    # inconsistent FeatureSet, wrong types, bad settings
    with pytest.raises(ValueError, match="same number of samples"):
        FeatureSet({"a": torch.randn(5, 2), "b": torch.randn(6, 2)})
    with pytest.raises(TypeError, match="FeatureSet or a dict"):
        KD().fit(torch.randn(5, 2), torch.arange(5) % 2)
    with pytest.raises(ValueError, match="pooled features"):
        LID().fit({"z": torch.randn(30, 2, 4, 4)})
    with pytest.raises(ValueError, match="bandwidth"):
        KD(bandwidth=0.0)
    with pytest.raises(ValueError, match="extractor"):
        MAHA(magnitude=0.001)


# ------------------------------------------------------------------------------ degenerate LID
def test_lid_equidistant_reference_is_a_clear_error():
    """All k neighbours at the same distance: the MLE −(mean log(r_i/r_k))⁻¹ is infinite.

    The old code returned −inf (exactly equal distances) or about 9e15 (equal up to rounding)
    without a word."""
    q = torch.zeros(1, 4, dtype=torch.float64)
    same = torch.zeros(30, 4, dtype=torch.float64)
    same[:, 0] = 1.0  # thirty copies of one point at distance 1
    with pytest.raises(ValueError, match="equidistant"):
        lid_mle(q, same, k=20)
    sphere = torch.cat([torch.eye(4), -torch.eye(4)]).repeat(4, 1)  # 32 points at distance 1
    for dtype in ("auto", torch.float32, torch.float64):
        with pytest.raises(ValueError, match="equidistant"):
            lid_mle(q, sphere, k=20, dtype=dtype)
    det = LID(k=20, batch_size=32).fit({"z": sphere})
    with pytest.raises(ValueError, match="equidistant"):
        det.score({"z": q})
    # a genuine neighbourhood is unaffected
    assert torch.isfinite(
        lid_mle(q + 0.1, sphere + 0.01 * torch.randn(32, 4, dtype=torch.float64))
    ).all()
