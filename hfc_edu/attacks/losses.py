"""Attack losses: callables ``(logits, y, features) -> (N,)`` that an attack *minimises*.

A classification loss already carries the attack's direction: untargeted attacks minimise
``-CE(logits, y_true)`` (i.e. ascend the true class's loss), targeted attacks minimise
``CE(logits, y_target)``. Feature-space terms (HFC, feature matching, detector scores) are
added with ``+`` and weighted with ``*``, and are computed from the features of the same
forward pass::

    loss = CrossEntropy(targeted=True) + 1.0 * hfc_term

``features`` is the ordered dict a :class:`~hfc_edu.features.FeatureExtractor` returns
(empty when the attacked model is a plain module).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

Features = Mapping[str, torch.Tensor]


class Loss:
    """Base class. Subclasses implement ``__call__(logits, y, features) -> (N,)``.

    ``needs_features`` tells the attack whether it must run a feature extractor.
    :meth:`check` holds the value checks that need a host sync (label ranges, NaN features):
    an attack calls it once, on its first forward pass, and ``__call__`` runs at every step
    without them.
    """

    needs_features: bool = False

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, features: Features) -> torch.Tensor:
        raise NotImplementedError

    def check(self, logits: torch.Tensor, y: torch.Tensor, features: Features) -> None:
        """Raise ``ValueError`` for inputs this loss cannot use (called once per attack)."""

    def __add__(self, other: Loss) -> Loss:
        if not isinstance(other, Loss):
            return NotImplemented
        return SumLoss([self, other])

    def __mul__(self, weight: float) -> Loss:
        return ScaledLoss(self, float(weight))

    __rmul__ = __mul__


class SumLoss(Loss):
    """Sum of several losses."""

    def __init__(self, terms: list[Loss]) -> None:
        flat: list[Loss] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, SumLoss) else [t])
        self.terms = flat
        self.needs_features = any(t.needs_features for t in flat)

    @property
    def layers(self) -> list[str]:
        """The feature layers the terms read, in first-use order (empty for pure logit losses)."""
        return list(dict.fromkeys(n for t in self.terms for n in getattr(t, "layers", [])))

    def __call__(self, logits, y, features):
        return sum(t(logits, y, features) for t in self.terms)

    def check(self, logits, y, features) -> None:
        for t in self.terms:
            t.check(logits, y, features)

    def __repr__(self) -> str:
        return " + ".join(repr(t) for t in self.terms)


class ScaledLoss(Loss):
    """``weight * loss``."""

    def __init__(self, loss: Loss, weight: float) -> None:
        self.loss, self.weight = loss, weight
        self.needs_features = loss.needs_features

    @property
    def layers(self) -> list[str]:
        """The feature layers of the scaled loss (empty for pure logit losses)."""
        return list(getattr(self.loss, "layers", []))

    def __call__(self, logits, y, features):
        return self.weight * self.loss(logits, y, features)

    def check(self, logits, y, features) -> None:
        self.loss.check(logits, y, features)

    def __repr__(self) -> str:
        return f"{self.weight:g} * {self.loss!r}"


class FlooredLoss(Loss):
    """``max(0, loss − floor)``: stops pulling once ``loss`` is at ``floor`` (e.g. the value a
    typical clean image has), instead of pushing past it."""

    def __init__(self, loss: Loss, floor: float) -> None:
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a Loss, got {type(loss).__name__}.")
        self.loss, self.floor = loss, float(floor)
        self.needs_features = loss.needs_features

    @property
    def layers(self) -> list[str]:
        """The feature layers of the floored loss (empty for pure logit losses)."""
        return list(getattr(self.loss, "layers", []))

    def __call__(self, logits, y, features):
        return (self.loss(logits, y, features) - self.floor).clamp_min(0)

    def check(self, logits, y, features) -> None:
        self.loss.check(logits, y, features)

    def __repr__(self) -> str:
        return f"max(0, {self.loss!r} - {self.floor:.3g})"


class CrossEntropy(Loss):
    """``CE(logits, y)`` if targeted (y = targets), ``-CE(logits, y)`` if untargeted."""

    def __init__(self, targeted: bool = False) -> None:
        self.targeted = targeted

    def __call__(self, logits, y, features):
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        return ce if self.targeted else -ce

    def __repr__(self) -> str:
        return f"CrossEntropy(targeted={self.targeted})"


class CWMargin(Loss):
    """Carlini–Wagner margin with confidence ``kappa`` (Carlini & Wagner, S&P 2017).

    Untargeted: ``max(z_y - max_{j!=y} z_j, -kappa)``; targeted: ``max(max_{j!=t} z_j - z_t, -kappa)``.
    Both are minimised; the margin is computed with a mask, so negative logits are handled
    (``(1 - onehot) * logits`` would take 0 as the best other logit).
    """

    def __init__(self, targeted: bool = False, kappa: float = 0.0) -> None:
        if isinstance(kappa, bool) or not isinstance(kappa, int | float) or not kappa >= 0:
            raise ValueError(f"kappa must be a float >= 0, got {kappa!r}.")
        self.targeted, self.kappa = targeted, float(kappa)

    def margin(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the margin before the κ clamp: < 0 once the attack is past the boundary,
        <= −κ once it is past it with confidence κ (targeted: ``max_{j≠t} z_j − z_t``,
        untargeted: ``z_y − max_{j≠y} z_j``)."""
        logits = logits.float()
        own = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
        return other - own if self.targeted else own - other

    def __call__(self, logits, y, features):
        return self.margin(logits, y).clamp(min=-self.kappa)

    def __repr__(self) -> str:
        return f"CWMargin(targeted={self.targeted}, kappa={self.kappa:g})"


def classification_loss(name: str | Loss, targeted: bool, kappa: float | None = None) -> Loss:
    """``"ce"`` or ``"cw"`` as a :class:`Loss` with the attack's direction; a Loss is returned as is.

    ``kappa`` is the CW margin's confidence (None: 0); it configures ``"cw"`` only, and giving
    it with another loss raises instead of being ignored.
    """
    if isinstance(name, Loss):
        if kappa is not None:
            raise ValueError(
                f"kappa configures the 'cw' loss; the given loss {name!r} is a Loss object: set "
                "its confidence inside it, e.g. CWMargin(targeted, kappa)."
            )
        return name
    if name == "ce":
        if kappa is not None:
            raise ValueError("kappa configures the 'cw' loss, not 'ce': pass loss='cw' with it.")
        return CrossEntropy(targeted)
    if name == "cw":
        return CWMargin(targeted, 0.0 if kappa is None else kappa)
    raise ValueError(f"Unknown loss {name!r}: use 'ce', 'cw' or a hfc_edu.attacks.losses.Loss.")
