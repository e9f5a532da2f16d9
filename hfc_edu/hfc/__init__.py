"""The hierarchical feature constraint (HFC, Yao et al. MICCAI 2021 / TMI 2023).

* :func:`fit_class_gmms` — one Gaussian mixture per (class, layer) on GAP features, cached;
  returns :class:`ClassConditionalGMMs` (torch buffers, :class:`TorchGMM` per layer).
* :class:`HFCLoss` — the HFC term, a :class:`~hfc_edu.attacks.losses.Loss` to add to a targeted
  classification loss; :func:`hfc_attack` runs a registered base attack (PGD, BIM, MIM,
  CW-L∞: :func:`hfc_bases`) + HFC in one call, :func:`feature_attack` any feature term.
* :func:`hfc_schedule` — the papers' fixed-small-step schedule (``T·α = 2ε``).
* :mod:`~hfc_edu.hfc.baselines` — stand-ins for the papers' adaptive attacks.
* :mod:`~hfc_edu.hfc.evasion` — a fitted detector's score (or a differentiable surrogate of it)
  as a term: the attacker's answer to a retrained detector (:func:`evasion_term`).
"""

from hfc_edu.cache import CorruptCacheError, model_fingerprint, tensor_fingerprint
from hfc_edu.hfc.attack import feature_attack, hfc_attack, hfc_bases
from hfc_edu.hfc.baselines import FeatureMatchingLoss, KDLoss, MahalanobisLoss
from hfc_edu.hfc.class_gmms import (
    DEFAULT_MAX_CHANNELS,
    ClassConditionalGMMs,
    fit_class_gmms,
    fit_gmms_on_features,
)
from hfc_edu.hfc.evasion import ScoreLRTerm, SVMTerm, evasion_term, exact_term, surrogate_term
from hfc_edu.hfc.gmm import TorchGMM, fit_sklearn_gmm
from hfc_edu.hfc.loss import HFCLoss, typical_floor
from hfc_edu.hfc.schedule import DEFAULT_ALPHA_FRACTION, OFFICIAL_ALPHA, hfc_schedule
from hfc_edu.hfc.torch_em import fit_torch_gmm

__all__ = [
    "DEFAULT_ALPHA_FRACTION",
    "DEFAULT_MAX_CHANNELS",
    "OFFICIAL_ALPHA",
    "ClassConditionalGMMs",
    "CorruptCacheError",
    "FeatureMatchingLoss",
    "HFCLoss",
    "KDLoss",
    "MahalanobisLoss",
    "SVMTerm",
    "ScoreLRTerm",
    "TorchGMM",
    "evasion_term",
    "exact_term",
    "feature_attack",
    "fit_class_gmms",
    "fit_gmms_on_features",
    "fit_sklearn_gmm",
    "fit_torch_gmm",
    "hfc_attack",
    "hfc_bases",
    "hfc_schedule",
    "model_fingerprint",
    "surrogate_term",
    "tensor_fingerprint",
    "typical_floor",
]
