"""A small model zoo on MONAI's ResNet, 2D and 3D, with normalisation and a dropout head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import ResNet
from torch import nn

from hfc_edu.models.normalize import Normalize


@dataclass(frozen=True)
class Architecture:
    """A MONAI ResNet layout."""

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]


ARCHITECTURES: dict[str, Architecture] = {
    # ~0.31 M parameters: trains on 128 px chest X-rays in a few minutes on 2 CPU cores.
    "compact_resnet": Architecture("basic", (1, 1, 1, 1), (16, 32, 64, 128)),
    # A wider compact model, to vary capacity (Ma et al.'s over-parameterisation factor).
    "compact_resnet_wide": Architecture("basic", (1, 1, 1, 1), (32, 64, 128, 256)),
    "compact_resnet_narrow": Architecture("basic", (1, 1, 1, 1), (8, 16, 32, 64)),
    "resnet18": Architecture("basic", (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet50": Architecture("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512)),
}


class Classifier(nn.Module):
    """``Normalize -> MONAI ResNet backbone -> global average pool -> Dropout -> Linear``.

    Takes images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``, returns logits ``(N, K)``.
    ``dropout`` is the module that BU's Monte-Carlo passes switch on (p may be 0).
    """

    def __init__(
        self,
        arch: str,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        dropout: float = 0.0,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"Unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}."
            )
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        a = ARCHITECTURES[arch]
        self.config = dict(
            arch=arch,
            in_channels=in_channels,
            num_classes=num_classes,
            spatial_dims=spatial_dims,
            mean=list(mean) if mean is not None else [0.5] * in_channels,
            std=list(std) if std is not None else [0.25] * in_channels,
            dropout=dropout,
            small_input=small_input,
        )
        self.normalize = Normalize(self.config["mean"], self.config["std"])
        # Small inputs (<= 64 px) keep their resolution: 3x3 stride-1 stem, no max-pool.
        self.backbone = ResNet(
            block=a.block,
            layers=list(a.layers),
            block_inplanes=list(a.widths),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=3 if small_input else 7,
            conv1_t_stride=1 if small_input else 2,
            no_max_pool=small_input,
            feed_forward=False,
        )
        expansion = 4 if a.block == "bottleneck" else 1
        self.num_features = a.widths[-1] * expansion
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    @property
    def spatial_dims(self) -> int:
        return int(self.config["spatial_dims"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(self.normalize(x))
        return self.fc(self.dropout(z))


def build_model(
    arch: str,
    in_channels: int,
    num_classes: int,
    spatial_dims: int = 2,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    dropout: float = 0.0,
) -> Classifier:
    """Build a :class:`Classifier`. ``image_size <= 64`` selects the small-input stem."""
    small = image_size is not None and image_size <= 64
    return Classifier(arch, in_channels, num_classes, spatial_dims, mean, std, dropout, small)


def model_from_config(config: dict) -> Classifier:
    """Rebuild a :class:`Classifier` from its ``config`` dict (as stored in checkpoints)."""
    return Classifier(**config)


__all__ = ["ARCHITECTURES", "Architecture", "Classifier", "build_model", "model_from_config"]
