"""Target classes for targeted attacks, vectorised (no Python loop over the batch).

The papers' attacks are targeted "to the other class" (binary tasks), where targeted and
untargeted coincide. For K > 2 classes pick random or least-likely targets.
"""

from __future__ import annotations

import torch


def _check(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    if not isinstance(y, torch.Tensor) or y.ndim != 1:
        raise ValueError("y must be a 1-D tensor of class indices, shape (N,).")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"y must hold integer class indices (torch.long), got dtype {y.dtype}.")
    y = y.long()
    if y.numel() and ((y < 0) | (y >= num_classes)).any().item():
        raise ValueError(f"y holds class indices outside [0, {num_classes}).")
    return y


def other_class(y: torch.Tensor, num_classes: int = 2) -> torch.Tensor:
    """``(N,)`` targets ``(y + 1) mod K``: the other class for binary tasks (K = 2)."""
    y = _check(y, num_classes)
    return (y + 1) % num_classes


def random_target(
    y: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(N,)`` targets drawn uniformly from the K - 1 classes different from ``y``."""
    y = _check(y, num_classes)
    gen_device = generator.device if generator is not None else y.device
    r = torch.randint(0, num_classes - 1, y.shape, generator=generator, device=gen_device)
    r = r.to(y.device)
    return r + (r >= y).long()  # skip the true class


def least_likely(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``(N,)`` the class with the lowest logit, never the true class ``y`` (if given).

    Args:
        logits: ``(N, K)`` clean logits, e.g. from ``model(x)`` under ``torch.no_grad()``.
        y: ``(N,)`` true classes (optional).
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError("logits must be a (N, K) tensor with K >= 2.")
    logits = logits.detach().float()
    if y is not None:
        y = _check(y, logits.shape[1])
        if y.shape[0] != logits.shape[0]:
            raise ValueError(f"y has {y.shape[0]} labels for {logits.shape[0]} logits.")
        logits = logits.scatter(1, y.to(logits.device)[:, None], float("inf"))
    return logits.argmin(1)
