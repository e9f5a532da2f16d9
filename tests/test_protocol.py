"""The detection protocol: correct-only, 70/30 split, genuine noise, successful AEs only."""

from __future__ import annotations

import pytest
import torch

from hfc_edu.models import build_model
from hfc_edu.protocol import (
    correct_mask,
    make_noisy,
    split_detection_set,
    split_indices,
    success_mask,
)


def test_make_noisy_kinds():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g) * 0.5 + 0.25  # away from the borders for eps=0.05
    u = make_noisy(x, eps=0.05, kind="uniform", generator=g)
    assert not torch.equal(u, x) and (u - x).abs().max() <= 0.05 + 1e-7
    s = make_noisy(x, eps=0.05, kind="sign", generator=g)
    torch.testing.assert_close((s - x).abs(), torch.full_like(x, 0.05))
    # Gaussian: exact L2 norm per image. 256 pixels at 0.5 and l2 <= 1 give a per-pixel std of at
    # most 1/16, so reaching the [0, 1] border needs an 8-sigma draw: no clipping.
    xm = torch.full((6, 1, 16, 16), 0.5)
    l2 = torch.linspace(0.1, 1.0, 6)
    n = make_noisy(xm, kind="gaussian", l2=l2, generator=g)
    assert n.min() > 0 and n.max() < 1
    torch.testing.assert_close((n - xm).flatten(1).norm(dim=1), l2)
    # where clipping does happen, it can only shorten the perturbation
    nc = make_noisy(torch.ones(6, 1, 8, 8), kind="gaussian", l2=l2, generator=g)
    assert ((1 - nc).flatten(1).norm(dim=1) <= l2 + 1e-6).all()
    # 3D, clipping to [0, 1], reproducibility
    x3 = torch.rand(2, 1, 4, 4, 4)
    a = make_noisy(x3, eps=0.5, generator=torch.Generator().manual_seed(1))
    b = make_noisy(x3, eps=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="eps"):
        make_noisy(x, kind="uniform")
    with pytest.raises(ValueError, match="l2"):
        make_noisy(x, kind="gaussian")
    with pytest.raises(ValueError, match="kind"):
        make_noisy(x, eps=0.1, kind="salt")


def test_split_indices():
    tr, te = split_indices(10)
    assert tr.tolist() == list(range(7)) and te.tolist() == [7, 8, 9]
    tr, te = split_indices(10, shuffle=True, seed=3)
    assert sorted(tr.tolist() + te.tolist()) == list(range(10)) and len(tr) == 7
    assert torch.equal(split_indices(10, shuffle=True, seed=3)[0], tr)
    with pytest.raises(ValueError, match="non-empty"):
        split_indices(1)


def test_split_detection_set_keeps_correct_and_successful_only():
    n = 20
    x = torch.rand(n, 1, 4, 4)
    y = torch.arange(n) % 2
    keep = torch.ones(n, dtype=torch.bool)
    keep[[3, 15]] = False  # misclassified
    success = torch.ones(n, dtype=torch.bool)
    success[[0, 18]] = False  # failed attacks
    x_adv = x + 0.01
    noisy = make_noisy(x, eps=0.01, generator=torch.Generator().manual_seed(0))
    data = split_detection_set(x, y, x_adv, success, noisy, keep=keep)
    kept = [i for i in range(n) if i not in (3, 15)]
    assert data.train.index.tolist() == kept[:13] and data.test.index.tolist() == kept[13:]
    assert 0 not in data.train.adv_index.tolist() and 18 not in data.test.adv_index.tolist()
    assert len(data.train.adv) == 12 and len(data.test.adv) == 4
    torch.testing.assert_close(data.test.adv, x_adv[data.test.adv_index])
    x_all, is_adv = data.test.inputs()
    assert len(x_all) == 2 * 5 + 4 and is_adv.sum() == 4
    new = data.test.with_adv(
        x[data.test.index] + 0.02, torch.tensor([True, False, True, True, False])
    )
    assert new.adv_index.tolist() == [kept[13], kept[15], kept[16]]
    with pytest.raises(ValueError, match="official code's bug"):
        split_detection_set(x, y, x_adv, success, x.clone())
    with pytest.raises(ValueError, match="aligned"):
        split_detection_set(x, y[:5], x_adv, success, noisy)


def test_correct_and_success_masks_on_a_model():
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 2, image_size=16)
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    assert correct_mask(model, x, pred).all()
    assert not correct_mask(model, x, 1 - pred).any()
    assert success_mask(
        model, x, 1 - pred
    ).all()  # untargeted: prediction differs from "true" label
    assert success_mask(model, x, pred, targeted=True).all()
    # features for one split
    from hfc_edu.features import FeatureExtractor

    data = split_detection_set(
        x, pred, x + 0.01, torch.ones(8, dtype=torch.bool), make_noisy(x, eps=0.01)
    )
    fs, is_adv = data.train.features(FeatureExtractor(model))
    assert len(fs) == len(is_adv) == 2 * 6 + 6 and fs.x is not None
