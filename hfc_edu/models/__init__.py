"""Model zoo (MONAI ResNets with normalisation inside), training loop and checkpoint cache."""

from hfc_edu.models.normalize import Normalize
from hfc_edu.models.zoo import ARCHITECTURES, Classifier, build_model, model_from_config

__all__ = ["ARCHITECTURES", "Classifier", "Normalize", "build_model", "model_from_config"]
