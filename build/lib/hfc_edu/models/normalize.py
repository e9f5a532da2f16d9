"""Input normalisation as a layer, so attacks work in [0, 1] pixel space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for ``(N, C, H, W)`` and ``(N, C, D, H, W)`` alike."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.shape != std_t.shape or mean_t.ndim != 1:
            raise ValueError(f"mean and std must be 1-D of equal length, got {mean} and {std}.")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std}.")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 3 or x.shape[1] != self.mean.numel():
            raise ValueError(
                f"Normalize expects (N, {self.mean.numel()}, ...) inputs, got shape {tuple(x.shape)}."
            )
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.view(shape).to(x.dtype)) / self.std.view(shape).to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
