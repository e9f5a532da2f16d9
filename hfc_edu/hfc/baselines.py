"""Adaptive-attack baselines: feature-space terms an attacker adds to hide from one detector.

The HFC papers (Yao et al. MICCAI 2021, TMI 2023) compare HFC with adaptive attacks that are not
in their public code. These three loss terms are textbook versions of the two families they
cite; the two detector-aware ones are the detectors' own fitted statistics and formulas, so an
attack minimises exactly what the detector scores:

* :class:`FeatureMatchingLoss` — feature matching (in the spirit of Sabour et al. ICLR 2016): pull
  the penultimate feature towards the target class's mean, ``‖h − μ_t‖² / C``.
* :class:`KDLoss` — detector-aware, KD (Carlini & Wagner 2017, "not easily detected"): minimise
  ``−log KDE_t(h)``, the Gaussian-kernel density of the target class's training features: the
  :class:`~hfc_edu.detectors.KD` detector's score under the target class
  (:func:`~hfc_edu.detectors.gaussian_kde_log_density`).
* :class:`MahalanobisLoss` — detector-aware, MAHA (Lee et al. 2018): minimise the squared
  Mahalanobis distance to the target class mean under the tied covariance, ``d²(h, μ_t) / C`` per
  layer: the :class:`~hfc_edu.detectors.MAHA` detector's
  :meth:`~hfc_edu.detectors.ClassGaussians.class_distances`.

Build the detector-aware terms from a fitted detector (``KDLoss.from_detector(kd)``,
``MahalanobisLoss.from_detector(maha)``, e.g. the ones a detection run fitted) or straight from
clean training features (``from_features``, which fits the detector). Each is a
:class:`~hfc_edu.attacks.losses.Loss` with ``needs_features=True`` and a ``layers`` list; add it to
a targeted classification loss, e.g. ``CrossEntropy(targeted=True) + c * KDLoss.from_detector(kd)``,
or run :func:`hfc_edu.hfc.feature_attack`. ``y`` is always the attack's TARGET class. Terms are
computed on the features' device, in float64 for float64 features and float32 otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hfc_edu.attacks.losses import Features, Loss
from hfc_edu.detectors import KD, MAHA, FeatureSet
from hfc_edu.detectors.kd import gaussian_kde_log_density


def _check_fit_inputs(
    features: Mapping[str, torch.Tensor], y: torch.Tensor, layers: Sequence[str]
) -> torch.Tensor:
    y = torch.as_tensor(y).long().cpu()
    missing = [n for n in layers if n not in features]
    if missing:
        raise ValueError(f"Layer(s) {missing} not in the features ({list(features)}).")
    for n in layers:
        f = features[n]
        if f.ndim != 2 or f.shape[0] != y.shape[0]:
            raise ValueError(
                f"Features of {n!r} must be GAP features (N={len(y)}, D), got {tuple(f.shape)}."
            )
    return y


def _check_every_class(classes: torch.Tensor, num_classes: int | None, what: str) -> int:
    """The fitted ``classes`` must be exactly ``0 .. K-1`` (every target has statistics)."""
    k = int(classes.numel()) if num_classes is None else num_classes
    if classes.tolist() != list(range(k)):
        raise ValueError(
            f"{what} needs training features of every class in [0, {k}); the fitted classes "
            f"are {classes.tolist()}."
        )
    return k


def _class_means(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(
            f"Every class needs training features; counts per class: {counts.tolist()}."
        )
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64).index_add_(0, y, f.double())
    return sums / counts[:, None]


class _FeatureTerm(Loss):
    """Common parts: per-device copies of float64 statistics, feature checks."""

    needs_features = True
    layers: list[str]

    def __init__(self) -> None:
        self._copies: dict[tuple[torch.device, torch.dtype, str], torch.Tensor] = {}

    def _on(self, name: str, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``t`` on ``like``'s device, float64 if ``like`` is float64 else float32 (cached)."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        key = (like.device, dtype, name)
        if key not in self._copies:
            self._copies[key] = t.to(
                device=like.device, dtype=dtype if t.is_floating_point() else t.dtype
            )
        return self._copies[key]

    def _feature(self, features: Features, name: str, dim: int, n: int) -> torch.Tensor:
        if name not in features:
            raise ValueError(
                f"{type(self).__name__} needs layer {name!r}, which the attack's features do not "
                f"contain ({list(features)}). Attack with FeatureExtractor(model, layers=loss.layers)."
            )
        h = features[name]
        if h.ndim != 2 or h.shape != (n, dim):
            raise ValueError(f"Features of {name!r} must be ({n}, {dim}), got {tuple(h.shape)}.")
        return h if h.dtype == torch.float64 else h.float()


class FeatureMatchingLoss(_FeatureTerm):
    """Baseline (a): ``Σ_l ‖h_l − μ_{l,t}‖² / C_l`` with class means ``μ_l (C, C_l)``.

    Build it with :meth:`from_features` (default layer: the last one, the penultimate feature).
    """

    def __init__(self, class_means: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        if not class_means:
            raise ValueError("class_means is empty.")
        self.means = {n: torch.as_tensor(m, dtype=torch.float64) for n, m in class_means.items()}
        if any(m.ndim != 2 for m in self.means.values()):
            raise ValueError("Each class-mean tensor must be (num_classes, C_l).")
        self.layers = list(self.means)

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        num_classes: int,
        layers: Sequence[str] | None = None,
    ) -> FeatureMatchingLoss:
        """Class means of clean training features ``name -> (N, C_l)``; ``layers`` default: last."""
        layers = [list(features)[-1]] if layers is None else list(layers)
        y = _check_fit_inputs(features, y, layers)
        return cls({n: _class_means(features[n], y, num_classes) for n in layers})

    def __repr__(self) -> str:
        return f"FeatureMatchingLoss(layers={self.layers})"

    def __call__(self, logits, y, features):
        total = 0
        for n in self.layers:
            h = self._feature(features, n, self.means[n].shape[1], y.shape[0])
            mu = self._on(n, self.means[n], h)
            total = total + (h - mu[y]).square().sum(1) / mu.shape[1]
        return total


class MahalanobisLoss(_FeatureTerm):
    """Detector-aware baseline (MAHA): ``Σ_l d²_l(h_l, μ_{l,t}) / C_l``.

    ``d²_l`` is the squared Mahalanobis distance under the tied covariance of a fitted
    :class:`~hfc_edu.detectors.MAHA` detector (class means and Ledoit–Wolf covariance of the
    class-centred training features, Lee et al. 2018):
    :meth:`ClassGaussians.class_distances <hfc_edu.detectors.ClassGaussians.class_distances>`.

    Args:
        maha: a fitted MAHA detector, fitted on every class.
        layers: the layers to sum over (default: every fitted layer).
    """

    def __init__(self, maha: MAHA, layers: Sequence[str] | None = None) -> None:
        super().__init__()
        if not isinstance(maha, MAHA) or not maha.is_fitted:
            raise TypeError(
                "MahalanobisLoss needs a fitted MAHA detector (MAHA().fit(features, y))."
            )
        fitted = list(maha.gaussians_)
        self.layers = fitted if layers is None else list(layers)
        missing = [n for n in self.layers if n not in fitted]
        if missing or not self.layers:
            raise ValueError(f"Layer(s) {missing or self.layers} not fitted; MAHA has {fitted}.")
        self.gaussians = {n: maha.gaussians_[n] for n in self.layers}
        for g in self.gaussians.values():
            _check_every_class(g.classes, None, "MahalanobisLoss")

    @classmethod
    def from_detector(cls, maha: MAHA, layers: Sequence[str] | None = None) -> MahalanobisLoss:
        """The term of a fitted :class:`~hfc_edu.detectors.MAHA` (e.g. a detection run's)."""
        return cls(maha, layers)

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        num_classes: int,
        layers: Sequence[str] | None = None,
    ) -> MahalanobisLoss:
        """Fit MAHA (Ledoit–Wolf) on clean training features ``name -> (N, C_l)`` and labels
        ``y``; ``layers`` default: every layer."""
        layers = list(features) if layers is None else list(layers)
        y = _check_fit_inputs(features, y, layers)
        _class_means(features[layers[0]], y, num_classes)  # every class present
        maha = MAHA(layers=layers, shrinkage="ledoit_wolf").fit(FeatureSet(dict(features)), y)
        return cls(maha)

    def __repr__(self) -> str:
        return f"MahalanobisLoss(layers={self.layers})"

    def __call__(self, logits, y, features):
        total = 0
        for n, g in self.gaussians.items():
            dim = g.means.shape[1]
            h = self._feature(features, n, dim, y.shape[0])
            total = total + g.class_distances(h, y) / dim
        return total


