"""A checkpoint cache keyed by dataset, model and training configuration.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so two processes
may train the same model at once; loads use ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.root import cache_dir

TRAINING_CODE_VERSION = 1  # bump when the training loop changes its results


class CorruptCheckpointError(RuntimeError):
    """A cached checkpoint cannot be read."""


def data_fingerprint(data: ImageDataset) -> str:
    """A short hash of a dataset's labels, shapes and a strided sample of its pixels."""
    h = hashlib.sha256()
    for s in ("train", "val", "test"):
        x, y = data.split(s)
        h.update(str(tuple(x.shape)).encode())
        h.update(y.numpy().tobytes())
        flat = x.reshape(-1)
        h.update(flat[:: max(1, flat.numel() // 100_000)].numpy().tobytes())
    return h.hexdigest()[:16]


def checkpoint_key(data: ImageDataset, model_config: dict, train_config: dict) -> str:
    """Hex key of (data fingerprint, model config, training config, code version)."""
    payload = json.dumps(
        {
            "data": data.name,
            "fingerprint": data_fingerprint(data),
            "model": model_config,
            "train": train_config,
            "code": TRAINING_CODE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def checkpoint_path(data: ImageDataset, model_config: dict, train_config: dict) -> Path:
    """Where the checkpoint for this (data, model, training) triple lives."""
    key = checkpoint_key(data, model_config, train_config)
    return cache_dir("checkpoints") / f"{data.name}_{model_config['arch']}_{key}.pt"


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomically write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True``; a clear error if it is corrupt."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CorruptCheckpointError(
            f"The cached checkpoint {path} cannot be read ({type(err).__name__}: {err}). Delete the "
            "file and run again to retrain it."
        ) from None
    if (
        not isinstance(payload, dict)
        or "state_dict" not in payload
        or "model_config" not in payload
    ):
        raise CorruptCheckpointError(
            f"The cached checkpoint {path} does not hold an hfc_edu model. Delete it and run again."
        )
    return payload
