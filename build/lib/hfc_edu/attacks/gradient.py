"""Gradient attacks in an Lp ball: FGSM, BIM (I-FGSM), PGD (L∞ and L2), MIM, CW-L∞.

All five are the same loop with different defaults::

    x' = start(x)                                  # x, or a random point of the ball
    repeat T times:
        g  = ∇_{x'} Σ_i loss_i(f(x'))              # ONE forward + ONE input gradient
        g  = μ·g_prev + g / RMS(g)                 # MIM only (momentum)
        x' = x' − α·sign(g)     (L∞)   or   x' − α·g/‖g‖₂   (L2)
        x' = clip_[0,1](Proj_{‖x'−x‖ ≤ ε}(x'))

The loss is *minimised*: the untargeted CE loss is ``−CE(f(x'), y)``, the targeted one
``CE(f(x'), t)`` (see :mod:`hfc_edu.attacks.losses`). Only input gradients are computed,
with ``torch.autograd.grad`` inside :func:`~hfc_edu.modes.frozen_eval`.

Defaults follow the papers' code (Yao et al.): T = 10, α = 2ε/T, FGSM α = ε, MIM μ = 0.5 with
RMS-normalised gradients, CW-L∞ with κ = 100. ε is in [0, 1] pixel units (the papers give it in
1/256 units: ``eps=1/256``). The random start is symmetric, ``U(−ε, ε)``, by default; the
official code's one-sided ``x + U[0, 1)·ε`` is ``random_start="official"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hfc_edu.attacks._forward import Amp, LossForward, OutputFn, amp_dtype
from hfc_edu.attacks.losses import Loss, classification_loss
from hfc_edu.attacks.result import AttackResult, evaluate, is_success
from hfc_edu.checks import (
    PerSample,
    batch_view,
    check_images,
    check_labels,
    check_scalar,
    check_targets_differ,
    per_sample,
    sync_checks,
)
from hfc_edu.modes import frozen_eval

Eps = PerSample | Sequence[float]
Result = AttackResult | list[AttackResult]

RANDOM_STARTS = ("symmetric", "official", None)


def _parse_start(random_start: str | bool | None, norm: str) -> str | None:
    if random_start is True:
        random_start = "symmetric"
    if random_start is False:
        random_start = None
    if random_start not in RANDOM_STARTS:
        raise ValueError(
            f"random_start must be 'symmetric', 'official' or None, got {random_start!r}."
        )
    if random_start == "official" and norm != "linf":
        raise ValueError("random_start='official' (x + U[0, 1)·ε) exists for norm='linf' only.")
    return random_start


def _uniform(x: torch.Tensor, low: float, generator: torch.Generator | None) -> torch.Tensor:
    """``U[low, 1)`` noise shaped like ``x``, drawn on the generator's device (reproducible)."""
    device = generator.device if generator is not None else x.device
    u = torch.empty(x.shape, dtype=x.dtype, device=device).uniform_(low, 1.0, generator=generator)
    return u.to(x.device)


def _normal(shape: tuple[int, ...], x: torch.Tensor, generator: torch.Generator | None):
    device = generator.device if generator is not None else x.device
    return torch.randn(shape, dtype=x.dtype, device=device, generator=generator).to(x.device)


