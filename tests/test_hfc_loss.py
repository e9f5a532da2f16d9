"""The HFC loss term (maths, gradient, configuration, errors), the baselines and the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from hfc_edu.attacks.losses import CrossEntropy, Loss
from hfc_edu.hfc import (
    OFFICIAL_ALPHA,
    ClassConditionalGMMs,
    HFCLoss,
    TorchGMM,
    hfc_schedule,
    typical_floor,
)

LAYERS = {"shallow": 3, "deep": 5, "wide": 7}
C, K = 3, 2


@pytest.fixture(scope="module")
def fitted():
    """sklearn GaussianMixtures per (layer, class) and the container built from them."""
    rng = np.random.default_rng(0)
    ests: dict[str, list[GaussianMixture]] = {}
    for name, d in LAYERS.items():
        ests[name] = []
        for c in range(C):
            f = np.concatenate(
                [rng.normal(c, 1.0, (60, d)), rng.normal(c + 3.0, 0.5, (40, d))]
            ) @ rng.normal(size=(d, d))
            ests[name].append(GaussianMixture(n_components=K, random_state=0).fit(f))
    gmms = ClassConditionalGMMs(
        {n: TorchGMM.stack([TorchGMM.from_sklearn(e) for e in es]) for n, es in ests.items()},
        fingerprint="test",
    )
    return ests, gmms


def _features(n: int, seed: int = 1, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: 3 * torch.randn(n, d, generator=g, dtype=dtype) for name, d in LAYERS.items()}


def _reference(ests, feats, y) -> dict[str, np.ndarray]:
    """J_l from sklearn: k* = predict() of the target class's GMM, then (h−μ)ᵀ Σ⁻¹ (h−μ) / D."""
    out = {}
    for name, es in ests.items():
        h = feats[name].double().numpy()
        vals = []
        for i, t in enumerate(y.tolist()):
            e = es[t]
            k = e.predict(h[i : i + 1])[0]
            diff = h[i] - e.means_[k]
            vals.append(diff @ e.precisions_[k] @ diff / h.shape[1])
        out[name] = np.array(vals)
    return out


def test_term_matches_sklearn_reference(fitted):
    ests, gmms = fitted
    feats = _features(50)
    y = torch.randint(0, C, (50,), generator=torch.Generator().manual_seed(2))
    term = HFCLoss(gmms, max_channels=None)
    ref = _reference(ests, feats, y)
    got64 = term.layer_terms(y, feats)
    got32 = term.layer_terms(y, {n: f.float() for n, f in feats.items()})
    for name in LAYERS:
        assert got64[name].dtype == torch.float64 and got32[name].dtype == torch.float32
        np.testing.assert_allclose(got64[name].numpy(), ref[name], rtol=1e-10)
        np.testing.assert_allclose(got32[name].numpy(), ref[name], rtol=2e-4)
    # the loss is the λ-weighted sum of the per-layer terms; logits are not used
    total = term(torch.zeros(50, C), y, feats)
    np.testing.assert_allclose(total.numpy(), sum(ref.values()), rtol=1e-10)
    # k* is sklearn's predict of the TARGET class's mixture
    ks = term.nearest_components(y, feats)
    for name, es in ests.items():
        pred = [es[t].predict(feats[name][i : i + 1].numpy())[0] for i, t in enumerate(y.tolist())]
        assert ks[name].tolist() == pred


def test_target_class_matters(fitted):
    _, gmms = fitted
    feats = _features(20)
    term = HFCLoss(gmms)
    a = term(torch.zeros(20, C), torch.zeros(20, dtype=torch.long), feats)
    b = term(torch.zeros(20, C), torch.ones(20, dtype=torch.long), feats)
    assert not torch.allclose(a, b)


