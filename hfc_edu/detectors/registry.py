"""The detector registry: every detector the detection pipeline knows by name.

An entry is a :class:`DetectorInfo`: a name and a ``build(ctx)`` that returns an unfitted
detector, where ``ctx`` (:class:`DetectorContext`) carries what a detector may need from the
experiment: the classifier, its feature extractor, the active profile and the seed. All other
knobs live in the detector's constructor; the entries below choose the papers' settings (Ma et
al. ICLR 2018; Lee et al. 2018; Feinman et al. 2017; Yao et al. MICCAI 2021) and read the size
knobs (MC-dropout passes, DNN iterations and widths) from the profile.

How a detector is fitted is its own business (:attr:`~hfc_edu.detectors.Detector.fit_on`, see
:mod:`hfc_edu.detectors.base`): KD, MAHA's class Gaussians and LID's reference are fitted once on
clean training features and shared by every attack; logistic-regression heads, DFeat, QFeat,
SVM and DNN are fitted per attack; BU needs nothing. The pipeline has no list of names.

Adding a detector is one file (a :class:`~hfc_edu.detectors.Detector` subclass) and one line::

    register_detector(DetectorInfo("MyDet", lambda ctx: MyDet(seed=ctx.seed)))

after which ``run_detection(..., detectors=["KD", "MyDet"])`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from hfc_edu.config import Profile
from hfc_edu.detectors.base import Detector
from hfc_edu.detectors.bu import BU
from hfc_edu.detectors.combine import ScoreLR
from hfc_edu.detectors.dnn import DNN
from hfc_edu.detectors.feature_classifiers import SVM, DFeat, QFeat
from hfc_edu.detectors.gmm import GMMScore
from hfc_edu.detectors.kd import KD
from hfc_edu.detectors.lid import LID
from hfc_edu.detectors.maha import MAHA
from hfc_edu.features import FeatureExtractor
from hfc_edu.registry import Registry


@dataclass(frozen=True)
class DetectorContext:
    """What an experiment hands to :attr:`DetectorInfo.build`.

    Attributes:
        model: the classifier (eval mode), inputs in [0, 1].
        fx: its :class:`~hfc_edu.features.FeatureExtractor` (the features every detector reads).
        profile: the active :class:`~hfc_edu.config.Profile` (size knobs).
        seed: seeds the detector (its random draws, its initialisation).
        batch_size: images per forward pass.
    """

    model: nn.Module
    fx: FeatureExtractor
    profile: Profile
    seed: int = 0
    batch_size: int = 128


@dataclass(frozen=True)
class DetectorInfo:
    """How to build one detector.

    Attributes:
        name: the registry name (``"LID"``), used in every table.
        build: ``build(ctx) -> Detector``, unfitted (or with parts already fitted, kept as they are).
        default: part of :func:`~hfc_edu.experiments.detection.run_detection`'s default set.
        description: one line for listings.
    """

    name: str
    build: Callable[[DetectorContext], Detector]
    default: bool = True
    description: str = ""


DETECTORS: Registry[DetectorInfo] = Registry("detector")


def register_detector(info: DetectorInfo) -> DetectorInfo:
    """Register ``info`` under ``info.name`` (one line per detector)."""
    if not isinstance(info, DetectorInfo):
        raise TypeError(f"register_detector takes a DetectorInfo, got {type(info).__name__}.")
    return DETECTORS.register(info.name, info)


def default_detectors() -> list[str]:
    """Names of the registered detectors with ``default=True``, in registration order."""
    return [name for name, info in DETECTORS.items() if info.default]


def _bu(ctx: DetectorContext) -> BU:
    # BU's own batch size (128): its dropout masks are drawn per batch, so its scores depend on it
    return BU(ctx.model, passes=ctx.profile.mc_passes)


def _dnn(ctx: DetectorContext) -> DNN:
    """Metzen et al.'s per-layer conv nets; iterations, widths and layers from the profile."""
    p = ctx.profile
    layers = None
    if p.dnn_blocks is not None:
        layers = FeatureExtractor(ctx.model, layers="blocks").layer_names[-p.dnn_blocks :]
    return DNN(
        ctx.fx,
        layers=layers,
        iters=p.dnn_iters,
        widths=tuple(p.dnn_widths),
        seed=ctx.seed,
        score_batch_size=ctx.batch_size,
    )


# fmt: off
register_detector(DetectorInfo(
    "KD", lambda ctx: KD(seed=ctx.seed),
    description="penultimate-layer kernel density, bandwidth 1.0 (the HFC code); no regression"))
register_detector(DetectorInfo(
    "BU", _bu, description="MC-dropout uncertainty, profile.mc_passes passes"))
register_detector(DetectorInfo(
    "LID", lambda ctx: ScoreLR(LID(k=20, batch_size=100, fixed_reference=True, seed=ctx.seed)),
    description="LID per layer (k = 20, one reference batch of 100) + logistic regression"))
register_detector(DetectorInfo(
    "MAHA", lambda ctx: ScoreLR(MAHA(layers="all")),
    description="Mahalanobis per layer (tied Ledoit-Wolf covariance) + logistic regression"))
register_detector(DetectorInfo(
    "DFeat", lambda ctx: DFeat(seed=ctx.seed),
    description="random forest on the penultimate features"))
register_detector(DetectorInfo(
    "QFeat", lambda ctx: QFeat(), description="RBF SVM on quantised penultimate features"))
register_detector(DetectorInfo(
    "SVM", lambda ctx: SVM(), description="RBF SVM on the penultimate features (the HFC code)"))
register_detector(DetectorInfo(
    "DNN", _dnn, description="conv nets on raw feature maps (profile: iterations, widths, layers)"))
register_detector(DetectorInfo(
    "KD+BU", lambda ctx: ScoreLR([KD(seed=ctx.seed), _bu(ctx)], per_layer=False), default=False,
    description="logistic regression on KD and BU (Feinman et al. 2017)"))
register_detector(DetectorInfo(
    "GMM", lambda ctx: ScoreLR(GMMScore(n_components=ctx.profile.gmm_components, seed=ctx.seed)),
    default=False,
    description="the HFC objective per layer (class mixtures) + logistic regression (the book's)"))
# fmt: on

__all__ = [
    "DETECTORS",
    "DetectorContext",
    "DetectorInfo",
    "default_detectors",
    "register_detector",
]
