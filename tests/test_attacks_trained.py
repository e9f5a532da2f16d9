"""Attacks against trained classifiers: they must actually break them.

A compact ResNet is trained here on a synthetic, well-separated binary task (a faint fixed
±pattern in noise, like a subtle lesion texture), so the test runs anywhere. The same checks
run on the lead's ``trained_cxr28`` fixture (real PneumoniaMNIST) when it is available.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from hfc_edu.attacks import bim, cw_l2, cw_linf, fgsm, mim, other_class, pgd, sweep
from hfc_edu.models import build_model


def _synthetic(n: int, g: torch.Generator, pattern: torch.Tensor):
    y = torch.randint(0, 2, (n,), generator=g)
    sign = (2 * y - 1).float().view(-1, 1, 1, 1)
    x = 0.5 + 0.1 * torch.randn(n, 1, 16, 16, generator=g) + 0.03 * sign * pattern
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def synthetic_model():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    pattern = torch.randint(0, 2, (1, 16, 16), generator=g).float() * 2 - 1
    x_tr, y_tr = _synthetic(512, g, pattern)
    x_te, y_te = _synthetic(64, g, pattern)
    model = build_model("compact_resnet_narrow", 1, 2, image_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(4):
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(x_tr), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
    model.eval()
    return SimpleNamespace(model=model, x_test=x_te, y_test=y_te)


@pytest.fixture(scope="module")
def cxr(request):
    try:
        return request.getfixturevalue("trained_cxr28")
    except pytest.FixtureLookupError:
        pytest.skip("trained_cxr28 fixture not available")


def _correct(ns, n: int = 32):
    with torch.no_grad():
        pred = ns.model(ns.x_test[:256]).argmax(1)
    keep = (pred == ns.y_test[:256]).nonzero().flatten()[:n]
    return ns.model, ns.x_test[keep], ns.y_test[keep]


def _check_attacks_break(ns, eps: float, min_clean_acc: float):
    model, x, y = _correct(ns)
    assert len(x) >= min_clean_acc * 32, "the classifier did not train"
    for fn in (bim, pgd, mim, cw_linf):
        res = fn(model, x, y, eps=eps)
        assert res.success.float().mean() >= 0.95, (fn.__name__, res.success.float().mean())
        assert (res.linf <= eps + 1e-6).all()
    # targeted to the other class (binary) = the papers' setting
    res = pgd(model, x, other_class(y), eps=eps, targeted=True, y_true=y)
    assert res.success.float().mean() >= 0.95
    # FGSM is weaker but must still hurt
    assert fgsm(model, x, y, eps=eps).success.float().mean() >= 0.5


def _check_cw_l2_smaller_than_pgd_l2(ns):
    model, x, y = _correct(ns, 16)
    cw = cw_l2(model, x, y, steps=50, search_steps=4, lr=0.05)
    rate = cw.success.float().mean().item()
    assert rate >= 0.9
    grid = [0.05 * 1.25**k for k in range(16)]
    results = sweep("PGD", model, x, y, eps=grid, norm="l2", steps=10, random_start=None)
    # the smallest PGD-L2 budget that reaches at least CW's success rate
    match = next(r for r in results if r.success.float().mean().item() >= rate)
    cw_l2_mean = cw.l2[cw.success].mean().item()
    pgd_l2_mean = match.l2[match.success].mean().item()
    assert cw_l2_mean < pgd_l2_mean, (cw_l2_mean, pgd_l2_mean)


def test_attacks_break_synthetic_model(synthetic_model):
    # the class signal is ±0.03 per pixel, on noise of std 0.1: ε = 12/256 ≈ 0.047 (≈ 1.5× the
    # signal, half the noise level) erases it for a linear reader of the pattern
    _check_attacks_break(synthetic_model, eps=12 / 256, min_clean_acc=0.9)


def test_cw_l2_smaller_than_pgd_l2_synthetic(synthetic_model):
    _check_cw_l2_smaller_than_pgd_l2(synthetic_model)


@pytest.mark.slow
def test_attacks_break_cxr28(cxr):
    # This 28 px compact model (the book profile's: augmentation, dropout 0.3) needs more than the
    # papers' 1/256 (224 px ResNet-50): measured BIM success on these 32 correct test images:
    # 0.19 / 0.44 / 0.84 / 1.0 at ε = 1, 2, 4, 8 /256 (FGSM 0.875 at 8/256). Chapter 4 shows why
    # resolution matters; at 128 px the same attack needs far less.
    _check_attacks_break(cxr, eps=8 / 256, min_clean_acc=0.8)


@pytest.mark.slow
def test_cw_l2_smaller_than_pgd_l2_cxr28(cxr):
    _check_cw_l2_smaller_than_pgd_l2(cxr)