def test_layer_selection_and_weights(fitted):
    _, gmms = fitted
    feats = _features(10)
    y = torch.zeros(10, dtype=torch.long)
    terms = HFCLoss(gmms, max_channels=None).layer_terms(y, feats)
    # default threshold: layers wider than max_channels are skipped
    t5 = HFCLoss(gmms, max_channels=5)
    assert t5.layers == ["shallow", "deep"]
    torch.testing.assert_close(t5(None, y, feats), terms["shallow"] + terms["deep"])
    # λ and per-layer weights multiply the (channel-normalised) terms
    tw = HFCLoss(
        gmms, layers=["deep", "wide"], max_channels=None, lam=2.0, layer_weights={"deep": 0.5}
    )
    torch.testing.assert_close(tw(None, y, feats), 2.0 * (0.5 * terms["deep"] + terms["wide"]))
    assert tw.weights == {"deep": 2.0 * 0.5, "wide": 2.0}
    # composes with a classification loss
    loss = CrossEntropy(targeted=True) + tw
    assert isinstance(loss, Loss) and loss.needs_features
    logits = torch.randn(10, C, dtype=torch.float64)
    torch.testing.assert_close(
        loss(logits, y, feats),
        torch.nn.functional.cross_entropy(logits, y, reduction="none") + tw(logits, y, feats),
    )