def project_l2(delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Scale each ``delta[i]`` into the L2 ball of radius ``eps[i]``; ``eps`` is ``(N, 1, ...)``."""
    norms = batch_view(delta.flatten(1).norm(dim=1), delta.ndim)
    return delta * (eps / norms.clamp_min(1e-12)).clamp_(max=1.0)


def random_start_point(
    x: torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    kind: str | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Start of the attack, in [0, 1], as a new tensor. ``eps`` is ``(N, 1, ...)``.

    * ``None``: ``x`` itself;
    * ``"symmetric"``: L∞ ``x + U(−ε, ε)``; L2 ``x + r·ε·n/‖n‖``, n Gaussian, r ~ U[0, 1)
      (torchattacks' PGDL2 start);
    * ``"official"`` (L∞ only): ``x + U[0, 1)·ε``, the papers' one-sided start.
    """
    if kind is None:
        return x.clone()
    if norm == "linf":
        u = _uniform(x, -1.0 if kind == "symmetric" else 0.0, generator)
        return u.mul_(eps).add_(x).clamp_(0.0, 1.0)
    n = _normal(tuple(x.shape), x, generator)
    r = batch_view(_uniform(x.flatten(1)[:, 0], 0.0, generator), x.ndim)
    n_norm = batch_view(n.flatten(1).norm(dim=1), x.ndim).clamp_min(1e-12)
    return n.mul_(r * eps / n_norm).add_(x).clamp_(0.0, 1.0)


def _loop(
    fwd: LossForward,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    *,
    steps: int,
    norm: str,
    momentum: float | None,
    targeted: bool,
    early_stop: int | None,
) -> tuple[torch.Tensor, int]:
    """The attack iterations; ``x_adv`` is updated in place. Returns (x_adv, steps run)."""
    neg_eps = -eps
    buf = torch.zeros_like(x) if momentum is not None else None
    for t in range(steps):
        x_adv.requires_grad_(True)
        loss, logits = fwd(x_adv, y)
        (g,) = torch.autograd.grad(loss.sum(), x_adv)
        x_adv.requires_grad_(False)
        # Early stop: every `early_stop` steps, one host sync; stop before updating.
        if early_stop and t > 0 and t % early_stop == 0:
            if is_success(logits.detach(), y, targeted).all().item():
                return x_adv, t
        with torch.no_grad():
            if buf is not None:  # MIM: g <- μ·g_prev + g / RMS(g)
                rms = batch_view(g.flatten(1).square().mean(1).sqrt_(), g.ndim)
                g = buf.mul_(momentum).add_(g / rms.clamp_min(1e-12))
            if norm == "linf":
                x_adv.addcmul_(g.sign(), alpha, value=-1.0)
                # x' = clip_[0,1](x + clip_[-ε,ε](x' - x)), in place. Written in this order
                # (not as one clamp to [max(x-ε,0), min(x+ε,1)]) so the floats equal the
                # reference implementations': a 1-ulp difference can flip a later sign.
                x_adv.sub_(x).clamp_(neg_eps, eps).add_(x).clamp_(0.0, 1.0)
            else:
                g_norm = batch_view(g.flatten(1).norm(dim=1), g.ndim).add_(1e-10)
                x_adv.addcmul_(g, alpha / g_norm, value=-1.0)
                delta = project_l2(x_adv - x, eps)
                torch.add(x, delta, out=x_adv).clamp_(0.0, 1.0)
    return x_adv, steps


def _attack_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: PerSample,
    alpha: PerSample | None,
    *,
    steps: int,
    norm: str,
    targeted: bool,
    loss: Loss,
    random_start: str | None,
    delta0: torch.Tensor | None,
    momentum: float | None,
    y_true: torch.Tensor | None,
    early_stop: int | None,
    amp: torch.dtype | None,
    output_fn: OutputFn | None,
    generator: torch.Generator | None,
    alpha_factor: float,
    return_result: bool,
) -> AttackResult | torch.Tensor:
    """One attack on one batch with per-sample ``eps``/``alpha``."""
    n, nd = x.shape[0], x.ndim
    eps_n = per_sample(eps, n, x, "eps")
    alpha_n = eps_n * alpha_factor if alpha is None else per_sample(alpha, n, x, "alpha")
    tensor_checks = [("eps", eps_n)] if isinstance(eps, torch.Tensor) else []
    if isinstance(alpha, torch.Tensor):
        tensor_checks.append(("alpha", alpha_n))
    labels = [("y", y)] + ([("y_true", y_true)] if y_true is not None else [])

    fwd = LossForward(model, loss, output_fn, amp, x.device)

    def first_check(num_classes: int) -> None:
        sync_checks(x, labels=labels, tensors=tensor_checks, num_classes=num_classes)
        if targeted and y_true is not None:
            check_targets_differ(y, y_true)

    fwd.on_first_logits = first_check
    eps_b, alpha_b = batch_view(eps_n, nd), batch_view(alpha_n, nd)
    with frozen_eval(fwd.module):
        if delta0 is not None:
            if delta0.shape != x.shape:
                raise ValueError(
                    f"delta0 must have the shape of x {tuple(x.shape)}, got {tuple(delta0.shape)}."
                )
            d = delta0.detach().to(x)
            d = d.clamp(-eps_b, eps_b) if norm == "linf" else project_l2(d, eps_b)
            x_adv = (x + d).clamp_(0.0, 1.0)
        else:
            x_adv = random_start_point(x, eps_b, norm, random_start, generator)
        x_adv, done = _loop(
            fwd, x, y, x_adv, eps_b, alpha_b,
            steps=steps, norm=norm, momentum=momentum, targeted=targeted, early_stop=early_stop,
        )  # fmt: skip
        if not return_result:
            return x_adv
        return evaluate(fwd, x, x_adv, y, targeted, eps_n, done)


