"""``AttackResult``: what an attack returns besides the adversarial images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hfc_edu.attacks._forward import LossForward


@dataclass
class AttackResult:
    """Outcome of one attack on a batch of N images.

    Attributes:
        x_adv: adversarial images, same shape as the input, ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        success: ``(N,)`` bool; targeted: predicted class == target, untargeted: != true class.
        linf: ``(N,)`` L∞ norm of ``x_adv - x``.
        l2: ``(N,)`` L2 norm of ``x_adv - x``.
        loss: ``(N,)`` the attack's loss at ``x_adv`` (the quantity it minimised).
        logits: ``(N, K)`` model logits at ``x_adv`` (fp32).
        eps: ``(N,)`` budget per sample (None for CW-L2, which has no budget).
        steps: gradient steps actually run (fewer than asked after an early stop).
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    loss: torch.Tensor
    logits: torch.Tensor
    eps: torch.Tensor | None
    steps: int

    @property
    def success_rate(self) -> float:
        """Fraction of successful samples (one host sync)."""
        return self.success.float().mean().item()

    def __len__(self) -> int:
        return self.x_adv.shape[0]


def is_success(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``(N,)`` bool: ``argmax == y`` if targeted (y = targets), else ``argmax != y``."""
    pred = logits.argmax(1)
    return pred == y if targeted else pred != y


def perturbation_norms(x_adv: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` L∞ and L2 norms of ``x_adv - x`` (computed in fp32 or wider)."""
    d = (x_adv - x).flatten(1)
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()
    return d.abs().amax(1), d.norm(dim=1)


@torch.no_grad()
def evaluate(
    fwd: LossForward,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    targeted: bool,
    eps: torch.Tensor | None,
    steps: int,
) -> AttackResult:
    """One forward pass at ``x_adv`` -> :class:`AttackResult`."""
    loss, logits = fwd(x_adv, y)
    linf, l2 = perturbation_norms(x_adv, x)
    return AttackResult(
        x_adv=x_adv,
        success=is_success(logits, y, targeted),
        linf=linf,
        l2=l2,
        loss=loss,
        logits=logits.float(),
        eps=eps,
        steps=steps,
    )
