"""Robustness experiments: accuracy against ε, smallest successful ε, where perturbations go.

The book's chapter on attacks uses these to draw accuracy-against-ε curves for every dataset
(one call per model)::

    from hfc_edu.experiments.robustness import accuracy_vs_eps
    df = accuracy_vs_eps(model, x, y, ["FGSM", "BIM", "PGD", "CW-Linf"], [0, 1 / 256, 2 / 256])

ε is in [0, 1] pixel units (the papers' 1/256 units are written ``k / 256``). Every attack runs
once per batch for the whole ε grid (the attacks' ε-list support stacks the copies of the
batch), and ε = 0 is answered by one clean forward pass (every L∞/L2 attack here is the identity
at ε = 0).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import bim, cw_linf, fgsm, mim, pgd
from hfc_edu.attacks.result import AttackResult
from hfc_edu.protocol import predict

log = logging.getLogger(__name__)

#: Attacks that :func:`accuracy_vs_eps` knows by name (all take ``eps`` as a list).
ATTACKS: dict[str, Callable[..., list[AttackResult]]] = {
    "FGSM": fgsm,
    "BIM": bim,
    "PGD": pgd,
    "MIM": mim,
    "CW-Linf": cw_linf,
}

AttackSpec = str | Callable[..., list[AttackResult]]
COLUMNS = ["attack", "eps", "eps_256", "accuracy", "success_rate", "n", "n_correct"]


def _check_xy(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5) or not x.is_floating_point():
        raise ValueError(
            "x must be a float tensor of images in [0, 1], (N, C, H, W) or (N, C, D, H, W); got "
            f"{type(x).__name__} {tuple(x.shape) if isinstance(x, torch.Tensor) else ''}."
        )
    for name, t in (("y", y), ("targets", targets)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.shape != (len(x),):
            raise ValueError(
                f"{name} must be an integer tensor of shape ({len(x)},), one class per image; "
                f"got {type(t).__name__} {tuple(t.shape) if isinstance(t, torch.Tensor) else ''}."
            )


def _check_eps_grid(eps_grid: Sequence[float]) -> list[float]:
    if isinstance(eps_grid, str | bytes) or not isinstance(eps_grid, Sequence | np.ndarray):
        raise TypeError("eps_grid must be a list of floats in pixel units, e.g. [0, 1/256, 2/256].")
    eps = [float(e) for e in eps_grid]
    if not eps:
        raise ValueError("eps_grid is empty; pass e.g. [0, 1/256, 2/256].")
    bad = [e for e in eps if not math.isfinite(e) or e < 0 or e > 1]
    if bad:
        raise ValueError(
            f"eps values must be in [0, 1] pixel units, got {bad}; the papers' '1/256 units' are "
            "written as eps=k/256 (e.g. 4/256, not 4)."
        )
    if len(set(eps)) != len(eps):
        raise ValueError(f"eps_grid has repeated values: {eps}.")
    return eps


def _resolve(attack: AttackSpec) -> tuple[str, Callable[..., list[AttackResult]]]:
    if isinstance(attack, str):
        if attack not in ATTACKS:
            raise ValueError(
                f"Unknown attack {attack!r}; choose from {list(ATTACKS)} or pass a callable."
            )
        return attack, ATTACKS[attack]
    if callable(attack):
        return getattr(attack, "__name__", type(attack).__name__), attack
    raise TypeError(
        f"An attack must be a name in {list(ATTACKS)} or a callable, got {type(attack).__name__}."
    )


def _attacks(
    attacks: Sequence[AttackSpec] | Mapping[str, AttackSpec] | AttackSpec,
) -> dict[str, Callable]:
    if isinstance(attacks, Mapping):
        out = {str(k): _resolve(v)[1] for k, v in attacks.items()}
    else:
        if isinstance(attacks, str) or callable(attacks):
            attacks = [attacks]
        out = dict(_resolve(a) for a in attacks)
    if not out:
        raise ValueError(f"No attacks given; choose from {list(ATTACKS)}.")
    return out


def _call(
    fn: Callable, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs
) -> list[AttackResult]:
    """Call ``fn`` with the keyword arguments its signature accepts (None values dropped)."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in kwargs.items() if v is not None and (takes_any or k in params)}
    out = fn(model, x, y, **kw)
    if isinstance(out, AttackResult):
        out = [out]
    if not isinstance(out, list) or not all(isinstance(r, AttackResult) for r in out):
        raise TypeError(
            f"Attack {getattr(fn, '__name__', fn)!r} must return a list of AttackResult (one per eps)."
        )
    return out


