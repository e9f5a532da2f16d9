"""The book's chest X-ray task: PneumoniaMNIST (Kermany et al., Cell 2018; MedMNIST v2), binary."""

from __future__ import annotations

from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.medmnist import load_medmnist


def load_chest_xray(size: int = 128, download: bool = True) -> ImageDataset:
    """Binary chest X-ray (PneumoniaMNIST: 0 normal, 1 pneumonia), 1 channel, official splits."""
    return load_medmnist("pneumoniamnist", size, download).replace(name=f"chest_xray_{size}")
