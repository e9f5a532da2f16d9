"""Targeted attacks with a feature-space term: HFC, and the adaptive baselines.

:func:`hfc_attack` is ``base attack + HFC`` in one call: it builds a
:class:`~hfc_edu.features.FeatureExtractor` on the GMMs' layers, adds :class:`HFCLoss` to the
targeted classification loss (CE; the CW margin for ``base="cw"``) and runs the base attack of
:mod:`hfc_edu.attacks` with the papers' HFC schedule (:func:`hfc_schedule`) unless ``alpha`` /
``steps`` are given. Every step is one forward and one input gradient; the features come from
that forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hfc_edu.attacks.gradient import gradient_attack
from hfc_edu.attacks.losses import CrossEntropy, CWMargin, Loss
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc.class_gmms import DEFAULT_MAX_CHANNELS, ClassConditionalGMMs
from hfc_edu.hfc.loss import HFCLoss
from hfc_edu.hfc.schedule import hfc_schedule

#: Base attacks HFC composes with (all L∞, iterative, targeted).
BASES = ("pgd", "bim", "mim", "cw")


def feature_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    term: Loss,
    *,
    base: str = "pgd",
    alpha: float | None = None,
    steps: int | None = None,
    layers: Sequence[str] | None = None,
    kappa: float = 100.0,
    decay: float = 0.5,
    random_start: str | bool | None = "symmetric",
    y_true: torch.Tensor | None = None,
    **kwargs,
):
    """Targeted ``base`` attack minimising ``classification loss + term``.

    Args:
        model: zoo classifier (or a FeatureExtractor, whose model is used).
        x: clean images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        target: ``(N,)`` target classes.
        eps: L∞ budget in [0, 1] pixel units (the papers: ``k/256``).
        term: a feature loss term with a ``layers`` list (HFCLoss, FeatureMatchingLoss, ...).
        base: ``"pgd"`` (random start), ``"bim"``, ``"mim"`` (momentum ``decay``) or ``"cw"``
            (CW margin with ``kappa`` instead of CE, as the papers' CW-L∞).
        alpha, steps: step size and iterations; default :func:`hfc_schedule` (α = ε/20, T = 40).
        layers: feature layers to capture (default ``term.layers``).
        random_start: PGD only: ``"symmetric"``, ``"official"`` or None.
        y_true: true classes, checked to differ from ``target``.
        **kwargs: passed to :func:`hfc_edu.attacks.gradient.gradient_attack` (``amp``,
            ``generator``, ``early_stop``, ``return_result``, ...).

    Returns what the base attack returns (an ``AttackResult`` by default).
    """
    if base not in BASES:
        raise ValueError(f"base must be one of {BASES}, got {base!r}.")
    if not isinstance(term, Loss) or not term.needs_features:
        raise TypeError("term must be a feature Loss (needs_features=True), e.g. HFCLoss(gmms).")
    net = model.model if isinstance(model, FeatureExtractor) else model
    names = list(layers) if layers is not None else list(getattr(term, "layers", []))
    if not names:
        raise ValueError("No layers to capture: pass layers=[...] or a term with a `layers` list.")
    fx = FeatureExtractor(net, layers=names)
    alpha, steps = hfc_schedule(eps, alpha, steps)
    cls_loss = CWMargin(targeted=True, kappa=kappa) if base == "cw" else CrossEntropy(targeted=True)
    return gradient_attack(
        fx,
        x,
        target,
        eps=eps,
        alpha=alpha,
        steps=steps,
        norm="linf",
        targeted=True,
        loss=cls_loss + term,
        random_start=random_start if base == "pgd" else None,
        momentum=decay if base == "mim" else None,
        y_true=y_true,
        **kwargs,
    )


def hfc_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    gmms: ClassConditionalGMMs,
    *,
    base: str = "pgd",
    alpha: float | None = None,
    steps: int | None = None,
    lam: float = 1.0,
    layers: Sequence[str] | None = None,
    max_channels: int | None = DEFAULT_MAX_CHANNELS,
    layer_weights: Mapping[str, float] | None = None,
    check_model: bool = True,
    **kwargs,
):
    """``base`` attack + HFC toward ``target`` (Yao et al.), with the HFC schedule by default.

    ``gmms`` must have been fitted on this model (checked through the weights' fingerprint
    unless ``check_model=False``). ``lam``, ``layers``, ``max_channels`` and ``layer_weights``
    configure :class:`HFCLoss`; the other arguments are :func:`feature_attack`'s.
    """
    if not isinstance(gmms, ClassConditionalGMMs):
        raise TypeError(f"gmms must be a ClassConditionalGMMs, got {type(gmms).__name__}.")
    if check_model:
        gmms.check_model(model)
    term = HFCLoss(
        gmms, layers=layers, max_channels=max_channels, lam=lam, layer_weights=layer_weights
    )
    return feature_attack(
        model, x, target, eps, term, base=base, alpha=alpha, steps=steps, **kwargs
    )


__all__ = ["BASES", "feature_attack", "hfc_attack"]
