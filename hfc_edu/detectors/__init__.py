"""Adversarial-example detectors. Higher score = more adversarial.

Density / reference detectors, fitted on clean features:

* :class:`KD` (kernel density), :class:`MAHA` (Mahalanobis, class Gaussians with a tied covariance),
  :class:`LID` (local intrinsic dimensionality against clean reference batches), :class:`BU`
  (MC-dropout uncertainty; nothing to fit).

Supervised detectors, fitted on detector-training data (0 = clean or noisy, 1 = adversarial):

* :class:`ScoreLR` (logistic regression on the per-layer scores of the above: LID+LR, MAHA+LR,
  KD+BU), :class:`DFeat` (random forest), :class:`QFeat` (SVM on quantised features),
  :class:`SVM` (RBF SVM) on the penultimate features, and :class:`DNN` (conv nets on raw maps).

The book's defence against HFC (not in the papers): :class:`GMMScore`, the HFC objective per
layer under the predicted class's mixture (``ScoreLR(GMMScore(gmms))``, registry name ``"GMM"``).

Inputs are :class:`FeatureSet` objects (``FeatureSet.from_images(fx, x)``) or ``{layer: (N, C)}`` dicts.
Scores follow one sign convention: higher = more adversarial (see :mod:`hfc_edu.detectors.base`,
which also states what each detector is fitted on). :data:`DETECTORS` names the detectors the
detection pipeline builds (:mod:`hfc_edu.detectors.registry`).
"""

from hfc_edu.detectors.base import Detector, FeatureSet
from hfc_edu.detectors.bu import BU, mc_predictions
from hfc_edu.detectors.combine import ScoreLR
from hfc_edu.detectors.dnn import DNN, MapDetectorNet
from hfc_edu.detectors.feature_classifiers import SVM, DFeat, QFeat
from hfc_edu.detectors.gmm import GMMScore
from hfc_edu.detectors.kd import KD, cv_bandwidth, gaussian_kde_log_density, median_bandwidth
from hfc_edu.detectors.lid import LID, lid_mle
from hfc_edu.detectors.maha import MAHA, ClassGaussians
from hfc_edu.detectors.registry import (
    DETECTORS,
    DetectorContext,
    DetectorInfo,
    default_detectors,
    register_detector,
)

__all__ = [
    "DETECTORS",
    "BU",
    "DNN",
    "KD",
    "LID",
    "MAHA",
    "SVM",
    "ClassGaussians",
    "DFeat",
    "Detector",
    "DetectorContext",
    "DetectorInfo",
    "FeatureSet",
    "GMMScore",
    "MapDetectorNet",
    "QFeat",
    "ScoreLR",
    "cv_bandwidth",
    "default_detectors",
    "gaussian_kde_log_density",
    "lid_mle",
    "mc_predictions",
    "median_bandwidth",
    "register_detector",
]