def adversarial_predictions(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackSpec,
    eps_grid: Sequence[float],
    *,
    targets: torch.Tensor | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    **attack_kwargs,
) -> torch.Tensor:
    """Predicted classes after ``attack`` at every ε: ``(len(eps_grid), N)`` int64, on CPU.

    Untargeted on the true classes ``y`` unless ``targets`` is given (then targeted, with
    ``y_true=y``). ``steps`` and ``attack_kwargs`` go to attacks that accept them; attacks with
    a random start get a ``torch.Generator`` seeded with ``seed`` (results do not depend on the
    order attacks are run in). Row ``i`` for ``eps_grid[i] == 0`` is the clean prediction.
    """
    _check_xy(x, y, targets)
    eps = _check_eps_grid(eps_grid)
    _, fn = _resolve(attack)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    y = y.to(x.device)
    nonzero = [e for e in eps if e > 0]
    preds = torch.empty(len(eps), len(x), dtype=torch.long)
    clean = predict(model, x, batch_size)
    for i, e in enumerate(eps):
        if e == 0:
            preds[i] = clean
    if not nonzero:
        return preds
    rows = [i for i, e in enumerate(eps) if e > 0]
    gen_device = x.device if x.device.type == "cuda" else "cpu"
    generator = torch.Generator(device=gen_device).manual_seed(seed)
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], y[s : s + batch_size]
        kw = dict(
            attack_kwargs, eps=nonzero, steps=steps, generator=generator, sweep_batch=batch_size
        )
        if targets is not None:
            tb = targets[s : s + batch_size].to(x.device)
            results = _call(fn, model, xb, tb, targeted=True, y_true=yb, **kw)
        else:
            results = _call(fn, model, xb, yb, **kw)
        if len(results) != len(nonzero):
            raise RuntimeError(
                f"Attack returned {len(results)} results for {len(nonzero)} eps values."
            )
        for row, res in zip(rows, results, strict=True):
            preds[row, s : s + len(xb)] = res.logits.argmax(1).cpu()
    return preds


def accuracy_vs_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[AttackSpec] | Mapping[str, AttackSpec] | AttackSpec = (
        "FGSM",
        "BIM",
        "PGD",
        "CW-Linf",
    ),
    eps_grid: Sequence[float] = (0.0, 0.25 / 256, 0.5 / 256, 1 / 256, 2 / 256, 4 / 256),
    *,
    targets: torch.Tensor | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    **attack_kwargs,
) -> pd.DataFrame:
    """Accuracy and attack success rate of ``model`` under each attack at each ε (a tidy table).

    Args:
        model: classifier on images in [0, 1] returning logits ``(N, K)``.
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` test images in [0, 1].
        y: ``(N,)`` true classes.
        attacks: names from :data:`ATTACKS` (``"FGSM"``, ``"BIM"``, ``"PGD"``, ``"MIM"``,
            ``"CW-Linf"``), callables with the attacks' signature (e.g.
            ``functools.partial(pgd, norm="l2")``), or a ``{label: attack}`` mapping.
        eps_grid: budgets in pixel units (``k / 256`` for the papers' units), 0 allowed.
        targets: ``(N,)`` target classes for a targeted attack (default: untargeted).
        steps: iterations for iterative attacks (default: each attack's default, 10).
        batch_size: images per attack call; at most this many images per forward pass.
        seed: seed of the random start (PGD).
        attack_kwargs: passed to every attack that accepts them (e.g. ``kappa=10``).

    Returns:
        ``pandas.DataFrame`` with one row per (attack, ε) and columns ``attack``, ``eps``,
        ``eps_256`` (ε·256), ``accuracy`` (fraction of all N images still classified as
        ``y``), ``success_rate`` (among the ``n_correct`` images classified correctly when
        clean: fraction misclassified, or predicted as the target if ``targets`` is given),
        ``n`` and ``n_correct``.
    """
    _check_xy(x, y, targets)
    eps = _check_eps_grid(eps_grid)
    named = _attacks(attacks)
    y_cpu = y.detach().cpu().long()
    t_cpu = targets.detach().cpu().long() if targets is not None else None
    rows = []
    for name, fn in named.items():
        preds = adversarial_predictions(
            model, x, y, fn, eps, targets=targets, steps=steps, batch_size=batch_size, seed=seed,
            **attack_kwargs,
        )  # fmt: skip
        correct = (
            preds[eps.index(0.0)] == y_cpu if 0.0 in eps else predict(model, x, batch_size) == y_cpu
        )
        n_correct = int(correct.sum())
        for i, e in enumerate(eps):
            hit = preds[i] == t_cpu if t_cpu is not None else preds[i] != y_cpu
            success = int(hit[correct].sum()) / n_correct if n_correct else float("nan")
            rows.append(
                {
                    "attack": name,
                    "eps": e,
                    "eps_256": e * 256,
                    "accuracy": int((preds[i] == y_cpu).sum()) / len(x),
                    "success_rate": success,
                    "n": len(x),
                    "n_correct": n_correct,
                }
            )
        log.info("accuracy_vs_eps: %s done", name)
    return pd.DataFrame(rows, columns=COLUMNS)


