"""The results folder of ``hfc-edu reproduce``: one folder per (task, profile) run.

Layout::

    DIR/
      run.json              format version, configuration, library and package versions, device
      stages/<stage>.json   one record per finished stage: its key, seconds, and what it wrote
      stages/<stage>/...    a stage's cached artefacts (tensors, fitted objects)
      tables/<name>.csv     machine-readable results
      figures/<name>.png
      results.json          every table and value with the configuration and timings
      report.md, report.html

A stage is done when its record exists and its key (a hash of the configuration and of the keys
of the stages it reads) equals the one the run would compute; a second run therefore does only
what is missing, and ``force`` redoes named stages (and whatever reads them). A folder holding
another configuration's results is refused unless the caller passes ``overwrite=True``; a
folder written by another format version is refused with the version named.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

#: Bump when the layout or the meaning of a stored table changes.
FORMAT_VERSION = 1


class ResultsFolderError(ValueError):
    """The output folder cannot be used as asked (another configuration, another version)."""


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@dataclass
class StageRecord:
    """What a finished stage left in the folder."""

    name: str
    key: str
    seconds: float
    tables: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class ResultsFolder:
    """One run's results folder (see the module docstring).

    Args:
        path: the folder (created if missing).
        config: the run's configuration (task, profile, device, seed, ...), JSON-serialisable.
        overwrite: use a folder that holds another configuration's results (its stages are
            cleared); without it such a folder is a :class:`ResultsFolderError`.
    """

    def __init__(self, path: str | Path, config: dict, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.config = dict(config)
        existing = self.read_run(self.path) if (self.path / "run.json").is_file() else None
        if existing is not None:
            if existing.get("format") != FORMAT_VERSION:
                raise ResultsFolderError(
                    f"{self.path} holds results of format version {existing.get('format')}; this "
                    f"hfc-edu writes version {FORMAT_VERSION}. Use another --out folder, or "
                    "--overwrite to replace them."
                )
            if existing.get("config") != self.config:
                if not overwrite:
                    diff = {
                        k: (existing.get("config", {}).get(k), v)
                        for k, v in self.config.items()
                        if existing.get("config", {}).get(k) != v
                    }
                    raise ResultsFolderError(
                        f"{self.path} holds the results of another configuration "
                        f"(differs in {diff}). Use another --out folder, or --overwrite to "
                        "replace them."
                    )
                shutil.rmtree(self.path / "stages", ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)

    # -- run metadata -----------------------------------------------------------------------
    @staticmethod
    def read_run(path: str | Path) -> dict:
        """``run.json`` of a results folder, or a :class:`ResultsFolderError` saying why not."""
        f = Path(path) / "run.json"
        if not f.is_file():
            raise ResultsFolderError(f"{path} is not a results folder of hfc-edu reproduce.")
        try:
            return json.loads(f.read_text())
        except ValueError as err:
            raise ResultsFolderError(f"{f} cannot be read ({err}).") from None

    def write_run(self, extra: dict) -> None:
        payload = {"format": FORMAT_VERSION, "config": self.config, **extra}
        _atomic_write_text(self.path / "run.json", json.dumps(payload, indent=1, default=str))

    # -- stages ------------------------------------------------------------------------------
    def stage_dir(self, name: str) -> Path:
        d = self.path / "stages" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def record(self, name: str) -> StageRecord | None:
        f = self.path / "stages" / f"{name}.json"
        if not f.is_file():
            return None
        try:
            return StageRecord(**json.loads(f.read_text()))
        except (ValueError, TypeError):
            return None  # a half-written record counts as not done

    def is_done(self, name: str, key: str) -> bool:
        rec = self.record(name)
        return rec is not None and rec.key == key

    def finish(self, rec: StageRecord) -> None:
        _atomic_write_text(
            self.path / "stages" / f"{rec.name}.json",
            json.dumps(rec.__dict__, indent=1, default=str),
        )

    def forget(self, name: str) -> None:
        f = self.path / "stages" / f"{name}.json"
        if f.exists():
            f.unlink()

    # -- tables and figures ------------------------------------------------------------------
    def write_table(self, name: str, df: pd.DataFrame) -> str:
        rel = f"tables/{name}.csv"
        _atomic_write_text(self.path / rel, df.to_csv(index=False))
        return rel

    def read_table(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.path / "tables" / f"{name}.csv")

    def write_figure(self, name: str, fig) -> str:
        rel = f"figures/{name}.png"
        (self.path / "figures").mkdir(parents=True, exist_ok=True)
        fig.savefig(self.path / rel, dpi=150, bbox_inches="tight")
        return rel


__all__ = ["FORMAT_VERSION", "ResultsFolder", "ResultsFolderError", "StageRecord"]
