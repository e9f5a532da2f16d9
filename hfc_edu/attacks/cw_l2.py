"""Carlini–Wagner L2 (Carlini & Wagner, S&P 2017): the original optimisation attack.

Per sample, minimise over ``w`` (tanh space, so ``x' = (tanh(w) + 1)/2`` is always in [0, 1])::

    ‖x' − x‖₂² + c · f(x'),     f = CW margin clamped at −κ

with Adam, and a binary search over ``c`` per sample: after each round, ``c`` shrinks where the
attack succeeded (to find a smaller perturbation) and grows (×10 until an upper bound is known)
where it failed. The result keeps, per sample, the smallest successful ``x'`` seen.

Pixels at exactly 0 or 1 are mapped to ``atanh(±(1 − 1e-6)) ≈ ±7.25`` (finite, as Carlini &
Wagner's code; the start then differs from ``x`` by at most 5e-7) instead of ±inf. They are
*not* free to move, though: tanh is flat there (slope 2e-6), and Adam moves ``w`` by about
``lr`` per step, so within one round of ``steps`` steps a saturated pixel moves by about
``(1 − tanh(7.25 − lr·steps))/2``: a few 1e-6 at the defaults (``lr=0.01``, 100 steps: 3.7e-6;
measured up to 5.3e-6, Adam's steps slightly exceed ``lr``). CW-L2 therefore leaves saturated
backgrounds (black borders of X-rays and fundus images) untouched; a larger ``lr`` lets them
move (``lr=0.1``: up to 0.16 in the test). The margin's "best other
class" is the masked maximum of :meth:`~hfc_edu.attacks.losses.CWMargin.margin`, correct for
negative logits.
"""

from __future__ import annotations

import torch
from torch import nn

from hfc_edu.attacks._forward import Amp, LossForward, OutputFn, amp_dtype
from hfc_edu.attacks.losses import CWMargin, Loss, classification_loss
from hfc_edu.attacks.result import AttackResult, concat_results, evaluate, is_success
from hfc_edu.checks import (
    batch_view,
    check_batch_size,
    check_images,
    check_labels,
    check_scalar,
    check_steps,
    check_targets_differ,
    sync_checks,
)
from hfc_edu.modes import frozen_eval

_TANH_SHRINK = 1.0 - 1e-6


def to_tanh_space(x: torch.Tensor) -> torch.Tensor:
    """``w`` with ``(tanh(w) + 1)/2 ≈ x``; finite for pixels at exactly 0 or 1."""
    return torch.atanh((2.0 * x - 1.0) * _TANH_SHRINK)


