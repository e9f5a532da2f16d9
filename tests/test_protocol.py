"""The detection protocol: correct-only, 70/30 split, genuine noise, successful AEs only."""

from __future__ import annotations

import pytest
import torch

from hfc_edu.detectors import FeatureSet
from hfc_edu.features import FeatureExtractor
from hfc_edu.models import build_model
from hfc_edu.protocol import (
    correct_mask,
    correct_subset,
    make_noisy,
    split_detection_set,
    split_indices,
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
    keep = torch.ones(n, dtype=torch.bool)
    keep[[3, 15]] = False  # misclassified
    success = torch.ones(n, dtype=torch.bool)
    success[[0, 18]] = False  # failed attacks
    splits = split_detection_set(success, keep=keep)
    kept = [i for i in range(n) if i not in (3, 15)]
    tr, te = splits.train, splits.test
    assert tr.index.tolist() == kept[:13] and te.index.tolist() == kept[13:]
    assert tr.adv_index.tolist() == [i for i in kept[:13] if i != 0]
    assert te.adv_index.tolist() == [i for i in kept[13:] if i != 18]
    assert (tr.n_neg, tr.n_pos, te.n_neg, te.n_pos) == (26, 12, 10, 4)
    # gather: the rows of one part from aligned images (or features), with their labels
    x = torch.rand(n, 1, 4, 4)
    x_adv, noisy = x + 0.01, make_noisy(x, eps=0.01, generator=torch.Generator().manual_seed(0))
    rows, is_adv = te.gather(x, noisy, x_adv)
    assert len(rows) == 2 * 5 + 4 and is_adv.tolist() == [0] * 10 + [1] * 4
    torch.testing.assert_close(rows[:5], x[te.index])
    torch.testing.assert_close(rows[5:10], noisy[te.index])
    torch.testing.assert_close(rows[10:], x_adv[te.adv_index])
    fs = FeatureSet({"z": x.flatten(1)}, x=x)
    fs_rows, fs_is_adv = te.gather(fs, fs, fs)
    assert torch.equal(
        fs_rows.feats["z"], x.flatten(1)[torch.cat([te.index, te.index, te.adv_index])]
    )
    assert torch.equal(fs_is_adv, is_adv)
    # another attack on the same images: same negatives, its own positives
    new = te.with_success(torch.tensor([True, False, True, True, False]))
    assert torch.equal(new.index, te.index) and new.adv_index.tolist() == [
        kept[13],
        kept[15],
        kept[16],
    ]
    with pytest.raises(ValueError, match="aligned"):
        te.with_success(torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="align"):
        split_detection_set(success, keep=keep[:5])
    # shuffled: the same sets of images, seeded
    sh = split_detection_set(success, shuffle=True, seed=1)
    assert sorted(sh.train.index.tolist() + sh.test.index.tolist()) == list(range(n))
    assert torch.equal(split_detection_set(success, shuffle=True, seed=1).test.index, sh.test.index)


def test_correct_mask_and_subset_on_a_model():
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 2, image_size=16)
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    assert correct_mask(model, x, pred).all()
    assert not correct_mask(model, x, 1 - pred).any()
    y = pred.clone()
    y[[1, 4]] = 1 - y[[1, 4]]  # two misclassified images
    idx = correct_subset(model, x, y, 4, seed=0)
    assert len(idx) == 4 and set(idx.tolist()) <= {0, 2, 3, 5, 6, 7}
    assert torch.equal(idx, idx.sort().values)
    # features of one split, through the model
    splits = split_detection_set(torch.ones(8, dtype=torch.bool))
    fx = FeatureExtractor(model)
    feats = FeatureSet.from_images(fx, x)
    fs, is_adv = splits.train.gather(feats, feats, feats)
    assert len(fs) == len(is_adv) == 2 * 6 + 6 and fs.x is not None


def test_per_class_subset_draws_n_of_every_class():
    from hfc_edu.protocol import per_class_subset

    y = torch.tensor([0, 1, 1, 0, 2, 1, 0, 0, 2])
    idx = per_class_subset(y, 2, seed=3)
    assert torch.equal(torch.bincount(y[idx]), torch.tensor([2, 2, 2]))
    assert torch.equal(per_class_subset(y, 2, seed=3), idx)  # seeded
    assert len(per_class_subset(y, 10)) == len(y)  # small classes give all they have
    with pytest.raises(ValueError, match="positive int"):
        per_class_subset(y, 0)
