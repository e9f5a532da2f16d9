"""The stages of ``hfc-edu reproduce``, in order; each calls the library functions its chapter
calls (no experiment exists twice).

==================  ====================================================  ==========
stage               what it measures                                      chapter
==================  ====================================================  ==========
``classifier``      the (shipped or trained) classifier's test metrics    1
``attacks``         success of FGSM, BIM, PGD, CW-L∞ against ε (Ma)       2
``detection``       KD … DNN on the four attacks at 1/256 and 4/256 (Ma)  5
``fixed_direction`` feature-gradient cosines along PGD (Yao's theorem)    3
``hiding``          fixed detectors on PGD, HFC and adaptive attacks      6, 7
==================  ====================================================  ==========

Adding a stage is one function and one :data:`STAGES` line; its claims go in
:mod:`hfc_edu.reproduce.claims`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure  # no pyplot: figures go to files, the backend stays as is
from matplotlib.patches import Rectangle
from tqdm.auto import tqdm

from hfc_edu.experiments import theory
from hfc_edu.experiments.bypass import (
    STAND_IN,
    bypass_table,
    near_chance,
    stand_ins,
)
from hfc_edu.experiments.detection import DEFAULT_ATTACKS, metric_grid, run_detection
from hfc_edu.experiments.hiding import (
    LAMBDAS,
    choose_lambda,
    hiding_attack,
    task_gmms,
    validation_floor,
)
from hfc_edu.experiments.robustness import accuracy_vs_eps
from hfc_edu.hfc import (
    FeatureMatchingLoss,
    KDLoss,
    MahalanobisLoss,
)
from hfc_edu.protocol import correct_subset
from hfc_edu.registry import Registry
from hfc_edu.reproduce.folder import RunConfig

T = TypeVar("T")

#: Budgets of the success-vs-ε curve (pixel units; chapter 2's grid).
SWEEP_EPS: tuple[float, ...] = tuple(k / 256 for k in (0, 0.25, 0.5, 1, 2, 4))
#: Budgets of Ma et al.'s detection table (1/256 is their main setting; 4/256 chapter 7's).
DETECTION_EPS: tuple[float, ...] = (1 / 256, 4 / 256)
#: The budget of the hiding table (chapter 7).
HIDING_EPS = 4 / 256
#: The budget of the fixed-direction check (chapter 3).
DIRECTION_EPS = 2 / 256
#: Ma et al.'s four detectors.
MA_DETECTORS: tuple[str, ...] = ("KD", "LID", "DFeat", "QFeat")
#: Base attacks of the hiding table.
HIDING_BASES: tuple[str, ...] = ("BIM", "PGD", "MIM", "CW-Linf")


@dataclass
class StageOutput:
    """What a stage returns: tables (written as CSV), headline values (JSON) and figures (PNG)."""

    tables: dict[str, pd.DataFrame]
    values: dict[str, float | int | str | bool | None]
    figures: dict[str, Figure] = field(default_factory=dict)


class StageContext:
    """What every stage reads: the configuration, the device, the classifier (loaded once) and
    a progress bar helper."""

    def __init__(self, config: RunConfig, device: torch.device, quiet: bool) -> None:
        self.config = config
        self.profile = config.profile
        self.seed = config.seed
        self.device = device
        self.quiet = quiet

    @cached_property
    def classifier(self):
        from hfc_edu.models import get_classifier

        # The book's classifier (shipped, trained with seed 0) whatever the run's seed: as in
        # the chapters, the seed varies the experiments' draws and starts, not the model
        # (`hfc-edu train --seed N` trains another one).
        return get_classifier(
            self.config.task,
            size=self.config.size,
            arch=self.config.arch,
            profile=self.profile,
            seed=0,
            device=self.device,
            progress=not self.quiet,
        )

    @cached_property
    def gmms(self):
        tm = self.classifier
        p = self.profile
        return task_gmms(
            tm.model, tm.data, p.n_fit, p.gmm_components, seed=self.seed, backend=p.gmm_backend
        )

    def progress(self, items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
        """``items`` with a progress bar (none when quiet)."""
        return iter(tqdm(items, desc=desc, total=total, leave=False, disable=self.quiet))

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


@dataclass(frozen=True)
class Stage:
    """One stage: ``run(ctx) -> StageOutput``; ``version`` is part of its cache key (raise it
    when the stage's output changes)."""

    name: str
    title: str
    run: Callable[[StageContext], StageOutput]
    version: int = 1


# ------------------------------------------------------------------------------- stages
def _classifier(ctx: StageContext) -> StageOutput:
    tm = ctx.classifier
    d = tm.data
    counts = torch.bincount(d.y_test.long(), minlength=d.num_classes)
    row = {
        "task": ctx.config.task,
        "dataset": d.name,
        "image_size": d.image_size,
        "classes": d.num_classes,
        "arch": tm.model.config["arch"],
        "parameters": sum(p.numel() for p in tm.model.parameters()),
        "weights": tm.source,
        "n_test": len(d.y_test),
        "accuracy": float(tm.test["accuracy"]),
        "balanced_accuracy": float(tm.test["balanced_accuracy"]),
        "auc": float(tm.test["auc"]),
        "majority_accuracy": float(counts.max() / counts.sum()),
    }
    return StageOutput({"classifier": pd.DataFrame([row])}, row)


def _attacks(ctx: StageContext) -> StageOutput:
    tm, p = ctx.classifier, ctx.profile
    x, y = tm.data.x_test, tm.data.y_test
    draw = torch.randperm(len(y), generator=ctx.generator())[: max(p.n_attack // 6, 2)]
    draw = draw.sort().values
    frames = [
        accuracy_vs_eps(
            tm.model, x[draw], y[draw], [a], SWEEP_EPS, steps=p.attack_steps, seed=ctx.seed
        )
        for a in ctx.progress(DEFAULT_ATTACKS, "attacks: success vs eps")
    ]
    sweep = pd.concat(frames, ignore_index=True)
    values = {
        f"success {r.attack} {r.eps_256:g}/256": float(r.success_rate)
        for r in sweep.itertuples()
        if r.eps > 0
    }
    values["images"] = int(sweep.n.iloc[0])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for name, g in sweep[sweep.eps > 0].groupby("attack", sort=False):
        ax.plot(g.eps_256, g.success_rate, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ε (1/256)")
    ax.set_ylabel("attack success rate")
    ax.set_title(f"{tm.data.name}: success against ε ({int(sweep.n.iloc[0])} test images)")
    ax.legend()
    fig.tight_layout()
    return StageOutput({"success_vs_eps": sweep}, values, {"success_vs_eps": fig})


def _detection(ctx: StageContext) -> StageOutput:
    tm = ctx.classifier
    tables = []
    for e in ctx.progress(DETECTION_EPS, "detection: attacks and detectors per eps"):
        rep = run_detection(
            tm.model, tm.data, DEFAULT_ATTACKS, eps=e, profile=ctx.profile, seed=ctx.seed
        )
        tables.append(rep.table)
    table = pd.concat(tables, ignore_index=True)
    values: dict = {}
    for (attack, e256), g in table.groupby(["attack", "eps_256"], sort=False):
        g = g.set_index("detector")
        ma = g.auc.reindex(list(MA_DETECTORS)).dropna()
        values[f"best Ma AUC {attack} {e256:g}/256"] = float(ma.max()) if len(ma) else None
        values[f"success {attack} {e256:g}/256"] = float(g.success_rate.iloc[0])
        for det, auc in g.auc.items():
            values[f"AUC {det} {attack} {e256:g}/256"] = float(auc)
    fig = Figure(figsize=(4.2 * len(DETECTION_EPS), 3.2))
    axes = fig.subplots(1, len(DETECTION_EPS))
    for ax, e in zip(np.atleast_1d(axes), DETECTION_EPS, strict=True):
        grid = metric_grid(table[np.isclose(table.eps, e)], "auc")
        _heatmap(ax, grid, f"AUC at {e * 256:g}/256")
    fig.tight_layout()
    return StageOutput({"detection": table}, values, {"detection_auc": fig})


def _fixed_direction(ctx: StageContext) -> StageOutput:
    tm, p = ctx.classifier, ctx.profile
    d = tm.data
    idx = correct_subset(tm.model, d.x_test, d.y_test, max(p.n_attack // 2, 2), seed=ctx.seed)
    traj = theory.pgd_trajectory(
        tm.model, d.x_test[idx], d.y_test[idx], eps=DIRECTION_EPS, steps=p.attack_steps,
        generator=ctx.generator(),
    )  # fmt: skip
    cos = theory.cosine_table({ctx.config.task: traj}).groupby("comparison", sort=False).cosine
    summary = pd.DataFrame(
        {
            "pairs": cos.size(),
            "min": cos.min(),
            "percentile_1": cos.quantile(0.01),
            "median": cos.median(),
        }
    ).reset_index()
    values = {
        "binary": d.num_classes == 2,
        "images": len(idx),
        "success": float(traj.success.float().mean()),
    }
    for r in summary.itertuples():
        values[f"min cosine {r.comparison}"] = float(r.min)
        values[f"1st percentile cosine {r.comparison}"] = float(r.percentile_1)
    return StageOutput({"fixed_direction": summary}, values)


def _hiding(ctx: StageContext) -> StageOutput:
    tm, p, seed = ctx.classifier, ctx.profile, ctx.seed
    model, data, eps = tm.model, tm.data, HIDING_EPS
    steps = ctx.progress(range(6), "hiding: detectors, mixtures, lambda, attacks", total=6)
    rep = run_detection(
        model, data, ["PGD"], eps=eps, n=max(p.n_attack // 2, 2), profile=p, seed=seed
    )
    run = rep.run("PGD")
    x, y, t = run.test_clean, run.test_labels, run.test_targets
    next(steps)
    gmms = ctx.gmms
    floor = validation_floor(model, data, gmms)
    next(steps)
    val = run.splits.train.index[:30]
    lam, val_rate = choose_lambda(
        model, run.x[val], run.y[val], run.target[val], eps, gmms, floor, LAMBDAS, seed=seed
    )
    next(steps)

    def attack(**kw):
        return hiding_attack(model, x, y, t, eps, gmms=gmms, seed=seed, **kw)

    examples = {}
    for base in HIDING_BASES:
        examples[base] = attack(base=base, steps=p.attack_steps, alpha=2 * eps / p.attack_steps)
        if base == "PGD":
            examples["PGD + HFC (official)"] = attack(lam=1.0)
        examples[f"{base} + HFC (book)"] = attack(base=base, lam=lam, floor=floor)
    next(steps)
    table = bypass_table(run, examples, stand_in=stand_ins(rep, run, data, seed=seed))
    next(steps)
    fit_f, fit_y, k = rep.fit_features.feats, rep.fit_labels, data.num_classes
    adaptive = {
        "PGD + feature matching": FeatureMatchingLoss.from_features(fit_f, fit_y, k),
        "PGD + KD-aware": KDLoss.from_features(fit_f, fit_y, k),
        "PGD + MAHA-aware": MahalanobisLoss.from_features(fit_f, fit_y, k),
    }
    ad_table = bypass_table(run, {name: attack(term=term) for name, term in adaptive.items()})
    next(steps, None)

    values: dict = {"lambda": lam, "test images": len(x)}
    for name, rate in val_rate.items():
        values[f"lambda choice: success {name}"] = float(rate)
    both = pd.concat([table, ad_table], ignore_index=True)
    for attack_name, g in both.groupby("attack", sort=False):
        g = g.set_index("detector")
        values[f"success {attack_name}"] = float(g.success_rate.iloc[0])
        values[f"near chance {attack_name}"] = int(near_chance(g.auc).sum())
        for det, auc in g.auc.items():
            values[f"AUC {det} {attack_name}"] = float(auc)
    values["detectors"] = int(table.detector.nunique())
    grid = both.pivot(index="attack", columns="detector", values="auc")
    grid = grid.loc[pd.unique(both.attack), pd.unique(both.detector)]
    fig = Figure(figsize=(7.5, 0.32 * len(grid) + 1.6))
    ax = fig.subplots()
    _heatmap(ax, grid, f"{data.name}: AUC of detectors fitted on PGD {eps * 256:g}/256", box=True)
    fig.tight_layout()
    lam_table = val_rate.rename("success_rate").rename_axis("attack").reset_index()
    return StageOutput(
        {"bypass": table, "adaptive": ad_table, "lambda_choice": lam_table},
        values,
        {"bypass_auc": fig},
    )


def _heatmap(ax, grid: pd.DataFrame, title: str, box: bool = False) -> None:
    import seaborn as sns

    sns.heatmap(
        grid, annot=True, fmt=".2f", cmap="RdBu_r" if box else "viridis", center=0.5 if box else None,
        vmin=0, vmax=1, cbar=False, ax=ax, annot_kws={"fontsize": 8},
    )  # fmt: skip
    if box:
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if near_chance(v):
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, lw=1.5, ec="black"))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("")
    ax.set_ylabel("")


#: The pipeline's stages, in the order they run.
STAGES: Registry[Stage] = Registry("stage")
STAGES.register("classifier", Stage("classifier", "The classifier", _classifier))
STAGES.register("attacks", Stage("attacks", "Attack success against ε (Ma et al.)", _attacks))
STAGES.register(
    "detection", Stage("detection", "Detecting conventional attacks (Ma et al.)", _detection)
)
STAGES.register(
    "fixed_direction",
    Stage("fixed_direction", "Fixed-direction check (Yao et al.'s theorem)", _fixed_direction),
)
STAGES.register("hiding", Stage("hiding", "Hiding from fixed detectors: HFC (Yao et al.)", _hiding))

__all__ = [
    "DETECTION_EPS",
    "DIRECTION_EPS",
    "HIDING_EPS",
    "MA_DETECTORS",
    "STAGES",
    "STAND_IN",
    "SWEEP_EPS",
    "Stage",
    "StageContext",
    "StageOutput",
]
