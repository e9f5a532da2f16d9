"""Views of detection results: ε labels, metric grids for heatmaps, how far attacks overshoot."""

from __future__ import annotations

import pandas as pd
import torch

from hfc_edu.experiments.detection.results import DetectionReport


def eps_label(eps: float) -> str:
    """``4/256``-style label of an ε in pixel units."""
    return f"{eps * 256:g}/256"


def metric_grid(table: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """``(attack ε) × detector`` grid of ``metric`` from one or more results tables (row and
    column order as they first appear), e.g. for a heatmap."""
    if metric not in table.columns:
        raise ValueError(f"Unknown metric {metric!r}; the table has {list(table.columns)}.")
    df = table.assign(row=table["attack"] + " " + table["eps"].map(eps_label))
    grid = df.pivot(index="row", columns="detector", values=metric)
    return grid.loc[pd.unique(df["row"]), pd.unique(df["detector"])]


def overshoot_table(report: DetectionReport) -> pd.DataFrame:
    """How far each attack pushes the successful examples of the detector-test part.

    Columns: ``attack``, ``eps``, ``eps_256``, ``success_rate`` (all n images),
    ``target_confidence`` (median softmax probability of the target class) and ``feature_shift``
    (median ‖z(x_adv) − z(x)‖ of the penultimate features ``z``, in units of the clean features'
    spread √tr Cov(z)).
    """
    rows = []
    spread = None
    for (attack, eps), run in report.runs.items():
        layer = run.test.layers[-1]
        if spread is None:
            spread = float(report.clean.feats[layer].double().var(0).sum().sqrt())
        adv_index = run.splits.test.adv_index
        pos = run.test.subset(run.test_is_adv == 1)
        z_adv = pos.feats[layer].double()
        z_src = report.clean.subset(adv_index).feats[layer].double()
        p_t = pos.logits.softmax(1)[torch.arange(len(pos)), run.target[adv_index]]
        rows.append(
            {
                "attack": attack,
                "eps": eps,
                "eps_256": eps * 256,
                "success_rate": run.success_rate,
                "target_confidence": float(p_t.median()),
                "feature_shift": float((z_adv - z_src).norm(dim=1).median()) / spread,
            }
        )
    return pd.DataFrame(rows)


__all__ = ["eps_label", "metric_grid", "overshoot_table"]
