"""Supervised classifiers on the penultimate (deep) features: DFeat, QFeat (Ma et al.) and SVM (HFC).

* :class:`DFeat`: a random forest on the raw deep features (the reference code uses 30 trees).
* :class:`QFeat`: an RBF SVM on *quantised* deep features, in the spirit of SafetyNet. Our
  quantisation (the paper's exact scheme is not public): every dimension is cut into ``n_bins``
  equal-frequency bins whose edges are the per-dimension quantiles of the **training** features;
  a feature becomes its bin index divided by ``n_bins − 1`` (ordinal code in [0, 1]). Dead ReLU
  units (constant 0) get code 0 everywhere.
* :class:`SVM`: ``SVC(kernel="rbf", C=1, gamma="scale")`` on the raw deep features, as the HFC code.

All are fitted on detector-training data with ``is_adv`` (1 = adversarial, 0 = clean or noisy) and
score with the classifier's probability (forest) or signed margin (SVMs): higher = more adversarial.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from hfc_edu.checks import check_is_adv
from hfc_edu.detectors.base import ArrayLike, Detector, FeatureSet, as_feature_set


class _FeatureClassifier(Detector):
    """Shared fit/score on one layer's features (default: the last, penultimate layer)."""

    layer: str | None

    def _make_estimator(self):  # pragma: no cover - interface
        raise NotImplementedError

    def _transform_fit(self, x: np.ndarray) -> np.ndarray:
        return x

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return x

    def fit(self, data: FeatureSet | dict, is_adv: ArrayLike):
        data = as_feature_set(data)
        feats = self._fit_layout(data, self._select_layers(data, self.layer, "last"))
        y = check_is_adv(is_adv, len(data)).numpy()
        x = next(iter(feats.values())).to(torch.float64).numpy()
        self.estimator_ = self._make_estimator()
        self.estimator_.fit(self._transform_fit(x), y)
        return self

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        feats = self._score_layout(as_feature_set(data))
        x = self._transform(next(iter(feats.values())).to(torch.float64).numpy())
        if hasattr(self.estimator_, "decision_function"):
            return self.estimator_.decision_function(x)
        return self.estimator_.predict_proba(x)[:, 1]


class DFeat(_FeatureClassifier):
    """Random forest on deep features (Ma et al.'s "DFeat")."""

    def __init__(self, layer: str | None = None, n_estimators: int = 30, seed: int = 0) -> None:
        self.layer = layer
        self.n_estimators = n_estimators
        self.seed = seed

    def _make_estimator(self):
        return RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.seed)


def quantile_edges(x: np.ndarray, n_bins: int) -> np.ndarray:
    """``(n_bins − 1, D)`` per-dimension equal-frequency bin edges of ``x`` (N, D)."""
    return np.quantile(x, np.arange(1, n_bins) / n_bins, axis=0)


def quantize(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Ordinal codes in [0, 1]: the bin index of every value (``x > edge`` counts) / (n_bins − 1)."""
    codes = (x[:, None, :] > edges[None]).sum(1)
    return codes / max(edges.shape[0], 1)


class QFeat(_FeatureClassifier):
    """RBF SVM on per-dimension quantised deep features (Ma et al.'s "QFeat"; see module docstring)."""

    def __init__(self, layer: str | None = None, n_bins: int = 4, C: float = 1.0) -> None:
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}.")
        self.layer = layer
        self.n_bins = n_bins
        self.C = C

    def _make_estimator(self):
        return SVC(kernel="rbf", C=self.C, gamma="scale")

    def _transform_fit(self, x: np.ndarray) -> np.ndarray:
        self.edges_ = quantile_edges(x, self.n_bins)
        return quantize(x, self.edges_)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self.edges_)


class SVM(_FeatureClassifier):
    """RBF SVM on deep features (the HFC code's "SVM"); ``standardize`` adds a StandardScaler."""

    def __init__(
        self,
        layer: str | None = None,
        C: float = 1.0,
        gamma: str | float = "scale",
        standardize: bool = False,
    ) -> None:
        self.layer = layer
        self.C = C
        self.gamma = gamma
        self.standardize = standardize

    def _make_estimator(self):
        svc = SVC(kernel="rbf", C=self.C, gamma=self.gamma)
        return make_pipeline(StandardScaler(), svc) if self.standardize else svc


__all__ = ["SVM", "DFeat", "QFeat", "quantile_edges", "quantize"]
