"""Evasion terms: a fitted detector's score as an attack loss term (the attacker's next move).

Once a defender fits a detector on HFC examples, a white-box attacker can add that detector's
score to the loss, as :mod:`hfc_edu.hfc.baselines` does for KD and MAHA fitted on clean data.
:func:`evasion_term` returns, for a fitted detector,

* :class:`ScoreLRTerm` — the detector's own log-odds, exactly, for a
  :class:`~hfc_edu.detectors.ScoreLR` over per-layer :class:`~hfc_edu.detectors.MAHA` (without
  input pre-processing) and :class:`~hfc_edu.detectors.GMMScore` scores;
* :class:`~hfc_edu.hfc.KDLoss` for :class:`~hfc_edu.detectors.KD`;
* :class:`SVMTerm` for :class:`~hfc_edu.detectors.SVM` (the RBF decision function), and as the
  differentiable *surrogate* for every detector without a gradient here (random forest, QFeat's
  quantised SVM, LID, BU, the DNN detector): an RBF SVM on the penultimate features fitted on the
  same detector-training data (:func:`surrogate_term`). A linear surrogate is fooled easily but
  its loss does not carry over to a random forest; a kernel one carries over further.

Each term is ``softplus(score)`` (for a logistic regression, ``−log P(clean)``), so the pull
stops once the example reads as clean instead of overshooting to the far side, where a retrained
detector would find it again. ``y`` is the attack's TARGET class: at success it is the class the
classifier predicts, the class the detectors condition on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hfc_edu.attacks.losses import Loss
from hfc_edu.checks import check_is_adv
from hfc_edu.detectors import KD, MAHA, SVM, Detector, FeatureSet, GMMScore, ScoreLR
from hfc_edu.hfc.baselines import KDLoss, _FeatureTerm


class SVMTerm(_FeatureTerm):
    """``softplus`` of a fitted RBF :class:`~hfc_edu.detectors.SVM`'s decision function, exactly:
    ``f(h) = Σ_i a_i exp(−γ ‖s(h) − v_i‖²) + b`` over its support vectors ``v_i`` (``s``: its
    scaler, if any). Also the differentiable surrogate for detectors without a gradient
    (:func:`evasion_term`): an RBF SVM fitted on the same data."""

    def __init__(self, detector: SVM) -> None:
        super().__init__()
        if not isinstance(detector, SVM) or not hasattr(detector, "estimator_"):
            raise TypeError("SVMTerm needs a fitted SVM detector (SVM().fit(data, is_adv)).")
        est = detector.estimator_
        scaler = est[0] if hasattr(est, "steps") else None
        svc = est[-1] if hasattr(est, "steps") else est
        self.support = torch.from_numpy(np.asarray(svc.support_vectors_, dtype=np.float64))
        self.dual = torch.from_numpy(np.asarray(svc.dual_coef_[0], dtype=np.float64))
        self.gamma = float(svc._gamma)  # the fitted value ("scale" resolved); no public name
        self.bias = float(svc.intercept_[0])
        d = self.support.shape[1]
        mean = np.zeros(d) if scaler is None else scaler.mean_
        scale = np.ones(d) if scaler is None else scaler.scale_
        self.mean, self.scale = torch.from_numpy(mean), torch.from_numpy(scale)
        self.layers = list(detector.dims_)

    def __repr__(self) -> str:
        return f"SVMTerm(layer={self.layers[0]!r}, support vectors={len(self.dual)})"

    def decision(self, features) -> torch.Tensor:
        """``(N,)`` the SVM's decision function (differentiable)."""
        n = self.layers[0]
        if n not in features:
            raise ValueError(
                f"SVMTerm reads layer {n!r}, which the attack's features do not contain "
                f"({list(features)})."
            )
        h = features[n]
        z = (h - self._on("mean", self.mean, h)) / self._on("scale", self.scale, h)
        d2 = torch.cdist(z, self._on("support", self.support, h)).square()
        return torch.exp(-self.gamma * d2) @ self._on("dual", self.dual, h) + self.bias

    def __call__(self, logits, y, features):
        return F.softplus(self.decision(features))


