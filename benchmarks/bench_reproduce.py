"""Where the time of ``hfc-edu reproduce`` goes: every stage timed from scratch, in one process.

Every stage runs once into a fresh temporary results folder, as a user's first run does: the
shipped classifier is loaded (and verified) by the first stage, and ``hiding`` fits the class
mixtures unless the library's GMM cache ($HFC_EDU_CACHE) already holds them. Prints seconds and
the share of each stage.

Usage::

    python benchmarks/bench_reproduce.py                        # chest X-rays 128 px, book profile
    python benchmarks/bench_reproduce.py --task dermoscopy
    python benchmarks/bench_reproduce.py --profile smoke --size 28   # seconds, for a quick look
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from hfc_edu.reproduce import reproduce
from hfc_edu.reproduce.stages import STAGES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="chest_xray")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--profile", default="book")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    kw = dict(size=args.size, profile=args.profile, device=args.device, quiet=True)
    print(
        f"hfc-edu reproduce stages: {args.task}, {args.profile} profile, {args.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        [res] = reproduce(args.task, out=f"{tmp}/run", **kw)
        wall = time.perf_counter() - t0
    total = sum(res.seconds.values())
    print(f"{'stage':16s} {'seconds':>8s} {'share':>6s}")
    for name in STAGES:
        sec = res.seconds[name]
        print(f"{name:16s} {sec:8.1f} {sec / total:6.1%}")
    print(f"{'total':16s} {total:8.1f}   (wall time with imports and the report: {wall:.1f} s)")


if __name__ == "__main__":
    main()
