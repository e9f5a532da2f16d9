"""GMM detector: the HFC objective itself, read by a defender.

HFC (Yao et al.) pulls every layer's feature toward the target class's Gaussian mixture; the
quantity it minimises, per layer ``l``, is ``J_l = ‖(h_l − μ_{k*}) U_{k*}‖² / C_l``, the squared
Mahalanobis distance to the most likely component ``k*`` of the class's mixture over the layer's
width (:class:`~hfc_edu.hfc.HFCLoss`; up to constants, minus the component's log-likelihood). A
defender who knows about HFC can score exactly that: :class:`GMMScore` returns ``J_l`` of every
layer under the mixture of the class the classifier predicts. Alone (``score``, the sum over
layers) it flags images less typical than clean ones; inside
:class:`~hfc_edu.detectors.ScoreLR` (one column per layer, a logistic regression fitted per
attack) it also learns the sign per layer, so it can flag *over*-typical images (over-hiding).

This is the book's defence (chapter 10), not one of the papers' detectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hfc_edu.checks import check_class_labels
from hfc_edu.detectors.base import ArrayLike, Detector, FeatureSet, as_feature_set


def _hfc():
    # hfc_edu.hfc imports the detectors (its adaptive baselines read KD and MAHA): import late
    from hfc_edu.hfc import HFCLoss, fit_gmms_on_features
    from hfc_edu.hfc.class_gmms import DEFAULT_MAX_CHANNELS, ClassConditionalGMMs

    return HFCLoss, fit_gmms_on_features, DEFAULT_MAX_CHANNELS, ClassConditionalGMMs


class GMMScore(Detector):
    """``J_l`` of the predicted class's mixture per layer (higher = less typical).

    Args:
        gmms: fitted :class:`~hfc_edu.hfc.ClassConditionalGMMs` (e.g. the attacker's, from
            :func:`~hfc_edu.experiments.hiding.task_gmms`); then nothing is left to fit. None:
            ``fit`` fits them on clean training features (``n_components`` per class and layer).
        layers: layer names to score (default: every mixture layer with at most 512 channels,
            the layers :class:`~hfc_edu.hfc.HFCLoss` constrains by default).
        n_components: mixture components when ``fit`` fits the mixtures.
        seed: the mixtures' ``random_state`` when ``fit`` fits them.

    ``fit(data, y)``: clean **training** features and class labels (``fit_on = "clean"``).
    ``score_layers(data)``: ``(N, L)``, which needs ``data.pred`` (a
    :class:`~hfc_edu.detectors.FeatureSet` from images has it); ``score(data)``: their sum.
    """

    fit_on = "clean"

    def __init__(
        self,
        gmms=None,
        layers: Sequence[str] | None = None,
        n_components: int = 2,
        seed: int = 0,
    ) -> None:
        HFCLoss, _, _, ClassConditionalGMMs = _hfc()
        if gmms is not None and not isinstance(gmms, ClassConditionalGMMs):
            raise TypeError(
                "gmms must be fitted ClassConditionalGMMs (hfc_edu.hfc.fit_class_gmms) or None, "
                f"got {type(gmms).__name__}."
            )
        if isinstance(layers, str):
            raise TypeError("layers must be a list of layer names, not a string.")
        self.gmms = gmms
        self.layers = None if layers is None else list(layers)
        self.n_components = n_components
        self.seed = seed
        if gmms is not None:
            self._use(gmms)

    def _use(self, gmms) -> None:
        HFCLoss = _hfc()[0]
        self.term_ = HFCLoss(gmms, layers=self.layers)  # checks the layer names
        self.gmms_ = gmms
        self.dims_ = {n: int(gmms.channels[n]) for n in self.term_.layers}

    def fit(self, data: FeatureSet | dict, y: ArrayLike) -> GMMScore:
        if self.gmms is not None:
            return self  # fitted at construction
        _, fit_gmms_on_features, max_channels, _ = _hfc()
        data = as_feature_set(data)
        names = self.layers or [n for n, t in data.feats.items() if t.shape[1] <= max_channels]
        feats = self._fit_layout(data, self._select_layers(data, names, "all"))
        y = check_class_labels(y, len(data), "Class labels y")
        gmms = fit_gmms_on_features(
            feats, y, int(y.max()) + 1, "features", n_components=self.n_components,
            random_state=self.seed,
        )  # fmt: skip
        self._use(gmms)
        return self

    def score_layers(self, data: FeatureSet | dict) -> np.ndarray:
        """``(N, L)`` float64: ``J_l`` under the predicted class's mixture, one column per layer."""
        self._check_fitted()
        data = as_feature_set(data)
        if data.pred is None:
            raise ValueError(
                "GMMScore scores each image under the mixture of its predicted class: pass a "
                "FeatureSet with pred (FeatureSet.from_images(fx, x) has it)."
            )
        missing = [n for n in self.dims_ if n not in data.feats]
        if missing:
            raise ValueError(f"Layer(s) {missing} are not in the features ({data.layers}).")
        feats = {n: data.feats[n].double() for n in self.dims_}
        with torch.no_grad():
            terms = self.term_.layer_terms(data.pred, feats)
        return torch.stack([terms[n] for n in self.dims_], 1).cpu().numpy()

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        return self.score_layers(data).sum(1)


__all__ = ["GMMScore"]
