"""Gradient attacks in an Lp ball: FGSM, BIM (I-FGSM), PGD (L∞ and L2), MIM, CW-L∞.

All five are the same loop with different defaults::

    x' = start(x)                                  # x, or a random point of the ball
    repeat T times:
        g  = ∇_{x'} Σ_i loss_i(f(x'))              # ONE forward + ONE input gradient
        g  = μ·g_prev + g / max(RMS(g), floor)     # MIM only (momentum)
        x' = x' − α·sign(g)     (L∞)   or   x' − α·g/‖g‖₂   (L2)
        x' = clip_[0,1](Proj_{‖x'−x‖ ≤ ε}(x'))

The loss is *minimised*: the untargeted CE loss is ``−CE(f(x'), y)``, the targeted one
``CE(f(x'), t)`` (see :mod:`hfc_edu.attacks.losses`). Only input gradients are computed,
with ``torch.autograd.grad`` inside :func:`~hfc_edu.modes.frozen_eval`. Every function returns
one :class:`~hfc_edu.attacks.result.AttackResult`; an ε sweep is
:func:`hfc_edu.attacks.sweep.sweep`.

Defaults follow the papers' code (Yao et al. MICCAI 2021 / TMI 2023): T = 10, α = 2ε/T, FGSM
α = ε, MIM μ = 0.5 with RMS-normalised gradients floored at 1e-6, CW-L∞ with κ = 100. ε is in
[0, 1] pixel units (the papers give it in 1/256 units: ``eps=1/256``). The random start is
symmetric, ``U(−ε, ε)``, by default; the official code's one-sided ``x + U[0, 1)·ε`` is
``random_start="official"``.

The arguments every function here shares are documented once, in :func:`gradient_attack`;
each attack's docstring lists its own defaults and arguments.
"""

from __future__ import annotations

import torch
from torch import nn

from hfc_edu.attacks._forward import Amp, LossForward, OutputFn, amp_dtype
from hfc_edu.attacks.losses import Loss, classification_loss
from hfc_edu.attacks.result import AttackResult, concat_results, evaluate, is_success
from hfc_edu.checks import (
    PerSample,
    batch_view,
    check_batch_size,
    check_images,
    check_labels,
    check_scalar,
    check_steps,
    check_targets_differ,
    per_sample,
    sync_checks,
)
from hfc_edu.modes import frozen_eval

RANDOM_STARTS = ("symmetric", "official", None)

#: CW-L∞'s confidence κ in the papers' code (TMI; the MICCAI code used 10).
CW_LINF_KAPPA = 100.0

#: MIM's floor on the gradient RMS before normalising, as the papers' code (``normalize_by_pnorm``).
MIM_RMS_FLOOR = 1e-6


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


@torch.no_grad()
def linf_step(
    x_adv: torch.Tensor, g: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """One L∞ sign step, in place: ``x' ← clip_[0,1](x + clip_[−ε,ε](x' − α·sign(g) − x))``.

    ``eps`` and ``alpha`` are ``(N, 1, ...)``. Written in this order (not as one clamp to
    ``[max(x−ε, 0), min(x+ε, 1)]``) so the floats equal the reference implementations': a
    1-ulp difference can flip a later sign. Returns ``x_adv``.
    """
    x_adv.addcmul_(g.sign(), alpha, value=-1.0)
    return x_adv.sub_(x).clamp_(-eps, eps).add_(x).clamp_(0.0, 1.0)


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
    rms_floor: float,
    targeted: bool,
    early_stop: int | None,
) -> tuple[torch.Tensor, int]:
    """The attack iterations; ``x_adv`` is updated in place. Returns (x_adv, steps run)."""
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
            if buf is not None:  # MIM: g <- μ·g_prev + g / max(RMS(g), floor)
                rms = batch_view(g.flatten(1).square().mean(1).sqrt_(), g.ndim)
                g = buf.mul_(momentum).add_(g / rms.clamp_min(rms_floor))
            if norm == "linf":
                linf_step(x_adv, g, x, eps, alpha)
            else:
                g_norm = batch_view(g.flatten(1).norm(dim=1), g.ndim).add_(1e-10)
                x_adv.addcmul_(g, alpha / g_norm, value=-1.0)
                delta = project_l2(x_adv - x, eps)
                torch.add(x, delta, out=x_adv).clamp_(0.0, 1.0)
    return x_adv, steps


