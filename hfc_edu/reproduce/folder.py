"""The results folder of ``hfc-edu reproduce``: its layout, its configuration and its stage cache.

Layout of ``DIR`` (one task)::

    run.json                  format, configuration, versions, machine, per-stage timings
    <stage>/stage.json        the stage's cache key, seconds and headline values
    <stage>/<table>.csv       the stage's tables (machine-readable)
    figures/<name>.png        the figures
    results.json              every headline value and every claim's verdict
    report.md, report.html    the report

A stage is done when its ``stage.json`` holds the key of the current configuration and every
table it lists exists; a second run skips it. The key hashes the configuration, the stage's own
version and the package version, so a new release or another profile never reuses old tables.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from hfc_edu import __version__
from hfc_edu.cache import settings_key
from hfc_edu.config import Profile

#: Version of the folder layout; ``hfc-edu report`` refuses other versions.
FORMAT = 1
#: Results folders shipped with the package: runs too long for a page (a ResNet-50 trained on a
#: CPU), which chapters read instead of recomputing. ``scripts/ship_run.py`` puts one here.
RUNS_DIR = Path(__file__).resolve().parent.parent / "runs"


class ResultsFolderError(ValueError):
    """A results folder that cannot be used as asked (another configuration, another format)."""


@dataclass(frozen=True)
class RunConfig:
    """What a results folder was computed from (its stages' cache keys hash this)."""

    task: str
    size: int
    profile: Profile
    seed: int
    device: str  # "cpu" or "cuda" (the type only: numbers differ between the two)
    arch: str | None = None  # the classifier's architecture (None: the profile's)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["profile"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["profile"].items()}
        if d["arch"] is None:  # the profile's model: the keys of folders written before `arch`
            del d["arch"]
        return d

    def label(self) -> str:
        arch = f", {self.arch}" if self.arch else ""
        return (
            f"{self.task} {self.size} px{arch}, {self.profile.name} profile, {self.device}, "
            f"seed {self.seed}"
        )


def stage_key(config: RunConfig, stage: str, stage_version: int) -> str:
    """Cache key of one stage of one configuration."""
    return settings_key(
        {
            "format": FORMAT,
            "version": __version__,
            "stage": stage,
            "stage_version": stage_version,
            "config": config.as_dict(),
        }
    )


def versions() -> dict[str, str]:
    """Versions of the software a run depends on."""
    import numpy
    import sklearn
    import torch

    return {
        "hfc_edu": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
    }


def write_text(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:  # callers check existence; a vanished file is not "corrupt"
        raise
    except (OSError, ValueError) as err:
        raise ResultsFolderError(
            f"{path} cannot be read ({type(err).__name__}: {err}); delete it or rerun with "
            "--force all."
        ) from err


class ResultsFolder:
    """One task's results folder (see the module docstring for the layout)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- configuration ---------------------------------------------------------------------
    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    def read_run(self) -> dict:
        """``run.json``; a :class:`ResultsFolderError` if the folder holds no results of a known
        format."""
        if not self.run_file.exists():
            raise ResultsFolderError(
                f"{self.root} holds no hfc-edu results (no run.json): run "
                f"`hfc-edu reproduce --out {self.root}` first."
            )
        run = read_json(self.run_file)
        fmt = run.get("format")
        if fmt != FORMAT:
            raise ResultsFolderError(
                f"{self.root} was written by hfc-edu {run.get('versions', {}).get('hfc_edu', '?')} "
                f"in results format {fmt}; this hfc-edu ({__version__}) reads format {FORMAT}. "
                "Rerun `hfc-edu reproduce` into a new folder (or with --force all)."
            )
        return run

    def claim(self, config: RunConfig, force_all: bool) -> dict:
        """Make the folder this configuration's; refuse a folder holding another one's results
        (unless ``force_all``: then its stages are redone). Returns the run record."""
        if self.root.exists() and not self.root.is_dir():
            raise ResultsFolderError(f"{self.root} exists and is not a folder.")
        run = {"format": FORMAT, "config": config.as_dict(), "stages": {}}
        if self.run_file.exists():
            try:
                old = self.read_run()
            except ResultsFolderError:
                if not force_all:
                    raise
                old = None
            if old is not None and old.get("config") != config.as_dict() and not force_all:
                raise ResultsFolderError(
                    f"{self.root} holds the results of another configuration "
                    f"({_describe(old.get('config', {}))}); this run is {config.label()}. "
                    "Choose another --out, or pass --force all to replace them."
                )
            if old is not None and not force_all:
                run["stages"] = old.get("stages", {})
        elif self.root.exists() and any(self.root.iterdir()) and not force_all:
            raise ResultsFolderError(
                f"{self.root} is not empty and holds no hfc-edu results: choose another --out "
                "(nothing was written)."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        return run

    # -- stages ----------------------------------------------------------------------------
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stage_record(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "stage.json"
        return read_json(path) if path.exists() else None

    def is_done(self, stage: str, key: str) -> bool:
        rec = self.stage_record(stage)
        if rec is None or rec.get("key") != key:
            return False
        return all((self.stage_dir(stage) / f"{t}.csv").exists() for t in rec.get("tables", []))

    def write_stage(
        self, stage: str, key: str, seconds: float, tables: dict[str, pd.DataFrame], values: dict
    ) -> dict:
        d = self.stage_dir(stage)
        d.mkdir(parents=True, exist_ok=True)
        for name, df in tables.items():
            write_text(d / f"{name}.csv", df.to_csv(index=False))
        rec = {"key": key, "seconds": round(seconds, 2), "tables": list(tables), "values": values}
        write_json(d / "stage.json", rec)
        return rec

    def table(self, stage: str, name: str) -> pd.DataFrame:
        path = self.stage_dir(stage) / f"{name}.csv"
        if not path.exists():
            raise ResultsFolderError(
                f"{path} is missing: rerun `hfc-edu reproduce --force {stage}`."
            )
        return pd.read_csv(path)

    def values(self, stage: str) -> dict:
        rec = self.stage_record(stage)
        return {} if rec is None else rec.get("values", {})


def shipped_runs() -> list[str]:
    """Names of the results folders shipped with the package (:data:`RUNS_DIR`)."""
    if not RUNS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in RUNS_DIR.glob("*/run.json"))


def shipped_run(name: str) -> ResultsFolder:
    """The shipped results folder ``name`` (see :func:`shipped_runs`), format-checked."""
    names = shipped_runs()
    if name not in names:
        raise ResultsFolderError(
            f"No shipped run {name!r}; the package ships {names}. "
            "`hfc-edu reproduce` computes any configuration into a folder of your own."
        )
    folder = ResultsFolder(RUNS_DIR / name)
    folder.read_run()
    return folder


def _describe(config: dict) -> str:
    prof = config.get("profile", {})
    return (
        f"{config.get('task')} {config.get('size')} px, {prof.get('name')} profile, "
        f"{config.get('device')}, seed {config.get('seed')}"
    )


__all__ = [
    "FORMAT",
    "RUNS_DIR",
    "ResultsFolder",
    "ResultsFolderError",
    "RunConfig",
    "read_json",
    "shipped_run",
    "shipped_runs",
    "stage_key",
    "versions",
    "write_json",
    "write_text",
]
