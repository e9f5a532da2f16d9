"""Finding data files locally, or downloading them and checking their official MD5.

The download itself is MONAI's ``download_url``; the checksum is checked here, after the
download and before the file is moved into the data root, because MONAI's own check reports a
mismatch differently across the versions this package allows (a ``RuntimeError`` worded
"md5 check ..." in 1.4-1.5, a ``HashCheckError`` worded "md5 hash check ..." later).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

from monai.apps.utils import download_url

from hfc_edu.data.root import data_root

log = logging.getLogger(__name__)
_warned: set[Path] = set()
_checked: dict[tuple[Path, int, int], str] = {}  # (path, size, mtime) -> MD5 of local files


class DataNotFoundError(FileNotFoundError):
    """A data file is neither in the data root nor downloadable (offline, or no public source)."""


class ChecksumError(RuntimeError):
    """A downloaded file does not have its official checksum; it was not kept."""


def file_digest(path: Path, algorithm: str = "md5", chunk: int = 1 << 22) -> str:
    """Hex digest of a file (``algorithm``: any :mod:`hashlib` name)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5sum(path: Path) -> str:
    """MD5 hex digest of a file."""
    return file_digest(path, "md5")


def warn_once(path: Path, msg: str, *args, logger: logging.Logger | None = None) -> None:
    """Log ``msg % args`` as a warning (on ``logger``, else this module's), once per process for ``path``."""
    if path in _warned:
        return
    _warned.add(path)
    (logger or log).warning(msg, *args)


def find_local(filename: str, subdirs: tuple[str, ...] = ("", "medmnist")) -> Path | None:
    """``root/<subdir>/filename`` for the first sub-directory that has it, else ``None``."""
    root = data_root()
    for sub in subdirs:
        p = root / sub / filename
        if p.is_file():
            return p
    return None


def _local_md5(path: Path) -> str:
    """MD5 of a local file, computed once per process while the file is unchanged."""
    st = path.stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _checked:
        _checked[key] = md5sum(path)
    return _checked[key]


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
    A download is written to a temporary name, checked, and only then moved into place: a
    failed download raises :class:`DataNotFoundError`, a wrong checksum :class:`ChecksumError`,
    and neither leaves a file behind.
    """
    local = find_local(filename, ("", subdir))
    if local is not None:
        if _local_md5(local) != md5:
            warn_once(
                local,
                "%s in your data folder is not the official file (MD5 differs from %s): using it "
                "as your local copy. Numbers may differ slightly from runs on the official "
                "download.",
                local.name,
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
    part = target.with_name(f".{filename}.{os.getpid()}.part")
    part.unlink(missing_ok=True)  # left by a killed process with this id: MONAI would keep it
    try:
        try:
            with warnings.catch_warnings():  # MONAI warns that it checks no hash: we do, below
                warnings.filterwarnings("ignore", message="No hash value provided")
                download_url(url, part, hash_val=None, hash_type="md5", progress=progress)
            if not part.is_file():  # MONAI swallows some permission errors
                raise OSError(f"no file was written to {part}")
        except Exception as err:  # URLError, HTTPError, OSError, RuntimeError
            raise DataNotFoundError(
                f"Could not download {filename} from {url} ({type(err).__name__}: {err}). If this "
                f"machine is offline, download the file elsewhere and put it at {target} (or point "
                "$HFC_EDU_DATA at a folder that holds it)."
            ) from None
        got = md5sum(part)
        if got != md5:
            raise ChecksumError(
                f"The download of {filename} from {url} does not have the official MD5 {md5} (got "
                f"{got}); it was not kept. Retry later, or download it yourself and put it at "
                f"{target}."
            )
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return target