def _attack_chunk(
    fwd: LossForward,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_n: torch.Tensor,
    alpha_n: torch.Tensor,
    *,
    eps_is_tensor: bool,
    alpha_is_tensor: bool,
    y_true: torch.Tensor | None,
    delta0: torch.Tensor | None,
    steps: int,
    norm: str,
    targeted: bool,
    random_start: str | None,
    momentum: float | None,
    rms_floor: float,
    early_stop: int | None,
    generator: torch.Generator | None,
) -> AttackResult:
    """One attack on one chunk of the batch (``eps_n``, ``alpha_n``: ``(n,)``)."""
    nd = x.ndim
    tensor_checks = [("eps", eps_n, 1.0 if norm == "linf" else None)] if eps_is_tensor else []
    if alpha_is_tensor:
        tensor_checks.append(("alpha", alpha_n, None))
    labels = [("y", y)] + ([("y_true", y_true)] if y_true is not None else [])

    def first_check(num_classes: int) -> None:
        sync_checks(x, labels=labels, tensors=tensor_checks, num_classes=num_classes)
        if targeted and y_true is not None:
            check_targets_differ(y, y_true)

    fwd.start(first_check)
    eps_b, alpha_b = batch_view(eps_n, nd), batch_view(alpha_n, nd)
    if delta0 is not None:
        d = delta0.detach().to(x)
        d = d.clamp(-eps_b, eps_b) if norm == "linf" else project_l2(d, eps_b)
        x_adv = (x + d).clamp_(0.0, 1.0)
    else:
        x_adv = random_start_point(x, eps_b, norm, random_start, generator)
    x_adv, done = _loop(
        fwd, x, y, x_adv, eps_b, alpha_b, steps=steps, norm=norm, momentum=momentum,
        rms_floor=rms_floor, targeted=targeted, early_stop=early_stop,
    )  # fmt: skip
    return evaluate(fwd, x, x_adv, y, targeted, eps_n, done)