def from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] from tanh-space variables."""
    return (torch.tanh(w) + 1.0) * 0.5


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    kappa: float | None = None,
    c: float = 0.1,
    steps: int = 100,
    search_steps: int = 5,
    lr: float = 0.01,
    loss: str | Loss = "cw",
    y_true: torch.Tensor | None = None,
    abort_early: bool = True,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    batch_size: int | None = None,
) -> AttackResult:
    """Carlini–Wagner L2 attack with Adam in tanh space and a binary search over ``c``.

    Args:
        model: classifier on images in [0, 1] (or a FeatureExtractor, see ``loss``).
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` clean images in [0, 1].
        y: ``(N,)`` true classes, or targets if ``targeted``.
        kappa: confidence κ of the ``"cw"`` loss (None: 0): success needs a margin >= κ past
            the boundary. With a Loss object as ``loss``, κ lives in that loss.
        c: initial trade-off constant (the papers' code: 0.1; Carlini & Wagner: 1e-3).
        steps: Adam steps per binary-search round.
        search_steps: binary-search rounds over ``c``.
        lr: Adam learning rate (it also bounds how far saturated pixels move, see the module
            docstring).
        loss: the ``f`` term: ``"cw"`` (default) or a Loss (e.g. CW margin + an HFC term).
        y_true: true classes, checked to differ from the targets when ``targeted``.
        abort_early: end a round when the total loss stops decreasing (checked every
            ``steps // 10`` steps, one host sync per check).
        amp, output_fn, batch_size: as in :func:`~hfc_edu.attacks.gradient.gradient_attack`.
            Chunks are attacked one after the other; with ``abort_early`` a round ends when
            the chunk's total loss stops decreasing (as Carlini & Wagner's code, for its
            batch), so the result can depend on ``batch_size``; ``abort_early=False`` makes it
            independent.

    Returns:
        :class:`AttackResult` (``eps`` is None): failed samples keep ``x_adv = x``.
    """
    check_images(x)
    x = x.detach()
    y = check_labels(y, x)
    if y_true is not None:
        y_true = check_labels(y_true, x, "y_true")
    loss_obj = classification_loss(loss, targeted, kappa)
    kappa = 0.0 if kappa is None else check_scalar(kappa, "kappa")
    c = check_scalar(c, "c", positive=True)
    lr = check_scalar(lr, "lr", positive=True)
    check_steps(steps)
    check_steps(search_steps, "search_steps")
    check_batch_size(batch_size)
    fwd = LossForward(model, loss_obj, output_fn, amp_dtype(amp, x.device), x.device)
    n = x.shape[0]
    bs = n if batch_size is None else batch_size
    kw = dict(
        targeted=targeted, kappa=kappa, c=c, steps=steps, search_steps=search_steps, lr=lr,
        abort_early=abort_early,
    )  # fmt: skip
    with frozen_eval(fwd.module):
        parts = [
            _cw_l2_chunk(
                fwd,
                x[s : s + bs],
                y[s : s + bs],
                None if y_true is None else y_true[s : s + bs],
                **kw,
            )  # fmt: skip
            for s in range(0, n, bs)
        ]
    return concat_results(parts)


def _cw_l2_chunk(
    fwd: LossForward,
    x: torch.Tensor,
    y: torch.Tensor,
    y_true: torch.Tensor | None,
    *,
    targeted: bool,
    kappa: float,
    c: float,
    steps: int,
    search_steps: int,
    lr: float,
    abort_early: bool,
) -> AttackResult:
    """The attack on one chunk of the batch."""
    labels = [("y", y)] + ([("y_true", y_true)] if y_true is not None else [])

    def first_check(num_classes: int) -> None:
        sync_checks(x, labels=labels, num_classes=num_classes)
        if targeted and y_true is not None:
            check_targets_differ(y, y_true)

    fwd.start(first_check)
    margin = CWMargin(targeted).margin  # < 0 past the boundary, <= -κ with confidence κ
    n, nd = x.shape[0], x.ndim
    w0 = to_tanh_space(x)
    const = torch.full((n,), c, dtype=x.dtype, device=x.device)
    lower = torch.zeros_like(const)
    upper = torch.full_like(const, 1e10)
    best_l2 = torch.full_like(const, float("inf"))
    best_adv = x.clone()
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    check_every = max(steps // 10, 1)
    total_steps = 0
    for _ in range(search_steps):
        w = w0.clone()
        m, v = torch.zeros_like(w), torch.zeros_like(w)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        prev = float("inf")
        for i in range(steps):
            w.requires_grad_(True)
            x_adv = from_tanh_space(w)
            l2sq = (x_adv - x).flatten(1).square().sum(1)
            f, logits = fwd(x_adv, y)
            total = l2sq + const * f
            (g,) = torch.autograd.grad(total.sum(), w)
            w.requires_grad_(False)
            total_steps += 1
            with torch.no_grad():
                logits = logits.detach()
                ok = is_success(logits, y, targeted) & (margin(logits, y) <= -kappa)
                found |= ok
                better = ok & (l2sq < best_l2)
                best_l2 = torch.where(better, l2sq.detach(), best_l2)
                best_adv = torch.where(batch_view(better, nd), x_adv.detach(), best_adv)
                # Adam on w (manual: no .grad, no optimiser state on the model)
                t = i + 1
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step = lr / (1 - beta1**t)
                denom = (v / (1 - beta2**t)).sqrt_().add_(adam_eps)
                w.addcdiv_(m, denom, value=-step)
            if abort_early and i > 0 and i % check_every == 0:
                cur = total.detach().sum().item()
                if cur > 0.9999 * prev:
                    break
                prev = cur
        # Binary search on c, per sample (Carlini & Wagner).
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        known = upper < 1e9
        const = torch.where(known, (lower + upper) / 2, const * 10)
    return evaluate(fwd, x, best_adv, y, targeted, None, total_steps)


__all__ = ["cw_l2", "from_tanh_space", "to_tanh_space"]
