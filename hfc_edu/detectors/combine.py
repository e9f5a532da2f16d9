"""Logistic regression on detector scores: LID+LR, MAHA+LR, multi-layer KD+LR, KD+BU."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hfc_edu.checks import check_is_adv
from hfc_edu.detectors.base import ArrayLike, Detector, FeatureSet


class ScoreLR(Detector):
    """StandardScaler + LogisticRegression on the scores of already-fitted detectors.

    Args:
        detectors: one detector or a list. Each must be fitted (density detectors on the classifier's
            training features, LID on its clean reference) before ``ScoreLR.fit``; the detection
            pipeline does that from :meth:`clean_parts`.
        per_layer: use every detector's ``score_layers`` (one column per layer) when it has one;
            otherwise its single ``score``.
        C: inverse L2 regularisation strength of the logistic regression.

    ``fit(data, is_adv)`` on detector-training data (0 = clean or noisy, 1 = adversarial); the
    scaler is fitted there only. ``score(data)``: ``(N,)`` log-odds of "adversarial".

    Examples: ``ScoreLR(LID(k=20).fit(clean_ref))``, ``ScoreLR(MAHA(...).fit(train, y))``,
    ``ScoreLR([KD().fit(train, y), BU(model)], per_layer=False)`` (KD+BU).
    """

    def __init__(
        self, detectors: Detector | Sequence[Detector], per_layer: bool = True, C: float = 1.0
    ) -> None:
        self.detectors = detectors
        self.per_layer = per_layer
        self.C = C

    @property
    def _dets(self) -> list[Detector]:
        return [self.detectors] if isinstance(self.detectors, Detector) else list(self.detectors)

    def clean_parts(self) -> list[Detector]:
        """The base detectors' parts fitted on clean training features (KD, MAHA, LID)."""
        return [part for det in self._dets for part in det.clean_parts()]

    def features(self, data: FeatureSet | dict) -> np.ndarray:
        """``(N, F)`` the stacked score columns the regression reads."""
        cols = []
        for det in self._dets:
            if not det.is_fitted:
                raise RuntimeError(
                    f"{type(det).__name__} inside ScoreLR is not fitted: fit it first (KD/MAHA on the "
                    "classifier's training features and labels, LID on clean reference features)."
                )
            s = (
                det.score_layers(data)
                if self.per_layer and hasattr(det, "score_layers")
                else det.score(data)
            )
            cols.append(np.asarray(s, dtype=np.float64).reshape(len(s), -1))
        z = np.concatenate(cols, 1)
        if not np.isfinite(z).all():
            raise ValueError("A base detector returned non-finite scores; check its inputs.")
        return z

    def fit(self, data: FeatureSet | dict, is_adv: ArrayLike) -> ScoreLR:
        z = self.features(data)
        y = check_is_adv(is_adv, len(z)).numpy()
        self.pipeline_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=1000)
        )
        self.pipeline_.fit(z, y)
        self.dims_ = {"scores": z.shape[1]}
        return self

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        self._check_fitted()
        z = self.features(data)
        if z.shape[1] != self.dims_["scores"]:
            raise ValueError(f"Fitted on {self.dims_['scores']} score columns, got {z.shape[1]}.")
        return self.pipeline_.decision_function(z)


__all__ = ["ScoreLR"]
