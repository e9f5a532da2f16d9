"""Unit tests of hfc_edu.attacks on tiny random models (2D and 3D): bounds, API, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hfc_edu.attacks import (
    AttackResult,
    CrossEntropy,
    CWMargin,
    Loss,
    bim,
    cw_l2,
    cw_linf,
    fgsm,
    frozen_eval,
    gradient_attack,
    is_success,
    least_likely,
    mim,
    other_class,
    pgd,
    random_target,
    sweep,
)
from hfc_edu.attacks.cw_l2 import from_tanh_space, to_tanh_space
from hfc_edu.attacks.gradient import random_start_point
from hfc_edu.features import FeatureExtractor
from hfc_edu.models import build_model

EPS = 8 / 255


def _model(dims: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    m = build_model("compact_resnet_narrow", 1, classes, spatial_dims=dims, image_size=16)
    return m.eval()


@pytest.fixture(scope="module")
def model2d():
    return _model(2)


@pytest.fixture(scope="module")
def model3d():
    return _model(3)


def _data(dims: int, n: int = 6, classes: int = 3):
    g = torch.Generator().manual_seed(1)
    shape = (n, 1, 16, 16) if dims == 2 else (n, 1, 8, 8, 8)
    x = torch.rand(shape, generator=g)
    x[0].zero_()  # saturated pixels at 0 and 1 (medical backgrounds)
    x[1, :, :4] = 1.0
    y = torch.randint(0, classes, (n,), generator=g)
    return x, y


ATTACKS = {
    "fgsm": (fgsm, dict(eps=EPS), "linf"),
    "bim": (bim, dict(eps=EPS, steps=3), "linf"),
    "pgd_linf": (pgd, dict(eps=EPS, steps=3), "linf"),
    "pgd_linf_official": (pgd, dict(eps=EPS, steps=3, random_start="official"), "linf"),
    "pgd_l2": (pgd, dict(eps=0.5, steps=3, norm="l2"), "l2"),
    "mim": (mim, dict(eps=EPS, steps=3), "linf"),
    "cw_linf": (cw_linf, dict(eps=EPS, steps=3), "linf"),
}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("targeted", [False, True])
def test_bounds(name, dims, targeted, model2d, model3d):
    fn, kw, norm = ATTACKS[name]
    model = model2d if dims == 2 else model3d
    x, y = _data(dims)
    res = fn(model, x, y if not targeted else other_class(y, 3), targeted=targeted, **kw)
    assert isinstance(res, AttackResult)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    d = (res.x_adv - x).flatten(1)
    bound = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (bound <= kw["eps"] + 1e-6).all()
    assert bound.max() > 0.5 * kw["eps"]  # it did move
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    torch.testing.assert_close(res.linf, d.abs().amax(1))
    torch.testing.assert_close(res.l2, d.norm(dim=1))
    assert res.success.dtype == torch.bool and res.success.shape == y.shape
    assert res.loss.shape == y.shape and res.logits.shape == (len(y), 3)
    torch.testing.assert_close(res.eps, torch.full((len(y),), float(kw["eps"])))


@pytest.mark.parametrize("dims", [2, 3])
def test_cw_l2_bounds_and_failures(dims, model2d, model3d):
    model = model2d if dims == 2 else model3d
    x, y = _data(dims)
    res = cw_l2(model, x, y, steps=10, search_steps=2)
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.eps is None
    # failed samples are returned unchanged
    assert torch.equal(res.x_adv[~res.success], x[~res.success])
    assert torch.isfinite(res.x_adv).all()


def test_per_sample_eps_and_alpha(model2d):
    x, y = _data(2)
    eps = torch.tensor([0.0, 1, 2, 4, 8, 16]) / 255
    res = pgd(model2d, x, y, eps=eps, alpha=eps / 4, steps=4)
    assert (res.linf <= eps + 1e-6).all()
    assert res.linf[0] == 0
    assert (res.linf[3:] > 0.5 * eps[3:]).all()
    res = pgd(model2d, x, y, eps=eps * 20, steps=4, norm="l2")
    assert (res.l2 <= eps * 20 + 1e-6).all()


def test_eps_sweep_matches_sequential_calls(model2d):
    x, y = _data(2)
    eps = [1 / 255, 2 / 255, 4 / 255, 8 / 255]
    results = sweep("BIM", model2d, x, y, eps=eps, steps=4)
    assert isinstance(results, list) and len(results) == 4
    for e, r in zip(eps, results, strict=True):
        single = bim(model2d, x, y, eps=e, steps=4)
        torch.testing.assert_close(r.x_adv, single.x_adv, atol=1e-6, rtol=0)
        assert torch.equal(r.success, single.success)
        assert (r.linf <= e + 1e-6).all()
        torch.testing.assert_close(r.eps, torch.full((len(x),), e))
    # one ε per pass, all in one pass, and the default "auto" give the same answer
    for sb in (len(x), None):
        other = sweep("BIM", model2d, x, y, eps=eps, steps=4, sweep_batch=sb)
        for a, b in zip(results, other, strict=True):
            torch.testing.assert_close(a.x_adv, b.x_adv, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="sweep_batch"):
        sweep("BIM", model2d, x, y, eps=eps, steps=1, sweep_batch=0)
    with pytest.raises(ValueError, match="repeated"):
        sweep("BIM", model2d, x, y, eps=[0.01, 0.01], steps=1)
    # per-image tensors (delta0) follow their images into every stacked copy
    d0 = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 8 / 255
    stacked = sweep("PGD", model2d, x, y, eps=eps[2:], steps=2, delta0=d0, sweep_batch=None)
    for e, r in zip(eps[2:], stacked, strict=True):
        single = pgd(model2d, x, y, eps=e, steps=2, delta0=d0)
        torch.testing.assert_close(r.x_adv, single.x_adv, atol=1e-6, rtol=0)


def test_batch_size_gives_the_one_pass_result(model2d, model3d):
    """Chunking is memory, not results: deterministic attacks agree bit for bit."""
    for model, dims in ((model2d, 2), (model3d, 3)):
        x, y = _data(dims, n=7)
        for fn, kw in (
            (fgsm, dict(eps=EPS)),
            (bim, dict(eps=EPS, steps=3)),
            (mim, dict(eps=EPS, steps=3)),
            (cw_linf, dict(eps=EPS, steps=3)),
            (pgd, dict(eps=0.5, steps=3, norm="l2", random_start=None)),
        ):
            one = fn(model, x, y, **kw)
            chunked = fn(model, x, y, batch_size=3, **kw)
            if kw.get("norm") == "l2":  # no sign step to absorb last-bit gradient differences
                torch.testing.assert_close(one.x_adv, chunked.x_adv, atol=1e-6, rtol=0)
            else:
                assert torch.equal(one.x_adv, chunked.x_adv), fn.__name__
            # logits may differ in the last bit (a matmul over another batch size)
            torch.testing.assert_close(one.logits, chunked.logits, atol=1e-6, rtol=0)
            assert one.steps == chunked.steps
        one = cw_l2(model, x, y, steps=5, search_steps=2, abort_early=False)
        chunked = cw_l2(model, x, y, steps=5, search_steps=2, abort_early=False, batch_size=2)
        assert torch.equal(one.x_adv, chunked.x_adv) and one.eps is None and chunked.eps is None
    # a random start consumes the generator chunk by chunk: reproducible per batch_size
    x, y = _data(2, n=7)
    runs = [
        pgd(
            model2d,
            x,
            y,
            eps=EPS,
            steps=2,
            batch_size=3,
            generator=torch.Generator().manual_seed(0),
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    with pytest.raises(ValueError, match="batch_size"):
        pgd(model2d, x, y, eps=EPS, batch_size=0)


def test_random_start_kinds():
    x = torch.full((4, 1, 8, 8), 0.5)
    eps = torch.full((4, 1, 1, 1), 0.1)
    g = torch.Generator().manual_seed(0)
    sym = random_start_point(x, eps, "linf", "symmetric", g) - x
    off = random_start_point(x, eps, "linf", "official", g) - x
    assert sym.min() < -0.05 and sym.max() > 0.05 and sym.abs().max() <= 0.1 + 1e-7
    assert off.min() >= 0 and off.max() > 0.05 and off.max() <= 0.1 + 1e-7
    l2 = random_start_point(x, eps, "l2", "symmetric", g) - x
    assert (l2.flatten(1).norm(dim=1) <= 0.1 + 1e-6).all()
    assert torch.equal(random_start_point(x, eps, "linf", None), x)


def test_determinism_with_generator(model2d):
    x, y = _data(2)
    runs = [
        pgd(model2d, x, y, eps=EPS, steps=2, generator=torch.Generator().manual_seed(s)).x_adv
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_model_state_untouched():
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 3, image_size=16, dropout=0.3)
    model.train()
    model.dropout.eval()  # mixed modes, e.g. a BU set-up in progress
    model.backbone.conv1.weight.requires_grad_(False)  # a frozen layer stays frozen
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data(2)
    for fn, kw, _ in ATTACKS.values():
        fn(model, x, y, **kw)
    cw_l2(model, x, y, steps=3, search_steps=1)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # BN running stats too: eval mode during the attack
    assert all(p.grad is None for p in model.parameters())


def test_frozen_eval_restores_after_exception():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model.train()
    model[1].eval()
    with pytest.raises(RuntimeError, match="boom"), frozen_eval(model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert model.training and model[0].training and not model[1].training
    assert all(p.requires_grad for p in model.parameters())


class _CountingLoss(Loss):
    """CE plus a feature term; records how it was called."""

    needs_features = True

    def __init__(self):
        self.calls, self.keys = 0, None

    def __call__(self, logits, y, features):
        self.calls += 1
        self.keys = list(features)
        return -torch.nn.functional.cross_entropy(logits, y, reduction="none") + 0.0 * sum(
            f.sum(1) for f in features.values()
        )


def test_feature_loss_one_forward_per_step(model2d):
    x, y = _data(2)
    forwards = []
    h = model2d.register_forward_hook(lambda *a: forwards.append(1))
    try:
        loss = _CountingLoss()
        res = pgd(model2d, x, y, eps=EPS, steps=3, loss=loss)
        assert len(forwards) == 4 and loss.calls == 4  # 3 steps + the final evaluation
        assert loss.keys == FeatureExtractor(model2d).layer_names
        # a FeatureExtractor passed as the model is used as is (here: block outputs only)
        fx = FeatureExtractor(model2d, layers="blocks")
        loss = _CountingLoss()
        pgd(fx, x, y, eps=EPS, steps=1, loss=loss)
        assert loss.keys == fx.layer_names
    finally:
        h.remove()
    # the composite loss of the brief, with the features unused by CE
    r2 = pgd(
        model2d, x, other_class(y, 3), eps=EPS, steps=2, targeted=True, loss=CrossEntropy(True)
    )
    assert r2.success.shape == y.shape
    assert res.success.shape == y.shape


class _DictModel(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"logits": self.net(x), "aux": x.mean()}


def test_output_fn(model2d):
    x, y = _data(2)
    wrapped = _DictModel(model2d)
    with pytest.raises(TypeError, match="output_fn"):
        pgd(wrapped, x, y, eps=EPS, steps=1)
    a = bim(wrapped, x, y, eps=EPS, steps=2, output_fn=lambda o: o["logits"])
    b = bim(model2d, x, y, eps=EPS, steps=2)
    assert torch.equal(a.x_adv, b.x_adv)
    tup = nn.Sequential()  # returns a tuple
    tup.forward = lambda x: (model2d(x), None)  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="output_fn"):
        fgsm(tup, x, y, eps=EPS)


def test_amp_bf16_cpu(model2d):
    x, y = _data(2)
    res = pgd(model2d, x, y, eps=EPS, steps=2, amp="bf16")
    assert res.x_adv.dtype == torch.float32 and res.loss.dtype == torch.float32
    assert (res.linf <= EPS + 1e-6).all() and res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with pytest.raises(ValueError, match="bf16"):
        pgd(model2d, x, y, eps=EPS, steps=1, amp="fp16")
    with pytest.raises(ValueError, match="amp"):
        pgd(model2d, x, y, eps=EPS, steps=1, amp="int8")


def test_early_stop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    x = torch.full((4, 1, 8, 8), 0.5)
    y = model(x).argmax(1)
    res = pgd(model, x, y, eps=0.5, alpha=0.5, steps=50, early_stop=2)
    assert res.success.all() and res.steps < 50 and res.steps % 2 == 0
    full = pgd(model, x, y, eps=0.5, alpha=0.5, steps=50)
    assert full.steps == 50


def test_targets():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.equal(other_class(torch.tensor([0, 1, 1])), torch.tensor([1, 0, 0]))
    assert torch.equal(other_class(y, 4), (y + 1) % 4)
    g = torch.Generator().manual_seed(0)
    big = torch.randint(0, 4, (4000,), generator=g)
    t = random_target(big, 4, generator=g)
    assert (t != big).all() and t.min() == 0 and t.max() == 3
    counts = torch.bincount(t[big == 0], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 250  # uniform over the 3 others
    t1 = random_target(y, 4, torch.Generator().manual_seed(1))
    t2 = random_target(y, 4, torch.Generator().manual_seed(1))
    assert torch.equal(t1, t2)
    logits = torch.tensor([[0.0, -5.0, 1.0], [-9.0, 2.0, 3.0]])
    assert torch.equal(least_likely(logits), torch.tensor([1, 0]))
    assert torch.equal(least_likely(logits, torch.tensor([1, 0])), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        other_class(torch.tensor([0, 2]), 2)
    with pytest.raises(TypeError, match="integer"):
        random_target(torch.tensor([0.0, 1.0]), 2)


def test_cw_margin_and_tanh_space():
    logits = torch.tensor([[-5.0, -1.0, -3.0], [2.0, 7.0, -1.0]])
    y = torch.tensor([0, 1])
    # masked "other": -1 for sample 0 (not 0, which (1-onehot)*logits would give)
    torch.testing.assert_close(CWMargin(False).margin(logits, y), torch.tensor([-4.0, 5.0]))
    torch.testing.assert_close(CWMargin(True).margin(logits, y), torch.tensor([4.0, -5.0]))
    # the loss is the margin clamped at -κ
    torch.testing.assert_close(CWMargin(True, 3.0)(logits, y, {}), torch.tensor([4.0, -3.0]))
    x = torch.tensor([0.0, 1.0, 0.5, 0.25])
    w = to_tanh_space(x)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(from_tanh_space(w), x, atol=1e-6, rtol=0)


def test_cw_l2_saturated_pixels_move_as_documented():
    """Pixels at exactly 0 or 1 start at atanh(±(1 - 1e-6)) ≈ ±7.25, where tanh is flat: at the
    defaults (lr 0.01, 100 steps) they move by a few 1e-6 only (the docstring's claim); a
    larger lr lets them move."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2)).eval()
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 4:] = 0.5  # room to move, so that the attack succeeds
    x[1, :, :2] = 1.0
    y = model(x).argmax(1)
    saturated = (x == 0) | (x == 1)
    res = cw_l2(model, x, y)
    assert res.success.all()
    moved = (res.x_adv - x).abs()[saturated]
    assert moved.max() < 1e-5 and (res.x_adv - x).abs().max() > 0.1
    res = cw_l2(model, x, y, c=10.0, lr=0.1)
    assert res.success.all() and (res.x_adv - x).abs()[saturated].max() > 0.05


