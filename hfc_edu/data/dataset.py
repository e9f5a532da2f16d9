"""The in-memory dataset the book works with: tensors in [0, 1], channel first, three splits.

Your own data becomes an :class:`ImageDataset` with :meth:`ImageDataset.from_arrays` (arrays in
memory) or :func:`hfc_edu.data.load_npz` (a file); both check shapes, ranges and labels and say
what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

SPLITS = ("train", "val", "test")

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` or ``(N, C, D, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64,
    in three splits (train, val, test) of equal image shape.

    ``source`` says where the arrays came from (file, official or not); ``notes`` records task
    rules (e.g. how DR grades were binarised); ``task`` is the registered task name it was
    loaded as (:func:`hfc_edu.data.load_task`), empty otherwise. Tensors may be shared between
    datasets (:meth:`replace`): treat them as read-only.
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
    task: str = ""

    def __post_init__(self) -> None:
        shapes = {}
        for s in SPLITS:
            x, y = self.split(s)
            if x.ndim not in (4, 5):
                raise ValueError(
                    f"{self.name}/{s}: images must be (N, C, H, W) or (N, C, D, H, W), got {tuple(x.shape)}."
                )
            if y.ndim != 1 or len(x) != len(y):
                raise ValueError(
                    f"{self.name}/{s}: {len(x)} images but labels of shape {tuple(y.shape)}."
                )
            shapes[s] = tuple(x.shape[1:])
        if len(set(shapes.values())) != 1:
            raise ValueError(f"{self.name}: the splits' images differ in shape: {shapes}.")

    @classmethod
    def from_arrays(
        cls,
        name: str,
        class_names: Sequence[str],
        *,
        train: tuple[ArrayLike, ArrayLike],
        val: tuple[ArrayLike, ArrayLike],
        test: tuple[ArrayLike, ArrayLike],
        spatial_dims: int = 2,
        source: str = "",
        notes: Sequence[str] = (),
    ) -> ImageDataset:
        """A dataset from your own arrays: ``train``, ``val`` and ``test`` are ``(images, labels)``.

        Images (see :func:`to_tensor_images`): uint8 arrays or tensors (values 0-255) ``(N, H, W)``
        or channel-last ``(N, H, W, C)``, or with ``spatial_dims=3`` volumes ``(N, D, H, W)``; or
        float arrays or tensors in [0, 1], channel first: ``(N, C, H, W)`` / ``(N, C, D, H, W)``.
        Labels: integer class indices ``(N,)`` or ``(N, 1)`` in ``[0, len(class_names))``.
        ``val`` selects the model's epoch in training; ``test`` is held out.

        Example::

            ds = ImageDataset.from_arrays("my_xray", ("normal", "pneumonia"),
                                          train=(x_tr, y_tr), val=(x_va, y_va), test=(x_te, y_te))
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}.")
        if isinstance(class_names, str) or len(class_names) < 2:
            raise ValueError(
                f"class_names must name at least two classes, e.g. ('normal', 'disease'); got "
                f"{class_names!r}."
            )
        names = tuple(str(c) for c in class_names)
        parts: dict[str, torch.Tensor] = {}
        for s, pair in zip(SPLITS, (train, val, test), strict=True):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(f"{name}: {s} must be an (images, labels) pair, got {type(pair)}.")
            try:
                x = to_tensor_images(pair[0], spatial_dims)
                y = to_tensor_labels(pair[1])
            except (TypeError, ValueError) as err:
                raise type(err)(f"{name}/{s}: {err}") from None
            if len(x) == 0:
                raise ValueError(f"{name}/{s}: no images; every split needs at least one.")
            lo, hi = (int(v) for v in torch.aminmax(y)) if len(y) else (0, 0)
            if lo < 0 or hi >= len(names):
                raise ValueError(
                    f"{name}/{s}: labels must be class indices in [0, {len(names)}) for "
                    f"class_names {names}; got {lo}..{hi}."
                )
            parts[f"x_{s}"], parts[f"y_{s}"] = x, y
        return cls(name=name, class_names=names, source=source, notes=list(notes), **parts)

    def replace(self, **changes) -> ImageDataset:
        """A shallow copy with ``changes`` applied (tensors shared, ``notes`` copied), e.g. a
        binary view ``ds.replace(name="fundus_28", class_names=(...), y_train=..., ...)``."""
        changes.setdefault("notes", list(self.notes))
        return dataclasses.replace(self, **changes)

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

    def fingerprint(self) -> str:
        """A short hash (16 hex chars) of the splits' shapes, labels and a strided sample of
        about 100,000 pixels per split (part of the checkpoint cache key)."""
        h = hashlib.sha256()
        for s in SPLITS:
            x, y = self.split(s)
            h.update(str(tuple(x.shape)).encode())
            h.update(y.numpy().tobytes())
            flat = x.reshape(-1)
            h.update(flat[:: max(1, flat.numel() // 100_000)].numpy().tobytes())
        return h.hexdigest()[:16]

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


def to_tensor_images(images: ArrayLike, spatial_dims: int = 2) -> torch.Tensor:
    """Images as float32 ``(N, C, H, W)`` or ``(N, C, D, H, W)`` in [0, 1].

    Accepts a numpy array or a tensor:

    * uint8 (values 0-255, divided by 255): ``(N, H, W)`` or channel-last ``(N, H, W, C)`` with
      ``C <= 4`` for 2D images; ``(N, D, H, W)`` for volumes (``spatial_dims=3``);
    * float, already in [0, 1] and channel first: ``(N, C, H, W)``, or ``(N, C, D, H, W)`` with
      ``spatial_dims=3`` (a float32 contiguous tensor is returned as is, not copied).

    Anything else (other dtypes, values outside [0, 1], NaN, channel-last floats) is a
    ``ValueError``/``TypeError`` that says what to do.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims}.")
    if isinstance(images, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, torch.Tensor):
        t = images.detach().cpu()
    else:
        raise TypeError(f"images must be a numpy array or a torch tensor, got {type(images)}.")
    shape = tuple(t.shape)
    if t.dtype == torch.uint8:
        if spatial_dims == 2 and t.ndim == 3:
            t = t.unsqueeze(1)
        elif spatial_dims == 2 and t.ndim == 4 and shape[-1] <= 4:
            t = t.permute(0, 3, 1, 2)
        elif spatial_dims == 3 and t.ndim == 4:
            t = t.unsqueeze(1)
        else:
            want = "(N, H, W) or (N, H, W, C) with C <= 4" if spatial_dims == 2 else "(N, D, H, W)"
            hint = (
                " For volumes (N, D, H, W) pass spatial_dims=3."
                if spatial_dims == 2 and t.ndim == 4
                else ""
            )
            raise ValueError(
                f"Cannot read uint8 array of shape {shape} as {spatial_dims}D images: expected "
                f"{want}.{hint}"
            )
        return t.contiguous().float().div_(255.0)
    if not t.is_floating_point():
        raise TypeError(
            f"images must be uint8 (0-255) or float in [0, 1], got {t.dtype}. Rescale other "
            "intensities to [0, 1] first (e.g. window CT values, then divide by the window width)."
        )
    want = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
    if t.ndim != spatial_dims + 2:
        hint = {
            spatial_dims + 1: " Add the channel dimension with x.unsqueeze(1).",
            5: " For volumes pass spatial_dims=3.",
        }.get(t.ndim, "")
        raise ValueError(
            f"Float images must be channel first {want} (uint8 images may also be "
            f"{'(N, H, W)' if spatial_dims == 2 else '(N, D, H, W)'}), got shape {shape}.{hint}"
        )
    if shape[1] > 4 and shape[-1] <= 4:
        raise ValueError(
            f"Float images of shape {shape} look channel-last; {want} is expected (move the "
            "channel axis with x.movedim(-1, 1))."
        )
    if t.numel():
        lo, hi = (float(v) for v in torch.aminmax(t))
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(
                f"Float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]. Divide "
                "8-bit data by 255 (or pass it as uint8); replace NaN or infinite values."
            )
    return t.to(torch.float32).contiguous()


def to_tensor_labels(labels: ArrayLike | Sequence[int]) -> torch.Tensor:
    """Integer labels ``(N,)`` or ``(N, 1)`` (array, tensor or list) -> int64 ``(N,)``."""
    a = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"Expected single-label (N,) or (N, 1) labels, got shape {a.shape}.")
    if len(a) and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"Labels must be integer class indices, got dtype {a.dtype}.")
    return torch.from_numpy(a.astype(np.int64))


def stratified_split(
    x: torch.Tensor, y: np.ndarray | torch.Tensor, val: float, test: float, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Split images ``x`` ``(N, C, ...)`` and labels ``y`` ``(N,)`` into stratified, seeded
    train/val/test parts (fractions ``val`` and ``test``), each in the original order.

    Returns ``x_train, y_train, x_val, ...`` for ``ImageDataset(name, class_names, **parts)``.
    """
    y = to_tensor_labels(y).numpy()
    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
    tr, va = train_test_split(rest, test_size=val / (1 - test), stratify=y[rest], random_state=seed)
    yt = torch.from_numpy(y)
    out = {}
    for name, ids in (("train", tr), ("val", va), ("test", te)):
        ids = torch.from_numpy(np.sort(ids))
        out[f"x_{name}"], out[f"y_{name}"] = x[ids], yt[ids]
    return out
