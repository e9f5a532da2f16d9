"""Where data and caches live: ``$HFC_EDU_DATA`` / ``$HFC_EDU_CACHE``, else the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

DATA_ENV = "HFC_EDU_DATA"
CACHE_ENV = "HFC_EDU_CACHE"


def cache_root() -> Path:
    """Root for downloads and caches (checkpoints, GMMs): ``$HFC_EDU_CACHE`` or the user cache dir."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env).expanduser() if env else Path(user_cache_dir("hfc_edu"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path:
    """Data root: ``$HFC_EDU_DATA`` if set (CI points it at ``../shared/data``), else ``cache_root()/data``."""
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"${DATA_ENV} points to {path}, which is not a directory. Fix the variable or unset it "
                "to use the default cache directory."
            )
        return path
    path = cache_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(name: str) -> Path:
    """A named sub-directory of :func:`cache_root` (created)."""
    path = cache_root() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
