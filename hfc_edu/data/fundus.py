"""The book's fundus task: RetinaMNIST's diabetic-retinopathy grades (DeepDRiD), binary."""

from __future__ import annotations

from hfc_edu.data.dataset import SPLITS, ImageDataset
from hfc_edu.data.medmnist import load_medmnist


def load_fundus(size: int = 28, download: bool = True) -> ImageDataset:
    """Binary fundoscopy from RetinaMNIST's DR grades, 3 channels, official splits.

    Rule (as the HFC code's APTOS task, ``grade > 0``): grade 0 -> 0 "no DR", grades 1-4 -> 1 "DR".
    """
    grades = load_medmnist("retinamnist", size, download)
    binary = {f"y_{s}": (grades.split(s)[1] > 0).long() for s in SPLITS}
    out = grades.replace(name=f"fundus_{size}", class_names=("no DR", "DR"), **binary)
    out.notes.append("RetinaMNIST DR grade 0 -> 'no DR' (0); grades 1-4 -> 'DR' (1).")
    return out