def minimal_eps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackSpec,
    eps_grid: Sequence[float],
    *,
    targets: torch.Tensor | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    **attack_kwargs,
) -> torch.Tensor:
    """``(N,)`` the smallest ε of ``eps_grid`` at which ``attack`` succeeds on each image.

    ``inf`` where no ε of the grid succeeds; 0 where the clean image is already misclassified
    (or already predicted as its target). Success is judged at each ε separately (an attack
    that succeeds at 2/256 but not 4/256 gives 2/256).
    """
    eps = sorted(_check_eps_grid(eps_grid))
    preds = adversarial_predictions(
        model, x, y, attack, eps, targets=targets, steps=steps, batch_size=batch_size, seed=seed,
        **attack_kwargs,
    )  # fmt: skip
    ref = (targets if targets is not None else y).detach().cpu().long()
    hit = preds == ref if targets is not None else preds != ref
    clean_hit = predict(model, x, batch_size)
    clean_hit = clean_hit == ref if targets is not None else clean_hit != ref
    values = torch.tensor(eps, dtype=torch.float64)[:, None].expand_as(hit)
    out = torch.where(hit, values, torch.full_like(values, math.inf)).amin(0)
    return torch.where(clean_hit, torch.zeros_like(out), out)


def attack_subset(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int,
    *,
    correct_only: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A seeded random subset of at most ``n`` images to attack: ``(x_sub, y_sub, idx)``.

    ``idx`` (sorted, into ``x``) is drawn with ``torch.Generator().manual_seed(seed)``; with
    ``correct_only`` only images the model classifies correctly are eligible (the papers attack
    correctly classified test images only). Fewer than ``n`` come back if fewer are eligible.
    """
    _check_xy(x, y, None)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}.")
    eligible = torch.arange(len(x))
    if correct_only:
        ok = predict(model, x, batch_size) == y.detach().cpu()
        eligible = eligible[ok]
    perm = torch.randperm(len(eligible), generator=torch.Generator().manual_seed(seed))
    idx = eligible[perm[:n]].sort().values
    return x[idx.to(x.device)], y[idx.to(y.device)], idx


def top_region(score: torch.Tensor, top: float = 0.1) -> torch.Tensor:
    """Bool mask of the ``top`` fraction of highest-scoring pixels (voxels) of each map.

    ``score``: ``(N, H, W)`` or ``(N, D, H, W)`` (e.g. :func:`hfc_edu.explain.saliency`).
    Exactly ``round(top · pixels)`` pixels (at least one) are selected per map; ties are
    broken by position.
    """
    if not isinstance(score, torch.Tensor) or score.ndim not in (3, 4):
        raise ValueError(
            "score must be a tensor of maps (N, H, W) or (N, D, H, W), e.g. saliency(model, x)."
        )
    if not isinstance(top, int | float) or isinstance(top, bool) or not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1], got {top!r}.")
    flat = score.detach().flatten(1)
    k = max(1, round(top * flat.shape[1]))
    idx = flat.topk(k, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True)
    return mask.view_as(score)


def energy_fraction(delta: torch.Tensor, score: torch.Tensor, top: float = 0.1) -> torch.Tensor:
    """``(N,)`` share of the perturbation energy ``Σ δ²`` inside each map's top-``top`` region.

    Args:
        delta: perturbations ``x_adv − x``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``; the energy
            of a pixel is summed over channels.
        score: ``(N, H, W)`` or ``(N, D, H, W)`` maps that define the region (e.g. saliency of
            the clean image); the region is :func:`top_region` ``(score, top)``.
        top: fraction of pixels in the region. A perturbation spread evenly over the image
            scores ``top``; one concentrated in the region scores up to 1.

    Images with a zero perturbation get NaN.
    """
    if not isinstance(delta, torch.Tensor) or delta.ndim not in (4, 5):
        raise ValueError("delta must be (N, C, H, W) or (N, C, D, H, W), e.g. res.x_adv - x.")
    if not isinstance(score, torch.Tensor) or score.shape != delta.shape[:1] + delta.shape[2:]:
        raise ValueError(
            f"score must have the shape of delta without its channel axis, {tuple(delta.shape[:1] + delta.shape[2:])}; "
            f"got {tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__}."
        )
    energy = delta.detach().float().square().sum(1).flatten(1)
    mask = top_region(score.to(delta.device), top).flatten(1)
    total = energy.sum(1)
    inside = (energy * mask).sum(1)
    return torch.where(
        total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, math.nan)
    ).cpu()


__all__ = [
    "ATTACKS",
    "accuracy_vs_eps",
    "adversarial_predictions",
    "attack_subset",
    "energy_fraction",
    "minimal_eps",
    "top_region",
]
