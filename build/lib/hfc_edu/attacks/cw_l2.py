"""Carlini–Wagner L2 (Carlini & Wagner, S&P 2017): the original optimisation attack.

Per sample, minimise over ``w`` (tanh space, so ``x' = (tanh(w) + 1)/2`` is always in [0, 1])::

    ‖x' − x‖₂² + c · f(x'),     f = CW margin clamped at −κ

with Adam, and a binary search over ``c`` per sample: after each round, ``c`` shrinks where the
attack succeeded (to find a smaller perturbation) and grows (×10 until an upper bound is known)
where it failed. The result keeps, per sample, the smallest successful ``x'`` seen.

Two bugs of common implementations are avoided: pixels exactly at 0 or 1 are mapped to
``atanh(±(1 − 1e-6))`` (finite; the start then differs from ``x`` by at most 5e-7) instead of
±inf, so saturated pixels (medical backgrounds) can still move; the margin's "best other
class" is found with a mask, which is correct for negative logits.
"""

from __future__ import annotations

import torch
from torch import nn

from hfc_edu.attacks._forward import Amp, LossForward, OutputFn, amp_dtype
from hfc_edu.attacks.losses import Loss, classification_loss
from hfc_edu.attacks.result import AttackResult, evaluate, is_success
from hfc_edu.checks import (
    batch_view,
    check_images,
    check_labels,
    check_scalar,
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


def margin(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``(N,)`` how far the attack is past the decision boundary (masked "other" max).

    Targeted: ``z_t − max_{j≠t} z_j``; untargeted: ``max_{j≠y} z_j − z_y``.
    """
    own = logits.gather(1, y[:, None]).squeeze(1)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, y[:, None], True)
    other = logits.masked_fill(mask, float("-inf")).amax(1)
    return own - other if targeted else other - own


def cw_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    targeted: bool = False,
    kappa: float = 0.0,
    c: float = 0.1,
    steps: int = 100,
    search_steps: int = 5,
    lr: float = 0.01,
    loss: str | Loss = "cw",
    y_true: torch.Tensor | None = None,
    abort_early: bool = True,
    amp: Amp = None,
    output_fn: OutputFn | None = None,
    return_result: bool = True,
) -> AttackResult | torch.Tensor:
    """Carlini–Wagner L2 attack with Adam in tanh space and a binary search over ``c``.

    Args:
        model: classifier on images in [0, 1] (or a FeatureExtractor, see ``loss``).
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` clean images in [0, 1].
        y: ``(N,)`` true classes, or targets if ``targeted``.
        kappa: confidence: success needs a margin >= κ past the boundary.
        c: initial trade-off constant (the papers' code: 0.1; Carlini & Wagner: 1e-3).
        steps: Adam steps per binary-search round.
        search_steps: binary-search rounds over ``c``.
        lr: Adam learning rate.
        loss: the ``f`` term: ``"cw"`` (default) or a Loss (e.g. CW margin + an HFC term).
        y_true: true classes, checked to differ from the targets when ``targeted``.
        abort_early: end a round when the total loss stops decreasing (checked every
            ``steps // 10`` steps, one host sync per check).
        amp, output_fn: as in :func:`~hfc_edu.attacks.gradient.pgd`.

    Returns:
        :class:`AttackResult` (``eps`` is None): failed samples keep ``x_adv = x``.
    """
    check_images(x)
    x = x.detach()
    y = check_labels(y, x)
    if y_true is not None:
        y_true = check_labels(y_true, x, "y_true")
    kappa = check_scalar(kappa, "kappa")
    c = check_scalar(c, "c", positive=True)
    lr = check_scalar(lr, "lr", positive=True)
    for name, v in (("steps", steps), ("search_steps", search_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}.")
    loss_obj = classification_loss(loss, targeted, kappa)
    fwd = LossForward(model, loss_obj, output_fn, amp_dtype(amp, x.device), x.device)
    labels = [("y", y)] + ([("y_true", y_true)] if y_true is not None else [])

    def first_check(num_classes: int) -> None:
        sync_checks(x, labels=labels, num_classes=num_classes)
        if targeted and y_true is not None:
            check_targets_differ(y, y_true)

    fwd.on_first_logits = first_check

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
    with frozen_eval(fwd.module):
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
                    ok = is_success(logits, y, targeted) & (margin(logits, y, targeted) >= kappa)
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
        if not return_result:
            return best_adv
        return evaluate(fwd, x, best_adv, y, targeted, None, total_steps)


__all__ = ["cw_l2", "from_tanh_space", "margin", "to_tanh_space"]