class KDLoss(_FeatureTerm):
    """Detector-aware baseline (KD): ``−log KDE_t(h)`` at one layer.

    ``KDE_t(h) = (1/n_t) Σ_{i: y_i = t} N(h; f_i, σ² I)`` over the target class's training
    features ``f_i`` of a fitted :class:`~hfc_edu.detectors.KD` detector, with its bandwidth σ
    (1.0 by default: scikit-learn's, used by the official code): the detector's score had the
    classifier predicted the target.

    Args:
        kd: a fitted KD detector, fitted on every class.
        layer: one of its fitted layers (default: the last, penultimate one).
    """

    def __init__(self, kd: KD, layer: str | None = None) -> None:
        super().__init__()
        if not isinstance(kd, KD) or not kd.is_fitted:
            raise TypeError("KDLoss needs a fitted KD detector (KD().fit(features, y)).")
        fitted = list(kd.data_)
        layer = fitted[-1] if layer is None else layer
        if layer not in fitted:
            raise ValueError(f"Layer {layer!r} not fitted; KD has {fitted}.")
        self.num_classes = _check_every_class(kd.classes_, None, "KDLoss")
        self.class_features = kd.data_[layer]  # {class: (n_c, D) float64}
        self.bandwidth = kd.bandwidths_[layer]
        self.layers = [layer]

    @classmethod
    def from_detector(cls, kd: KD, layer: str | None = None) -> KDLoss:
        """The term of a fitted :class:`~hfc_edu.detectors.KD` (e.g. a detection run's)."""
        return cls(kd, layer)

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        num_classes: int,
        layer: str | None = None,
        bandwidth: float = 1.0,
    ) -> KDLoss:
        """Fit KD on clean training features ``name -> (N, C_l)`` and labels ``y`` at ``layer``
        (default: the last one)."""
        layer = list(features)[-1] if layer is None else layer
        y = _check_fit_inputs(features, y, [layer])
        kd = KD(bandwidth=bandwidth, layers=[layer]).fit(FeatureSet({layer: features[layer]}), y)
        _check_every_class(kd.classes_, num_classes, "KDLoss")
        return cls(kd, layer)

    def __repr__(self) -> str:
        return f"KDLoss(layer={self.layers[0]!r}, bandwidth={self.bandwidth:g})"

    def log_density(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log KDE_y(h)`` for ``h (N, D)`` and classes ``y (N,)``; differentiable in h.

        Every class's density is evaluated for every row and the row's class picked (no host
        sync; the same cost as one pass over all training features)."""
        h = h if h.dtype == torch.float64 else h.float()
        per_class = torch.stack(
            [
                gaussian_kde_log_density(h, self._on(f"class{c}", f, h), self.bandwidth)
                for c, f in self.class_features.items()
            ],
            1,
        )  # (N, K), columns in class order 0 .. K-1
        return per_class.gather(1, y.to(h.device).long()[:, None])[:, 0]

    def __call__(self, logits, y, features):
        dim = next(iter(self.class_features.values())).shape[1]
        h = self._feature(features, self.layers[0], dim, y.shape[0])
        return -self.log_density(h, y)


__all__ = ["FeatureMatchingLoss", "KDLoss", "MahalanobisLoss"]
