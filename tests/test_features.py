"""Feature extraction: documented layers and shapes for 2D and 3D models, one forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hfc_edu.features import FeatureExtractor, global_average_pool
from hfc_edu.models import build_model

EXPECTED_COMPACT = [
    ("stem", 16),
    ("layer1.0.relu1", 16),
    ("layer1.0.out", 16),
    ("layer2.0.relu1", 32),
    ("layer2.0.out", 32),
    ("layer3.0.relu1", 64),
    ("layer3.0.out", 64),
    ("layer4.0.relu1", 128),
    ("layer4.0.out", 128),
]


@pytest.mark.parametrize("dims", [2, 3])
def test_layers_names_channels_and_shapes(dims):
    model = build_model("compact_resnet", 1, 2, spatial_dims=dims, image_size=16).eval()
    fx = FeatureExtractor(model)
    x = torch.rand(3, 1, *([16] * dims))
    logits, feats = fx(x)
    assert [(n, c) for n, c in fx.channels.items()] == EXPECTED_COMPACT
    assert list(feats) == fx.layer_names == [n for n, _ in EXPECTED_COMPACT]
    for n, c in EXPECTED_COMPACT:
        assert feats[n].shape == (3, c)
        assert (feats[n] >= 0).all()  # ReLU outputs
    assert torch.allclose(logits, model(x))
    assert torch.allclose(model.fc(feats[fx.penultimate]), logits, atol=1e-6)


def test_raw_maps_and_block_selection():
    model = build_model("compact_resnet", 1, 2, image_size=32).eval()
    fx = FeatureExtractor(model, layers="blocks", pool=None)
    _, feats = fx(torch.rand(2, 1, 32, 32))
    assert list(feats) == ["stem", "layer1.0.out", "layer2.0.out", "layer3.0.out", "layer4.0.out"]
    # 32 px uses the small-input stem (3x3, stride 1, no max-pool): 32 -> 32 -> 4
    assert feats["stem"].shape == (2, 16, 32, 32) and feats["layer4.0.out"].shape == (2, 128, 4, 4)
    assert torch.allclose(
        global_average_pool(feats["layer2.0.out"]), feats["layer2.0.out"].mean((2, 3))
    )


def test_resnet50_has_three_relus_per_bottleneck():
    fx = FeatureExtractor(build_model("resnet50", 3, 2, image_size=224))
    assert len(fx.layer_names) == 1 + 16 * 3
    assert fx.channels["layer4.2.out"] == 2048 and fx.channels["layer4.2.relu2"] == 512


def test_hooks_are_removed_and_gradients_flow():
    model = build_model("compact_resnet", 1, 2, image_size=16).eval()
    fx = FeatureExtractor(model)
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    _, feats = fx(x)
    (g,) = torch.autograd.grad(feats["layer2.0.out"].sum(), x)
    assert g.abs().sum() > 0
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_unknown_layer_and_generic_model():
    model = build_model("compact_resnet", 1, 2, image_size=16)
    with pytest.raises(ValueError, match="Available layers"):
        FeatureExtractor(model, layers=["layer9.0.out"])
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="module names"):
        FeatureExtractor(net)
    fx = FeatureExtractor(net, layers=["1"])
    _, feats = fx(torch.rand(2, 1, 8, 8))
    assert feats["1"].shape == (2, 4) and fx.channels == {"1": 4}
