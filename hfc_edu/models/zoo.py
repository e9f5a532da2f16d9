"""A small model zoo on MONAI's ResNet, 2D and 3D, with normalisation and a dropout head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.nets import ResNet
from monai.networks.nets.resnet import ResNetBottleneck
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


@dataclass(frozen=True)
class Stem:
    """The first convolution of a MONAI ResNet: kernel size, stride and whether a 3x3 stride-2
    max-pool follows."""

    kernel: int
    stride: int
    max_pool: bool


STEMS: dict[str, Stem] = {
    # 2D images above 64 px (ImageNet's stem): 128 px -> 32 px before the residual stages.
    "imagenet": Stem(7, 2, True),
    # 2D images of 64 px or less: full resolution (28 px stays 28 px).
    "full": Stem(3, 1, False),
    # 3D volumes of 32 voxels a side or less: halved (28^3 -> 14^3). A full-resolution 3D stem
    # keeps 8x the voxels in every feature map of stage 1 and costs about 10x more per volume
    # (chapter 9 measures it).
    "strided": Stem(3, 2, False),
    # Larger 3D volumes, halved and max-pooled as standard 3D ResNets do: 64^3 -> 16^3.
    "strided_pool": Stem(3, 2, True),
}


def default_stem(spatial_dims: int, image_size: int | None) -> str:
    """The stem :func:`build_model` gives an input of ``image_size`` px (or voxels) a side:
    2D: ``full`` up to 64 px, else ``imagenet``; 3D: ``strided`` up to 32, else
    ``strided_pool``; so the residual stages see about 14-32 px (2D) or 14-16 voxels (3D)."""
    if spatial_dims == 3:
        return "strided" if image_size is not None and image_size <= 32 else "strided_pool"
    return "full" if image_size is not None and image_size <= 64 else "imagenet"


@dataclass(frozen=True)
class FeatureLayer:
    """One hierarchical feature of a model: the output of a ReLU.

    Attributes:
        name: the feature's name (``"stem"``, ``"layer2.0.relu1"``, ``"layer2.0.out"``, ...).
        module: the name of the module (in ``model.named_modules()``) that produces it.
        call: which call of that module in one forward pass (a block's ReLU module runs
            once per ReLU of the block: 0 after the first convolution, ... last = block output).
        channels: the feature's channel count ``C_l``.
        inner: a ReLU inside a residual block, not a block's output (``FeatureExtractor(model,
            layers="blocks")`` keeps the stem and the block outputs only).
    """

    name: str
    module: str
    call: int
    channels: int
    inner: bool = False


class Classifier(nn.Module):
    """``Normalize -> MONAI ResNet backbone -> global average pool -> Dropout -> Linear``.

    Takes images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``, returns logits ``(N, K)``.
    ``dropout`` is the module that BU's Monte-Carlo passes switch on (p may be 0). ``stem``
    names the first convolution (:data:`STEMS`; :func:`build_model` picks it from the input
    size); ``small_input`` is its older spelling (``True``: ``"full"``, ``False``:
    ``"imagenet"``), read from the configs of earlier checkpoints.

    The model declares its own anatomy, which feature extraction, BU and the theory chapter
    ask for instead of re-writing the forward pass:

    * :meth:`embed` ``(N, C, ...) -> (N, D)``: the penultimate feature ``z`` (GAP of the last
      block's output);
    * :meth:`head` ``(N, D) -> (N, K)``: ``fc(dropout(z))``, so ``forward(x) == head(embed(x))``;
    * :meth:`feature_layers`: every ReLU output, shallow to deep (:class:`FeatureLayer`).
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
        stem: str | None = None,
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
        # ``small_input`` is the stem's older spelling (configs of 2D checkpoints carry it).
        if stem is not None and small_input:
            raise ValueError(
                f"Give stem ({stem!r}) or small_input=True (its older spelling), not both."
            )
        stem = stem if stem is not None else ("full" if small_input else "imagenet")
        if stem not in STEMS:
            raise ValueError(f"Unknown stem {stem!r}; choose one of {sorted(STEMS)}.")
        a, st = ARCHITECTURES[arch], STEMS[stem]
        self.config = dict(
            arch=arch,
            in_channels=in_channels,
            num_classes=num_classes,
            spatial_dims=spatial_dims,
            mean=list(mean) if mean is not None else [0.5] * in_channels,
            std=list(std) if std is not None else [0.25] * in_channels,
            dropout=dropout,
            stem=stem,
        )
        self.normalize = Normalize(self.config["mean"], self.config["std"])
        self.backbone = ResNet(
            block=a.block,
            layers=list(a.layers),
            block_inplanes=list(a.widths),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_size=st.kernel,
            conv1_t_stride=st.stride,
            no_max_pool=not st.max_pool,
            feed_forward=False,
        )
        expansion = 4 if a.block == "bottleneck" else 1
        self.num_features = a.widths[-1] * expansion
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    @property
    def spatial_dims(self) -> int:
        return int(self.config["spatial_dims"])

    def check_input(self, x: torch.Tensor) -> None:
        """A clear error for inputs this model cannot read (wrong dimensionality or channels)."""
        nd, c = self.spatial_dims, self.config["in_channels"]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"The classifier takes a torch.Tensor, got {type(x).__name__}.")
        if x.ndim != nd + 2 or x.shape[1] != c:
            want = "(N, C, H, W)" if nd == 2 else "(N, C, D, H, W)"
            got = {4: "a batch of 2D images", 5: "a batch of 3D volumes"}.get(x.ndim, "")
            raise ValueError(
                f"This {nd}D classifier takes {want} images with C = {c}, got shape "
                f"{tuple(x.shape)}{' (' + got + ')' if got else ''}. "
                + (
                    "Use a model built for the data's dimensionality "
                    "(get_classifier picks one from the task)."
                    if x.ndim in (4, 5) and x.ndim != nd + 2
                    else "Add the batch/channel dimensions with x[None] or x.unsqueeze(1)."
                )
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate feature ``z = GAP(backbone(normalize(x)))``: ``(N, D)``."""
        self.check_input(x)
        return self.backbone(self.normalize(x))

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from the penultimate feature: ``fc(dropout(z))``, ``(N, D) -> (N, K)``."""
        return self.fc(self.dropout(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def feature_layers(self) -> list[FeatureLayer]:
        """Every ReLU output, shallow to deep: ``stem``; then per residual block ``B`` of stage
        ``L``: ``layerL.B.relu1`` (and ``relu2`` in bottleneck blocks) inside the block, and
        ``layerL.B.out``, the block output after the residual addition and its ReLU. The last
        one, pooled, is the penultimate feature :meth:`embed` returns."""
        out = [FeatureLayer("stem", "backbone.act", 0, self.backbone.conv1.out_channels)]
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for b, block in enumerate(getattr(self.backbone, stage)):
                bottleneck = isinstance(block, ResNetBottleneck)
                inner = [block.bn1, block.bn2] if bottleneck else [block.bn1]
                module = f"backbone.{stage}.{b}.act"
                for k, bn in enumerate(inner):
                    out.append(
                        FeatureLayer(f"{stage}.{b}.relu{k + 1}", module, k, bn.num_features, True)
                    )
                last = block.bn3 if bottleneck else block.bn2
                out.append(FeatureLayer(f"{stage}.{b}.out", module, len(inner), last.num_features))
        return out


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
    """Build a :class:`Classifier` with the stem :func:`default_stem` gives ``image_size``."""
    stem = default_stem(spatial_dims, image_size)
    return Classifier(arch, in_channels, num_classes, spatial_dims, mean, std, dropout, stem=stem)


def model_from_config(config: dict) -> Classifier:
    """Rebuild a :class:`Classifier` from its ``config`` dict (as stored in checkpoints)."""
    return Classifier(**config)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "Classifier",
    "FeatureLayer",
    "STEMS",
    "Stem",
    "build_model",
    "default_stem",
    "model_from_config",
]