class ScoreLRTerm(_FeatureTerm):
    """``softplus`` of a fitted :class:`~hfc_edu.detectors.ScoreLR`'s log-odds, exactly, for
    per-layer :class:`~hfc_edu.detectors.MAHA` (no pre-processing) and
    :class:`~hfc_edu.detectors.GMMScore` columns, each read under the target class
    (GMMScore) or the closest class (MAHA), as the detector reads them."""

    def __init__(self, detector: ScoreLR) -> None:
        super().__init__()
        if not isinstance(detector, ScoreLR) or not hasattr(detector, "pipeline_"):
            raise TypeError("ScoreLRTerm needs a fitted ScoreLR (ScoreLR(...).fit(data, is_adv)).")
        if not detector.per_layer:
            raise ValueError(
                "ScoreLRTerm reads per-layer columns: the ScoreLR needs per_layer=True."
            )
        for det in detector._dets:
            if not isinstance(det, MAHA | GMMScore) or (
                isinstance(det, MAHA) and det.magnitude > 0
            ):
                raise ValueError(
                    f"ScoreLRTerm is exact for MAHA (magnitude 0) and GMMScore columns, not "
                    f"{det!r}; use surrogate_term for other detectors."
                )
        self.parts = detector._dets
        scaler, lr = detector.pipeline_[0], detector.pipeline_[-1]
        self.coef = torch.from_numpy(lr.coef_[0] / scaler.scale_)
        self.bias = float(lr.intercept_[0] - (lr.coef_[0] * scaler.mean_ / scaler.scale_).sum())
        self.layers = list(dict.fromkeys(n for d in self.parts for n in d.dims_))

    def __repr__(self) -> str:
        return f"ScoreLRTerm({', '.join(type(d).__name__ for d in self.parts)})"

    def columns(self, y: torch.Tensor, features) -> torch.Tensor:
        """``(N, F)`` the ScoreLR's input columns, differentiable in the features."""
        cols = []
        for det in self.parts:
            if isinstance(det, GMMScore):
                feats = {n: features[n] for n in det.dims_}
                terms = det.term_._layer_terms(y.long(), feats)
                cols += [terms[n] for n in det.dims_]
            else:
                for n in det.dims_:
                    d2 = det.gaussians_[n].distances(features[n])  # (N, K) float64
                    cols.append(0.5 * d2.min(1).values)
        ref = features[self.layers[0]]
        dtype = torch.float64 if ref.dtype == torch.float64 else torch.float32
        return torch.stack([c.to(dtype) for c in cols], 1)

    def log_odds(self, y: torch.Tensor, features) -> torch.Tensor:
        z = self.columns(y, features)
        return z @ self._on("coef", self.coef, z) + self.bias

    def __call__(self, logits, y, features):
        missing = [n for n in self.layers if n not in features]
        if missing:
            raise ValueError(
                f"ScoreLRTerm reads layer(s) {missing}, which the attack's features do not "
                f"contain ({list(features)})."
            )
        return F.softplus(self.log_odds(y, features))


def surrogate_term(train: FeatureSet, is_adv) -> SVMTerm:
    """The differentiable surrogate: an RBF :class:`~hfc_edu.detectors.SVM` on the penultimate
    features, fitted on detector-training data (0 = clean or noisy, 1 = adversarial)."""
    if not isinstance(train, FeatureSet):
        raise TypeError(f"train must be a FeatureSet, got {type(train).__name__}.")
    return SVMTerm(SVM().fit(train, check_is_adv(is_adv, len(train))))


def exact_term(detector: Detector) -> Loss | None:
    """The fitted ``detector``'s own score as a term (:class:`ScoreLRTerm` for ScoreLR over
    MAHA/GMMScore, :class:`~hfc_edu.hfc.KDLoss` for KD, :class:`SVMTerm` for SVM), or None when
    its score has no usable gradient here."""
    if not isinstance(detector, Detector):
        raise TypeError(f"detector must be a fitted Detector, got {type(detector).__name__}.")
    if isinstance(detector, ScoreLR) and all(
        isinstance(d, GMMScore) or (isinstance(d, MAHA) and d.magnitude == 0)
        for d in detector._dets
    ):
        return ScoreLRTerm(detector)
    if isinstance(detector, KD):
        return KDLoss.from_detector(detector)
    if isinstance(detector, SVM):
        return SVMTerm(detector)
    return None


def evasion_term(
    detector: Detector, train: FeatureSet | None = None, is_adv=None
) -> tuple[Loss, bool]:
    """The attacker's term against a fitted ``detector`` and whether it is exact.

    Exact: :func:`exact_term`. Otherwise the :func:`surrogate_term` fitted on ``train`` and
    ``is_adv`` (the detector's training data, e.g. a
    :class:`~hfc_edu.experiments.detection.DetectionRun`'s ``train``/``train_is_adv``).
    """
    term = exact_term(detector)
    if term is not None:
        return term, True
    if train is None or is_adv is None:
        raise ValueError(
            f"{type(detector).__name__} has no differentiable score here: pass its training data "
            "(train, is_adv) to fit a surrogate in its place."
        )
    return surrogate_term(train, is_adv), False


__all__ = ["SVMTerm", "ScoreLRTerm", "evasion_term", "exact_term", "surrogate_term"]
