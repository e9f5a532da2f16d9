"""The book's dermoscopy task: melanoma vs benign, ISIC 2017 (Part 3, task 1), 128 px RGB.

Two sources, in this order:

1. ``<data root>/isic2017/isic2017_melanoma_128.npz`` (MedMNIST layout, official ISIC 2017 splits
   2000 / 150 / 600 with 374 / 30 / 117 melanomas, 0 = nevus or seborrheic keratosis, 1 = melanoma).
   The ISIC challenge publishes only the full-size images (5-12 GB of zips), so any such file is a
   rebuild; the project's shared copy is made from a third-party 256 px copy of the official images.
2. Otherwise (a user's machine), DermaMNIST at 128 px from its official MedMNIST+ record, MD5
   checked: HAM10000 images, not ISIC 2017, binarised as melanoma (DermaMNIST class 4) vs the six
   other diagnoses, official DermaMNIST splits. Same kind of task, different images and numbers.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from hfc_edu.data.dataset import ImageDataset, to_tensor_images, to_tensor_labels
from hfc_edu.data.download import DataNotFoundError, file_digest, find_local, warn_once
from hfc_edu.data.medmnist import get_flag, load_medmnist
from hfc_edu.data.root import data_root

log = logging.getLogger(__name__)

ISIC2017_FILE = "isic2017_melanoma_128.npz"
ISIC2017_SUBDIR = "isic2017"
ISIC2017_CLASSES = ("benign", "melanoma")
DERMAMNIST_MELANOMA = 4  # DermaMNIST label of "melanoma"
DERMAMNIST_CLASSES = ("not melanoma", "melanoma")
SIZE = 128

ISIC2017_NOTE = (
    "ISIC 2017 challenge, Part 3 task 1: melanoma (1) vs nevus or seborrheic keratosis (0), "
    "official splits (train 2000 / val 150 / test 600; 374 / 30 / 117 melanomas). The official "
    "data hold 6 pairs of pixel-identical images under different ids (all nevi: 2 train-test, "
    "1 train-val, 1 val-test, 2 within test); they are kept, as in the challenge. Licence CC-0; "
    "cite Codella et al., arXiv:1710.05006."
)
# SHA-256 of the project's shared rebuild (shared/data/SHA256SUMS).
SHARED_REBUILD_SHA256 = "faa5f8fb7e01af8113475e5520e87d906d8af3c858584f6746560b65ef9a6e60"
REBUILT_NOTE = (
    "Not an official file (ISIC publishes full-size JPEGs only): the project's rebuild from a "
    "third-party 256 px copy of the official ISIC 2017 images (aspect ratio probably squashed to "
    "square), resized to 128 px; labels checked against two copies of the official ground truth. "
    "Numbers may differ from a rebuild from the official archives."
)
OTHER_FILE_NOTE = (
    "Not an official file (ISIC publishes full-size JPEGs only) and not the project's shared "
    "rebuild (SHA-256 differs): a local rebuild whose provenance this library cannot check. "
    "Numbers may differ from the book's."
)


def load_dermoscopy(size: int = SIZE, download: bool = True) -> ImageDataset:
    """Binary dermoscopy, 128 px RGB: ISIC 2017 melanoma vs benign (0 benign, 1 melanoma).

    Uses ``<data root>/isic2017/isic2017_melanoma_128.npz`` when present (see the module
    docstring); otherwise DermaMNIST at 128 px, downloaded from its official MedMNIST+ record with
    its MD5 checked (CC BY-NC 4.0), as melanoma vs the other six diagnoses. ``ds.notes`` says which.
    """
    if int(size) != SIZE:
        raise ValueError(f"The dermoscopy task exists at {SIZE} px only, not {size}.")
    path = find_local(ISIC2017_FILE, (ISIC2017_SUBDIR, ""))
    if path is not None:
        ds = _load_isic2017(str(path), path.stat().st_mtime_ns).replace()
        warn_once(path, "%s: ISIC 2017 dermoscopy. %s", path.name, ds.notes[-1], logger=log)
        return ds
    try:
        derma = load_medmnist("dermamnist", SIZE, download)
    except DataNotFoundError as err:
        raise DataNotFoundError(
            f"No dermoscopy data. Either put the ISIC 2017 file (MedMNIST layout, 128 px) at "
            f"{data_root() / ISIC2017_SUBDIR / ISIC2017_FILE}, or, on a machine with network "
            "access, call load_dermoscopy(download=True) to download DermaMNIST at 128 px from its "
            f"official MedMNIST+ record (MD5 checked; a different task, see the notes). {err}"
        ) from None
    return _from_dermamnist(derma)


@lru_cache(maxsize=2)
def _load_isic2017(path: str, mtime_ns: int) -> ImageDataset:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    parts = {}
    for s in ("train", "val", "test"):
        try:
            parts[f"x_{s}"] = to_tensor_images(arrays[f"{s}_images"], 2)
            parts[f"y_{s}"] = to_tensor_labels(arrays[f"{s}_labels"])
        except KeyError as err:
            raise ValueError(f"{path} is not in MedMNIST layout: missing {err}.") from None
    ds = ImageDataset(name=f"dermoscopy_{SIZE}", class_names=ISIC2017_CLASSES, source=path, **parts)
    _check_binary(ds, path)
    shared = file_digest(Path(path), "sha256") == SHARED_REBUILD_SHA256
    ds.notes += [ISIC2017_NOTE, REBUILT_NOTE if shared else OTHER_FILE_NOTE]
    return ds


def _from_dermamnist(derma: ImageDataset) -> ImageDataset:
    labels = {
        f"y_{s}": (getattr(derma, f"y_{s}") == DERMAMNIST_MELANOMA).long()
        for s in ("train", "val", "test")
    }
    ds = derma.replace(
        name=f"dermoscopy_{SIZE}", class_names=DERMAMNIST_CLASSES, notes=[], **labels
    )
    _check_binary(ds, derma.source)
    info = get_flag("dermamnist")
    ds.notes += [
        "DermaMNIST at 128 px (MedMNIST+, official file, MD5 checked; licence "
        f"{info.license}; cite Yang et al., MedMNIST v2, Sci Data 2023, and Tschandl et al., "
        "HAM10000, Sci Data 2018), binarised: melanoma (DermaMNIST class 4) -> 1 'melanoma'; the "
        "six other diagnoses (nevi, benign keratosis-like lesions, basal cell carcinoma, actinic "
        "keratoses / intraepithelial carcinoma, dermatofibroma, vascular lesions) -> 0 'not "
        "melanoma'. Official DermaMNIST splits.",
        "This is NOT the ISIC 2017 task the book's stored outputs use: DermaMNIST is HAM10000 "
        "(different images, 7 diagnoses made binary, about 11% melanoma), so every number differs "
        "from runs on the ISIC 2017 file.",
    ]
    return ds


def _check_binary(ds: ImageDataset, source: str | Path) -> None:
    for s in ("train", "val", "test"):
        x, y = ds.split(s)
        if tuple(x.shape[1:]) != (3, SIZE, SIZE):
            raise ValueError(
                f"{source}: {s} images are {tuple(x.shape[1:])}, expected (3, {SIZE}, {SIZE})."
            )
        if not set(y.unique().tolist()) <= {0, 1}:
            raise ValueError(f"{source}: {s} labels are not binary 0/1.")
