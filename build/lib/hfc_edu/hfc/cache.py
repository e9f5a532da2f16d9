"""Fingerprints (model weights, data) and an atomic ``.npz`` store for fitted GMMs."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _update(h: hashlib._Hash, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex, 16 chars) of a model's ``state_dict``: names, dtypes, shapes and bytes.

    Weights and buffers (BatchNorm statistics) both count, so any retraining changes it.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(t, torch.Tensor):
            _update(h, t)
    return h.hexdigest()[:16]


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 (hex, 16 chars) of tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        _update(h, torch.as_tensor(t))
    return h.hexdigest()[:16]


def settings_key(*parts: object) -> str:
    """SHA-256 (hex, 16 chars) of JSON-serialisable parts (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` through a temporary file and ``os.replace`` (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CorruptCacheError(ValueError):
    """A cache file exists but cannot be read or does not match its key."""


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` (``allow_pickle=False``); a bad file raises
    :class:`CorruptCacheError` naming the file and the fix."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise CorruptCacheError(
            f"The GMM cache file {path} is corrupt or unreadable ({type(err).__name__}: {err}). "
            "Delete it, or pass refit=True to fit again and overwrite it."
        ) from err


__all__ = [
    "CorruptCacheError",
    "load_npz",
    "model_fingerprint",
    "save_npz_atomic",
    "settings_key",
    "tensor_fingerprint",
]
