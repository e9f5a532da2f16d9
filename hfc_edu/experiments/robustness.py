"""Robustness experiments: accuracy against ε, smallest successful ε, where perturbations go.

The book's chapter on attacks uses these to draw accuracy-against-ε curves for every dataset
(one call per model)::

    from hfc_edu.experiments.robustness import accuracy_vs_eps
    df = accuracy_vs_eps(model, x, y, ["FGSM", "BIM", "PGD", "CW-Linf"], [0, 1 / 256, 2 / 256])

Attacks are names of :data:`~hfc_edu.attacks.ATTACKS` or :class:`~hfc_edu.attacks.AttackInfo`
entries (a registered toy attack works here at once). ε is in [0, 1] pixel units (the papers'
1/256 units are written ``k / 256``). Every attack runs once per batch for the whole ε grid
(:func:`~hfc_edu.attacks.sweep` stacks the copies of the batch), and ε = 0 is answered by one
clean forward pass (every L∞/L2 attack here is the identity at ε = 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import AttackInfo, is_success, sweep
from hfc_edu.attacks.sweep import resolve_attack
from hfc_edu.checks import check_batch_size, check_eps_list, check_images, check_labels
from hfc_edu.protocol import predict

log = logging.getLogger(__name__)

AttackSpec = str | AttackInfo
COLUMNS = ["attack", "eps", "eps_256", "accuracy", "success_rate", "n", "n_correct"]


def _check_xy(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> None:
    check_images(x)
    check_labels(y, x)
    if targets is not None:
        check_labels(targets, x, "targets")


def _check_eps_grid(eps_grid: Sequence[float]) -> list[float]:
    return check_eps_list(eps_grid, "eps_grid")


def _attacks(attacks: Sequence[AttackSpec] | Mapping[str, AttackSpec] | AttackSpec) -> dict:
    """``{label: AttackInfo}`` from names, AttackInfos, a list of them or a label mapping."""
    if isinstance(attacks, Mapping):
        out = {str(k): resolve_attack(v) for k, v in attacks.items()}
    else:
        if isinstance(attacks, str | AttackInfo):
            attacks = [attacks]
        infos = [resolve_attack(a) for a in attacks]
        out = {info.name: info for info in infos}
        if len(out) != len(infos):
            raise ValueError("Two attacks share a name; pass a {label: attack} mapping.")
    if not out:
        raise ValueError("No attacks given; pass names such as ['FGSM', 'PGD'].")
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
    ``y_true=y``). ``steps`` reaches iterative attacks, a ``torch.Generator`` seeded with
    ``seed`` the attacks with a random start (results do not depend on the order attacks are
    run in), as :meth:`~hfc_edu.attacks.AttackInfo.run` passes them; ``attack_kwargs`` must be
    options of the attack. Row ``i`` for ``eps_grid[i] == 0`` is the clean prediction.
    """
    _check_xy(x, y, targets)
    eps = _check_eps_grid(eps_grid)
    info = resolve_attack(attack)
    if check_batch_size(batch_size) is None:
        raise ValueError("batch_size must be an int >= 1, got None.")
    info.check_options(attack_kwargs)
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
        kw = dict(attack_kwargs, steps=steps, generator=generator, sweep_batch=batch_size)
        if targets is not None:
            tb = targets[s : s + batch_size].to(x.device)
            results = sweep(info, model, xb, tb, eps=nonzero, targeted=True, y_true=yb, **kw)
        else:
            results = sweep(info, model, xb, yb, eps=nonzero, **kw)
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
        attacks: names from :data:`~hfc_edu.attacks.ATTACKS` (``"FGSM"``, ``"BIM"``,
            ``"PGD"``, ``"MIM"``, ``"CW-Linf"``) or :class:`~hfc_edu.attacks.AttackInfo` entries
            (e.g. ``ATTACKS.get("PGD").with_options("PGD-L2", norm="l2")``), or a
            ``{label: attack}`` mapping.
        eps_grid: budgets in pixel units (``k / 256`` for the papers' units), 0 allowed.
        targets: ``(N,)`` target classes for a targeted attack (default: untargeted).
        steps: iterations for iterative attacks (default: each attack's default, 10).
        batch_size: images per attack call; at most this many images per forward pass.
        seed: seed of the random start (PGD).
        attack_kwargs: options given to every attack; each must be an option of every attack
            (else ``ValueError``). One attack's own options: :meth:`AttackInfo.with_options`.

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
    for info in named.values():  # before any work: an option one attack lacks raises here
        info.check_options(attack_kwargs)
    y_cpu = y.detach().cpu().long()
    t_cpu = targets.detach().cpu().long() if targets is not None else None
    rows = []
    for name, info in named.items():
        preds = adversarial_predictions(
            model, x, y, info, eps, targets=targets, steps=steps, batch_size=batch_size,
            seed=seed, **attack_kwargs,
        )  # fmt: skip
        correct = (
            preds[eps.index(0.0)] == y_cpu if 0.0 in eps else predict(model, x, batch_size) == y_cpu
        )
        n_correct = int(correct.sum())
        for i, e in enumerate(eps):
            hit = is_success(preds[i], t_cpu if t_cpu is not None else y_cpu, t_cpu is not None)
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
    targeted = targets is not None
    hit = torch.stack([is_success(p, ref, targeted) for p in preds])
    clean_hit = is_success(predict(model, x, batch_size), ref, targeted)
    values = torch.tensor(eps, dtype=torch.float64)[:, None].expand_as(hit)
    out = torch.where(hit, values, torch.full_like(values, math.inf)).amin(0)
    return torch.where(clean_hit, torch.zeros_like(out), out)


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
    "accuracy_vs_eps",
    "adversarial_predictions",
    "energy_fraction",
    "minimal_eps",
    "top_region",
]
