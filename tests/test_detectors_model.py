"""Detectors that need the model: BU, MAHA input pre-processing, DNN; 2D and 3D tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfc_edu.detectors import (
    BU,
    DNN,
    KD,
    LID,
    MAHA,
    FeatureSet,
    MapDetectorNet,
    ScoreLR,
    mc_predictions,
)
from hfc_edu.features import FeatureExtractor
from hfc_edu.metrics import roc_auc
from hfc_edu.models import build_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread avoids thread contention on busy 2-core runners."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(spatial_dims: int = 2, dropout: float = 0.3, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(
        "compact_resnet_narrow", 1, 2, spatial_dims=spatial_dims, image_size=16, dropout=dropout
    )
    return model.eval()


def images(n: int, spatial_dims: int = 2, seed: int = 0, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, *[size] * spatial_dims, generator=g)


class Wrapped(nn.Module):
    """The same network, not recognisable as a zoo Classifier (forces BU's generic path)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)


def test_bu_head_fast_path_equals_full_passes_and_keeps_bn_in_eval():
    model = tiny()
    x = images(12)
    bn = model.backbone.bn1
    stats = bn.running_mean.clone()
    torch.manual_seed(1)
    fast = mc_predictions(model, x, passes=8, batch_size=5, output="logits")
    torch.manual_seed(1)
    slow = mc_predictions(Wrapped(model), x, passes=8, batch_size=5, output="logits")
    torch.testing.assert_close(fast, slow)
    assert fast.shape == (8, 12, 2)
    assert fast.std(0).mean() > 0  # dropout is active
    torch.testing.assert_close(bn.running_mean, stats)  # BN in eval: statistics untouched
    assert not model.training and not model.dropout.training  # modes restored

    torch.manual_seed(2)
    p = mc_predictions(model, x, passes=8, output="softmax").double()
    torch.manual_seed(2)
    s = BU(model, passes=8).score(FeatureSet({"z": torch.zeros(12, 1)}, x=x))
    np.testing.assert_allclose(s, p.var(0, unbiased=False).mean(-1).numpy(), rtol=1e-12)
    torch.manual_seed(2)
    z = mc_predictions(model, x, passes=8, output="logits").double()
    torch.manual_seed(2)
    s = BU(model, passes=8, variant="official").score(x)
    np.testing.assert_allclose(s, z[..., 0].std(0, unbiased=False).numpy(), rtol=1e-12)


def test_bu_errors():
    with pytest.raises(ValueError, match="no dropout"):
        BU(tiny(dropout=0.0))
    with pytest.raises(ValueError, match="no dropout"):
        mc_predictions(tiny(dropout=0.0), images(2))
    with pytest.raises(ValueError, match="images"):
        BU(tiny()).score({"z": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="variant"):
        BU(tiny(), variant="foo")


def test_kd_bu_logistic_regression_on_a_model():
    model = tiny()
    fx = FeatureExtractor(model)
    train = FeatureSet.from_images(fx, images(60, seed=1))
    y = torch.arange(60) % 2
    kd = KD(bandwidth="median").fit(train, y)
    clean = FeatureSet.from_images(fx, images(40, seed=2))
    noisy_adv = FeatureSet.from_images(fx, (images(40, seed=3) * 3).clamp(0, 1))  # saturated: easy
    data = FeatureSet.concat([clean, noisy_adv])
    lab = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    det = ScoreLR([kd, BU(model, passes=5)], per_layer=False).fit(data, lab)
    assert det.features(data).shape == (80, 2)
    assert roc_auc(*np.split(det.score(data), 2)) > 0.9


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_maha_preprocessing_sign(spatial_dims):
    """Lee's sign moves towards the closest class mean (lower score), the official sign away."""
    model = tiny(spatial_dims)
    fx = FeatureExtractor(model)
    size = 16 if spatial_dims == 2 else 8
    train = FeatureSet.from_images(fx, images(60, spatial_dims, seed=1, size=size))
    y = train.pred if train.pred.unique().numel() == 2 else torch.arange(60) % 2
    test = FeatureSet.from_images(fx, images(20, spatial_dims, seed=2, size=size))
    plain = MAHA().fit(train, y).score_layers(test)
    lee = MAHA(magnitude=0.002, extractor=fx).fit(train, y).score_layers(test)
    official = MAHA(magnitude=0.002, extractor=fx, sign="official").fit(train, y).score_layers(test)
    assert plain.shape == lee.shape == (20, len(fx.layer_names))
    assert (lee < plain).mean() > 0.9
    assert (official > plain).mean() > 0.9
    assert all(p.requires_grad for p in model.parameters()) and not model.training  # restored
    with pytest.raises(ValueError, match="images"):
        MAHA(magnitude=0.002, extractor=fx).fit(train, y).score(dict(test.feats))


def _dnn_data(spatial_dims: int, n: int, seed: int):
    """Clean images vs images with a high-frequency checkerboard added (clearly visible in the maps)."""
    size = 16 if spatial_dims == 2 else 8
    x = images(2 * n, spatial_dims, seed, size) * 0.5 + 0.25
    grid = (
        torch.stack(torch.meshgrid(*[torch.arange(size)] * spatial_dims, indexing="ij")).sum(0) % 2
    )
    x[n:] = (x[n:] + 0.2 * (2 * grid - 1)).clamp(0, 1)
    return x, torch.cat([torch.zeros(n), torch.ones(n)]).long()


def test_dnn_detector_learns_on_raw_maps():
    model = tiny(2)
    fx = FeatureExtractor(model, layers="blocks")
    x, lab = _dnn_data(2, 40, seed=1)
    det = DNN(fx, iters=40, batch_size=32, widths=(8, 8), seed=0).fit(
        FeatureSet.from_images(fx, x), lab
    )
    xt, labt = _dnn_data(2, 30, seed=2)
    s = det.score(xt)
    assert s.shape == (60,) and ((s >= 0) & (s <= 1)).all()
    assert det.score_layers(xt).shape == (60, len(fx.layer_names))
    assert roc_auc(s[labt == 0], s[labt == 1]) > 0.9
    # deterministic given the seed
    det2 = DNN(fx, iters=40, batch_size=32, widths=(8, 8), seed=0).fit(x, lab)
    np.testing.assert_allclose(det2.score(xt), s, rtol=1e-5)


def test_dnn_cached_maps_train_exactly_as_per_batch_forwards():
    """Maps computed once (the default when they fit in memory) or per mini-batch: same nets."""
    model = tiny(2)
    fx = FeatureExtractor(model, layers="blocks")
    x, lab = _dnn_data(2, 40, seed=1)
    xt, _ = _dnn_data(2, 10, seed=2)
    kw = dict(iters=5, batch_size=16, widths=(4, 4), seed=0)
    cached = DNN(fx, **kw).fit(x, lab)
    per_batch = DNN(fx, max_cached_bytes=0, **kw).fit(x, lab)
    np.testing.assert_array_equal(cached.score_layers(xt), per_batch.score_layers(xt))


def test_dnn_detector_3d():
    """3D convolutions on CPU are slow: two shallow layers, tiny nets, few iterations."""
    model = tiny(3)
    fx = FeatureExtractor(model, layers=["stem", "layer1.0.out"])
    x, lab = _dnn_data(3, 24, seed=1)
    det = DNN(fx, iters=15, batch_size=16, widths=(4, 4), seed=0).fit(x, lab)
    xt, labt = _dnn_data(3, 16, seed=2)
    s = det.score(xt)
    assert s.shape == (32,) and det.score_layers(xt).shape == (32, 2)
    assert roc_auc(s[labt == 0], s[labt == 1]) > 0.75


def test_dnn_padding_official_in_2d_smaller_in_3d_and_reads_a_2_voxel_map():
    assert MapDetectorNet(8, 2).net[0].padding == (4, 4)
    net = MapDetectorNet(8, 3)
    assert net.net[0].padding == (2, 2, 2)
    assert net(torch.rand(3, 8, 2, 2, 2)).shape == (3,)  # the deepest block of 28^3 volumes
    assert MapDetectorNet(8, 3, padding=4).net[0].padding == (4, 4, 4)


def test_dnn_errors():
    fx = FeatureExtractor(tiny(), layers="blocks")
    with pytest.raises(ValueError, match="Unknown layer"):
        DNN(fx, layers=["nope"])
    with pytest.raises(ValueError, match="images"):
        DNN(fx, iters=1).fit({"z": torch.zeros(4, 2)}, torch.tensor([0, 1, 0, 1]))
    with pytest.raises(RuntimeError, match="not fitted"):
        DNN(fx).score(images(2))
    with pytest.raises(ValueError, match="padding must be at least 2"):
        DNN(fx, padding=1)


def test_lid_and_maha_on_3d_features():
    model = tiny(3)
    fx = FeatureExtractor(model)
    train = FeatureSet.from_images(fx, images(50, 3, seed=1, size=8))
    test = FeatureSet.from_images(fx, images(10, 3, seed=2, size=8))
    assert LID(k=10).fit(train).score_layers(test).shape == (10, len(fx.layer_names))
    assert np.isfinite(MAHA().fit(train, torch.arange(50) % 2).score(test)).all()


def test_maha_preprocessing_needs_the_extractor_to_produce_every_fitted_layer():
    """Fitted on a layer the extractor does not produce: a clear error at fit, not a KeyError."""
    model = tiny()
    fx_all = FeatureExtractor(model)
    fx_blocks = FeatureExtractor(model, layers="blocks")
    train = FeatureSet.from_images(fx_all, images(40, seed=1))
    y = torch.arange(40) % 2
    missing = [n for n in fx_all.layer_names if n not in fx_blocks.layer_names]
    assert missing
    with pytest.raises(ValueError, match="extractor"):
        MAHA(magnitude=0.002, extractor=fx_blocks).fit(train, y)
    # fitted on the layers the extractor has: works
    ok = MAHA(layers=fx_blocks.layer_names, magnitude=0.002, extractor=fx_blocks).fit(train, y)
    assert ok.score_layers(train).shape == (40, len(fx_blocks.layer_names))
