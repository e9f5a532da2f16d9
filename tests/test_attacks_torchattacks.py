"""hfc_edu's PGD equals torchattacks' PGD / PGDL2 maths from the same random start.

Needs ``pip install torchattacks==3.5.1 --no-deps`` (skipped otherwise). torchattacks draws
its start from the global RNG as its first random call; re-seeding and drawing the same way
gives the same δ0, which is passed to hfc_edu as ``delta0``.
"""

from __future__ import annotations

import pytest
import torch

from hfc_edu.attacks import other_class, pgd
from hfc_edu.models import build_model

torchattacks = pytest.importorskip("torchattacks")


def _setup(dims: int, classes: int = 3):
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, classes, spatial_dims=dims, image_size=16)
    model.eval()
    shape = (8, 1, 16, 16) if dims == 2 else (4, 1, 8, 8, 8)
    x = torch.rand(shape)
    x[0].zero_()
    y = torch.randint(0, classes, (shape[0],))
    return model, x, y


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_linf_matches_torchattacks(dims, targeted):
    model, x, y = _setup(dims)
    labels = other_class(y, 3) if targeted else y
    eps, alpha, steps = 8 / 255, 2 / 255, 5
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    if targeted:
        ta.set_mode_targeted_by_label(quiet=True)
    torch.manual_seed(123)
    ref = ta(x, labels)
    torch.manual_seed(123)
    delta0 = torch.empty_like(x).uniform_(-eps, eps)
    ours = pgd(
        model, x, labels, eps=eps, alpha=alpha, steps=steps, delta0=delta0, targeted=targeted
    )
    diff = (ours.x_adv - ref).abs().max().item()
    assert diff <= 1e-6, diff
    assert (ours.x_adv - x).abs().max() <= eps + 1e-6
    assert (ref - x).abs().max() > 0.9 * eps  # the test is not vacuous


def test_pgd_l2_matches_torchattacks():
    # 2D only: torchattacks' PGDL2 reshapes norms to (N, 1, 1, 1) and fails on 5-D input.
    model, x, y = _setup(2)
    eps, alpha, steps = 1.0, 0.2, 5
    ta = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.manual_seed(7)
    ref = ta(x, y)
    torch.manual_seed(7)
    delta0 = torch.empty_like(x).normal_()
    n = delta0.flatten(1).norm(dim=1).view(-1, *[1] * (x.ndim - 1))
    r = torch.zeros_like(n).uniform_(0, 1)
    delta0 *= r / n * eps
    ours = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm="l2", delta0=delta0)
    diff = (ours.x_adv - ref).abs().max().item()
    assert diff <= 1e-6, diff
    assert ((ours.x_adv - x).flatten(1).norm(dim=1) <= eps + 1e-6).all()


def test_bim_matches_torchattacks_without_start():
    model, x, y = _setup(2)
    eps, steps = 4 / 255, 5
    # torchattacks' PGD without random start is BIM with alpha = eps/... given explicitly
    ta = torchattacks.PGD(model, eps=eps, alpha=2 * eps / steps, steps=steps, random_start=False)
    ref = ta(x, y)
    ours = pgd(model, x, y, eps=eps, steps=steps, random_start=None)  # default α = 2ε/T
    assert (ours.x_adv - ref).abs().max().item() <= 1e-6
