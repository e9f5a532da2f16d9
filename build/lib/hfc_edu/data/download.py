"""Finding data files locally, or downloading them with their official checksum (MONAI's downloader)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from monai.apps.utils import download_url

from hfc_edu.data.root import data_root

log = logging.getLogger(__name__)
_warned: set[Path] = set()


class DataNotFoundError(FileNotFoundError):
    """A data file is neither in the data root nor downloadable (offline, or no public source)."""


class ChecksumError(RuntimeError):
    """A downloaded file does not have its official checksum; it was not kept."""


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    """MD5 hex digest of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_local(filename: str, subdirs: tuple[str, ...] = ("", "medmnist")) -> Path | None:
    """``root/<subdir>/filename`` for the first sub-directory that has it, else ``None``."""
    root = data_root()
    for sub in subdirs:
        p = root / sub / filename
        if p.is_file():
            return p
    return None


def fetch(
    filename: str,
    url: str,
    md5: str,
    subdir: str = "medmnist",
    download: bool = True,
    progress: bool = False,
) -> Path:
    """Path of ``filename`` in the data root; downloaded from ``url`` and MD5-checked if absent.

    A file already in the data root is the user's data and is used as is; if its MD5 differs from
    the official one, a warning says so once (two shared files are rebuilt copies, for example).
    """
    local = find_local(filename, ("", subdir))
    if local is not None:
        if local not in _warned and md5sum(local) != md5:
            _warned.add(local)
            log.warning(
                "%s is not the official file (MD5 differs from %s): using it as your local copy. "
                "Numbers may differ slightly from runs on the official download.",
                local,
                md5,
            )
        return local
    target = data_root() / subdir / filename
    if not download:
        raise DataNotFoundError(
            f"{filename} is not in the data root {data_root()}. Download it from {url} and put it at "
            f"{target}, or call again with download=True."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url(url, target, hash_val=md5, hash_type="md5", progress=progress)
    except Exception as err:  # MONAI raises HashCheckError, RuntimeError, URLError, OSError
        if "hash check" in str(err).lower():
            raise ChecksumError(
                f"The download of {filename} from {url} does not have the official MD5 {md5}; it was "
                f"not kept. Retry later, or download it yourself and put it at {target}."
            ) from None
        raise DataNotFoundError(
            f"Could not download {filename} from {url} ({type(err).__name__}: {err}). If this machine "
            f"is offline, download the file elsewhere and put it at {target} (or point $HFC_EDU_DATA "
            "at a folder that holds it)."
        ) from None
    return target
