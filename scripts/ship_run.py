#!/usr/bin/env python
"""Ship a results folder of ``hfc-edu reproduce`` with the package (``hfc_edu/runs/<name>/``).

For runs a page cannot afford (a ResNet-50 trained on a CPU takes an hour): the chapter reads
the shipped tables with :func:`hfc_edu.reproduce.shipped_run` and says which command made them.
Only what a reader needs is copied: ``run.json`` (configuration, versions, machine, timings) and
each stage's ``stage.json`` and tables; figures and reports stay behind::

    hfc-edu reproduce --task chest_xray --size 128 --arch resnet50 \\
        --stage classifier --stage hiding --out runs/chest_xray_128_resnet50
    python scripts/ship_run.py runs/chest_xray_128_resnet50
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from hfc_edu.reproduce.folder import RUNS_DIR, ResultsFolder, ResultsFolderError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a results folder of `hfc-edu reproduce`")
    ap.add_argument("--name", help="name under hfc_edu/runs (default: the folder's name)")
    args = ap.parse_args(argv)
    src = ResultsFolder(args.folder)
    try:
        run = src.read_run()
    except ResultsFolderError as err:
        sys.exit(str(err))
    stages = [s for s, rec in run.get("stages", {}).items() if src.stage_record(s) is not None]
    if not stages:
        sys.exit(f"{args.folder} holds no finished stage: nothing to ship.")
    dst = RUNS_DIR / (args.name or args.folder.name)
    if dst.exists():
        shutil.rmtree(dst)
    for stage in stages:
        (dst / stage).mkdir(parents=True)
        rec = src.stage_record(stage)
        for name in ["stage.json", *(f"{t}.csv" for t in rec.get("tables", []))]:
            shutil.copy2(src.stage_dir(stage) / name, dst / stage / name)
    shutil.copy2(src.run_file, dst / "run.json")
    size = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    print(f"shipped {', '.join(stages)} of {args.folder} as {dst} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
