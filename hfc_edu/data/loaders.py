"""The dermoscopy loader (ISIC Archive collection UDA-1, CC0), until the ISIC 2017 task replaces it.

The task registry (:mod:`hfc_edu.data.tasks`) points the ``"dermoscopy"`` task here.
"""

from __future__ import annotations

import numpy as np

from hfc_edu.data.dataset import ImageDataset, to_tensor_images
from hfc_edu.data.dataset import stratified_split as _stratified_three_way
from hfc_edu.data.download import DataNotFoundError, find_local


def _npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_dermoscopy(seed: int = 0) -> ImageDataset:
    """Binary dermoscopy (ISIC Archive collection UDA-1, 128 px RGB: 0 benign, 1 malignant).

    The collection has no split: a seeded, stratified 70/10/20 split is made here.
    """
    path = find_local("isic_uda1_128.npz", ("isic", ""))
    if path is None:
        raise DataNotFoundError(
            "isic_uda1_128.npz (ISIC Archive collection UDA-1, 557 dermoscopy images at 128 px) is not "
            "in the data root. It has no single-file public download: export the UDA-1 collection from "
            "https://api.isic-archive.com (CC0), save it as images/labels arrays in "
            "<data root>/isic/isic_uda1_128.npz, or set $HFC_EDU_DATA to a folder that has it."
        )
    a = _npz(path)
    x = to_tensor_images(a["images"], 2)
    parts = _stratified_three_way(x, a["labels"], val=0.1, test=0.2, seed=seed)
    ds = ImageDataset(
        name="dermoscopy_128", class_names=("benign", "malignant"), source=str(path), **parts
    )
    ds.notes.append(
        f"ISIC UDA-1 has no official split: stratified 70/10/20 split with seed {seed}."
    )
    return ds
