"""Chapter 7's hiding experiment, one step per function (the chapter and ``hfc-edu reproduce``
both call these, so the experiment exists once).

1. :func:`task_gmms`: class-conditional GMMs on ``n_fit`` training images per class.
2. :func:`validation_floor`: the book's floor, the median HFC term of clean validation images.
3. :func:`hiding_attack`: one targeted attack of a batch, plain, with HFC (official or with a
   floor) or with another feature term (the adaptive baselines), on the HFC schedule by default.
4. :func:`choose_lambda`: λ by the papers' success rule, on images the reported table never uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import ATTACKS, AttackResult
from hfc_edu.attacks.losses import Loss
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc import (
    ClassConditionalGMMs,
    HFCLoss,
    feature_attack,
    fit_class_gmms,
    hfc_attack,
    hfc_schedule,
    typical_floor,
)
from hfc_edu.protocol import correct_mask, per_class_subset

#: λ values :func:`choose_lambda` tries, largest first (1 is the official code's).
LAMBDAS: tuple[float, ...] = (1.0, 0.3, 0.1)


def task_gmms(
    model: nn.Module,
    data: ImageDataset,
    n_fit: int | None,
    n_components: int,
    seed: int = 0,
    backend: str = "sklearn",
) -> ClassConditionalGMMs:
    """Class-conditional GMMs (cached) on ``n_fit`` seeded training images per class (None:
    all). ``backend="torch"`` fits by EM on the model's device (the paper profile's choice)."""
    if n_fit is None:
        idx = torch.arange(len(data.y_train))
    else:
        idx = per_class_subset(data.y_train, n_fit, seed=seed)
    kw = {} if backend == "sklearn" else dict(backend=backend, bayesian=False)
    return fit_class_gmms(
        model, data.x_train[idx], data.y_train[idx], n_components=n_components, **kw
    )


def validation_floor(
    model: nn.Module, data: ImageDataset, gmms: ClassConditionalGMMs, q: float = 0.5
) -> dict[str, torch.Tensor]:
    """``{layer: (K,) floor}``: the ``q``-quantile of the HFC term of correctly classified
    validation images of each class (:func:`~hfc_edu.hfc.typical_floor`)."""
    ok = correct_mask(model, data.x_val, data.y_val)
    fx = FeatureExtractor(model, layers=gmms.layer_names)
    _, f_val = fx.extract(data.x_val[ok])
    return typical_floor(HFCLoss(gmms), f_val, data.y_val[ok], q=q)


def hiding_attack(
    model: nn.Module,
    x: torch.Tensor,
    y_true: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    *,
    base: str = "PGD",
    gmms: ClassConditionalGMMs | None = None,
    lam: float | None = None,
    floor: dict[str, torch.Tensor] | None = None,
    layers: Sequence[str] | None = None,
    term: Loss | None = None,
    steps: int | None = None,
    alpha: float | None = None,
    seed: int = 0,
) -> AttackResult:
    """Targeted ``base`` attack of ``(N, C, H, W)`` or ``(N, C, D, H, W)`` images ``x``.

    ``lam=None`` and ``term=None``: the plain attack; ``lam``: HFC with ``gmms`` (and the book's
    ``floor``, or none for the official term; ``layers``: constrain only these); ``term``:
    another feature term (the adaptive baselines of :mod:`hfc_edu.hfc.baselines`).
    ``steps``/``alpha`` default to the HFC schedule (:func:`~hfc_edu.hfc.hfc_schedule`); a random
    start is seeded with ``seed``.
    """
    if lam is not None and term is not None:
        raise ValueError("Pass lam (HFC) or term (another feature term), not both.")
    if lam is not None and gmms is None:
        raise ValueError("HFC (lam given) needs the class-conditional gmms (task_gmms).")
    alpha, steps = hfc_schedule(eps, alpha, steps)
    kw = dict(y_true=y_true, alpha=alpha, steps=steps)
    if ATTACKS.get(base).random:
        kw["generator"] = torch.Generator().manual_seed(seed)
    if term is not None:
        return feature_attack(model, x, target, eps, term, base=base, **kw)
    if lam is None:
        return ATTACKS.get(base).run(model, x, target, eps=eps, targeted=True, **kw)
    if layers is not None:
        kw["layers"] = list(layers)
        floor = None if floor is None else {k: floor[k] for k in layers}
    return hfc_attack(model, x, target, eps, gmms, base=base, lam=lam, floor=floor, **kw)


def choose_lambda(
    model: nn.Module,
    x: torch.Tensor,
    y_true: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    gmms: ClassConditionalGMMs,
    floor: dict[str, torch.Tensor] | None,
    lams: Sequence[float] = LAMBDAS,
    tolerance: float = 0.05,
    seed: int = 0,
    first: bool = False,
) -> tuple[float, pd.Series]:
    """The largest λ in ``lams`` whose HFC attack succeeds within ``tolerance`` of plain PGD
    (the papers' success rule), and the success rates it compared.

    ``first=True`` tries ``lams`` in decreasing order and stops at the first that qualifies
    (the same choice; the smaller λ are then not measured and absent from the rates).

    Pass images the reported table never uses (chapter 7: 30 images of the detector-*training*
    part). Nothing here looks at a detector. If no λ qualifies, the smallest is returned.
    """
    if not lams:
        raise ValueError("lams is empty: pass the λ values to try, e.g. (1.0, 0.3, 0.1).")
    plain = hiding_attack(model, x, y_true, target, eps, seed=seed).success.float().mean().item()
    rate = {"plain PGD": plain}
    order = sorted(lams, reverse=True) if first else list(lams)
    for lam in order:
        res = hiding_attack(
            model, x, y_true, target, eps, gmms=gmms, lam=lam, floor=floor, seed=seed
        )
        rate[f"lambda = {lam}"] = res.success.float().mean().item()
        if first and rate[f"lambda = {lam}"] >= plain - tolerance:
            break
    rate = pd.Series(rate)
    tried = [lam for lam in lams if f"lambda = {lam}" in rate]
    ok = [lam for lam in tried if rate[f"lambda = {lam}"] >= rate["plain PGD"] - tolerance]
    return (float(ok[0]) if ok else float(min(lams))), rate


__all__ = [
    "LAMBDAS",
    "choose_lambda",
    "hiding_attack",
    "task_gmms",
    "validation_floor",
]
