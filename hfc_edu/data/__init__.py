"""Data: the book's tasks (MedMNIST 2D and 3D, binary task views, ISIC 2017 dermoscopy,
CIFAR) and your own.

Every dataset is an :class:`ImageDataset`: float32 images ``(N, C, H, W)`` or ``(N, C, D, H, W)``
in [0, 1] and int64 labels ``(N,)``, in train, val and test splits.

* **Tasks by name**: ``load_task("chest_xray", size=128)``; :data:`TASKS` lists them
  (``hfc-edu data``). Files are looked up in the data root (``$HFC_EDU_DATA``, else the user
  cache) and, if absent, downloaded from their official records with the official MD5 checked.
* **Your own arrays**: ``ImageDataset.from_arrays(name, class_names, train=(x, y), val=(x, y),
  test=(x, y))`` takes uint8 images ``(N, H, W)``, ``(N, H, W, C)`` or, with ``spatial_dims=3``,
  ``(N, D, H, W)`` (values 0-255), or float images already in [0, 1] and channel first; labels
  are integer class indices. :func:`to_tensor_images` does the image conversion alone.
* **Your own file**: ``load_npz(path, class_names=...)`` reads a MedMNIST-layout ``.npz``
  (``train_images``, ``train_labels``, ``val_images``, ... ) from anywhere on disk.
* **A new task**: ``register_task(TaskInfo(name, load, sizes, default_size, description))``,
  after which ``load_task``, ``get_classifier`` and the command line know it (see
  :mod:`hfc_edu.data.tasks`).

Either kind of dataset goes straight to ``hfc_edu.models.get_classifier(ds)``. Nothing here ever
substitutes synthetic images for missing data: a missing file is an error that says where to
put it.
"""

from hfc_edu.data.chest_xray import load_chest_xray
from hfc_edu.data.cifar import load_cifar10, load_cifar100_subset
from hfc_edu.data.dataset import ImageDataset, to_tensor_images
from hfc_edu.data.dermoscopy import load_dermoscopy
from hfc_edu.data.download import ChecksumError, DataNotFoundError
from hfc_edu.data.fundus import load_fundus
from hfc_edu.data.medmnist import load_medmnist
from hfc_edu.data.npz import load_npz
from hfc_edu.data.root import data_root
from hfc_edu.data.tasks import TASKS, TaskInfo, load_task, register_task

__all__ = [
    "TASKS",
    "ChecksumError",
    "DataNotFoundError",
    "ImageDataset",
    "TaskInfo",
    "data_root",
    "load_chest_xray",
    "load_cifar10",
    "load_cifar100_subset",
    "load_dermoscopy",
    "load_fundus",
    "load_medmnist",
    "load_npz",
    "load_task",
    "register_task",
    "to_tensor_images",
]
