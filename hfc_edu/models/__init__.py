"""Model zoo (MONAI ResNets with normalisation inside), training loop and checkpoint cache."""

from hfc_edu.models.normalize import Normalize
from hfc_edu.models.zoo import (
    ARCHITECTURES,
    STEMS,
    Classifier,
    build_model,
    default_stem,
    model_from_config,
)

__all__ = [
    "ARCHITECTURES",
    "STEMS",
    "Classifier",
    "Normalize",
    "build_model",
    "default_stem",
    "model_from_config",
]
from hfc_edu.models.pretrained import TrainedModel, get_classifier  # noqa: E402
from hfc_edu.models.training import TrainConfig, train_classifier  # noqa: E402

__all__ += ["TrainConfig", "TrainedModel", "get_classifier", "train_classifier"]