def test_is_success_is_the_one_rule():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    y = torch.tensor([1, 1])
    assert is_success(logits, y, targeted=True).tolist() == [True, False]
    assert is_success(logits, y, targeted=False).tolist() == [False, True]
    assert torch.equal(is_success(logits.argmax(1), y, True), is_success(logits, y, True))
    with pytest.raises(ValueError, match="logits"):
        is_success(torch.zeros(2, 3, 1), y, True)


def test_mim_rms_floor_follows_the_papers_code():
    """MIM divides by max(RMS(∇), 1e-6) as the papers' code: on confident images (∇ RMS below
    1e-6) a floor of 1e-12 lands up to 2ε per pixel elsewhere."""
    torch.manual_seed(0)
    m = build_model("compact_resnet_narrow", 1, 3, image_size=16).eval()
    with torch.no_grad():
        m.fc.weight.mul_(300.0)  # very confident: tiny input gradients on some images
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    y = m(x).argmax(1)
    eps, steps = 8 / 255, 5

    def reference(floor: float) -> torch.Tensor:
        alpha = torch.full((4, 1, 1, 1), eps) * (2.0 / steps)
        xa, g = x.clone(), torch.zeros_like(x)
        for _ in range(steps):
            xa.requires_grad_(True)
            loss = -torch.nn.functional.cross_entropy(m(xa), y, reduction="none").sum()
            (gr,) = torch.autograd.grad(loss, xa)
            rms = gr.flatten(1).square().mean(1).sqrt().clamp_min(floor).view(-1, 1, 1, 1)
            g = 0.5 * g + gr / rms
            xa = (x + (xa.detach() - alpha * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
        return xa

    ours = mim(m, x, y, eps=eps, steps=steps).x_adv
    torch.testing.assert_close(ours, reference(1e-6), atol=1e-6, rtol=0)
    tiny = mim(m, x, y, eps=eps, steps=steps, rms_floor=1e-12).x_adv
    torch.testing.assert_close(tiny, reference(1e-12), atol=1e-6, rtol=0)
    assert (ours - tiny).abs().max() > 1.9 * eps  # the floor matters here
    with pytest.raises(ValueError, match="rms_floor"):
        gradient_attack(m, x, y, eps=eps, rms_floor=1e-6)


def test_no_docstring_is_patched_at_import():
    import ast
    import inspect

    import hfc_edu.attacks.gradient as gradient_module

    tree = ast.parse(inspect.getsource(gradient_module))
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for name in ("gradient_attack", "pgd", "bim", "fgsm", "mim", "cw_linf"):
        written = ast.get_docstring(fns[name], clean=False)
        assert getattr(gradient_module, name).__doc__ == written, name


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(eps=-0.1), ValueError, "eps"),
        (dict(eps=float("nan")), ValueError, "eps"),
        (dict(eps=torch.tensor([0.1, float("nan")] * 3)), ValueError, "eps"),
        (dict(eps=torch.tensor([0.1, -0.1] * 3)), ValueError, "eps"),
        (dict(eps=torch.ones(5)), ValueError, r"\(6,\)"),
        (dict(eps=[0.1, 0.2]), TypeError, "eps must be a float"),
        (dict(eps=4), ValueError, "4/256"),
        (dict(eps=torch.tensor([0.1, 2.0] * 3)), ValueError, r"eps must be finite and in \[0, 1\]"),
        (dict(eps=0.1, kappa=5.0), ValueError, "kappa configures the 'cw' loss"),
        (dict(eps=0.1, loss=CrossEntropy(), kappa=5.0), ValueError, "Loss object"),
        (dict(eps=0.1, alpha=-1.0), ValueError, "alpha"),
        (dict(eps=0.1, steps=0), ValueError, "steps"),
        (dict(eps=0.1, norm="l1"), ValueError, "norm"),
        (dict(eps=0.1, random_start="gauss"), ValueError, "random_start"),
        (dict(eps=0.1, random_start="official", norm="l2"), ValueError, "official"),
        (dict(eps=0.1, loss="mse"), ValueError, "loss"),
        (dict(eps=0.1, early_stop=0), ValueError, "early_stop"),
        (dict(eps=0.1, delta0=torch.zeros(1, 1, 16, 16)), ValueError, "delta0"),
    ],
)
def test_bad_arguments(model2d, kwargs, err, match):
    x, y = _data(2)
    with pytest.raises(err, match=match):
        pgd(model2d, x, y, **kwargs)


