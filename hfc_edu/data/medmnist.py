"""MedMNIST v2 / MedMNIST+ (Yang et al., Scientific Data 2023): official records and the loader.

The URLs and MD5s are those of the ``medmnist`` package's ``info.py`` (v3), which is not a
dependency (it requires torchvision). Every flag here is also a task (:data:`hfc_edu.data.TASKS`,
registered in :mod:`hfc_edu.data.tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.download import fetch
from hfc_edu.data.npz import load_npz_cached

ZENODO_RECORD = "https://zenodo.org/records/10519652/files"


@dataclass(frozen=True)
class MedMNISTFlag:
    """One MedMNIST dataset: its channels, dimensionality, labels and per-size MD5s."""

    flag: str
    n_channels: int
    spatial_dims: int
    labels: tuple[str, ...]
    md5: dict[int, str]  # image size -> official MD5
    license: str = "CC BY 4.0"

    def filename(self, size: int) -> str:
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def url(self, size: int) -> str:
        return f"{ZENODO_RECORD}/{self.filename(size)}?download=1"

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.md5))


MEDMNIST: dict[str, MedMNISTFlag] = {
    f.flag: f
    for f in [
        MedMNISTFlag(
            "pneumoniamnist",
            1,
            2,
            ("normal", "pneumonia"),
            {
                28: "28209eda62fecd6e6a2d98b1501bb15f",
                64: "8f4eceb4ccffa70c672198ea285246c6",
                128: "05b46931834c231683c68f40c47b2971",
                224: "d6a3c71de1b945ea11211b03746c1fe1",
            },
        ),
        MedMNISTFlag(
            "retinamnist",
            3,
            2,
            ("0", "1", "2", "3", "4"),
            {
                28: "bd4c0672f1bba3e3a89f0e4e876791e4",
                64: "afda852cc34dcda56f86ad2b2457dbcc",
                128: "e48e916a24454daf90583d4e6efb1a18",
                224: "eae7e3b6f3fcbda4ae613ebdcbe35348",
            },
        ),
        MedMNISTFlag(
            "breastmnist",
            1,
            2,
            ("malignant", "normal, benign"),
            {
                28: "750601b1f35ba3300ea97c75c52ff8f6",
                64: "742edef2a1fd1524b2efff4bd7ba9364",
                128: "363e4b3f8d712e9b5de15470a2aaadf1",
                224: "b56378a6eefa9fed602bb16d192d4c8b",
            },
        ),
        MedMNISTFlag(
            "dermamnist",
            3,
            2,
            (
                "actinic keratoses and intraepithelial carcinoma",
                "basal cell carcinoma",
                "benign keratosis-like lesions",
                "dermatofibroma",
                "melanoma",
                "melanocytic nevi",
                "vascular lesions",
            ),
            {
                28: "0744692d530f8e62ec473284d019b0c7",
                64: "b70a2f5635c6199aeaa28c31d7202e1f",
                128: "2defd784463fa5243564e855ed717de1",
                224: "8974907d8e169bef5f5b96bc506ae45d",
            },
            license="CC BY-NC 4.0",
        ),
        MedMNISTFlag(
            "bloodmnist",
            3,
            2,
            (
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ),
            {
                28: "7053d0359d879ad8a5505303e11de1dc",
                64: "2b94928a2ae4916078ca51e05b6b800b",
                128: "adace1e0ed228fccda1f39692059dd4c",
                224: "b718ff6835fcbdb22ba9eacccd7b2601",
            },
        ),
        MedMNISTFlag(
            "organmnist3d",
            1,
            3,
            (
                "liver",
                "kidney-right",
                "kidney-left",
                "femur-right",
                "femur-left",
                "bladder",
                "heart",
                "lung-right",
                "lung-left",
                "spleen",
                "pancreas",
            ),
            {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"},
        ),
        MedMNISTFlag(
            "nodulemnist3d",
            1,
            3,
            ("benign", "malignant"),
            {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"},
        ),
        MedMNISTFlag(
            "adrenalmnist3d",
            1,
            3,
            ("normal", "hyperplasia"),
            {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"},
        ),
    ]
}


def get_flag(flag: str) -> MedMNISTFlag:
    """The record of ``flag`` (case-insensitive), with a clear error for unknown names."""
    key = flag.lower()
    if key not in MEDMNIST:
        raise ValueError(f"Unknown MedMNIST flag {flag!r}. Known flags: {sorted(MEDMNIST)}.")
    return MEDMNIST[key]


def load_medmnist(flag: str, size: int = 28, download: bool = True) -> ImageDataset:
    """A MedMNIST dataset at ``size`` px (28, 64, 128, 224 for 2D; 28, 64 for 3D), official
    splits; the file comes from the data root, else from its official record (MD5 checked)."""
    info = get_flag(flag)
    size = int(size)
    if size not in info.md5:
        raise ValueError(f"{info.flag} is published at sizes {info.sizes}, not {size}.")
    path = fetch(info.filename(size), info.url(size), info.md5[size], download=download)
    return load_npz_cached(
        path, name=f"{info.flag}_{size}", class_names=info.labels, spatial_dims=info.spatial_dims
    )


__all__ = ["MEDMNIST", "MedMNISTFlag", "get_flag", "load_medmnist"]
