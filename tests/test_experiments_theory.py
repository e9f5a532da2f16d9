"""Chapter 3 experiments: the fixed feature-space direction of binary heads (hfc_edu.experiments.theory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfc_edu.attacks import pgd
from hfc_edu.detectors import ClassGaussians
from hfc_edu.experiments import theory as th
from hfc_edu.features import FeatureExtractor
from hfc_edu.models import build_model
from tests.conftest import requires_data


def tiny(num_classes: int, seed: int = 0, head_scale: float = 1.0) -> nn.Module:
    """A random narrow ResNet on 12 px grey images; ``head_scale`` spreads the probabilities
    (a freshly initialised head gives nearly uniform, input-independent softmax outputs)."""
    torch.manual_seed(seed)
    m = build_model("compact_resnet_narrow", 1, num_classes, 2, image_size=12).eval()
    with torch.no_grad():
        m.fc.weight.mul_(head_scale)
    return m


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1)


# --- Proposition 1: the feature-space gradient of a binary head -----------------------------------


@pytest.mark.parametrize("targeted", [False, True])
def test_binary_ce_gradient_is_fixed_direction_times_scalar(targeted):
    m, x = tiny(2), images(16)
    y = torch.randint(0, 2, (16,), generator=torch.Generator().manual_seed(2))
    z, g, p = th.feature_gradient(m, x, y, targeted=targeted)
    # the attack pushes towards t: the other class (untargeted) or y itself (targeted)
    t = y if targeted else 1 - y
    v = th.head_direction(m, 1 - t, t)  # w_t - w_{1-t}
    # targeted L = CE(t): scale p_{1-t}; untargeted L = -CE(y) = log p_y: scale p_{1-y} = p_t
    scale = p.gather(1, (1 - t if targeted else t)[:, None])
    torch.testing.assert_close(g, -scale * v, atol=1e-6, rtol=1e-5)
    assert (cos(-g, v) > 1 - 1e-6).all()
    assert z.shape == (16, m.num_features)


def test_binary_cw_gradient_is_constant():
    m, x = tiny(2), images(8)
    t = torch.tensor([0, 1] * 4)
    _, g, _ = th.feature_gradient(m, x, t, loss="cw", targeted=True, kappa=1e6)
    w = m.fc.weight.detach()
    torch.testing.assert_close(g, w[1 - t] - w[t], atol=1e-6, rtol=0)


def test_multiclass_gradient_follows_probabilities():
    m, x = tiny(10, head_scale=30.0), images(32)
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(3))
    _, g, p = th.feature_gradient(m, x, y)  # untargeted: L = -CE(y), dL/dz = W_y - p^T W
    w = m.fc.weight.detach()
    torch.testing.assert_close(g, w[y] - p @ w, atol=1e-6, rtol=1e-5)
    # same true class, different inputs: the direction is no longer shared
    c = th.cosines_across_inputs(g, y)
    assert len(c) > 0 and c.min() < 0.999


def test_split_forward_matches_model():
    m, x = tiny(3), images(4)
    z, logits = th.split_forward(m, x)
    torch.testing.assert_close(logits, m(x))
    _, feats = FeatureExtractor(m)(x)
    torch.testing.assert_close(z, feats[FeatureExtractor(m).penultimate])


# --- the PGD trajectory -----------------------------------------------------------------------------


def test_trajectory_final_images_equal_library_pgd():
    m, x = tiny(2), images(6)
    y = m(x).argmax(1)
    tr = th.pgd_trajectory(
        m, x, y, eps=4 / 256, steps=5, generator=torch.Generator().manual_seed(7)
    )
    ref = pgd(m, x, y, eps=4 / 256, steps=5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(tr.x_adv, ref.x_adv, atol=1e-6, rtol=0)
    assert torch.equal(tr.success, ref.success)


def test_trajectory_binary_invariants_and_chunking():
    m, x = tiny(2), images(10)
    y = m(x).argmax(1)
    kw = dict(eps=8 / 256, steps=4, random_start=None)
    tr = th.pgd_trajectory(m, x, y, **kw)
    assert tr.z.shape == (5, 10, m.num_features) and tr.steps == 4
    c = th.cosines_across_iterations(tr)
    assert c.shape == (5, 10) and c.min() > 1 - 1e-5  # binary: one direction at every iterate
    # first order: a sign step never decreases u^T z (also after the projection)
    assert (tr.predicted >= -1e-7).all()
    # without a random start iterate 0 is x itself: same linear region, same gradients
    for name in tr.layer_cos:
        torch.testing.assert_close(tr.layer_cos[name][0], torch.ones(10, dtype=torch.float64))
        assert (tr.layer_flips[name][0] == 0).all()
    torch.testing.assert_close(tr.projections[0], torch.zeros(10), atol=1e-5, rtol=0)
    # the analytic direction: u = (w_t - w_y)/|.| with t the other class
    v = th.head_direction(m, y, 1 - y)
    assert (cos(tr.direction, v) > 1 - 1e-6).all()
    chunked = th.pgd_trajectory(m, x, y, batch_size=3, **kw)
    torch.testing.assert_close(chunked.z, tr.z, atol=1e-5, rtol=0)
    assert set(chunked.layer_cos) == set(tr.layer_cos)


def test_binary_targeted_and_untargeted_steps_coincide():
    # the two losses' input gradients differ by a positive factor, so their signs agree
    m, x = tiny(2, head_scale=3.0), images(8)
    y = m(x).argmax(1)
    kw = dict(eps=8 / 256, steps=4, layers=None, first_order=False)
    a = th.pgd_trajectory(m, x, y, generator=torch.Generator().manual_seed(1), **kw)
    b = th.pgd_trajectory(
        m, x, 1 - y, targeted=True, generator=torch.Generator().manual_seed(1), **kw
    )
    torch.testing.assert_close(a.x_adv, b.x_adv, atol=0, rtol=0)
    assert torch.equal(a.success, b.success)


def test_multiclass_directions_rotate_across_iterations():
    m, x = tiny(10, seed=4, head_scale=30.0), images(16, seed=5)
    y = m(x).argmax(1)
    tr = th.pgd_trajectory(m, x, y, eps=16 / 256, steps=6, layers=None, first_order=False)
    assert th.cosines_across_iterations(tr)[-1].min() < 0.999
    assert tr.predicted is None and tr.layer_cos == {}
    with pytest.raises(ValueError, match="first_order=False"):
        th.step_increments(tr)
    with pytest.raises(ValueError, match="No layer was tracked"):
        th.layer_gradient_table(tr)


def test_tables():
    m, x = tiny(2), images(6)
    y = m(x).argmax(1)
    tr = th.pgd_trajectory(m, x, y, eps=4 / 256, steps=3, layers="blocks")
    spread = th.direction_spread(tr.z_clean, tr.direction)
    assert spread.shape == (6,) and (spread > 0).all()
    p = th.projection_table(tr, spread)
    assert list(p.columns) == ["step", "image", "projection", "projection_sd"] and len(p) == 4 * 6
    inc = th.step_increments(tr)
    assert len(inc) == 3 * 6 and inc.step.min() == 1
    lt = th.layer_gradient_table(tr)
    assert list(lt.layer) == FeatureExtractor(m, "blocks").layer_names
    assert lt.cos_final_median.between(-1, 1).all() and lt.relu_flipped.between(0, 1).all()
    with pytest.raises(ValueError, match="spread must have shape"):
        th.projection_table(tr, spread[:2])


def test_direction_spread_matches_projection_std():
    z = torch.randn(200, 5, generator=torch.Generator().manual_seed(0)) * torch.tensor(
        [1.0, 2, 3, 4, 5]
    )
    u = torch.eye(5)[[0, 4]]
    s = th.direction_spread(z, u)
    torch.testing.assert_close(s, z[:, [0, 4]].std(0), rtol=1e-5, atol=0)


def test_mahalanobis_by_layer():
    m = tiny(2)
    fx = FeatureExtractor(m, "blocks")
    x_train, x = images(60, seed=8), images(10, seed=9)
    y_train = torch.arange(60) % 2
    df = th.mahalanobis_by_layer(fx, x_train, y_train, x, x.clone())
    assert set(df.kind) == {"clean", "adversarial"} and len(df) == 2 * 10 * len(fx.layer_names)
    s = th.mahalanobis_summary(df)
    np.testing.assert_allclose(s.ratio, 1.0)
    np.testing.assert_allclose(s.auc, 0.5)
    # the distance is the square root of the closest class's squared distance
    _, ftr = fx.extract(x_train)
    _, f = fx.extract(x)
    name = fx.layer_names[2]
    d_ref = ClassGaussians(ftr[name], y_train).distances(f[name]).min(1).values.sqrt().numpy()
    got = df[(df.layer == name) & (df.kind == "clean")].distance.to_numpy()
    np.testing.assert_allclose(got, d_ref, rtol=1e-4)
    far = th.mahalanobis_by_layer(
        fx, x_train, y_train, x, {"same": x, "far": (x + 0.5).clamp(0, 1)}
    )
    s = th.mahalanobis_summary(far)
    assert s.index.names == ["layer", "kind"] and len(s) == 2 * len(fx.layer_names)
    np.testing.assert_allclose(s.xs("same", level="kind").auc, 0.5)
    assert (s.xs("far", level="kind").ratio > 1).any()
    with pytest.raises(ValueError, match="clean rows"):
        th.mahalanobis_summary(far[far.kind != "clean"])


def test_errors():
    m, x = tiny(2), images(4)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match="Classifier"):
        th.feature_gradient(nn.Sequential(nn.Flatten(), nn.Linear(144, 2)), x, y)
    with pytest.raises(ValueError, match="eps"):
        th.pgd_trajectory(m, x, y, eps=0.0)
    with pytest.raises(ValueError, match="steps"):
        th.pgd_trajectory(m, x, y, eps=0.01, steps=0)
    with pytest.raises(ValueError, match="random_start"):
        th.pgd_trajectory(m, x, y, eps=0.01, random_start="uniform")
    with pytest.raises(ValueError, match="Unknown layer"):
        th.pgd_trajectory(m, x, y, eps=0.01, layers=["nope"])
    with pytest.raises(ValueError, match="shape"):
        th.feature_gradient(m, x, y[:3])
    with pytest.raises(ValueError, match="outside"):
        th.head_direction(m, y, y + 5)
    with pytest.raises(ValueError, match="groups"):
        th.cosines_across_inputs(torch.randn(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="shape of x_clean"):
        th.mahalanobis_by_layer(FeatureExtractor(m), x, y, x, x[:2])
    with pytest.raises(ValueError, match="not 'clean'"):
        th.mahalanobis_by_layer(FeatureExtractor(m), x, y, x, {"clean": x})
    with pytest.raises(TypeError, match="pool='gap'"):
        th.mahalanobis_by_layer(FeatureExtractor(m, pool=None), x, y, x, x)


# --- on a trained chest X-ray model ---------------------------------------------------------------------


@requires_data
def test_trained_binary_model_pushes_one_direction(trained_cxr28):
    m = trained_cxr28.model
    x, y = trained_cxr28.x_test[:24], trained_cxr28.y_test[:24]
    tr = th.pgd_trajectory(
        m, x, y, eps=2 / 256, steps=5, layers=None, generator=torch.Generator().manual_seed(0)
    )
    # float32 softmax: p_t - 1 loses digits when p_t is close to 1, hence 1e-4 and not 1e-7
    assert th.cosines_across_iterations(tr).min() > 1 - 1e-4
    assert th.cosines_across_inputs(tr.grad_clean, y).min() > 1 - 1e-4
    inc = th.step_increments(tr)
    assert (inc.predicted >= -1e-6).all()
    assert (inc.actual > 0).mean() > 0.95  # the first-order picture holds on the real model
    med = th.projection_table(tr).groupby("step").projection.median().to_numpy()
    assert (np.diff(med) > 0).all()  # the displacement along u grows with every iteration
