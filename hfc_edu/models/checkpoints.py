"""The checkpoint cache: trained classifiers keyed by dataset, model and training configuration.

Files live in ``<cache root>/checkpoints`` and go through :mod:`hfc_edu.cache` (atomic writes,
``weights_only`` reads, :class:`~hfc_edu.cache.CorruptCacheError` for a bad file).
"""

from __future__ import annotations

from pathlib import Path

from hfc_edu.cache import CorruptCacheError, cache_dir, read_torch, settings_key, write_torch
from hfc_edu.data.dataset import ImageDataset

TRAINING_CODE_VERSION = 1  # bump when the training loop changes its results
_REQUIRED = ("state_dict", "model_config", "test", "history", "best_epoch", "seconds")


def checkpoint_key(data: ImageDataset, model_config: dict, train_config: dict) -> str:
    """Hex key of (data name and fingerprint, model config, training config, code version)."""
    return settings_key(
        {
            "data": data.name,
            "fingerprint": data.fingerprint(),
            "model": model_config,
            "train": train_config,
            "code": TRAINING_CODE_VERSION,
        }
    )


def checkpoint_path(data: ImageDataset, model_config: dict, train_config: dict) -> Path:
    """Where the checkpoint for this (data, model, training) triple lives."""
    key = checkpoint_key(data, model_config, train_config)
    return cache_dir("checkpoints") / f"{data.name}_{model_config['arch']}_{key}.pt"


def save_checkpoint(path: Path, payload: dict) -> None:
    """Atomically write ``payload`` (``state_dict``, ``model_config``, test metrics, ...)."""
    write_torch(path, payload)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint (``weights_only=True``); :class:`~hfc_edu.cache.CorruptCacheError` if it
    cannot be read or does not hold an hfc_edu model."""
    payload = read_torch(path, "checkpoint", "retrain=True")
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise CorruptCacheError.for_file(
            path, "checkpoint", "it does not hold an hfc_edu model", "retrain=True"
        )
    return payload