def gradient_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    alpha: PerSample | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float | None = None,
    random_start: str | bool | None = None,
    delta0: torch.Tensor | None = None,
    momentum: float | None = None,
    rms_floor: float | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    alpha_factor: float | None = None,
) -> AttackResult:
    """The shared core of :func:`fgsm`, :func:`bim`, :func:`pgd`, :func:`mim`, :func:`cw_linf`.

    Args:
        model: classifier taking images in [0, 1] and returning logits ``(N, K)`` (see
            ``output_fn``), or a :class:`~hfc_edu.features.FeatureExtractor`.
        x: clean images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        y: ``(N,)`` true classes (untargeted) or target classes (``targeted=True``).
        eps: budget in pixel units: a float or an ``(N,)`` tensor (one per image). L∞ budgets
            are at most 1 (write the papers' units as ``k / 256``).
        alpha: step size: a float, an ``(N,)`` tensor or None (``alpha_factor · ε``; the
            attacks' default 2ε/steps).
        steps: iterations T.
        norm: ``"linf"`` (sign steps) or ``"l2"`` (normalised gradient steps).
        targeted: minimise the loss towards ``y`` as targets instead of away from ``y``.
        loss: ``"ce"``, ``"cw"`` (margin with confidence ``kappa``) or a
            :class:`~hfc_edu.attacks.losses.Loss`, e.g. ``CrossEntropy(True) + hfc_term``.
            A loss with ``needs_features`` gets the features of the same forward pass.
        kappa: the ``"cw"`` loss's confidence κ (None: 0); refused with any other loss.
        random_start: ``"symmetric"``, ``"official"`` (L∞, ``x + U[0, 1)·ε``) or None.
        delta0: an explicit start perturbation shaped like ``x`` (projected into the ball),
            instead of ``random_start``.
        momentum: MIM's decay μ (None: no momentum); ``rms_floor``: the floor on the
            gradient's RMS before normalising (None: :data:`MIM_RMS_FLOOR`, the papers' 1e-6).
        y_true: ``(N,)`` true classes of a targeted attack: checked to differ from ``y``.
        early_stop: every ``early_stop`` steps stop if all samples succeed (one sync per check).
        amp: autocast the model call: None (off), ``"bf16"`` (CPU/GPU) or ``"fp16"`` (GPU).
        output_fn: maps the model's output (tuple, dict, ...) to logits.
        generator: ``torch.Generator`` for a reproducible random start.
        batch_size: images per pass (memory, not results): the batch is attacked in chunks of
            this size, in order; None attacks it in one pass. A deterministic L∞ attack gives
            the same images either way (L2 steps and logits can differ in the last bit: the
            model may round a batch of another size differently); a random start draws from
            ``generator`` chunk by chunk, in order (reproducible for a given ``batch_size``).
        alpha_factor: the default step as a fraction of ε (None: 2/steps).

    Returns:
        One :class:`~hfc_edu.attacks.result.AttackResult` for the whole batch.
    """
    check_images(x)
    x = x.detach()
    y = check_labels(y, x)
    if y_true is not None:
        y_true = check_labels(y_true, x, "y_true")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}.")
    check_steps(steps)
    if early_stop is not None and (not isinstance(early_stop, int) or early_stop < 1):
        raise ValueError(
            f"early_stop must be None or an int >= 1 (check every k steps), got {early_stop!r}."
        )
    if momentum is not None:
        check_scalar(momentum, "momentum")
        if norm != "linf":
            raise ValueError("momentum (MIM) is implemented for norm='linf' only.")
    if rms_floor is not None:
        if momentum is None:
            raise ValueError("rms_floor is MIM's normalisation floor: it needs momentum.")
        rms_floor = check_scalar(rms_floor, "rms_floor")
    if delta0 is not None:
        if not isinstance(delta0, torch.Tensor):
            raise TypeError("delta0 must be a tensor shaped like x.")
        if delta0.shape != x.shape:
            raise ValueError(
                f"delta0 must have the shape of x {tuple(x.shape)}, got {tuple(delta0.shape)}."
            )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("generator must be a torch.Generator (or None for the global RNG).")
    check_batch_size(batch_size)
    start = _parse_start(random_start, norm)
    loss_obj = classification_loss(loss, targeted, kappa)
    n = x.shape[0]
    eps_n = per_sample(eps, n, x, "eps", norm=norm)
    factor = 2.0 / steps if alpha_factor is None else alpha_factor
    alpha_n = eps_n * factor if alpha is None else per_sample(alpha, n, x, "alpha")
    fwd = LossForward(model, loss_obj, output_fn, amp_dtype(amp, x.device), x.device)
    bs = n if batch_size is None else batch_size
    parts = []
    with frozen_eval(fwd.module):
        for s in range(0, n, bs):
            c = slice(s, s + bs)
            parts.append(
                _attack_chunk(
                    fwd,
                    x[c],
                    y[c],
                    eps_n[c],
                    alpha_n[c],
                    eps_is_tensor=isinstance(eps, torch.Tensor),
                    alpha_is_tensor=isinstance(alpha, torch.Tensor),
                    y_true=None if y_true is None else y_true[c],
                    delta0=None if delta0 is None else delta0[c],
                    steps=steps,
                    norm=norm,
                    targeted=targeted,
                    random_start=start,
                    momentum=momentum,
                    rms_floor=MIM_RMS_FLOOR if rms_floor is None else rms_floor,
                    early_stop=early_stop,
                    generator=generator,
                )  # fmt: skip
            )
    return concat_results(parts)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    alpha: PerSample | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float | None = None,
    random_start: str | bool | None = "symmetric",
    delta0: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """Projected gradient descent (Madry et al. ICLR 2018) in the L∞ or L2 ball.

    ``alpha=None`` gives α = 2ε/steps (the papers' code). ``random_start``: ``"symmetric"``
    (default), ``"official"`` (the papers' ``x + U[0, 1)·ε``, L∞) or None; ``delta0`` sets an
    explicit start perturbation instead (projected into the ball). The other arguments are
    :func:`gradient_attack`'s.
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=targeted, loss=loss,
        kappa=kappa, random_start=random_start, delta0=delta0, y_true=y_true,
        early_stop=early_stop, amp=amp, output_fn=output_fn, generator=generator,
        batch_size=batch_size,
    )  # fmt: skip


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    alpha: PerSample | None = None,
    steps: int = 10,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """Basic iterative method / I-FGSM (Kurakin et al. 2017): L∞ PGD without random start.

    ``alpha=None`` gives α = 2ε/steps (the papers' code). The other arguments are
    :func:`gradient_attack`'s.
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss=loss, kappa=kappa, y_true=y_true, early_stop=early_stop, amp=amp,
        output_fn=output_fn, batch_size=batch_size,
    )  # fmt: skip


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float | None = None,
    y_true: torch.Tensor | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """Fast gradient sign method (Goodfellow et al. ICLR 2015): one step ``x − ε·sign(∇loss)``.

    The arguments are :func:`gradient_attack`'s.
    """
    return gradient_attack(
        model, x, y, eps=eps, steps=1, norm="linf", targeted=targeted, loss=loss, kappa=kappa,
        y_true=y_true, amp=amp, output_fn=output_fn, batch_size=batch_size, alpha_factor=1.0,
    )  # fmt: skip


