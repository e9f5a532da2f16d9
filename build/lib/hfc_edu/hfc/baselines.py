"""Adaptive-attack baselines: transparent STAND-INS for the papers' "competing adaptive attacks".

The HFC papers compare against adaptive attacks that are not in the public code (spec §3.10).
These three loss terms are textbook versions of the two families the papers cite, written from
fitted feature statistics (no dependency on :mod:`hfc_edu.detectors`):

* :class:`FeatureMatchingLoss` — feature matching (in the spirit of Sabour et al. 2016): pull
  the penultimate feature towards the target class's mean, ``‖h − μ_t‖² / C``.
* :class:`KDLoss` — detector-aware, KD (Carlini & Wagner 2017, "not easily detected"): minimise
  ``−log KDE_t(h)``, the Gaussian-kernel density of the target class's training features.
* :class:`MahalanobisLoss` — detector-aware, MAHA: minimise the Mahalanobis distance to the
  target class mean under a tied Ledoit–Wolf covariance, ``‖(h − μ_t) L‖² / C`` per layer.

Each is a :class:`~hfc_edu.attacks.losses.Loss` with ``needs_features=True`` and a ``layers``
list; add it to a targeted classification loss, e.g.
``CrossEntropy(targeted=True) + c * KDLoss.from_features(feats, y, layer)``, or run
:func:`hfc_edu.hfc.feature_attack`. ``y`` is always the attack's TARGET class. All terms are
computed in float32 on the features' device from float64 statistics (in float64 when the
features are float64).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from hfc_edu.attacks.losses import Features, Loss


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


def _class_means(f: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(
            f"Every class needs training features; counts per class: {counts.tolist()}."
        )
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64).index_add_(0, y, f.double())
    return sums / counts[:, None]


class _FeatureTerm(Loss):
    """Common parts: float32 per-device copies of float64 statistics, feature checks."""

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
    """Stand-in baseline (a): ``Σ_l ‖h_l − μ_{l,t}‖² / C_l`` with class means ``μ_l (C, C_l)``.

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
    """Stand-in detector-aware baseline (MAHA): ``Σ_l ‖(h_l − μ_{l,t}) L_l‖² / C_l``.

    ``L_l (C_l, C_l)`` is a Cholesky factor of the tied precision (``Σ_l⁻¹ = L_l L_lᵀ``), from a
    Ledoit–Wolf covariance of the class-centred training features (:meth:`from_features`).
    """

    def __init__(
        self,
        class_means: Mapping[str, torch.Tensor],
        precision_cholesky: Mapping[str, torch.Tensor],
    ) -> None:
        super().__init__()
        if set(class_means) != set(precision_cholesky):
            raise ValueError("class_means and precision_cholesky must name the same layers.")
        self.means = {n: torch.as_tensor(m, dtype=torch.float64) for n, m in class_means.items()}
        self.chol = {
            n: torch.as_tensor(precision_cholesky[n], dtype=torch.float64) for n in self.means
        }
        for n, m in self.means.items():
            if self.chol[n].shape != (m.shape[1], m.shape[1]):
                raise ValueError(f"precision_cholesky[{n!r}] must be ({m.shape[1]}, {m.shape[1]}).")
        self.layers = list(self.means)

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        num_classes: int,
        layers: Sequence[str] | None = None,
    ) -> MahalanobisLoss:
        """Class means and a tied Ledoit–Wolf covariance per layer (default: every layer)."""
        from sklearn.covariance import LedoitWolf

        layers = list(features) if layers is None else list(layers)
        y = _check_fit_inputs(features, y, layers)
        means, chols = {}, {}
        for n in layers:
            f = features[n].double().cpu()
            mu = _class_means(f, y, num_classes)
            lw = LedoitWolf().fit((f - mu[y]).numpy())
            prec = np.linalg.inv(lw.covariance_)  # well conditioned after shrinkage
            means[n] = mu
            chols[n] = torch.linalg.cholesky(torch.from_numpy((prec + prec.T) / 2))
        return cls(means, chols)

    def __repr__(self) -> str:
        return f"MahalanobisLoss(layers={self.layers})"

    def __call__(self, logits, y, features):
        total = 0
        for n in self.layers:
            h = self._feature(features, n, self.means[n].shape[1], y.shape[0])
            mu = self._on(n, self.means[n], h)
            chol = self._on(n + "/chol", self.chol[n], h)
            total = total + ((h - mu[y]) @ chol).square().sum(1) / mu.shape[1]
        return total


class KDLoss(_FeatureTerm):
    """Stand-in detector-aware baseline (KD): ``−log KDE_t(h)`` at one layer.

    ``KDE_t(h) = (1/n_t) Σ_{i: y_i = t} N(h; f_i, σ² I)`` over the target class's training
    features ``f_i`` (Gaussian kernel, ``bandwidth`` σ; 1.0 is scikit-learn's default used by the
    official code). Distances are exact (no ``‖a‖² + ‖b‖² − 2ab`` cancellation).
    """

    def __init__(
        self,
        train_features: torch.Tensor,
        train_labels: torch.Tensor,
        layer: str,
        num_classes: int,
        bandwidth: float = 1.0,
    ) -> None:
        super().__init__()
        f = torch.as_tensor(train_features, dtype=torch.float64)
        lab = torch.as_tensor(train_labels).long().cpu()
        if f.ndim != 2 or lab.shape != (f.shape[0],):
            raise ValueError("train_features must be (M, D) and train_labels (M,).")
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}.")
        counts = torch.bincount(lab, minlength=num_classes)
        if len(counts) > num_classes or (counts == 0).any():
            raise ValueError(
                f"Every class in [0, {num_classes}) needs training features: {counts.tolist()}."
            )
        self.features, self.labels, self.bandwidth = f, lab, float(bandwidth)
        self.log_counts = counts.double().log()
        self.layers = [layer]

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, torch.Tensor],
        y: torch.Tensor,
        num_classes: int,
        layer: str | None = None,
        bandwidth: float = 1.0,
    ) -> KDLoss:
        """From clean training features ``name -> (N, C_l)``; ``layer`` default: the last one."""
        layer = list(features)[-1] if layer is None else layer
        y = _check_fit_inputs(features, y, [layer])
        return cls(features[layer], y, layer, num_classes, bandwidth)

    def __repr__(self) -> str:
        return f"KDLoss(layer={self.layers[0]!r}, bandwidth={self.bandwidth:g})"

    def log_density(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log KDE_y(h)`` for ``h (N, D)`` and classes ``y (N,)``; differentiable in h."""
        h = h if h.dtype == torch.float64 else h.float()
        f = self._on("f", self.features, h)
        lab = self._on("labels", self.labels, h)
        logn = self._on("logn", self.log_counts, h)
        d2 = torch.cdist(h, f, compute_mode="donot_use_mm_for_euclid_dist").square()
        logk = (-0.5 / self.bandwidth**2) * d2
        logk = logk.masked_fill(lab[None, :] != y[:, None], float("-inf"))
        d = f.shape[1]
        const = 0.5 * d * math.log(2 * math.pi * self.bandwidth**2)
        return torch.logsumexp(logk, dim=1) - logn[y] - const

    def __call__(self, logits, y, features):
        h = self._feature(features, self.layers[0], self.features.shape[1], y.shape[0])
        return -self.log_density(h, y)


__all__ = ["FeatureMatchingLoss", "KDLoss", "MahalanobisLoss"]
