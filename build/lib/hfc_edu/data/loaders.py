"""Loaders of real data: MedMNIST flags, the book's binary task views, ISIC dermoscopy, CIFAR.

Every loader returns an :class:`~hfc_edu.data.dataset.ImageDataset`. Nothing here ever
substitutes synthetic images for missing data: a missing file is an error that says where to
put it.
"""

from __future__ import annotations

import logging
import pickle
import tarfile
from functools import lru_cache

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from hfc_edu.data.dataset import ImageDataset, to_tensor_images, to_tensor_labels
from hfc_edu.data.download import DataNotFoundError, fetch, find_local
from hfc_edu.data.registry import CIFAR10_CLASSES, CIFAR10_MD5, CIFAR10_URL, get_flag

log = logging.getLogger(__name__)


def _npz(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@lru_cache(maxsize=8)
def _load_medmnist_cached(flag: str, size: int, download: bool) -> ImageDataset:
    info = get_flag(flag)
    if size not in info.md5:
        raise ValueError(f"{flag} is published at sizes {info.sizes}, not {size}.")
    path = fetch(info.filename(size), info.url(size), info.md5[size], download=download)
    arrays = _npz(path)
    parts = {}
    for s in ("train", "val", "test"):
        try:
            parts[f"x_{s}"] = to_tensor_images(arrays[f"{s}_images"], info.spatial_dims)
            parts[f"y_{s}"] = to_tensor_labels(arrays[f"{s}_labels"])
        except KeyError as err:
            raise ValueError(f"{path} is not in MedMNIST layout: missing {err}.") from None
    return ImageDataset(name=f"{flag}_{size}", class_names=info.labels, source=str(path), **parts)


def load_medmnist(flag: str, size: int = 28, download: bool = True) -> ImageDataset:
    """A MedMNIST dataset at ``size`` px (28, 64, 128, 224 for 2D; 28, 64 for 3D), official splits."""
    ds = _load_medmnist_cached(flag.lower(), int(size), download)
    return _copy(ds)


def _copy(ds: ImageDataset, **changes) -> ImageDataset:
    """A shallow copy (tensors shared, read-only by convention) with ``changes`` applied."""
    fields = dict(ds.__dict__)
    fields["notes"] = list(ds.notes)
    fields.update(changes)
    return ImageDataset(**fields)


def load_chest_xray(size: int = 128, download: bool = True) -> ImageDataset:
    """Binary chest X-ray (PneumoniaMNIST: 0 normal, 1 pneumonia), 1 channel."""
    ds = load_medmnist("pneumoniamnist", size, download)
    return _copy(ds, name=f"chest_xray_{size}")


def load_fundus(size: int = 28, download: bool = True) -> ImageDataset:
    """Binary fundoscopy from RetinaMNIST's DR grades.

    Rule (as the HFC code's APTOS task, ``grade > 0``): grade 0 -> 0 "no DR", grades 1-4 -> 1 "DR".
    """
    ds = load_medmnist("retinamnist", size, download)
    binar = {f"y_{s}": (getattr(ds, f"y_{s}") > 0).long() for s in ("train", "val", "test")}
    out = _copy(ds, name=f"fundus_{size}", class_names=("no DR", "DR"), **binar)
    out.notes.append("RetinaMNIST DR grade 0 -> 'no DR' (0); grades 1-4 -> 'DR' (1).")
    return out


def _stratified_three_way(
    x: torch.Tensor, y: np.ndarray, val: float, test: float, seed: int
) -> dict[str, torch.Tensor]:
    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=test, stratify=y, random_state=seed)
    tr, va = train_test_split(rest, test_size=val / (1 - test), stratify=y[rest], random_state=seed)
    yt = torch.from_numpy(y.astype(np.int64))
    out = {}
    for name, ids in (("train", tr), ("val", va), ("test", te)):
        ids = np.sort(ids)
        out[f"x_{name}"], out[f"y_{name}"] = x[ids], yt[ids]
    return out


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


