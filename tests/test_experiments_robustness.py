"""Tests of hfc_edu.experiments.robustness: ε sweeps checked against a linear model's exact answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hfc_edu.attacks import ATTACKS, AttackInfo, fgsm, register_attack, sweep
from hfc_edu.attacks.result import AttackResult, perturbation_norms
from hfc_edu.experiments.robustness import (
    COLUMNS,
    accuracy_vs_eps,
    adversarial_predictions,
    energy_fraction,
    minimal_eps,
    top_region,
)

EPS = [0.0, 1 / 256, 2 / 256, 4 / 256, 8 / 256]


def _linear(classes: int = 2, pixels: int = 36) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))
    return model.eval()


@pytest.fixture(scope="module")
def linear_problem():
    """A binary linear model and images well inside [0, 1] (no clipping within 8/256)."""
    model = _linear()
    g = torch.Generator().manual_seed(1)
    x = 0.3 + 0.4 * torch.rand(40, 1, 6, 6, generator=g)
    with torch.no_grad():  # balance the classes: put the boundary at the median image
        d = model(x)
        model[1].bias[1] -= (d[:, 1] - d[:, 0]).median() + 1e-3
        y = model(x).argmax(1)
    assert 15 <= int(y.sum()) <= 25
    y[:4] = 1 - y[:4]  # four misclassified images
    return model, x, y


def _exact_linf_margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """For a binary linear model, the L∞ distance to the decision boundary (signed by correctness)."""
    lin = model[1]
    w = (lin.weight[1] - lin.weight[0]).detach()
    b = (lin.bias[1] - lin.bias[0]).detach()
    d = x.flatten(1) @ w + b  # > 0 predicts class 1
    signed = torch.where(y == 1, d, -d)
    return signed / w.abs().sum()


def test_table_layout_and_clean_row(linear_problem):
    model, x, y = linear_problem
    df = accuracy_vs_eps(model, x, y, ["FGSM", "BIM"], EPS)
    assert list(df.columns) == COLUMNS
    assert len(df) == 2 * len(EPS)
    assert set(df["attack"]) == {"FGSM", "BIM"}
    assert (df["n"] == 40).all() and (df["n_correct"] == 36).all()
    clean = df[df["eps"] == 0]
    assert clean["accuracy"].tolist() == [0.9, 0.9]
    assert clean["success_rate"].tolist() == [0.0, 0.0]
    assert df["eps_256"].tolist()[: len(EPS)] == pytest.approx([0, 1, 2, 4, 8])


@pytest.mark.parametrize("attack", ["FGSM", "BIM", "PGD", "CW-Linf"])
def test_matches_exact_linear_answer(linear_problem, attack):
    """On a binary linear model, an L∞ attack of budget ε flips exactly the images whose
    L∞ distance to the boundary is below ε (all four attacks reach the optimum here)."""
    model, x, y = linear_problem
    margin = _exact_linf_margin(model, x, y)
    df = accuracy_vs_eps(model, x, y, [attack], EPS)
    for e, acc, sr in zip(df["eps"], df["accuracy"], df["success_rate"], strict=True):
        expected = (margin > e).float()
        assert acc == pytest.approx(expected.mean().item()), (attack, e)
        correct = margin > 0
        assert sr == pytest.approx(1 - expected[correct].mean().item()), (attack, e)


def test_same_as_an_eps_sweep(linear_problem):
    model, x, y = linear_problem
    nonzero = EPS[1:]
    direct = sweep(
        "PGD", model, x, y, eps=nonzero, steps=3, generator=torch.Generator().manual_seed(5),
        sweep_batch=64,
    )  # fmt: skip
    preds = adversarial_predictions(model, x, y, "PGD", EPS, steps=3, seed=5, batch_size=64)
    for i, res in enumerate(direct):
        assert torch.equal(preds[i + 1], res.logits.argmax(1))
    assert torch.equal(preds[0], model(x).argmax(1))


def test_batching_does_not_change_deterministic_attacks(linear_problem):
    model, x, y = linear_problem
    a = adversarial_predictions(model, x, y, "BIM", EPS, batch_size=64)
    b = adversarial_predictions(model, x, y, "BIM", EPS, batch_size=7)
    assert torch.equal(a, b)


def test_attack_infos_mappings_and_options(linear_problem):
    model, x, y = linear_problem
    pgd = ATTACKS.get("PGD")
    l2 = pgd.with_options("PGD-L2", norm="l2", random_start=None)
    bim_a = ATTACKS.get("BIM").with_options("BIM α=0.01", alpha=0.01)
    df = accuracy_vs_eps(model, x, y, [l2, bim_a], [0.0, 0.05, 0.5], steps=3)
    assert list(dict.fromkeys(df["attack"])) == ["PGD-L2", "BIM α=0.01"]
    acc = df[df["attack"] == "PGD-L2"]["accuracy"].tolist()
    assert acc[0] == 0.9 and acc[0] >= acc[1] >= acc[2]
    df = accuracy_vs_eps(model, x, y, {"L2 PGD": l2}, np.array([0.0, 0.5]))
    assert set(df["attack"]) == {"L2 PGD"}
    # options go to every attack and must be options of each: never silently dropped
    df = accuracy_vs_eps(model, x, y, ["BIM", "CW-Linf"], [0.0, 2 / 256], early_stop=1)
    assert len(df) == 4
    with pytest.raises(ValueError, match=r"FGSM takes no option\(s\) \['decay'\].*MIM"):
        accuracy_vs_eps(model, x, y, ["MIM", "FGSM"], [0.0, 2 / 256], decay=0.9)
    with pytest.raises(ValueError, match="takes no option"):
        ATTACKS.get("FGSM").with_options(random_start=None)
    with pytest.raises(ValueError, match=r"arguments of run\(\)"):
        ATTACKS.get("BIM").with_options(steps=3)


def _toy_noise_attack(model, x, y, *, eps, targeted=False, y_true=None):
    """A toy attack: a fixed ±ε checkerboard, evaluated with one forward pass."""
    sign = (torch.arange(x[0].numel()) % 2 * 2 - 1).view_as(x[0]).to(x)
    x_adv = (x + eps * sign).clamp(0, 1)
    with torch.no_grad():
        logits = model(x_adv)
    linf, l2 = perturbation_norms(x_adv, x)
    success = logits.argmax(1) == y if targeted else logits.argmax(1) != y
    e = torch.full((len(x),), float(eps))
    return AttackResult(x_adv, success, linf, l2, torch.zeros(len(x)), logits, e, 1)


def test_a_toy_attack_registered_in_a_test_works_here(linear_problem):
    model, x, y = linear_problem
    register_attack(AttackInfo("Checkerboard", _toy_noise_attack, iterative=False))
    try:
        df = accuracy_vs_eps(model, x, y, ["Checkerboard", "FGSM"], EPS, steps=3)
        toy = df[df.attack == "Checkerboard"]
        assert toy.accuracy.iloc[0] == 0.9 and len(toy) == len(EPS)
        with torch.no_grad():
            sign = (torch.arange(36) % 2 * 2 - 1).view(1, 6, 6)
            want = (model((x + 8 / 256 * sign).clamp(0, 1)).argmax(1) == y).float().mean()
        assert toy.accuracy.iloc[-1] == pytest.approx(want.item())
        # minimal_eps and a targeted run take it as well
        assert minimal_eps(model, x, y, "Checkerboard", EPS).shape == (40,)
    finally:
        ATTACKS.unregister("Checkerboard")


def test_targeted_success_counts_hits_on_the_target():
    model = _linear(classes=3)
    g = torch.Generator().manual_seed(2)
    x = 0.3 + 0.4 * torch.rand(30, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    t = (y + 1) % 3
    df = accuracy_vs_eps(model, x, y, ["BIM"], [0.0, 0.02, 0.3], targets=t)
    assert df["success_rate"].iloc[0] == 0.0
    assert df["success_rate"].iloc[-1] == 1.0  # a large budget reaches every target
    preds = adversarial_predictions(model, x, y, "BIM", [0.02], targets=t)[0]
    assert df["success_rate"].iloc[1] == pytest.approx((preds == t).float().mean().item())
    # untargeted success is at least the targeted one at the same ε (any wrong class counts)
    und = accuracy_vs_eps(model, x, y, ["BIM"], [0.02])
    assert und["success_rate"].iloc[0] >= df["success_rate"].iloc[1] - 1e-12


def test_minimal_eps_matches_exact_margin(linear_problem):
    model, x, y = linear_problem
    margin = _exact_linf_margin(model, x, y)
    got = minimal_eps(model, x, y, "BIM", EPS)
    grid = torch.tensor(EPS, dtype=torch.float64)
    for m, v in zip(margin.tolist(), got.tolist(), strict=True):
        if m <= 0:
            assert v == 0.0
        else:
            above = grid[grid >= m]
            assert v == (above.min().item() if len(above) else math.inf)


def test_top_region_and_energy_fraction_2d_3d():
    score = torch.arange(2 * 10 * 10, dtype=torch.float32).view(2, 10, 10)
    mask = top_region(score, 0.1)
    assert mask.shape == score.shape and mask.flatten(1).sum(1).tolist() == [10, 10]
    assert mask[0, -1].all() and not mask[0, 0].any()  # the largest scores are the last row
    delta = torch.zeros(2, 3, 10, 10)
    delta[0, :, -1] = 0.01  # all energy in the region
    delta[1] = 0.01  # spread evenly: the region's share equals its size
    fr = energy_fraction(delta, score, 0.1)
    assert fr.tolist() == pytest.approx([1.0, 0.1])
    assert math.isnan(energy_fraction(torch.zeros(1, 1, 10, 10), score[:1], 0.1).item())
    s3 = torch.rand(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    d3 = torch.randn(2, 1, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    f3 = energy_fraction(d3, s3, 0.25)
    m3 = top_region(s3, 0.25)
    manual = (d3[:, 0] ** 2 * m3).flatten(1).sum(1) / (d3[:, 0] ** 2).flatten(1).sum(1)
    assert f3.tolist() == pytest.approx(manual.tolist())


def test_errors(linear_problem):
    model, x, y = linear_problem
    with pytest.raises(ValueError, match="4/256"):
        accuracy_vs_eps(model, x, y, ["FGSM"], [0, 4])
    with pytest.raises(ValueError, match="Unknown attack"):
        accuracy_vs_eps(model, x, y, ["DeepFool"], EPS)
    with pytest.raises(TypeError, match="AttackInfo"):
        accuracy_vs_eps(model, x, y, [3], EPS)
    with pytest.raises(TypeError, match="AttackInfo"):
        accuracy_vs_eps(model, x, y, [fgsm], EPS)  # a bare function: wrap it in AttackInfo
    with pytest.raises(ValueError, match="empty"):
        accuracy_vs_eps(model, x, y, ["FGSM"], [])
    with pytest.raises(ValueError, match="repeated"):
        accuracy_vs_eps(model, x, y, ["FGSM"], [0.01, 0.01])
    with pytest.raises(TypeError, match="eps_grid"):
        accuracy_vs_eps(model, x, y, ["FGSM"], 0.01)
    with pytest.raises(ValueError, match=r"y must have shape \(40,\)"):
        accuracy_vs_eps(model, x, y[:-1], ["FGSM"], EPS)
    with pytest.raises(TypeError, match="targets must hold integer"):
        accuracy_vs_eps(model, x, y, ["FGSM"], EPS, targets=y.float())
    with pytest.raises(ValueError, match="x must be"):
        accuracy_vs_eps(model, x[:, 0], y, ["FGSM"], EPS)
    with pytest.raises(ValueError, match="batch_size"):
        adversarial_predictions(model, x, y, "FGSM", EPS, batch_size=0)
    with pytest.raises(ValueError, match="score must have"):
        energy_fraction(torch.zeros(2, 1, 5, 5), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="top must be"):
        top_region(torch.zeros(2, 4, 4), 0.0)


@pytest.mark.slow
def test_real_chest_xray_model(trained_cxr28):
    """On a trained 28 px chest X-ray model, PGD at 4/256 beats FGSM and drops accuracy a lot."""
    m = trained_cxr28
    x, y = m.x_test[:64], m.y_test[:64]
    df = accuracy_vs_eps(m.model, x, y, ["FGSM", "PGD"], [0.0, 1 / 256, 4 / 256])
    acc = df.pivot(index="eps", columns="attack", values="accuracy")
    assert acc.loc[0.0, "FGSM"] == acc.loc[0.0, "PGD"] > 0.7
    assert acc.loc[4 / 256, "PGD"] <= acc.loc[4 / 256, "FGSM"]
    assert acc.loc[4 / 256, "PGD"] < 0.5 * acc.loc[0.0, "PGD"]
