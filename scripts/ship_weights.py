#!/usr/bin/env python
"""Train the book's classifiers and ship them with the package (``hfc_edu/weights/``).

Every classifier a chapter loads is listed in :data:`hfc_edu.models.pretrained.BOOK_MODELS`.
This script gets each one with :func:`~hfc_edu.models.get_classifier` (from the checkpoint
cache, or trained now; ``--retrain`` trains afresh), in processes of one thread each so the
weights are bit-for-bit reproducible on this machine, saves its ``state_dict`` as
``hfc_edu/weights/<task>_<size>_<arch>.pt`` and rewrites ``manifest.json`` with the training
configuration, data fingerprint, test metrics, history, training time, this machine's numerics
fingerprint and the file's SHA-256::

    python scripts/ship_weights.py --jobs 2             # all of BOOK_MODELS
    python scripts/ship_weights.py --only fundus --retrain
    python scripts/ship_weights.py --adv-only           # the PGD-trained chest X-ray model

Re-execute the chapters afterwards (``scripts/execute_notebooks.py``): their stored outputs come
from the shipped weights.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
from dataclasses import asdict, replace

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def _one(job: tuple[dict, bool]) -> dict:
    import torch

    from hfc_edu.config import get_profile
    from hfc_edu.machine import machine_fingerprint
    from hfc_edu.models import get_classifier
    from hfc_edu.models.pretrained import default_train_config
    from hfc_edu.models.shipped import WEIGHTS_DIR, ShippedModel, sha256sum

    spec, retrain = job
    torch.manual_seed(0)
    prof = get_profile("book")
    tm = get_classifier(profile=prof, progress=False, retrain=retrain, shipped=False, **spec)
    d, cfg = tm.data, tm.model.config
    tcfg = default_train_config(prof, 0, d)
    if spec.get("adv_eps") is not None:
        tcfg = replace(tcfg, adv_eps=spec["adv_eps"])
    name = f"{d.task}_{d.image_size}_{cfg['arch']}{tcfg.suffix}.pt"
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    path = WEIGHTS_DIR / name
    torch.save({k: v.detach().cpu().contiguous() for k, v in tm.model.state_dict().items()}, path)
    entry = ShippedModel(
        file=name, task=d.task, size=d.image_size, arch=cfg["arch"], data_name=d.name,
        data_fingerprint=d.fingerprint(), model_config=cfg, train_config=tcfg.key(),
        test=tm.test, sha256=sha256sum(path), history=tm.history, best_epoch=tm.best_epoch,
        seconds=round(tm.seconds, 1), machine=machine_fingerprint(),
    )  # fmt: skip
    print(
        f"{name:45s} acc {tm.test['accuracy']:.3f}  bal {tm.test['balanced_accuracy']:.3f}  "
        f"AUC {tm.test['auc']:.3f}  ({tm.source}, {tm.seconds:.0f} s, "
        f"{path.stat().st_size / 1e6:.2f} MB)",
        flush=True,
    )
    return asdict(entry)


def main(argv: list[str] | None = None) -> int:
    from hfc_edu.models.pretrained import BOOK_MODELS
    from hfc_edu.models.shipped import ShippedModel, read_manifest, write_manifest

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--only", nargs="+", default=None, help="tasks to (re)ship; others are kept")
    p.add_argument("--retrain", action="store_true", help="train afresh, ignoring the cache")
    p.add_argument(
        "--adv-only", action="store_true", help="only the adversarially trained model(s)"
    )
    args = p.parse_args(argv)
    specs = [s for s in BOOK_MODELS if args.only is None or s["task"] in args.only]
    if args.adv_only:
        specs = [s for s in specs if s.get("adv_eps")]
    if not specs:
        p.error(f"no model of BOOK_MODELS has task {args.only}")
    jobs = [(s, args.retrain) for s in sorted(specs, key=lambda s: -(s.get("size") or 0))]
    with mp.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        new = [ShippedModel(**e) for e in pool.map(_one, jobs, chunksize=1)]
    keep = [m for m in read_manifest() if m.file not in {n.file for n in new}]
    order = {f"{s['task']}|{s.get('size')}|{s.get('arch')}": i for i, s in enumerate(BOOK_MODELS)}
    models = keep + new
    models.sort(
        key=lambda m: min((i for k, i in order.items() if k.startswith(m.task + "|")), default=99)
    )
    write_manifest(models)
    total = sum(m.path.stat().st_size for m in models) / 1e6
    print(f"manifest: {len(models)} models, {total:.1f} MB of weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