def mim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    alpha: PerSample | None = None,
    steps: int = 10,
    decay: float = 0.5,
    rms_floor: float = MIM_RMS_FLOOR,
    targeted: bool = False,
    loss: str | Loss = "ce",
    kappa: float | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """Momentum iterative FGSM (Dong et al. CVPR 2018), L∞, no random start.

    ``g ← decay·g + ∇ / max(RMS(∇), rms_floor)`` per sample, then a sign step. ``decay=0.5``,
    the RMS normalisation and ``rms_floor=1e-6`` are the papers' code (Dong et al. use
    ``decay=1.0`` and the mean absolute value). The floor matters on confident images: their
    gradient's RMS can fall below 1e-6, and it is then *not* scaled up to unit RMS, so the
    momentum of earlier steps decides the sign (with a floor of 1e-12 such images end up to
    2ε per pixel elsewhere). The other arguments are :func:`gradient_attack`'s.
    """
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss=loss, kappa=kappa, momentum=decay, rms_floor=rms_floor, y_true=y_true,
        early_stop=early_stop, amp=amp, output_fn=output_fn, batch_size=batch_size,
    )  # fmt: skip


def cw_linf(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: PerSample,
    alpha: PerSample | None = None,
    steps: int = 10,
    kappa: float | None = None,
    targeted: bool = False,
    loss: str | Loss = "cw",
    random_start: str | bool | None = None,
    delta0: torch.Tensor | None = None,
    y_true: torch.Tensor | None = None,
    early_stop: int | None = None,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """ "CW-L∞" as the papers use it: L∞ iterative sign steps on the CW margin loss.

    Minimises ``max(max_{j≠t} z_j − z_t, −κ)`` (targeted) or ``max(z_y − max_{j≠y} z_j, −κ)``
    (Carlini & Wagner 2017's margin). ``kappa=None`` is κ = 100, the TMI code (MICCAI: 10);
    with a large κ the margin keeps growing after the label flips (high-confidence adversarial
    examples). ``loss`` replaces the margin (e.g. ``CWMargin(True, 100) + hfc_term``, as
    :func:`~hfc_edu.hfc.hfc_attack` builds it); κ then lives in that loss. The other arguments
    are :func:`gradient_attack`'s.
    """
    if kappa is None and isinstance(loss, str) and loss == "cw":
        kappa = CW_LINF_KAPPA
    return gradient_attack(
        model, x, y, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted,
        loss=loss, kappa=kappa, random_start=random_start, delta0=delta0, y_true=y_true,
        early_stop=early_stop, amp=amp, output_fn=output_fn, generator=generator,
        batch_size=batch_size,
    )  # fmt: skip


__all__ = [
    "CW_LINF_KAPPA",
    "MIM_RMS_FLOOR",
    "bim",
    "cw_linf",
    "fgsm",
    "gradient_attack",
    "linf_step",
    "mim",
    "pgd",
    "project_l2",
    "random_start_point",
]