def load_cifar10(download: bool = True, seed: int = 0) -> ImageDataset:
    """CIFAR-10 (32 px RGB, 10 classes).

    Uses ``<data root>/natural/cifar10.npz`` (MedMNIST layout) when present; otherwise downloads
    the official archive (MD5-checked) and splits its 50,000 training images 45,000/5,000
    (stratified, seeded) into train/val; the official 10,000 test images are the test split.
    """
    path = find_local("cifar10.npz", ("natural", ""))
    if path is not None:
        a = _npz(path)
        parts = {}
        for s in ("train", "val", "test"):
            parts[f"x_{s}"] = to_tensor_images(a[f"{s}_images"], 2)
            parts[f"y_{s}"] = to_tensor_labels(a[f"{s}_labels"])
        ds = ImageDataset(name="cifar10_32", class_names=CIFAR10_CLASSES, source=str(path), **parts)
        ds.notes.append(
            "Local CIFAR-10 file from the data root (see its README for its provenance)."
        )
        return ds
    archive = fetch(
        "cifar-10-python.tar.gz", CIFAR10_URL, CIFAR10_MD5, subdir="natural", download=download
    )
    xs, ys = {}, {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base.startswith("data_batch") or base == "test_batch":
                d = pickle.load(tar.extractfile(member), encoding="bytes")  # noqa: S301 (MD5-checked)
                xs[base] = d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                ys[base] = np.asarray(d[b"labels"])
    train_keys = sorted(k for k in xs if k.startswith("data_batch"))
    x_all = np.concatenate([xs[k] for k in train_keys])
    y_all = np.concatenate([ys[k] for k in train_keys])
    tr, va = train_test_split(
        np.arange(len(y_all)), test_size=5000, stratify=y_all, random_state=seed
    )
    tr, va = np.sort(tr), np.sort(va)
    return ImageDataset(
        name="cifar10_32",
        class_names=CIFAR10_CLASSES,
        x_train=to_tensor_images(x_all[tr], 2),
        y_train=torch.from_numpy(y_all[tr].astype(np.int64)),
        x_val=to_tensor_images(x_all[va], 2),
        y_val=torch.from_numpy(y_all[va].astype(np.int64)),
        x_test=to_tensor_images(xs["test_batch"], 2),
        y_test=torch.from_numpy(ys["test_batch"].astype(np.int64)),
        source=str(archive),
    )


def load_cifar100_subset(seed: int = 0) -> ImageDataset:
    """The shared 1000-image CIFAR-100 subset (fine classes 0-9), split 70/10/20 stratified."""
    path = find_local("cifar100_subset.npz", ("natural", ""))
    if path is None:
        raise DataNotFoundError(
            "cifar100_subset.npz is not in the data root; it exists only in the project's shared "
            "data folder. Set $HFC_EDU_DATA to that folder."
        )
    a = _npz(path)
    names = (
        "apple",
        "aquarium fish",
        "baby",
        "bear",
        "beaver",
        "bed",
        "bee",
        "beetle",
        "bicycle",
        "bottle",
    )
    parts = _stratified_three_way(to_tensor_images(a["x"], 2), a["y"], val=0.1, test=0.2, seed=seed)
    return ImageDataset(name="cifar100_subset_32", class_names=names, source=str(path), **parts)


TASKS = {
    "chest_xray": "binary chest X-ray (PneumoniaMNIST), 28/64/128/224 px",
    "fundus": "binary fundoscopy (RetinaMNIST grade 0 vs 1-4), 28/64/128/224 px",
    "dermoscopy": "binary dermoscopy (ISIC UDA-1), 128 px",
    "cifar10": "CIFAR-10, 32 px (natural images)",
    "cifar100_subset": "CIFAR-100, 10 classes, 32 px (natural images)",
    "adrenal3d": "AdrenalMNIST3D, 28/64 px volumes",
}


def load_task(name: str, size: int | None = None, download: bool = True) -> ImageDataset:
    """Load a task view by name (see ``TASKS``) or any MedMNIST flag (e.g. ``"nodulemnist3d"``)."""
    key = name.lower()
    if key == "chest_xray":
        return load_chest_xray(size or 128, download)
    if key == "fundus":
        return load_fundus(size or 28, download)
    if key == "dermoscopy":
        if size not in (None, 128):
            raise ValueError("The dermoscopy set exists at 128 px only.")
        return load_dermoscopy()
    if key == "cifar10":
        return load_cifar10(download)
    if key == "cifar100_subset":
        return load_cifar100_subset()
    if key == "adrenal3d":
        return load_medmnist("adrenalmnist3d", size or 28, download)
    try:
        return load_medmnist(key, size or 28, download)
    except ValueError:
        raise ValueError(
            f"Unknown task {name!r}. Tasks: {sorted(TASKS)}; or a MedMNIST flag such as 'bloodmnist'."
        ) from None