SWEEP_CPU_ELEMENTS = 2**16


def _eps_groups(n_eps: int, x: torch.Tensor, sweep_batch: int | str | None) -> list[list[int]]:
    """Indices of the ε values run together in one pass (copies of the batch stacked on dim 0).

    ``sweep_batch``: max images per pass (int), None (all ε in one pass) or ``"auto"``: on
    CPU, stack while the pass holds at most ``SWEEP_CPU_ELEMENTS`` input values (measured: 4 ε
    on 8 images of 28² px take 0.89× the time of 4 calls, on 8 of 64² px 1.31×: large
    activations fall out of the cache); on GPUs, all at once.
    """
    n = x.shape[0]
    if sweep_batch == "auto":
        if x.device.type == "cpu":
            per = max(1, SWEEP_CPU_ELEMENTS // (n * x[0].numel()))
        else:
            per = n_eps
    elif sweep_batch is None:
        per = n_eps
    elif isinstance(sweep_batch, int) and not isinstance(sweep_batch, bool) and sweep_batch >= 1:
        per = max(1, sweep_batch // n)
    else:
        raise ValueError(f"sweep_batch must be 'auto', None or an int >= 1, got {sweep_batch!r}.")
    idx = list(range(n_eps))
    return [idx[i : i + per] for i in range(0, n_eps, per)]


def gradient_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    alpha: PerSample | Sequence[float] | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float = 0.0,
    random_start: str | bool | None = None,
    delta0: torch.Tensor | None = None,
    momentum: float | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    sweep_batch: int | str | None = "auto",
    alpha_factor: float | None = None,
    return_result: bool = True,
) -> Result | torch.Tensor | list[torch.Tensor]:
    """The shared core of :func:`fgsm`, :func:`bim`, :func:`pgd`, :func:`mim`, :func:`cw_linf`.

    ``eps`` given as a list/tuple runs one attack per ε and returns a list (see :func:`pgd`).
    ``return_result=False`` skips the final evaluation pass and returns only ``x_adv``.
    """
    check_images(x)
    x = x.detach()
    y = check_labels(y, x)
    if y_true is not None:
        y_true = check_labels(y_true, x, "y_true")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    if early_stop is not None and (not isinstance(early_stop, int) or early_stop < 1):
        raise ValueError(
            f"early_stop must be None or an int >= 1 (check every k steps), got {early_stop!r}."
        )
    if momentum is not None:
        check_scalar(momentum, "momentum")
        if norm != "linf":
            raise ValueError("momentum (MIM) is implemented for norm='linf' only.")
    if delta0 is not None and not isinstance(delta0, torch.Tensor):
        raise TypeError("delta0 must be a tensor shaped like x.")
    start = _parse_start(random_start, norm)
    loss_obj = classification_loss(loss, targeted, kappa)
    amp_t = amp_dtype(amp, x.device)
    factor = 2.0 / steps if alpha_factor is None else alpha_factor
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator (or None for the global RNG).")
    kw = dict(
        steps=steps, norm=norm, targeted=targeted, loss=loss_obj, random_start=start,
        momentum=momentum, early_stop=early_stop, amp=amp_t, output_fn=output_fn,
        generator=generator, alpha_factor=factor, return_result=return_result,
    )  # fmt: skip

    if not isinstance(eps, list | tuple):
        if isinstance(alpha, list | tuple):
            raise ValueError("alpha as a list needs eps as a list of the same length.")
        return _attack_batch(model, x, y, eps, alpha, delta0=delta0, y_true=y_true, **kw)

    # Several ε: stack copies of the batch along dim 0 (one pass per group), then split.
    eps_list = [check_scalar(e, "eps") for e in eps]
    if not eps_list:
        raise ValueError("eps is an empty list.")
    if isinstance(alpha, list | tuple):
        if len(alpha) != len(eps_list):
            raise ValueError(f"alpha has {len(alpha)} values for {len(eps_list)} eps values.")
        alpha_list = [check_scalar(a, "alpha") for a in alpha]
    elif alpha is None or isinstance(alpha, int | float):
        alpha_list = [alpha] * len(eps_list)
    else:
        raise ValueError("With several eps, alpha must be None, a float or a list of floats.")
    if delta0 is not None:
        raise ValueError("delta0 is not supported with several eps; use a generator instead.")
    n = x.shape[0]
    out: list = []
    for group in _eps_groups(len(eps_list), x, sweep_batch):
        k = len(group)
        e = torch.tensor([eps_list[i] for i in group], dtype=x.dtype, device=x.device)
        a = None
        if alpha_list[0] is not None:
            a = torch.tensor([alpha_list[i] for i in group], dtype=x.dtype, device=x.device)
            a = a.repeat_interleave(n)
        res = _attack_batch(
            model, x.repeat(k, *([1] * (x.ndim - 1))), y.repeat(k), e.repeat_interleave(n), a,
            delta0=None, y_true=None if y_true is None else y_true.repeat(k), **kw,
        )  # fmt: skip
        out.extend(_split(res, k, n))
    return out


def _split(res: AttackResult | torch.Tensor, k: int, n: int) -> list:
    if isinstance(res, torch.Tensor):
        return list(res.split(n))
    parts = []
    for i in range(k):
        s = slice(i * n, (i + 1) * n)
        parts.append(
            AttackResult(
                x_adv=res.x_adv[s],
                success=res.success[s],
                linf=res.linf[s],
                l2=res.l2[s],
                loss=res.loss[s],
                logits=res.logits[s],
                eps=res.eps[s],
                steps=res.steps,
            )  # fmt: skip
        )
    return parts


_COMMON_ARGS = """
    Args:
        model: classifier taking images in [0, 1] and returning logits ``(N, K)`` (see
            ``output_fn``), or a :class:`~hfc_edu.features.FeatureExtractor`.
        x: clean images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        y: ``(N,)`` true classes (untargeted) or target classes (``targeted=True``).
        eps: budget: a float, an ``(N,)`` tensor (one per sample), or a list of floats
            (one attack per ε, returned as a list; copies of the batch are stacked along
            dim 0 when it pays, see ``sweep_batch``: "auto", None = all, or max images).
        alpha: step size: float, ``(N,)`` tensor, list (with an ε list) or None (default).
        targeted: minimise the loss towards ``y`` as targets instead of away from ``y``.
        loss: ``"ce"``, ``"cw"`` (margin with confidence ``kappa``) or a
            :class:`~hfc_edu.attacks.losses.Loss`, e.g. ``CrossEntropy(True) + hfc_term``.
            A loss with ``needs_features`` gets the features of the same forward pass.
        y_true: ``(N,)`` true classes for a targeted attack: checked to differ from ``y``.
        early_stop: every ``early_stop`` steps stop if all samples succeed (one sync per check).
        amp: autocast the model call: None (off), ``"bf16"`` (CPU/GPU) or ``"fp16"`` (GPU).
        output_fn: maps the model's output (tuple, dict, ...) to logits.
        generator: ``torch.Generator`` for a reproducible random start.

    Returns:
        :class:`~hfc_edu.attacks.result.AttackResult` (a list of them for a list of ε).
"""


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    alpha: PerSample | Sequence[float] | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float = 0.0,
    random_start: str | bool | None = "symmetric",
    delta0: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    sweep_batch: int | str | None = "auto",
) -> Result:
    """Projected gradient descent (Madry et al. 2018) in the L∞ or L2 ball.

    ``alpha=None`` gives α = 2ε/steps (the papers' code). ``random_start``: ``"symmetric"``
    (default), ``"official"`` (the papers' ``x + U[0, 1)·ε``, L∞) or None; ``delta0`` sets an
    explicit start perturbation instead (projected into the ball).
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=targeted, loss=loss,
        kappa=kappa, random_start=random_start, delta0=delta0, y_true=y_true,
        early_stop=early_stop, amp=amp, output_fn=output_fn, generator=generator,
        sweep_batch=sweep_batch,
    )  # fmt: skip


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    alpha: PerSample | Sequence[float] | None = None,
    steps: int = 10,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float = 0.0,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    sweep_batch: int | str | None = "auto",
) -> Result:
    """Basic iterative method / I-FGSM (Kurakin et al. 2017): L∞ PGD without random start.

    ``alpha=None`` gives α = 2ε/steps (the papers' code).
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss=loss, kappa=kappa, y_true=y_true, early_stop=early_stop, amp=amp,
        output_fn=output_fn, sweep_batch=sweep_batch,
    )  # fmt: skip


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float = 0.0,
    y_true: torch.Tensor | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    sweep_batch: int | str | None = "auto",
) -> Result:
    """Fast gradient sign method (Goodfellow et al. 2015): one step ``x − ε·sign(∇loss)``."""
    return gradient_attack(
        model, x, y, eps=eps, steps=1, norm="linf", targeted=targeted, loss=loss, kappa=kappa,
        y_true=y_true, amp=amp, output_fn=output_fn, sweep_batch=sweep_batch, alpha_factor=1.0,
    )  # fmt: skip


