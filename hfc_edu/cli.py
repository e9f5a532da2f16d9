"""The ``hfc-edu`` command line (also ``python -m hfc_edu``)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from hfc_edu import __version__


def _cmd_train(args: argparse.Namespace) -> int:
    import hfc_edu
    from hfc_edu.models import get_classifier
    from hfc_edu.models.pretrained import default_train_config

    cfg = hfc_edu.setup(seed=args.seed, profile=args.profile, device=args.device)
    tcfg = default_train_config(cfg.profile, args.seed, args.task)
    if args.epochs:
        tcfg = replace(tcfg, epochs=args.epochs)
    print(
        f"hfc-edu {__version__}: profile {cfg.profile.name}, device {cfg.device}, task {args.task}"
    )
    tm = get_classifier(
        args.task,
        arch=args.arch,
        size=args.size,
        profile=cfg.profile,
        train_config=tcfg,
        seed=args.seed,
        device=cfg.device,
        retrain=args.retrain,
        progress=not args.quiet,
    )
    d = tm.data
    print(f"data     {d!r}")
    if d.notes:
        print("notes    " + " ".join(d.notes))
    state = {
        "shipped": "shipped with hfc-edu (verified)",
        "cache": "loaded from the checkpoint cache",
        "trained": f"trained in {tm.seconds:.0f} s",
    }[tm.source]
    print(
        f"model    {tm.model.config['arch']} ({sum(p.numel() for p in tm.model.parameters()):,} parameters), {state}, best epoch {tm.best_epoch}"
    )
    print(
        f"test     accuracy {tm.test['accuracy']:.3f}  balanced accuracy {tm.test['balanced_accuracy']:.3f}  AUC {tm.test['auc']:.3f}"
    )
    print(f"{'weights' if tm.source == 'shipped' else 'saved':9s}{tm.path}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from hfc_edu.data import TASKS, data_root, load_task

    print(f"data root: {data_root()}")
    for name, info in TASKS.items():
        if args.load:
            try:
                print(f"  {name:16s} {load_task(name, download=False)!r}")
            except Exception as err:  # report and go on: this is an inventory
                print(f"  {name:16s} unavailable: {err}")
            continue
        sizes = " ".join(f"[{s}]" if s == info.default_size else str(s) for s in info.sizes)
        print(f"  {name:16s} {sizes:18s} {info.description}")
        if args.verbose:
            print(f"  {'':16s} {'':18s} source: {info.source}; licence: {info.licence}")
            if info.train_overrides:
                print(f"  {'':16s} {'':18s} training overrides: {dict(info.train_overrides)}")
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from hfc_edu.reproduce import reproduce

    results = reproduce(
        args.task, size=args.size, profile=args.profile, device=args.device, out=args.out,
        force=args.force, stages=args.stage, arch=args.arch, seed=args.seed, quiet=args.quiet,
    )  # fmt: skip
    for r in results:
        total = sum(r.seconds.values())
        done = f"ran {', '.join(r.ran)} in {total:.0f} s" if r.ran else "nothing to do"
        cached = f"; from the folder: {', '.join(r.cached)}" if r.cached else ""
        print(f"{r.folder}: {done}{cached}")
        for name, sec in r.seconds.items():
            print(f"  {name:16s} {sec:7.1f} s")
        print(f"  report: {r.report} and {r.report.with_suffix('.html')}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from hfc_edu.reproduce import render_report

    md, htm = render_report(args.folder)
    print(f"report: {md} and {htm}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from hfc_edu.reproduce import compare_runs

    text = compare_runs(args.first, args.second)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text)
        print(f"comparison: {args.out}")
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfc-edu", description="Adversarial attacks, detectors and HFC on medical images."
    )
    p.add_argument("--version", action="version", version=f"hfc-edu {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "reproduce",
        help="the papers' experiments on one task (or all), with a report beside their claims",
    )
    r.add_argument(
        "--task",
        default="chest_xray",
        help="task name (see `hfc-edu data`) or all; default chest_xray",
    )
    r.add_argument(
        "--size", type=int, default=None, help="image size in px (default: the task's book size)"
    )
    r.add_argument(
        "--profile", default=None, help="book (default), paper or smoke; also $HFC_EDU_PROFILE"
    )
    r.add_argument("--device", default=None, help="cpu or cuda (default: cuda where present)")
    r.add_argument(
        "--out",
        default=None,
        help="results folder (default hfc-edu-results/<task>_<size>_<profile>)",
    )
    r.add_argument(
        "--force",
        action="append",
        metavar="STAGE",
        help="redo a stage (repeatable), or all: redo every stage and replace a folder that "
        "holds another configuration's results",
    )
    r.add_argument(
        "--stage",
        action="append",
        metavar="STAGE",
        help="run only this stage (repeatable; default: every stage): classifier, attacks, "
        "detection, fixed_direction, hiding",
    )
    r.add_argument(
        "--arch", default=None,
        help="classifier architecture (default: the profile's), e.g. compact_resnet_wide",
    )  # fmt: skip
    r.add_argument(
        "--seed", type=int, default=0,
        help="seeds the stages' draws and starts (the classifier is the book's whatever the seed)",
    )  # fmt: skip
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=_cmd_reproduce)

    rp = sub.add_parser("report", help="re-render the report of a results folder")
    rp.add_argument("folder", help="a folder written by `hfc-edu reproduce`")
    rp.set_defaults(func=_cmd_report)

    cp = sub.add_parser("compare", help="two results folders side by side (Markdown)")
    cp.add_argument("first")
    cp.add_argument("second")
    cp.add_argument("--out", default=None, help="write the comparison here instead of stdout")
    cp.set_defaults(func=_cmd_compare)

    t = sub.add_parser("train", help="train (or load from cache) and evaluate a classifier")
    t.add_argument(
        "--task", default="chest_xray", help="task name (see `hfc-edu data`); default chest_xray"
    )
    t.add_argument(
        "--size", type=int, default=None, help="image size in px (default: the task's book size)"
    )
    t.add_argument("--arch", default=None, help="model architecture (default: the profile's)")
    t.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    t.add_argument("--profile", default=None, help="book (default) or paper; also $HFC_EDU_PROFILE")
    t.add_argument("--device", default=None, help="cpu or cuda (default: cuda where present)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--retrain", action="store_true", help="ignore a cached checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_train)

    d = sub.add_parser(
        "data", help="list the tasks (sizes in px, the default in brackets) and the data root"
    )
    d.add_argument(
        "--load",
        action="store_true",
        help="load each task found in the data root (no downloads) and show its size",
    )
    d.add_argument("--verbose", action="store_true", help="show sources and licences")
    d.set_defaults(func=_cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"hfc-edu: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
