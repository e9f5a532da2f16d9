#!/usr/bin/env python
"""Measure how much each chapter's claims vary, to set the claim checks' tolerances.

Runs chapters (without saving them) under several seeds and with this machine's CPU kernels
and with other kernels (:func:`hfc_edu.machine.other_kernels`: AVX2 code paths on an AVX-512
machine, the baseline SSE paths on an AVX2 machine, where the AVX2 variables change nothing),
collects every :func:`hfc_edu.claims.check` value and prints, per claim, the range measured
next to the range the check allows::

    python scripts/measure_claims.py book/06_hfc.ipynb --seeds 0 1 2 --jobs 2

A claim whose allowed range does not contain the whole measured range (with a margin) is
marked; widen the range only if the prose still holds over the measured variation, otherwise
change the prose. ``--out FILE`` keeps the raw JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_notebooks import _expand, execute_notebook, kernel_env  # noqa: E402

from hfc_edu.machine import other_kernels  # noqa: E402


def _run(args: tuple[Path, int, str, str, int]) -> tuple[str, int, str, str | None, float]:
    path, seed, kernels, log, timeout = args
    env = kernel_env()
    env.update(
        HFC_EDU_SEED=str(seed),
        HFC_EDU_CLAIMS_LOG=log,
        HFC_EDU_CLAIMS_MODE="measure",
        HFC_EDU_NOTEBOOK=path.name,
    )
    env["HFC_EDU_CLAIMS_RUN"] = f"seed={seed} kernels={kernels}"
    if kernels == "other":
        env.update(other_kernels())
    res = execute_notebook(path, timeout=timeout, env=env, write=False)
    return path.name, seed, kernels, res.error, res.seconds


def summarize(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    g = df.groupby(["notebook", "claim"], sort=False)
    out = g.agg(
        runs=("value", "size"),
        measured_min=("value", "min"),
        measured_max=("value", "max"),
        low=("low", "first"),
        high=("high", "first"),
    ).reset_index()
    spread = (out.measured_max - out.measured_min).fillna(0)
    lo_ok = out.low.isna() | (out.measured_min >= out.low + 0.5 * spread)
    hi_ok = out.high.isna() | (out.measured_max <= out.high - 0.5 * spread)
    out["margin_ok"] = lo_ok & hi_ok
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="notebooks or folders (default: book/)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--kernels", nargs="+", default=["default", "other"], choices=["default", "other"]
    )
    p.add_argument("--jobs", "-j", type=int, default=1)
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--out", type=Path, default=None, help="keep the raw JSON lines here")
    args = p.parse_args(argv)
    log = args.out or Path(tempfile.mkstemp(suffix=".jsonl")[1])
    log.write_text("")
    jobs = [
        (nb, s, k, str(log), args.timeout)
        for nb in _expand(args.paths)
        for s in args.seeds
        for k in args.kernels
    ]
    failed = 0
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, seed, kernels, err, sec in pool.map(_run, jobs):
            print(
                f"{sec:7.1f} s  {name} seed={seed} kernels={kernels}  {'FAILED' if err else 'ok'}",
                flush=True,
            )
            if err:
                failed += 1
                print(err[-2000:], file=sys.stderr)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        print("No claim values were logged.")
        return 1
    pd.set_option("display.width", 200, "display.max_colwidth", 70, "display.max_rows", 500)
    print(summarize(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if not args.out:
        os.remove(log)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