def test_gradient_matches_finite_differences(fitted):
    _, gmms = fitted
    feats = _features(6, seed=3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    term = HFCLoss(gmms, max_channels=None, layer_weights={"deep": 3.0})
    names = list(LAYERS)
    inputs = tuple(feats[n].clone().requires_grad_(True) for n in names)

    def f(*hs):
        return term(None, y, dict(zip(names, hs, strict=True)))

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    # closed form: ∂/∂h ‖(h−μ)U‖²/D = 2 Σ⁻¹ (h − μ) / D with k* held fixed
    (g,) = torch.autograd.grad(
        term.layer_terms(y, {**feats, "deep": inputs[1]})["deep"].sum(), inputs[1]
    )
    ks = term.nearest_components(y, feats)["deep"]
    gm = gmms.layer("deep")
    for i in range(6):
        u = gm.precisions_cholesky[y[i], ks[i]]
        ref = 2 * (u @ u.T) @ (feats["deep"][i] - gm.means[y[i], ks[i]]) / 5
        torch.testing.assert_close(g[i], ref, rtol=1e-10, atol=1e-10)


def test_component_is_chosen_again_at_every_call(fitted):
    _, gmms = fitted
    gm = gmms.layer("shallow")
    y = torch.zeros(2, dtype=torch.long)
    term = HFCLoss(gmms, layers=["shallow"])
    for k in range(K):  # features sitting on component k's mean choose k
        h = gm.means[0, k].expand(2, -1).clone()
        assert term.nearest_components(y, {"shallow": h})["shallow"].tolist() == [k, k]
        torch.testing.assert_close(
            term(None, y, {"shallow": h}), torch.zeros(2, dtype=torch.float64)
        )


def test_bad_input(fitted):
    _, gmms = fitted
    feats = _features(4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match="ClassConditionalGMMs"):
        HFCLoss({"a": 1})
    with pytest.raises(ValueError, match=r"No GMMs for layer\(s\) \['nope'\]"):
        HFCLoss(gmms, layers=["nope"])
    with pytest.raises(ValueError, match="more than max_channels=5"):
        HFCLoss(gmms, layers=["wide"], max_channels=5)
    with pytest.raises(ValueError, match="not constrained"):
        HFCLoss(gmms, max_channels=5, layer_weights={"wide": 1.0})
    with pytest.raises(ValueError, match="lam must be >= 0"):
        HFCLoss(gmms, lam=-1.0)
    with pytest.raises(ValueError, match="features do not contain"):
        HFCLoss(gmms)(None, y, {"shallow": feats["shallow"]})
    bad = dict(feats, deep=torch.zeros(4, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="another model"):
        HFCLoss(gmms)(None, y, bad)
    raw = dict(feats, deep=torch.zeros(4, 5, 2, 2))
    with pytest.raises(ValueError, match="pool='gap'"):
        HFCLoss(gmms)(None, y, raw)


def test_bad_values_get_clear_errors(fitted):
    """Defect 3: an out-of-range target class was an IndexError from deep inside the loss, NaN
    features a silent NaN loss. ``check`` (one host sync; attacks call it once) and the public
    helpers raise a ValueError."""
    _, gmms = fitted
    feats = _features(4)
    term = HFCLoss(gmms)
    y = torch.tensor([0, 1, 2, 3])  # 3 classes fitted
    for fn in (term.layer_terms, term.nearest_components, lambda y, f: term.check(None, y, f)):
        with pytest.raises(ValueError, match=r"Target class\(es\) outside \[0, 3\)"):
            fn(y, feats)
        with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
            fn(torch.tensor([0, -1, 0, 0]), feats)
    nan = dict(feats, deep=feats["deep"].clone())
    nan["deep"][2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"layer\(s\) \['deep'\] contain NaN"):
        term.layer_terms(y % 3, nan)
    term.check(None, y % 3, feats)  # fine


# -- baselines ----------------------------------------------------------------------------
def test_schedule():
    eps = 2 / 256
    assert hfc_schedule(eps) == (pytest.approx(eps / 20), 40)
    # the official rule T = 2·int(ε/α), robust to 1/256 rounding
    a = OFFICIAL_ALPHA[("CXR", "resnet50")]
    assert hfc_schedule(1 / 256, alpha=a) == (a, 200)
    assert hfc_schedule(4 / 256, alpha=OFFICIAL_ALPHA[("APTOS", "vgg16")])[1] == 80
    # equal schedules for ablations: steps only -> α = 2ε/T (the base attacks' default at T=10)
    assert hfc_schedule(eps, steps=10) == (pytest.approx(2 * eps / 10), 10)
    assert hfc_schedule(eps, alpha=0.001, steps=7) == (0.001, 7)
    for alpha, steps in [hfc_schedule(e) for e in (0.5 / 256, 1 / 256, 8 / 255)]:
        assert steps == 40 and alpha > 0
    with pytest.raises(ValueError, match="larger than eps"):
        hfc_schedule(0.01, alpha=0.02)
    with pytest.raises(ValueError, match="eps must be"):
        hfc_schedule(0.0)
    with pytest.raises(ValueError, match="steps must be"):
        hfc_schedule(0.01, steps=0)


def test_floor_is_a_hinge_on_each_layer_term(fitted):
    _, gmms = fitted
    feats = _features(40)
    y = torch.arange(40) % C
    term = HFCLoss(gmms, max_channels=None)
    raw = term.layer_terms(y, feats)
    floor = typical_floor(term, feats, y, q=0.5)
    assert set(floor) == set(term.layers) and all(v.shape == (C,) for v in floor.values())
    for n, v in floor.items():  # the median of each class's J, per layer
        for c in range(C):
            assert v[c] == pytest.approx(raw[n][y == c].quantile(0.5).item())
    hinged = HFCLoss(gmms, max_channels=None, lam=2.0, floor=floor)(None, y, feats)
    expect = sum(2.0 * (raw[n] - floor[n][y]).clamp_min(0) for n in term.layers)
    torch.testing.assert_close(hinged, expect)
    # about half of each class is below its median in every layer: the hinge zeroes them
    assert (hinged == 0).sum() < len(y) and hinged.min() == 0
    zero = {n: torch.zeros(C) for n in term.layers}
    torch.testing.assert_close(
        HFCLoss(gmms, max_channels=None, floor=zero)(None, y, feats), term(None, y, feats)
    )
    assert "floor" in repr(HFCLoss(gmms, max_channels=None, floor=floor))


def test_floor_bad_input(fitted):
    _, gmms = fitted
    term = HFCLoss(gmms, max_channels=None)
    ok = {n: torch.ones(C) for n in term.layers}
    with pytest.raises(ValueError, match="missing"):
        HFCLoss(gmms, max_channels=None, floor={"deep": torch.ones(C)})
    with pytest.raises(ValueError, match="not constrained"):
        HFCLoss(gmms, layers=["deep"], floor=ok)
    with pytest.raises(ValueError, match="one per class"):
        HFCLoss(gmms, max_channels=None, floor={**ok, "deep": torch.ones(C + 1)})
    with pytest.raises(ValueError, match="one per class"):
        HFCLoss(gmms, max_channels=None, floor={**ok, "deep": -torch.ones(C)})
    with pytest.raises(TypeError, match="typical_floor"):
        HFCLoss(gmms, max_channels=None, floor=[1.0, 2.0])
    feats = _features(12)
    with pytest.raises(ValueError, match="at least 5"):
        typical_floor(term, feats, torch.arange(12) % C)
    with pytest.raises(ValueError, match="q must be"):
        typical_floor(term, _features(30), torch.arange(30) % C, q=1.0)