def mim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    alpha: PerSample | Sequence[float] | None = None,
    steps: int = 10,
    decay: float = 0.5,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float = 0.0,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    sweep_batch: int | str | None = "auto",
) -> Result:
    """Momentum iterative FGSM (Dong et al. 2018), L∞, no random start.

    ``g ← decay·g + ∇/RMS(∇)`` per sample, then a sign step. ``decay=0.5`` and the RMS
    normalisation are the papers' code; Dong et al. use ``decay=1.0`` and the mean absolute
    value. The normalisation sets how much each step's gradient weighs in the running sum.
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss=loss, kappa=kappa, momentum=decay, y_true=y_true, early_stop=early_stop, amp=amp,
        output_fn=output_fn, sweep_batch=sweep_batch,
    )  # fmt: skip


def cw_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: Eps,
    alpha: PerSample | Sequence[float] | None = None,
    steps: int = 10,
    kappa: float = 100.0,
    targeted: bool = False,
    random_start: str | bool | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    sweep_batch: int | str | None = "auto",
) -> Result:
    """ "CW-L∞" as the papers use it: L∞ iterative sign steps on the CW margin loss.

    Minimises ``max(max_{j≠t} z_j − z_t, −κ)`` (targeted) or ``max(z_y − max_{j≠y} z_j, −κ)``.
    ``kappa=100`` is the TMI code (MICCAI: 10); with a large κ the margin keeps growing
    after the label flips (high-confidence adversarial examples).
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss="cw", kappa=kappa, random_start=random_start, y_true=y_true, early_stop=early_stop,
        amp=amp, output_fn=output_fn, generator=generator, sweep_batch=sweep_batch,
    )  # fmt: skip


for _f in (pgd, bim, fgsm, mim, cw_linf):
    _f.__doc__ = (_f.__doc__ or "") + _COMMON_ARGS

__all__ = [
    "bim",
    "cw_linf",
    "fgsm",
    "gradient_attack",
    "mim",
    "pgd",
    "project_l2",
    "random_start_point",
]
