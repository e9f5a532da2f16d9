"""Natural images for comparison: CIFAR-10 and a 10-class CIFAR-100 subset (Krizhevsky, 2009)."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
from sklearn.model_selection import train_test_split

from hfc_edu.data.dataset import ImageDataset, stratified_split, to_tensor_images
from hfc_edu.data.download import DataNotFoundError, fetch, find_local
from hfc_edu.data.npz import load_npz_cached

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_SUBSET_CLASSES = (
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


def load_cifar10(download: bool = True, seed: int = 0) -> ImageDataset:
    """CIFAR-10 (32 px RGB, 10 classes).

    Uses ``<data root>/natural/cifar10.npz`` (MedMNIST layout) when present; otherwise downloads
    the official archive (MD5-checked) and splits its 50,000 training images 45,000/5,000
    (stratified, seeded) into train/val; the official 10,000 test images are the test split.
    """
    path = find_local("cifar10.npz", ("natural", ""))
    if path is not None:
        ds = load_npz_cached(path, name="cifar10_32", class_names=CIFAR10_CLASSES)
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
    return ImageDataset.from_arrays(
        "cifar10_32",
        CIFAR10_CLASSES,
        train=(x_all[tr], y_all[tr]),
        val=(x_all[va], y_all[va]),
        test=(xs["test_batch"], ys["test_batch"]),
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
    with np.load(path, allow_pickle=False) as a:
        x, y = to_tensor_images(a["x"], 2), a["y"]
    parts = stratified_split(x, y, val=0.1, test=0.2, seed=seed)
    return ImageDataset(
        name="cifar100_subset_32", class_names=CIFAR100_SUBSET_CLASSES, source=str(path), **parts
    )
