"""Datasets from ``.npz`` files in MedMNIST layout, anywhere on disk.

The layout: ``train_images``, ``train_labels``, ``val_images``, ``val_labels``, ``test_images``,
``test_labels`` (images uint8 ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, D, H, W)``, or float in
[0, 1] channel first; labels ``(N,)`` or ``(N, 1)``), optionally ``class_names``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from hfc_edu.data.dataset import SPLITS, ImageDataset

LAYOUT_KEYS = tuple(f"{s}_{part}" for s in SPLITS for part in ("images", "labels"))


def load_npz(
    path: str | Path,
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    spatial_dims: int = 2,
) -> ImageDataset:
    """An :class:`ImageDataset` from a MedMNIST-layout ``.npz`` file at ``path``.

    Args:
        path: the file (any directory; nothing is looked up in the data root).
        name: the dataset's name (default: the file name without ``.npz``).
        class_names: one name per class (default: the file's ``class_names`` array if it has
            one, else ``"0", "1", ...`` up to the largest label).
        spatial_dims: 2 for images, 3 for volumes ``(N, D, H, W)``.

    Example::

        ds = load_npz("~/data/my_xray.npz", class_names=("normal", "pneumonia"))
        tm = hfc_edu.models.get_classifier(ds)
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file (expected a MedMNIST-layout .npz).")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    missing = [k for k in LAYOUT_KEYS if k not in arrays]
    if missing:
        raise ValueError(
            f"{path} is not in MedMNIST layout: missing {missing} (it holds {sorted(arrays)}; "
            f"expected {list(LAYOUT_KEYS)}, optionally class_names)."
        )
    if class_names is None:
        if "class_names" in arrays:
            class_names = tuple(str(c) for c in arrays["class_names"])
        else:
            k = 1 + max(int(np.max(arrays[f"{s}_labels"], initial=0)) for s in SPLITS)
            class_names = tuple(str(c) for c in range(max(k, 2)))
    splits = {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}
    return ImageDataset.from_arrays(
        name or path.name.removesuffix(".npz"),
        class_names,
        **splits,
        spatial_dims=spatial_dims,
        source=str(path),
    )


@lru_cache(maxsize=8)
def _load_npz_cached(
    path: str, mtime_ns: int, name: str, class_names: tuple[str, ...] | None, spatial_dims: int
) -> ImageDataset:
    return load_npz(path, name=name, class_names=class_names, spatial_dims=spatial_dims)


def load_npz_cached(
    path: Path,
    *,
    name: str,
    class_names: Sequence[str] | None = None,
    spatial_dims: int = 2,
) -> ImageDataset:
    """:func:`load_npz` with the last eight files kept in memory (keyed by path and
    modification time), for the built-in tasks that notebooks load repeatedly. Returns a copy
    (:meth:`ImageDataset.replace`) whose tensors are shared with the cached one."""
    names = tuple(class_names) if class_names is not None else None
    ds = _load_npz_cached(str(path), path.stat().st_mtime_ns, name, names, spatial_dims)
    return ds.replace()
