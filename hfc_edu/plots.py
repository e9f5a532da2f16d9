"""Plots the chapters share: image grids, perturbations, curves, ROC curves, feature embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from sklearn.metrics import roc_curve

#: Widest figure that the book's text column shows without shrinking (inches at 100 dpi of CSS).
MAX_WIDTH_IN = 7.5


def use_book_style() -> None:
    """Colour-blind palette and fonts readable at the page's column width.

    Figures are drawn at most :data:`MAX_WIDTH_IN` inches wide and stored as PNG at 150 dpi, so
    the browser scales them down by at most about 1.5x and 9-point text (annotations in
    heatmaps included) stays at least 12 px high on the page.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.dpi": 150,
            "savefig.dpi": 150,
            "figure.autolayout": False,
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 9,
        }
    )


def _to_display(img: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` or ``(C, D, H, W)`` -> an HxW(x3) array (3D: the middle slice)."""
    t = img.detach().float().cpu()
    if t.ndim == 4:
        t = t[:, t.shape[1] // 2]
    if t.shape[0] == 1:
        return t[0].numpy(), "gray"
    return t.permute(1, 2, 0).clamp(0, 1).numpy(), None


def image_grid(
    x: torch.Tensor,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.6,
    suptitle: str | None = None,
):
    """Images ``(N, C, H, W)`` or ``(N, C, D, H, W)`` (middle slice) in a grid; returns the figure."""
    n = len(x)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            arr, cmap = _to_display(x[i])
            ax.imshow(arr, cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def perturbation_rows(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    row_titles: Sequence[str] | None = None,
    eps: float | None = None,
    overlay: torch.Tensor | None = None,
):
    """One row per image: clean, perturbation (diverging map, scaled to ±eps), adversarial
    [, an extra map such as saliency]. Returns the figure."""
    n = len(x)
    cols = 4 if overlay is not None else 3
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.3 * n), squeeze=False)
    delta = (x_adv - x).detach().float().cpu()
    lim = eps if eps is not None else float(delta.abs().max())
    for i in range(n):
        arr, cmap = _to_display(x[i])
        axes[i, 0].imshow(arr, cmap=cmap, vmin=0, vmax=1)
        d = delta[i].mean(0)
        if d.ndim == 3:
            d = d[d.shape[0] // 2]
        im = axes[i, 1].imshow(d.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        arr, cmap = _to_display(x_adv[i])
        axes[i, 2].imshow(arr, cmap=cmap, vmin=0, vmax=1)
        if overlay is not None:
            o = overlay[i].detach().float().cpu()
            if o.ndim == 3:
                o = o[o.shape[0] // 2]
            axes[i, 3].imshow(o.numpy(), cmap="magma")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        if row_titles is not None:
            axes[i, 0].set_ylabel(row_titles[i], fontsize=8)
    heads = ["clean", "perturbation", "adversarial"] + (
        ["|gradient|"] if overlay is not None else []
    )
    for ax, h in zip(axes[0], heads, strict=False):
        ax.set_title(h, fontsize=9)
    fig.colorbar(
        im, ax=axes.ravel().tolist(), shrink=0.6, location="right", label="δ (pixel units)"
    )
    return fig


def line_plot(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    style: str | None = None,
    col: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    height: float = 3.2,
):
    """A seaborn ``relplot`` of lines with markers; returns the FacetGrid's figure."""
    g = sns.relplot(
        data=df,
        x=x,
        y=y,
        hue=hue,
        style=style or hue,
        col=col,
        kind="line",
        markers=True,
        dashes=False,
        height=height,
        aspect=1.2,
        facet_kws={"sharey": True},
    )
    g.set_axis_labels(xlabel or x, ylabel or y)
    return g.figure


def roc_plot(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str | None = None, ax=None
):
    """ROC curves: ``{label: (negative scores, positive scores)}``; higher score = positive."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    styles = ["-", "--", "-.", ":"]
    for i, (label, (neg, pos)) in enumerate(scores.items()):
        y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
        fpr, tpr, _ = roc_curve(y, np.r_[neg, pos])
        ax.plot(fpr, tpr, styles[i % 4], label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def embedding_plot(emb: np.ndarray, groups: Sequence[str], ax=None, title: str | None = None):
    """2D embedding ``(N, 2)`` coloured and marked by group label."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    sns.scatterplot(
        x=emb[:, 0], y=emb[:, 1], hue=list(groups), style=list(groups), s=14, ax=ax, alpha=0.8
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return ax


#: Names of the three orthogonal planes of a ``(D, H, W)`` volume, by the axis they cut.
PLANES: tuple[str, ...] = ("axial (D)", "coronal (H)", "sagittal (W)")


def volume_planes(
    rows: Mapping[str, torch.Tensor],
    at: Sequence[int] | None = None,
    eps: float | None = None,
    size: float = 2.0,
):
    """Three orthogonal slices of each volume: one row per entry of ``rows`` (name ->
    ``(C, D, H, W)``, first channel shown), columns axial, coronal, sagittal.

    ``at``: the voxel ``(d, h, w)`` the planes pass through (default: the centre of mass of the
    first row, so a small organ is cut through its middle). Rows whose name starts with
    ``"δ"`` or ``"perturbation"`` use a diverging map scaled to ±``eps`` (default: their
    largest absolute value); the others grey from 0 to 1. Returns the figure.
    """
    vols = {k: v.detach().float().cpu()[0] for k, v in rows.items()}
    if not vols or any(v.ndim != 3 for v in vols.values()):
        shapes = {k: tuple(v.shape) for k, v in rows.items()}
        raise ValueError(f"volume_planes takes volumes (C, D, H, W), got shapes {shapes}.")
    first = next(iter(vols.values()))
    if at is None:
        mass = first.clamp(min=0)
        grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in first.shape],
                               indexing="ij")  # fmt: skip
        total = float(mass.sum())
        at = [
            int(round(float((g * mass).sum()) / total)) if total > 0 else s // 2
            for g, s in zip(grids, first.shape, strict=True)
        ]
    fig, axes = plt.subplots(len(vols), 3, figsize=(size * 3, size * len(vols)), squeeze=False)
    for r, (name, v) in enumerate(vols.items()):
        cuts = (v[at[0]], v[:, at[1]], v[:, :, at[2]])
        signed = name.startswith(("δ", "perturbation"))
        lim = eps if eps is not None else float(v.abs().max()) or 1.0
        for c, (ax, cut) in enumerate(zip(axes[r], cuts, strict=True)):
            if signed:
                im = ax.imshow(cut.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            else:
                ax.imshow(cut.numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{PLANES[c]} {at[c]}", fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
        if signed:
            fig.colorbar(im, ax=axes[r].tolist(), shrink=0.8, label="δ (voxel units)")
    return fig


def eps_explorer_figure(explorer, eps: float | Sequence[float], fpr: float = 0.05):
    """Blocks of :class:`~hfc_edu.experiments.explorer.EpsExplorer` at budget(s) ``eps``: the
    clean image; per attack the adversarial image with its prediction and the perturbation
    (scaled to ±ε); below, the detectors' clean percentiles (a bar above the dashed line flags
    the image at false-positive rate ``fpr``). Returns the figure."""
    eps_list = [eps] if isinstance(eps, int | float) else list(eps)
    missing = [e for e in eps_list if not any(np.isclose(e, g) for g in explorer.eps)]
    if missing:
        grid = [f"{g * 256:g}/256" for g in explorer.eps]
        raise ValueError(f"eps {missing} not in the explorer's grid {grid}.")
    attacks = list(explorer.x_adv)
    k0 = explorer.prob[attacks[0]].shape[1]
    names = explorer.class_names or [str(c) for c in range(k0)]
    ncols = 2 * len(attacks) + 1
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 3.9 * len(eps_list)))
    gs = fig.add_gridspec(2 * len(eps_list), ncols, height_ratios=[1.25, 1.0] * len(eps_list))
    colours = sns.color_palette("colorblind", len(attacks))
    for r, e in enumerate(eps_list):
        i = int(np.argmin([abs(e - g) for g in explorer.eps]))
        tag = f"ε = {explorer.eps[i] * 256:g}/256"
        ax = fig.add_subplot(gs[2 * r, 0])
        img, cmap = _to_display(explorer.x)
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(f"{tag}\nclean: {names[explorer.y]}", fontsize=9)
        ax.axis("off")
        for j, a in enumerate(attacks):
            xa, p = explorer.x_adv[a][i], explorer.prob[a][i]
            k = int(p.argmax())
            img, cmap = _to_display(xa)
            ax = fig.add_subplot(gs[2 * r, 2 * j + 1])
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
            ax.set_title(f"{a}\n{names[k]} {float(p[k]):.2f}", fontsize=9)
            ax.axis("off")
            scale = max(explorer.eps[i], 1e-12)
            d, _ = _to_display((xa - explorer.x) * 0.5 / scale + 0.5)
            ax = fig.add_subplot(gs[2 * r, 2 * j + 2])
            ax.imshow(d, cmap="RdBu_r" if d.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title("perturbation\n(±ε)", fontsize=9)
            ax.axis("off")
        ax = fig.add_subplot(gs[2 * r + 1, :])
        pct = pd.DataFrame({a: explorer.percentile[a].iloc[i] for a in attacks})
        xpos = np.arange(len(pct))
        w = 0.8 / len(attacks)
        for j, a in enumerate(attacks):
            off = (j - (len(attacks) - 1) / 2) * w
            ax.bar(xpos + off, pct[a], width=w, color=colours[j], label=a)
        ax.axhline(1 - fpr, ls="--", c="k", lw=1)
        ax.set_xticks(xpos, pct.index, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("clean percentile", fontsize=8)
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(attacks),
                  frameon=False)  # fmt: skip
    fig.tight_layout()
    return fig


def eps_slider(explorer, fpr: float = 0.05):
    """An ipywidgets slider over the explorer's budgets that redraws
    :func:`eps_explorer_figure` (Jupyter, JupyterLab, Colab). Returns the widget."""
    try:
        import ipywidgets as widgets
    except ImportError:  # pragma: no cover - the book extra installs it
        raise ImportError(
            "The ε slider needs ipywidgets: pip install ipywidgets (Colab has it), or draw "
            "static rows with eps_explorer_figure(explorer, [eps, ...])."
        ) from None
    options = [(f"{e * 256:g}/256", e) for e in explorer.eps]

    def show(eps):
        eps_explorer_figure(explorer, eps, fpr)
        plt.show()

    slider = widgets.SelectionSlider(options=options, value=explorer.eps[-1], description="ε")
    return widgets.interactive(show, eps=slider)
