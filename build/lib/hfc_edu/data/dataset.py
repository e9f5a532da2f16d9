"""The in-memory dataset the book works with: tensors in [0, 1], channel first, three splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

SPLITS = ("train", "val", "test")


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` or ``(N, C, D, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64.

    ``source`` says where the arrays came from (file, official or not); ``notes`` records task
    rules (e.g. how DR grades were binarised).
    """

    name: str
    class_names: tuple[str, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for s in SPLITS:
            x, y = self.split(s)
            if x.ndim not in (4, 5):
                raise ValueError(
                    f"{self.name}/{s}: images must be (N, C, H, W) or (N, C, D, H, W), got {tuple(x.shape)}."
                )
            if len(x) != len(y):
                raise ValueError(f"{self.name}/{s}: {len(x)} images but {len(y)} labels.")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of split ``name`` (train, val or test)."""
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; use one of {SPLITS}.")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def spatial_dims(self) -> int:
        return self.x_train.ndim - 2

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images (for the model's Normalize layer)."""
        dims = [0] + list(range(2, self.x_train.ndim))
        mean = self.x_train.mean(dim=dims)
        std = self.x_train.std(dim=dims).clamp_min(1e-3)
        return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]

    def summary(self) -> pd.DataFrame:
        """Counts per split and class, plus the image shape."""
        rows = []
        for s in SPLITS:
            x, y = self.split(s)
            counts = np.bincount(y.numpy(), minlength=self.num_classes)
            row = {"split": s, "n": len(y)}
            row.update({c: int(n) for c, n in zip(self.class_names, counts, strict=True)})
            row["shape"] = "×".join(str(d) for d in x.shape[1:])
            rows.append(row)
        return pd.DataFrame(rows).set_index("split")

    def __repr__(self) -> str:
        shape = "×".join(str(d) for d in self.x_train.shape[1:])
        n = {s: len(self.split(s)[1]) for s in SPLITS}
        return f"ImageDataset({self.name!r}, {shape}, classes={list(self.class_names)}, n={n})"


def to_tensor_images(arr: np.ndarray, spatial_dims: int) -> torch.Tensor:
    """uint8 arrays ``(N, H, W)``, ``(N, H, W, 3)`` or ``(N, D, H, W)`` -> float ``(N, C, ...)`` in [0, 1]."""
    if arr.dtype != np.uint8:
        raise ValueError(f"Expected uint8 images, got {arr.dtype}.")
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if spatial_dims == 2 and t.ndim == 4:  # (N, H, W, C)
        t = t.permute(0, 3, 1, 2)
    elif t.ndim == spatial_dims + 1:  # single channel
        t = t.unsqueeze(1)
    else:
        raise ValueError(f"Cannot read array of shape {arr.shape} as {spatial_dims}D images.")
    return t.contiguous().float().div_(255.0)


def to_tensor_labels(arr: np.ndarray) -> torch.Tensor:
    """Labels ``(N,)`` or ``(N, 1)`` -> int64 ``(N,)``."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"Expected single-label (N,) or (N, 1) labels, got {a.shape}.")
    return torch.from_numpy(a.astype(np.int64))