def test_bad_images_and_labels(model2d):
    x, y = _data(2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(model2d, x * 255, y, eps=EPS, steps=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm(model2d, x - 0.5, y, eps=EPS)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        bim(model2d, bad, y, eps=EPS, steps=1)
    with pytest.raises(TypeError, match="floating"):
        pgd(model2d, (x * 255).to(torch.uint8), y, eps=EPS)
    with pytest.raises(ValueError, match="shape"):
        pgd(model2d, x[:, 0], y, eps=EPS)
    with pytest.raises(TypeError, match="integer"):
        pgd(model2d, x, y.float(), eps=EPS)
    with pytest.raises(ValueError, match=r"\(6,\)"):
        pgd(model2d, x, y[:3], eps=EPS)
    with pytest.raises(ValueError, match=r"\(6,\)"):
        pgd(model2d, x, torch.nn.functional.one_hot(y, 3), eps=EPS)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        pgd(model2d, x, y + 3, eps=EPS, steps=1)
    with pytest.raises(ValueError, match="outside"):
        cw_l2(model2d, x, y - 5, steps=1)
    with pytest.raises(ValueError, match="true class"):
        pgd(model2d, x, y, eps=EPS, steps=1, targeted=True, y_true=y)
    with pytest.raises(ValueError, match="true class"):
        cw_l2(model2d, x, y, targeted=True, y_true=y, steps=1)
    # fine: targets differ
    pgd(model2d, x, other_class(y, 3), eps=EPS, steps=1, targeted=True, y_true=y)


def test_loss_must_be_per_sample(model2d):
    class MeanLoss(Loss):
        def __call__(self, logits, y, features):
            return torch.nn.functional.cross_entropy(logits, y)

    x, y = _data(2)
    with pytest.raises(ValueError, match="one value per sample"):
        pgd(model2d, x, y, eps=EPS, steps=1, loss=MeanLoss())


def test_feature_loss_on_plain_module_needs_extractor():
    model = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    x, y = _data(2)
    with pytest.raises(ValueError, match="FeatureExtractor"):
        pgd(model, x, y % 2, eps=EPS, steps=1, loss=_CountingLoss())
    fx = FeatureExtractor(model, layers=["1"])
    res = pgd(fx, x, y % 2, eps=EPS, steps=1, loss=_CountingLoss())
    assert res.x_adv.shape == x.shape
