"""The book's trained classifiers, shipped with the package.

Training a classifier is deterministic on one machine but not across machines (the CPU kernels
torch and oneDNN pick differ, and so do the floats), so every chapter would show other numbers
on another computer if each reader trained their own. The book therefore ships the weights of
every classifier a chapter loads, in ``hfc_edu/weights/``, with a manifest
(``manifest.json``) that records for each one:

* the task, image size and architecture, the model configuration and the training configuration;
* the fingerprint of the data it was trained on and its test metrics there;
* its training history (chapter 1 plots it), the training time and the machine's numerics
  fingerprint;
* the SHA-256 of the weight file, checked on every load.

:func:`hfc_edu.models.get_classifier` loads a shipped model when one matches the request and
trains only when asked (``retrain=True``, ``hfc-edu train --retrain``) or when none matches.
``scripts/ship_weights.py`` trains them all afresh and rewrites the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
_warned: set[tuple[str, str]] = set()


class ShippedWeightsError(RuntimeError):
    """A shipped weight file is missing, fails its checksum or does not fit its architecture."""


@dataclass
class ShippedModel:
    """One entry of the manifest (see the module docstring)."""

    file: str
    task: str
    size: int
    arch: str
    data_name: str
    data_fingerprint: str
    model_config: dict
    train_config: dict
    test: dict
    sha256: str
    history: list = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    machine: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    def matches(self, task: str, size: int, arch: str, dropout: float, train_config: dict) -> bool:
        """Whether this model answers a request for (task, size, arch, dropout, training)."""
        return (
            self.task == task
            and self.size == size
            and self.arch == arch
            and float(self.model_config.get("dropout", 0.0)) == float(dropout)
            and self.train_config == train_config
        )


def sha256sum(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> list[ShippedModel]:
    """Every shipped model (an empty list when the package ships none)."""
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())["models"]
        return [ShippedModel(**row) for row in rows]
    except (ValueError, KeyError, TypeError) as err:
        raise ShippedWeightsError(
            f"The shipped-weights manifest {path} cannot be read ({err}). Reinstall hfc-edu."
        ) from None


def write_manifest(models: list[ShippedModel], path: Path = MANIFEST) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"models": [asdict(m) for m in models]}, indent=1) + "\n")


def find_shipped(
    task: str, size: int, arch: str, dropout: float, train_config: dict
) -> ShippedModel | None:
    """The shipped model for this request, or None."""
    for m in read_manifest():
        if m.matches(task, size, arch, dropout, train_config):
            return m
    return None


def load_state(entry: ShippedModel) -> dict[str, torch.Tensor]:
    """The verified state dict of ``entry``: a clear error naming the file when it is missing
    or its SHA-256 differs from the manifest's (never a silent retrain)."""
    path = entry.path
    if not path.is_file():
        raise ShippedWeightsError(
            f"Shipped weight file {path} is missing. Reinstall hfc-edu, or pass retrain=True "
            "to train this classifier yourself."
        )
    digest = sha256sum(path)
    if digest != entry.sha256:
        raise ShippedWeightsError(
            f"Shipped weight file {path} fails its checksum (SHA-256 {digest[:16]}…, the "
            f"manifest says {entry.sha256[:16]}…): it is damaged or was replaced. Reinstall "
            "hfc-edu, or pass retrain=True to train this classifier yourself."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def note_data_difference(entry: ShippedModel, data_name: str, fingerprint: str) -> bool:
    """Say once when the data loaded is not the copy ``entry`` was trained on; True if so."""
    if fingerprint == entry.data_fingerprint:
        return False
    key = (entry.file, fingerprint)
    if key not in _warned:
        _warned.add(key)
        log.warning(
            "The shipped %s classifier was trained on another copy of the data (%s, "
            "fingerprint %s; loaded: %s, fingerprint %s). It is used as is; its test metrics "
            "are measured again on the data loaded here and differ from the book's.",
            entry.task,
            entry.data_name,
            entry.data_fingerprint,
            data_name,
            fingerprint,
        )
    return True


__all__ = [
    "MANIFEST",
    "WEIGHTS_DIR",
    "ShippedModel",
    "ShippedWeightsError",
    "find_shipped",
    "load_state",
    "note_data_difference",
    "read_manifest",
    "sha256sum",
    "write_manifest",
]
