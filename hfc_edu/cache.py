"""One home for caching: where caches live, atomic writes, keys, and one corrupt-file error.

Two caches use it: trained classifiers (:mod:`hfc_edu.models.checkpoints`, ``torch`` files) and
fitted class-conditional GMMs (:mod:`hfc_edu.hfc.class_gmms`, ``.npz`` files).

* Where: :func:`cache_root` (``$HFC_EDU_CACHE``, else the user cache directory) and
  :func:`cache_dir` for a named sub-directory.
* Keys: a file's name holds :func:`settings_key` of everything its contents depend on;
  :func:`model_fingerprint` and :func:`tensor_fingerprint` hash weights and data.
* Writes are atomic (a temporary file in the same directory, then ``os.replace``), so two
  processes may build the same entry at once and a reader never sees half a file.
* Reads never unpickle code (``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``);
  a file that cannot be read raises :class:`CorruptCacheError`, which names the file and the fix.
  Nothing is silently rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from platformdirs import user_cache_dir
from torch import nn

CACHE_ENV = "HFC_EDU_CACHE"


def cache_root() -> Path:
    """Root of every cache (and of downloads when ``$HFC_EDU_DATA`` is unset): ``$HFC_EDU_CACHE``
    or the user cache directory (``~/.cache/hfc_edu`` on Linux). Created if absent."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path(user_cache_dir("hfc_edu"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(name: str) -> Path:
    """The sub-directory ``name`` of :func:`cache_root` (``"checkpoints"``, ``"gmm"``), created."""
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class CorruptCacheError(ValueError):
    """A cache file exists but cannot be read, or does not hold what its name promises.

    Build it with :meth:`for_file`, so that every cache says the same thing: which file, what
    is wrong, and how to rebuild it.
    """

    @classmethod
    def for_file(cls, path: Path | str, what: str, reason: str, rebuild: str) -> CorruptCacheError:
        """``CorruptCacheError`` for the cached ``what`` (``"checkpoint"``, ``"GMMs"``) at ``path``;
        ``rebuild`` is the argument that rebuilds it (``"retrain=True"``, ``"refit=True"``)."""
        return cls(
            f"The cached {what} {path} is corrupt or unreadable: {reason}. Delete the file, or "
            f"pass {rebuild} to rebuild it."
        )


# -- keys -----------------------------------------------------------------------------------
def settings_key(settings: object) -> str:
    """SHA-256 (hex, 16 chars) of JSON-serialisable settings (dict keys sorted)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _update(h: hashlib._Hash, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 (hex, 16 chars) of tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        _update(h, torch.as_tensor(t))
    return h.hexdigest()[:16]


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


# -- atomic writes --------------------------------------------------------------------------
def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_npz(path: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write ``arrays`` (plain arrays, no objects) to the ``.npz`` file ``path``."""
    _write_atomic(Path(path), lambda f: np.savez(f, **arrays))


def write_torch(path: Path | str, payload: object) -> None:
    """Atomically ``torch.save`` ``payload`` (tensors, numbers, strings, dicts, ...) to ``path``."""
    _write_atomic(Path(path), lambda f: torch.save(payload, f))


# -- reads ----------------------------------------------------------------------------------
def read_npz(path: Path | str, what: str, rebuild: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (``allow_pickle=False``); :class:`CorruptCacheError`
    (see :meth:`CorruptCacheError.for_file`) if it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:  # zipfile.BadZipFile, OSError, ValueError, EOFError, ...
        raise CorruptCacheError.for_file(
            path, what, f"{type(err).__name__}: {err}", rebuild
        ) from err


def read_torch(path: Path | str, what: str, rebuild: str) -> object:
    """``torch.load(path, weights_only=True)`` on CPU; :class:`CorruptCacheError` if it cannot be
    read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError, RuntimeError, EOFError, OSError, ...
        raise CorruptCacheError.for_file(
            path, what, f"{type(err).__name__}: {err}", rebuild
        ) from err


__all__ = [
    "CorruptCacheError",
    "cache_dir",
    "cache_root",
    "model_fingerprint",
    "read_npz",
    "read_torch",
    "settings_key",
    "tensor_fingerprint",
    "write_npz",
    "write_torch",
]
