"""``reproduce``: run the stages of one task (or every task) into a results folder, skipping what
is already there, and write the report."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hfc_edu.config import setup
from hfc_edu.data import TASKS
from hfc_edu.machine import machine_fingerprint
from hfc_edu.models import ARCHITECTURES
from hfc_edu.reproduce.folder import (
    ResultsFolder,
    RunConfig,
    stage_key,
    versions,
    write_json,
)
from hfc_edu.reproduce.report import render_report
from hfc_edu.reproduce.stages import STAGES, StageContext

log = logging.getLogger(__name__)

#: The tasks of ``--task all`` (the book's 2D medical tasks).
ALL_TASKS: tuple[str, ...] = ("chest_xray", "dermoscopy", "fundus")


@dataclass
class ReproduceResult:
    """One task's outcome: its folder, the stages that ran now and those taken from the folder."""

    folder: Path
    ran: list[str]
    cached: list[str]
    seconds: dict[str, float]
    report: Path


def _force_list(force: Sequence[str] | None) -> tuple[set[str], bool]:
    names = set(force or [])
    force_all = "all" in names
    unknown = sorted(names - {"all"} - set(STAGES.names()))
    if unknown:
        raise ValueError(
            f"Unknown stage(s) {unknown} in --force; the stages are {STAGES.names()} (or 'all')."
        )
    return (set(STAGES.names()) if force_all else names), force_all


def _stage_list(stages: Sequence[str] | None, forced: set[str], force_all: bool) -> list[str]:
    if stages is None:
        return STAGES.names()
    chosen = [stages] if isinstance(stages, str) else list(stages)
    unknown = sorted(set(chosen) - set(STAGES.names()))
    if unknown or not chosen:
        raise ValueError(
            f"Unknown stage(s) {unknown} in stages; the stages are {STAGES.names()}."
            if unknown
            else "stages is empty: name at least one stage, or None for all of them."
        )
    idle = sorted(forced - set(chosen)) if not force_all else []
    if idle:
        raise ValueError(
            f"--force {idle} names stage(s) that --stage leaves out; add them to --stage."
        )
    return [name for name in STAGES.names() if name in chosen]  # the pipeline's order


def reproduce(
    task: str = "chest_xray",
    *,
    size: int | None = None,
    profile: str | None = None,
    device: str | None = None,
    out: Path | str | None = None,
    force: Sequence[str] | None = None,
    stages: Sequence[str] | None = None,
    arch: str | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> list[ReproduceResult]:
    """Run the pipeline for ``task`` (``"all"``: :data:`ALL_TASKS`, one sub-folder each).

    Args:
        task: a task name (see ``hfc-edu data``) or ``"all"``.
        size: image size in px (default: the task's book size; not with ``"all"``).
        profile: ``book`` (default), ``paper`` or ``smoke``.
        device: ``cpu`` or ``cuda`` (default: CUDA where present).
        out: the results folder (default ``hfc-edu-results/<task>_<size>_<profile>``).
        force: stages to redo (``"all"``: every stage, and a folder holding another
            configuration's results is replaced).
        stages: the stages to run (None: all of :data:`STAGES`, in their order); the others are
            neither run nor removed, and the report shows what the folder holds.
        arch: the classifier's architecture (a name of
            :data:`~hfc_edu.models.ARCHITECTURES`; None: the profile's), e.g. to compare model
            capacities with the shipped 28 px chest X-ray models of three widths.
        seed: seeds every stage (draws, random starts, splits); the classifier is the book's
            (shipped, training seed 0) whatever the seed.
        quiet: no progress bars (also when standard error is not a terminal).
    Returns one :class:`ReproduceResult` per task.
    """
    forced, force_all = _force_list(force)
    chosen = _stage_list(stages, forced, force_all)
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}.")
    cfg = setup(seed=seed, profile=profile, device=device)  # seeds; makes the profile active
    prof, dev, seed = cfg.profile, cfg.device, cfg.seed
    if prof.name == "paper" and dev.type == "cpu":
        log.warning(
            "The paper profile on a CPU trains ResNet-50 at 224 px and fits 64-component "
            "mixtures per layer: expect many hours. It is meant for one GPU (--device cuda)."
        )
    if task == "all":
        if size is not None:
            raise ValueError("--size applies to one task; --task all uses each task's book size.")
        tasks = list(ALL_TASKS)
    else:
        TASKS.get(task)  # a clear error for an unknown task, before any work
        tasks = [task]
    quiet = quiet or not sys.stderr.isatty()
    base = Path(out) if out is not None else None
    results = []
    for name in tasks:
        info = TASKS.get(name)
        px = info.default_size if size is None else size
        if px not in info.sizes:
            raise ValueError(f"Task {name!r} exists at {list(info.sizes)} px, not {px}.")
        config = RunConfig(name, px, prof, seed, dev.type, arch)
        if base is None:
            model = f"_{arch}" if arch else ""
            root = Path("hfc-edu-results") / f"{name}_{px}{model}_{prof.name}"
        else:
            root = base / name if task == "all" else base
        results.append(_run_task(config, dev, root, chosen, forced, force_all, quiet))
    return results


def _run_task(
    config: RunConfig,
    dev: torch.device,
    root: Path,
    chosen: list[str],
    forced: set[str],
    force_all: bool,
    quiet: bool,
) -> ReproduceResult:
    folder = ResultsFolder(root)
    run = folder.claim(config, force_all)
    run.update(versions=versions(), machine=machine_fingerprint(), device=str(dev))
    ctx = StageContext(config, dev, quiet)
    ran, cached, seconds = [], [], {}
    for name in chosen:
        stage = STAGES.get(name)
        key = stage_key(config, name, stage.version)
        if name not in forced and folder.is_done(name, key):
            cached.append(name)
            rec = folder.stage_record(name) or {}
            run["stages"][name] = {"seconds": rec.get("seconds"), "ran": "earlier"}
            continue
        if not quiet:
            tqdm.write(f"hfc-edu reproduce: {config.task}: {stage.title} ...", file=sys.stderr)
        t0 = time.perf_counter()
        output = stage.run(ctx)
        sec = time.perf_counter() - t0
        for fig_name, fig in output.figures.items():
            (folder.root / "figures").mkdir(exist_ok=True)
            fig.savefig(folder.root / "figures" / f"{fig_name}.png", dpi=150, bbox_inches="tight")
        folder.write_stage(name, key, sec, output.tables, output.values)
        run["stages"][name] = {"seconds": round(sec, 2), "ran": "now"}
        write_json(folder.run_file, run)  # an interrupted run keeps what is done
        ran.append(name)
        seconds[name] = sec
        log.info("%s: %s in %.1f s", config.task, name, sec)
    write_json(folder.run_file, run)
    md, _ = render_report(folder.root)
    return ReproduceResult(folder.root, ran, cached, seconds, md)


__all__ = ["ALL_TASKS", "ReproduceResult", "reproduce"]
