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
    with pytest.raises(ValueError, match="'relu', 'blocks' or a list"):
        FeatureExtractor(model, layers="all")
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match=r"module names, e.g. \['1'\]"):
        FeatureExtractor(net)
    fx = FeatureExtractor(net, layers=["1"])
    _, feats = fx(torch.rand(2, 1, 8, 8))
    assert feats["1"].shape == (2, 4) and fx.channels == {"1": 4}


class _TwoStage(nn.Module):
    """A model that declares no feature layers; ``act`` runs twice per forward (shared ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 3, 3, padding=1)
        self.conv2 = nn.Conv3d(3, 5, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(h.mean((2, 3, 4)))


def test_model_without_declared_layers_takes_module_names():
    net = _TwoStage().eval()
    fx = FeatureExtractor(net, layers=["conv2", "conv1", "act"])
    assert fx.layer_names == ["conv2", "conv1", "act"] and fx.penultimate == "act"
    with pytest.raises(RuntimeError, match="known after the first forward pass"):
        _ = fx.channels
    x = torch.rand(2, 1, 4, 4, 4)
    logits, feats = fx(x)
    assert list(feats) == ["conv2", "conv1", "act"]  # in the order asked for
    assert fx.channels == {"conv2": 5, "conv1": 3, "act": 3}  # a module's first call
    assert torch.allclose(feats["conv1"], net.conv1(x).mean((2, 3, 4)))
    assert torch.allclose(logits, net(x))
    raw = FeatureExtractor(net, layers=["conv2"], pool=None)(x)[1]["conv2"]
    assert raw.shape == (2, 5, 4, 4, 4)
    lo, fe = fx.extract(torch.rand(5, 1, 4, 4, 4), batch_size=2)
    assert lo.shape == (5, 2) and fe["conv2"].shape == (5, 5)
    with pytest.raises(ValueError, match=r"Unknown module name\(s\) \['conv3'\] in _TwoStage"):
        FeatureExtractor(net, layers=["conv3"])
    with pytest.raises(ValueError, match="does not declare feature_layers"):
        FeatureExtractor(net, layers="blocks")
    with pytest.raises(ValueError, match="pool must be 'gap' or None"):
        FeatureExtractor(net, layers=["act"], pool="max")


def test_blocks_are_the_layers_not_inside_a_block():
    model = build_model("resnet50", 3, 2, image_size=224)
    declared = model.feature_layers()
    fx = FeatureExtractor(model, layers="blocks")
    assert fx.layer_names == [f.name for f in declared if not f.inner]
    assert len(fx.layer_names) == 1 + 16 and all(
        n == "stem" or n.endswith(".out") for n in fx.layer_names
    )


def test_a_wrong_declaration_is_a_clear_error():
    from hfc_edu.models.zoo import FeatureLayer

    class Declares(_TwoStage):
        def feature_layers(self):
            return [FeatureLayer("a", "conv1", 0, 3), FeatureLayer("b", "block9", 0, 5)]

    with pytest.raises(ValueError, match=r"declares \['b'\] at modules it does not have"):
        FeatureExtractor(Declares())
    fx = FeatureExtractor(Declares(), layers=["a"])
    assert fx.channels == {"a": 3} and fx(torch.rand(1, 1, 4, 4, 4))[1]["a"].shape == (1, 3)
