"""Chapter 4 experiments: accuracy against ε and the feature stress test (hfc_edu.experiments.stress)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from hfc_edu.experiments import stress as st
from hfc_edu.experiments.robustness import accuracy_vs_eps
from hfc_edu.features import FeatureExtractor
from hfc_edu.models import build_model
from hfc_edu.protocol import correct_subset
from tests.conftest import requires_data

EPS = [1 / 256, 4 / 256]


def tiny(num_classes: int = 2, seed: int = 0):
    """A random narrow ResNet on 12 px grey images, its head scaled so the outputs depend on x."""
    torch.manual_seed(seed)
    m = build_model("compact_resnet_narrow", 1, num_classes, 2, image_size=12).eval()
    with torch.no_grad():
        m.fc.weight.mul_(30.0)
    return m


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def test_mean_activation_loss():
    feats = {"a": torch.tensor([[1.0, 3.0], [0.0, 0.0]])}
    up, down = st.MeanActivation("a", "up"), st.MeanActivation("a", "down")
    torch.testing.assert_close(up(None, None, feats), torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(down(None, None, feats), torch.tensor([2.0, 0.0]))
    assert up.needs_features
    with pytest.raises(ValueError, match="direction"):
        st.MeanActivation("a", "sideways")
    with pytest.raises(ValueError, match="not among"):
        up(None, None, {"b": feats["a"]})


def test_feature_stress_test_moves_the_layer_both_ways():
    m, x = tiny(), images(8)
    layers = ["stem", "layer4.0.out"]
    df = st.feature_stress_test(m, x, EPS, layers=layers, steps=5, x_ref=images(40, seed=2))
    assert len(df) == len(layers) * 2 * len(EPS) * 8
    assert {
        "layer",
        "depth",
        "direction",
        "eps",
        "eps_256",
        "image",
        "h_clean",
        "h_adv",
        "shift_sd",
        "stress",
    } <= set(df.columns)
    np.testing.assert_allclose(df.stress, df.shift_sd.abs())
    med = df.groupby(["layer", "direction", "eps_256"]).shift_sd.median()
    for layer in layers:
        for e in (1.0, 4.0):
            assert med[(layer, "up", e)] > 0 > med[(layer, "down", e)]
        # a larger budget moves the features further
        assert abs(med[(layer, "up", 4.0)]) > abs(med[(layer, "up", 1.0)])
    # h_clean is the clean mean activation of that layer
    fx = FeatureExtractor(m, layers=["stem"])
    h0 = fx.extract(x)[1]["stem"].double().mean(1).numpy()
    np.testing.assert_allclose(
        df[(df.layer == "stem") & (df.eps == EPS[0]) & (df.direction == "up")].h_clean,
        h0,
        rtol=1e-6,
    )


def test_feature_stress_test_is_reproducible_with_a_generator():
    m, x, ref = tiny(), images(4), images(20, seed=3)
    kw = dict(layers=["layer2.0.out"], steps=3, x_ref=ref, directions=["up"])
    a = st.feature_stress_test(m, x, EPS, generator=torch.Generator().manual_seed(0), **kw)
    b = st.feature_stress_test(m, x, EPS, generator=torch.Generator().manual_seed(0), **kw)
    np.testing.assert_array_equal(a.stress.to_numpy(), b.stress.to_numpy())
    assert set(a.direction) == {"up"}


def test_stress_summary():
    m = tiny()
    df = st.feature_stress_test(
        m, images(6), EPS, layers="blocks", steps=2, x_ref=images(20, seed=3), directions=["up"]
    )
    df.insert(0, "model", "tiny")
    s = st.stress_summary(df)
    assert list(s.columns) == ["median", "p90", "beyond_3sd"]
    assert s.index.names == ["model", "layer", "direction", "eps_256"]
    assert len(s) == len(FeatureExtractor(m, "blocks").layer_names) * len(EPS)
    assert (s["p90"] >= s["median"]).all() and s.beyond_3sd.between(0, 1).all()
    with pytest.raises(ValueError, match="missing"):
        st.stress_summary(df.drop(columns="stress"))


def test_vulnerability_suite_counts_all_images():
    m, x = tiny(), images(16)
    y = m(x).argmax(1)
    y[:4] = 1 - y[:4]  # four images the model gets wrong
    tm = SimpleNamespace(model=m, data=SimpleNamespace(x_test=x, y_test=y))
    df = st.vulnerability_suite({"tiny": tm}, [0.0, 8 / 256, 64 / 256], n=16, steps=5)
    assert list(df.eps_256) == [0.0, 8.0, 64.0] and (df.attack == "PGD").all()
    assert df.accuracy.iloc[0] == pytest.approx(12 / 16) and df.success_rate.iloc[0] == 0
    assert (df.accuracy.iloc[1:] <= df.accuracy.iloc[0]).all()
    # accuracy and success rate count the same images: acc = (1 - success) * clean acc
    np.testing.assert_allclose(df.accuracy, (1 - df.success_rate) * 12 / 16)
    assert df.success_rate.iloc[-1] > 0
    again = st.vulnerability_suite({"tiny": tm}, [0.0, 8 / 256, 64 / 256], n=16, steps=5)
    pd.testing.assert_frame_equal(df, again)  # the seeded random start repeats


def test_suites():
    m = tiny()
    x = images(30)
    y = m(x).argmax(1)
    y[::3] = 1 - y[::3]
    data = SimpleNamespace(
        x_test=x, y_test=y, x_train=images(20, seed=4), y_train=torch.zeros(20, dtype=torch.long)
    )
    tm = SimpleNamespace(model=m, data=data)
    v = st.vulnerability_suite({"a": tm}, [0.0, 4 / 256], n=10, steps=2)
    assert list(v.model.unique()) == ["a"] and len(v) == 2 and (v.n == 10).all()
    s = st.stress_suite(
        {"a": tm}, [4 / 256], n=3, layers=["stem"], steps=2, n_ref=10, directions=["up"]
    )
    assert len(s) == 3 and s.model.iloc[0] == "a"
    # the stress test runs on protocol.correct_subset's images
    idx = correct_subset(m, x, y, 3, seed=0)
    fx = FeatureExtractor(m, layers=["stem"])
    np.testing.assert_allclose(
        s.h_clean, fx.extract(x[idx])[1]["stem"].double().mean(1).numpy(), rtol=1e-6
    )


def test_errors():
    m, x = tiny(), images(4)
    ref = images(10, seed=5)
    with pytest.raises(TypeError, match="list of budgets"):
        st.feature_stress_test(m, x, 1 / 256, x_ref=ref)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        st.feature_stress_test(m, x, [0.0], x_ref=ref)
    with pytest.raises(ValueError, match="4/256"):
        st.feature_stress_test(m, x, [4], x_ref=ref)
    with pytest.raises(ValueError, match="differ in shape"):
        st.feature_stress_test(m, x, EPS, x_ref=torch.rand(5, 1, 8, 8))
    with pytest.raises(ValueError, match="directions"):
        st.feature_stress_test(m, x, EPS, x_ref=ref, directions=["left"])
    with pytest.raises(ValueError, match="Unknown layer"):
        st.feature_stress_test(m, x, EPS, layers=["nope"], x_ref=ref)
    with pytest.raises(TypeError, match="x_ref"):
        st.feature_stress_test(m, x, EPS, x_ref=None)
    with pytest.raises(ValueError, match="at least 2"):
        st.feature_stress_test(m, x, EPS, x_ref=ref[:1])
    with pytest.raises(TypeError, match=r"\.model and \.data"):
        st.vulnerability_suite({"bad": m}, EPS, n=2)


@requires_data
def test_trained_chest_xray_stress_and_accuracy(trained_cxr28):
    m = trained_cxr28.model
    idx = correct_subset(m, trained_cxr28.x_test, trained_cxr28.y_test, 12)
    x, y = trained_cxr28.x_test[idx], trained_cxr28.y_test[idx]
    df = st.feature_stress_test(
        m, x, [1 / 256, 4 / 256], layers=["layer4.0.out"], steps=5, x_ref=trained_cxr28.x_train[:500],
        directions=["up"], generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    med = df.groupby("eps_256").stress.median()
    assert med[4.0] > 2 * med[1.0] > 0
    acc = accuracy_vs_eps(m, x, y, "PGD", [0.0, 1 / 256, 8 / 256], steps=5)
    assert acc.accuracy.iloc[0] == 1.0 and acc.accuracy.is_monotonic_decreasing
    assert acc.accuracy.iloc[-1] < 0.5
