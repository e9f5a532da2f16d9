"""Targeted attacks with a feature-space term: HFC, and the adaptive baselines.

:func:`hfc_attack` is ``base attack + HFC`` in one call: it builds a
:class:`~hfc_edu.features.FeatureExtractor` on the GMMs' layers, adds :class:`HFCLoss` to the
base's targeted classification loss (CE; the CW margin for ``base="CW-Linf"``) and runs the
registered base attack (:data:`~hfc_edu.attacks.ATTACKS`, any entry with ``hfc_base``) with
the papers' HFC schedule (:func:`hfc_schedule`) unless ``alpha`` / ``steps`` are given. Every
step is one forward and one input gradient; the features come from that forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hfc_edu.attacks.gradient import CW_LINF_KAPPA
from hfc_edu.attacks.losses import Loss, classification_loss
from hfc_edu.attacks.registry import ATTACKS, AttackInfo
from hfc_edu.attacks.result import AttackResult
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc.class_gmms import DEFAULT_MAX_CHANNELS, ClassConditionalGMMs
from hfc_edu.hfc.loss import HFCLoss
from hfc_edu.hfc.schedule import hfc_schedule


def hfc_bases() -> list[str]:
    """Names of the registered attacks HFC composes with (``AttackInfo.hfc_base``)."""
    return [name for name, info in ATTACKS.items() if info.hfc_base]


def _base(base: str | AttackInfo) -> AttackInfo:
    info = base if isinstance(base, AttackInfo) else None
    if info is None:
        if not isinstance(base, str) or base not in ATTACKS:
            raise ValueError(f"base must be one of {hfc_bases()}, got {base!r}.")
        info = ATTACKS.get(base)
    if not info.hfc_base:
        raise ValueError(
            f"base must be one of {hfc_bases()} (attacks registered with hfc_base=True), got "
            f"{info.name!r}."
        )
    return info


def feature_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    term: Loss,
    *,
    base: str | AttackInfo = "PGD",
    alpha: float | None = None,
    steps: int | None = None,
    layers: Sequence[str] | None = None,
    kappa: float | None = None,
    y_true: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    **options,
) -> AttackResult:
    """Targeted ``base`` attack minimising ``classification loss + term``.

    Args:
        model: zoo classifier (or a FeatureExtractor, whose model is used).
        x: clean images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        target: ``(N,)`` target classes.
        eps: L∞ budget in [0, 1] pixel units (the papers: ``k/256``).
        term: a feature loss term with a ``layers`` list (HFCLoss, FeatureMatchingLoss, ...).
        base: a registered attack with ``hfc_base`` (``"PGD"``, ``"BIM"``, ``"MIM"``,
            ``"CW-Linf"``), or such an :class:`~hfc_edu.attacks.AttackInfo`. The loss is
            ``classification_loss(info.loss, targeted=True, kappa) + term``.
        alpha, steps: step size and iterations; default :func:`hfc_schedule` (α = ε/20, T = 40).
        layers: feature layers to capture (default ``term.layers``).
        kappa: confidence of a ``"cw"`` base loss (default 100, the papers' CW-L∞); refused
            for CE bases.
        y_true: true classes, checked to differ from ``target``.
        generator: for a base with a random start (PGD); refused otherwise.
        **options: the base's own options (:attr:`AttackInfo.options`: ``random_start`` and
            ``delta0`` for PGD, ``decay`` for MIM, ``amp``, ``early_stop``, ``batch_size``,
            ...). An option the base does not take raises ``ValueError`` naming the bases
            that take it.

    Returns the base attack's :class:`~hfc_edu.attacks.AttackResult`.
    """
    info = _base(base)
    if not isinstance(term, Loss) or not term.needs_features:
        raise TypeError("term must be a feature Loss (needs_features=True), e.g. HFCLoss(gmms).")
    for name in ("loss", "alpha", "targeted"):
        if name in options:
            raise ValueError(f"feature_attack sets {name!r} itself; do not pass it.")
    if kappa is not None and info.loss != "cw":
        users = [n for n in hfc_bases() if ATTACKS.get(n).loss == "cw"]
        raise ValueError(
            f"kappa is the CW margin's confidence, used by base(s) {users}; base {info.name!r} "
            "minimises cross-entropy."
        )
    _check_base_options(info, options)
    if generator is not None and not (info.random or options.get("random_start")):
        users = [n for n in hfc_bases() if ATTACKS.get(n).random]
        raise ValueError(
            f"generator seeds a random start, used by base(s) {users}; base {info.name!r} has none."
        )
    net = model.model if isinstance(model, FeatureExtractor) else model
    names = list(layers) if layers is not None else list(getattr(term, "layers", []))
    if not names:
        raise ValueError("No layers to capture: pass layers=[...] or a term with a `layers` list.")
    fx = FeatureExtractor(net, layers=names)
    alpha, steps = hfc_schedule(eps, alpha, steps)
    if info.loss == "cw" and kappa is None:
        kappa = CW_LINF_KAPPA
    loss = classification_loss(info.loss, targeted=True, kappa=kappa) + term
    return info.run(
        fx, x, target, eps=eps, targeted=True, y_true=y_true, steps=steps, generator=generator,
        alpha=alpha, loss=loss, **options,
    )  # fmt: skip


def _check_base_options(info: AttackInfo, options: dict) -> None:
    """An option the base does not take raises, naming the HFC bases that take it."""
    for name in sorted(set(options) - set(info.options)):
        users = [n for n in hfc_bases() if name in ATTACKS.get(n).options]
        where = f"used by base(s) {users}" if users else "taken by no HFC base"
        raise ValueError(f"{name!r} is {where}, not by base {info.name!r}; leave it out.")


def hfc_attack(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    gmms: ClassConditionalGMMs,
    *,
    base: str | AttackInfo = "PGD",
    alpha: float | None = None,
    steps: int | None = None,
    lam: float = 1.0,
    layers: Sequence[str] | None = None,
    max_channels: int | None = DEFAULT_MAX_CHANNELS,
    layer_weights: Mapping[str, float] | None = None,
    floor: Mapping[str, torch.Tensor] | None = None,
    check_model: bool = True,
    **kwargs,
) -> AttackResult:
    """``base`` attack + HFC toward ``target`` (Yao et al.), with the HFC schedule by default.

    ``gmms`` must have been fitted on this model (checked through the weights' fingerprint
    unless ``check_model=False``). ``lam``, ``layers``, ``max_channels``, ``layer_weights`` and
    ``floor`` configure :class:`HFCLoss`; the other arguments are :func:`feature_attack`'s (e.g.
    ``random_start`` for PGD, ``decay`` for MIM, ``kappa`` for CW-L∞, ``batch_size``).
    """
    if not isinstance(gmms, ClassConditionalGMMs):
        raise TypeError(f"gmms must be a ClassConditionalGMMs, got {type(gmms).__name__}.")
    if check_model:
        gmms.check_model(model)
    term = HFCLoss(
        gmms, layers=layers, max_channels=max_channels, lam=lam, layer_weights=layer_weights,
        floor=floor,
    )  # fmt: skip
    return feature_attack(
        model, x, target, eps, term, base=base, alpha=alpha, steps=steps, **kwargs
    )


__all__ = ["feature_attack", "hfc_attack", "hfc_bases"]
