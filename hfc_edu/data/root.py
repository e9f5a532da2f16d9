"""Where data files live: ``$HFC_EDU_DATA``, else ``<cache root>/data``."""

from __future__ import annotations

import os
from pathlib import Path

from hfc_edu.cache import cache_root

DATA_ENV = "HFC_EDU_DATA"


def data_root() -> Path:
    """Data root: ``$HFC_EDU_DATA`` if set (CI points it at ``../shared/data``), else
    ``cache_root()/data`` (see :func:`hfc_edu.cache.cache_root`)."""
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
