"""Fitting class-conditional GMMs on model features: cache, fingerprints, 2D/3D, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hfc_edu.hfc.class_gmms as class_gmms_mod
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc import (
    ClassConditionalGMMs,
    CorruptCacheError,
    HFCLoss,
    fit_class_gmms,
    hfc_attack,
    model_fingerprint,
)
from hfc_edu.models import build_model

FAST = dict(n_components=2, bayesian=False, n_init=1, max_iter=100)


@pytest.fixture(scope="module")
def setup2d():
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 2, image_size=16).eval()
    x = torch.rand(24, 1, 16, 16)
    y = torch.arange(24) % 2
    return model, x, y


def test_fit_shapes_layers_and_values(setup2d, tmp_path):
    model, x, y = setup2d
    gmms = fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    fx = FeatureExtractor(model)
    assert gmms.layer_names == fx.layer_names  # every ReLU layer (all <= 512 channels)
    assert gmms.channels == fx.channels
    assert gmms.num_classes == 2 and gmms.n_components == 2
    assert gmms.fingerprint == model_fingerprint(model)
    assert gmms.settings["estimator"] == "GaussianMixture"
    assert gmms.settings["samples_per_class"] == [12, 12]
    name = gmms.layer_names[3]
    assert gmms.layer(name).means.shape == (2, 2, fx.channels[name])
    assert gmms.layer(name).means.dtype == torch.float64
    # the class-c mixture is fitted on class-c features: its log-likelihood of them is higher
    _, feats = fx.extract(x)
    lp = gmms.layer(name).log_prob(feats[name])  # (N, C)
    assert (lp[y == 0, 0] > lp[y == 0, 1]).float().mean() > 0.9
    # a FeatureExtractor with chosen layers restricts the fit to them
    sub = fit_class_gmms(
        FeatureExtractor(model, layers=["stem", "layer4.0.out"]), x, y, cache=False, **FAST
    )
    assert sub.layer_names == ["stem", "layer4.0.out"]


def test_cache_roundtrip_without_refit(setup2d, tmp_path, monkeypatch):
    model, x, y = setup2d
    first = fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    files = list(tmp_path.glob("gmm_*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although a cache file exists")

    monkeypatch.setattr(class_gmms_mod, "fit_sklearn_gmm", no_refit)
    second = fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    assert second.layer_names == first.layer_names and second.fingerprint == first.fingerprint
    for a, b in zip(first.gmms, second.gmms, strict=True):
        for buf in ("means", "precisions_cholesky", "log_weights", "variational_log_weights"):
            assert torch.equal(getattr(a, buf), getattr(b, buf))
    # another data set / setting / model is another key: it must fit (and here: fail loudly)
    with pytest.raises(AssertionError, match="refitted"):
        fit_class_gmms(model, x.flip(0), y, cache=tmp_path, **FAST)
    with pytest.raises(AssertionError, match="refitted"):
        fit_class_gmms(model, x, y, cache=tmp_path, **{**FAST, "random_state": 1})
    with pytest.raises(AssertionError, match="refitted"):
        fit_class_gmms(model, x, y, cache=tmp_path, refit=True, **FAST)


def test_fit_is_deterministic(setup2d):
    model, x, y = setup2d
    a = fit_class_gmms(model, x, y, cache=False, **FAST)
    b = fit_class_gmms(model, x, y, cache=False, **FAST)
    assert all(torch.equal(p.means, q.means) for p, q in zip(a.gmms, b.gmms, strict=True))


def test_corrupt_cache_is_an_error(setup2d, tmp_path):
    model, x, y = setup2d
    fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    (path,) = tmp_path.glob("gmm_*.npz")
    path.write_bytes(path.read_bytes()[:200])  # truncated file
    with pytest.raises(CorruptCacheError, match="corrupt") as err:
        fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    assert str(path) in str(err.value) and "refit=True" in str(err.value)
    assert isinstance(err.value, ValueError)
    # refit=True overwrites it, after which it loads again
    fit_class_gmms(model, x, y, cache=tmp_path, refit=True, **FAST)
    assert fit_class_gmms(model, x, y, cache=tmp_path, **FAST).num_classes == 2
    # an npz that is not a GMM file
    np.savez(path, meta=np.array("{}"))
    with pytest.raises(CorruptCacheError, match="not a valid GMM file") as err:
        fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    assert str(path) in str(err.value) and "refit=True" in str(err.value)
    # a valid GMM file under another key's name
    other = fit_class_gmms(model, x, y, cache=False, **{**FAST, "random_state": 5})
    other.save(path)
    with pytest.raises(CorruptCacheError, match="holds the GMMs of another key"):
        fit_class_gmms(model, x, y, cache=tmp_path, **FAST)


def test_save_load_and_bayesian_default(setup2d, tmp_path):
    model, x, y = setup2d
    gmms = fit_class_gmms(model, x, y, layers=["stem", "layer1.0.out"], max_iter=50, cache=False)
    assert gmms.settings["estimator"] == "BayesianGaussianMixture"
    assert gmms.settings["n_init"] == 2
    gmms.save(tmp_path / "g.npz")
    back = ClassConditionalGMMs.load(tmp_path / "g.npz")
    assert back.settings == gmms.settings
    feats = {n: torch.rand(5, c) for n, c in gmms.channels.items()}
    torch.testing.assert_close(
        back.layer("stem").log_prob(feats["stem"], variational=True),
        gmms.layer("stem").log_prob(feats["stem"], variational=True),
    )


def test_3d_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 2, spatial_dims=3, image_size=8).eval()
    x = torch.rand(12, 1, 8, 8, 8)
    y = torch.arange(12) % 2
    gmms = fit_class_gmms(model, x, y, cache=tmp_path, **FAST)
    assert gmms.layer_names == FeatureExtractor(model).layer_names
    res = hfc_attack(model, x[:4], 1 - y[:4], 4 / 255, gmms, steps=3)
    assert res.x_adv.shape == x[:4].shape
    assert (res.x_adv - x[:4]).abs().max() <= 4 / 255 + 1e-6


def test_bad_input(setup2d, tmp_path):
    model, x, y = setup2d
    with pytest.raises(ValueError, match=r"Too few samples .* class\(es\) \{1: 1\}"):
        fit_class_gmms(model, x[:3], torch.tensor([0, 0, 1]), cache=False, **FAST)
    with pytest.raises(ValueError, match=r"Too few samples .*\{0: 12, 1: 12\}"):
        fit_class_gmms(model, x, y, cache=False, **{**FAST, "n_components": 13})
    with pytest.raises(ValueError, match="Unknown layer name"):
        fit_class_gmms(model, x, y, layers=["layer9.out"], cache=False, **FAST)
    with pytest.raises(ValueError, match="more than max_channels=32"):
        fit_class_gmms(
            model, x, y, layers=["stem", "layer4.0.out"], max_channels=32, cache=False, **FAST
        )
    with pytest.raises(ValueError, match=r"y must be integer labels of shape \(24,\)"):
        fit_class_gmms(model, x, y.float(), cache=False, **FAST)
    with pytest.raises(ValueError, match="class indices in"):
        fit_class_gmms(model, x, y + 1, cache=False, **FAST)
    with pytest.raises(ValueError, match="float tensor of images"):
        fit_class_gmms(model, x[:, 0], y, cache=False, **FAST)

    # GMMs fitted for another model (same architecture, other weights)
    gmms = fit_class_gmms(model, x, y, layers=["stem", "layer1.0.out"], cache=tmp_path, **FAST)
    torch.manual_seed(1)
    other = build_model("compact_resnet_narrow", 1, 2, image_size=16).eval()
    with pytest.raises(ValueError, match="fitted on the features of another model"):
        hfc_attack(other, x[:2], 1 - y[:2], 4 / 255, gmms, steps=1)
    with pytest.raises(ValueError, match="fitted on the features of another model"):
        gmms.check_model(FeatureExtractor(other))
    # a model that passed once is re-hashed after its weights change in place
    gmms.check_model(model)
    saved = model.fc.bias.detach().clone()
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    try:
        with pytest.raises(ValueError, match="fitted on the features of another model"):
            gmms.check_model(model)
    finally:
        with torch.no_grad():
            model.fc.bias.copy_(saved)
    gmms.check_model(model)
    # ... or for another layer set
    with pytest.raises(ValueError, match=r"No GMMs for layer\(s\) \['layer2.0.out'\]"):
        HFCLoss(gmms, layers=["layer2.0.out"])
    with pytest.raises(ValueError, match="features do not contain"):
        HFCLoss(gmms)(None, y[:2], {"stem": torch.zeros(2, 8)})
    with pytest.raises(ValueError, match="no GMMs for layer|No GMMs for layer"):
        gmms.layer("layer3.0.out")
