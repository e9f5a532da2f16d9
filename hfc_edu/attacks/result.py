"""``AttackResult``, the one result type of every attack, and the one attack-success rule."""

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
        steps: gradient steps actually run (fewer than asked after an early stop); for an
            attack run in chunks (``batch_size``), the most any chunk ran.
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


def is_success(pred: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor:
    """``(N,)`` bool, the attack-success rule: the prediction equals the target ``y`` if
    ``targeted``, else differs from the true class ``y``.

    ``pred`` is either logits ``(N, K)`` (their argmax is the prediction) or predicted
    classes ``(N,)``; ``y`` is moved to ``pred``'s device.
    """
    if pred.ndim == 2:
        pred = pred.argmax(1)
    elif pred.ndim != 1:
        raise ValueError(
            f"pred must be logits (N, K) or predicted classes (N,), got {tuple(pred.shape)}."
        )
    y = y.to(pred.device)
    return pred == y if targeted else pred != y


def concat_results(parts: list[AttackResult]) -> AttackResult:
    """One :class:`AttackResult` from the results of consecutive chunks of a batch."""
    if len(parts) == 1:
        return parts[0]
    eps = None if parts[0].eps is None else torch.cat([p.eps for p in parts])
    return AttackResult(
        x_adv=torch.cat([p.x_adv for p in parts]),
        success=torch.cat([p.success for p in parts]),
        linf=torch.cat([p.linf for p in parts]),
        l2=torch.cat([p.l2 for p in parts]),
        loss=torch.cat([p.loss for p in parts]),
        logits=torch.cat([p.logits for p in parts]),
        eps=eps,
        steps=max(p.steps for p in parts),
    )


def split_result(res: AttackResult, k: int) -> list[AttackResult]:
    """Split a result on ``k`` stacked copies of a batch into ``k`` results (one per copy)."""
    n = len(res) // k
    out = []
    for i in range(k):
        s = slice(i * n, (i + 1) * n)
        out.append(
            AttackResult(
                x_adv=res.x_adv[s],
                success=res.success[s],
                linf=res.linf[s],
                l2=res.l2[s],
                loss=res.loss[s],
                logits=res.logits[s],
                eps=None if res.eps is None else res.eps[s],
                steps=res.steps,
            )
        )
    return out


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
    """One forward pass at ``x_adv`` -> :class:`AttackResult` (the attack's last forward)."""
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


__all__ = [
    "AttackResult",
    "concat_results",
    "evaluate",
    "is_success",
    "perturbation_norms",
    "split_result",
]
