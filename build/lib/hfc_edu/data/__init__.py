"""Real data for the book: MedMNIST (2D and 3D), binary task views, ISIC dermoscopy, CIFAR.

Files are looked up in the data root (``$HFC_EDU_DATA``, else the user cache) and, if absent,
downloaded from their official records with the official MD5 checked.
"""

from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.download import ChecksumError, DataNotFoundError
from hfc_edu.data.loaders import (
    TASKS,
    load_chest_xray,
    load_cifar10,
    load_cifar100_subset,
    load_dermoscopy,
    load_fundus,
    load_medmnist,
    load_task,
)
from hfc_edu.data.registry import MEDMNIST
from hfc_edu.data.root import cache_dir, cache_root, data_root

__all__ = [
    "MEDMNIST",
    "TASKS",
    "ChecksumError",
    "DataNotFoundError",
    "ImageDataset",
    "cache_dir",
    "cache_root",
    "data_root",
    "load_chest_xray",
    "load_cifar10",
    "load_cifar100_subset",
    "load_dermoscopy",
    "load_fundus",
    "load_medmnist",
    "load_task",
]
