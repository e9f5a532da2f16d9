"""DNN detector (Metzen et al. 2017, as in the HFC code): small conv nets on raw feature maps.

One net per layer reads that layer's raw (un-pooled) map ``(N, C_l, H, W)`` or ``(N, C_l, D, H, W)``:

    Conv(C_l→96, 3, pad 4) → MaxPool(3, 2) → Conv(96→192, 3, pad 4) → MaxPool(3, 2)
    → Conv(192→192, 3, pad 4) → Conv(192→1, 3, pad 4) → AdaptiveAvgPool(1) → sigmoid

with **no non-linearity between the convolutions** (as in the official net; the max-pools are the
only non-linear parts). In 3D (no official net exists: the HFC code's 3D model file is missing) the
convolutions pad by 2 instead of 4 (:data:`DEFAULT_PADDING`): every padded convolution makes a map
larger by ``2 * padding - 2`` per axis, so a 7³ map becomes 13³ with padding 4 and 9³ with 2,
and the 3D net costs 13x less (78.7 s against 5.9 s for one book-profile fit on the 3D adrenal
model's last three blocks, 2 CPU cores) while it still reads a 2³ map. Training: binary
cross-entropy, Adam (lr 1e-3, weight decay 1e-4), 200
iterations of random batches of 64. The score is the mean of the per-layer sigmoid outputs.

All layer nets are trained together on the same mini-batches: the maps of every layer come from a
single forward pass of the (frozen) classifier, and the summed loss gives each net exactly the
gradient it would get alone (Adam's statistics are per parameter).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from hfc_edu.checks import check_is_adv
from hfc_edu.detectors.base import (
    ArrayLike,
    Detector,
    FeatureSet,
    as_feature_set,
    check_finite,
)
from hfc_edu.features import FeatureExtractor
from hfc_edu.modes import eval_mode

#: Padding of the detector's convolutions by ``spatial_dims``: the official net's 4 in 2D, the
#: book's 2 in 3D (see the module docstring).
DEFAULT_PADDING: dict[int, int] = {2: 4, 3: 2}


def _checked_padding(padding: int | None) -> int | None:
    """``padding`` (None: the default) or a clear error: a map of 2 a side must survive the
    two 3-wide max-pools, which needs at least 2."""
    if padding is not None and int(padding) < 2:
        raise ValueError(f"padding must be at least 2 (or None), got {padding}.")
    return None if padding is None else int(padding)


class MapDetectorNet(nn.Module):
    """The per-layer conv net; ``(N, C, *spatial) -> (N,)`` logits. ``spatial_dims`` is 2 or 3;
    ``padding`` of every convolution (None: :data:`DEFAULT_PADDING`; at least 2, so that a
    map of 2 a side survives the two 3-wide max-pools)."""

    def __init__(
        self,
        in_channels: int,
        spatial_dims: int = 2,
        widths: tuple[int, int] = (96, 192),
        padding: int | None = None,
    ) -> None:
        super().__init__()
        pad = _checked_padding(padding)
        pad = DEFAULT_PADDING[spatial_dims] if pad is None else pad
        conv, pool = Conv[Conv.CONV, spatial_dims], Pool[Pool.MAX, spatial_dims]
        w1, w2 = widths
        self.net = nn.Sequential(
            conv(in_channels, w1, 3, padding=pad),
            pool(3, 2),
            conv(w1, w2, 3, padding=pad),
            pool(3, 2),
            conv(w2, w2, 3, padding=pad),
            conv(w2, 1, 3, padding=pad),
            Pool[Pool.ADAPTIVEAVG, spatial_dims](1),
        )

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.net(a).flatten()


class DNN(Detector):
    """Averaged per-layer conv-net detectors on raw feature maps.

    Args:
        extractor: the :class:`~hfc_edu.features.FeatureExtractor` of the classifier (any ``pool``;
            the detector builds its own un-pooled extractor on the same model).
        layers: layer name(s) or None (= all of the extractor's layers).
        iters, batch_size, lr, weight_decay: training settings (defaults: the HFC code's).
        widths: conv widths (96, 192 in the official net; smaller is much faster on CPU).
        padding: of every convolution (None: 4 in 2D as the official net, 2 in 3D).
        seed: seeds the nets' initialisation and the mini-batch draws.
        score_batch_size: images per forward pass when scoring (and when caching maps).
        max_cached_bytes: when the raw maps of all training images fit in this many bytes, they
            are computed once and the mini-batches index them (the classifier's per-image maps
            do not depend on the batch, so the nets see the same inputs); else each mini-batch
            runs the classifier.

    ``fit(data, is_adv)`` and ``score(data)`` read the images ``data.x`` (a FeatureSet or a tensor).
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        layers: str | Sequence[str] | None = None,
        iters: int = 200,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        widths: tuple[int, int] = (96, 192),
        seed: int = 0,
        score_batch_size: int = 128,
        max_cached_bytes: int = 1 << 30,
        padding: int | None = None,
    ) -> None:
        if iters < 1 or batch_size < 1:
            raise ValueError(
                f"iters and batch_size must be positive, got {iters} and {batch_size}."
            )
        self.extractor = extractor
        self.layers = layers
        self.iters = iters
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.widths = widths
        self.seed = seed
        self.score_batch_size = score_batch_size
        self.max_cached_bytes = max_cached_bytes
        self.padding = _checked_padding(padding)
        names = extractor.layer_names
        if layers is None:
            chosen = names
        else:
            chosen = [layers] if isinstance(layers, str) else list(layers)
            unknown = [n for n in chosen if n not in names]
            if unknown:
                raise ValueError(f"Unknown layer(s) {unknown}; the extractor has {names}.")
        self._maps = FeatureExtractor(extractor.model, layers=chosen, pool=None)

    @staticmethod
    def _images(data: FeatureSet | torch.Tensor) -> torch.Tensor:
        x = data if isinstance(data, torch.Tensor) else as_feature_set(data).x
        if x is None:
            raise ValueError(
                "The DNN detector reads raw feature maps: pass a FeatureSet with x (the images)."
            )
        if x.ndim not in (4, 5):
            raise ValueError(
                f"Images must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}."
            )
        check_finite(x.flatten(1), "Images")
        return x

    def _forward_maps(self, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        with eval_mode(self._maps.model), torch.no_grad():
            _, maps = self._maps(xb)
        return maps

    def _all_maps(self, x: torch.Tensor, dev: torch.device) -> dict[str, torch.Tensor]:
        """The raw maps of every image, on ``dev``, computed in batches of ``score_batch_size``."""
        parts: dict[str, list[torch.Tensor]] = {}
        for i in range(0, x.shape[0], self.score_batch_size):
            for n, m in self._forward_maps(x[i : i + self.score_batch_size].to(dev)).items():
                parts.setdefault(n, []).append(m)
        return {n: torch.cat(p) for n, p in parts.items()}

    def fit(self, data: FeatureSet | torch.Tensor, is_adv: ArrayLike) -> DNN:
        x = self._images(data)
        y = check_is_adv(is_adv, x.shape[0]).float()
        dev = next(self._maps.model.parameters()).device
        maps0 = self._forward_maps(x[:2].to(dev))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            # A ModuleList (layer names contain dots, which ModuleDict keys may not).
            self.nets_ = nn.ModuleList(
                [
                    MapDetectorNet(m.shape[1], m.ndim - 2, tuple(self.widths), self.padding)
                    for m in maps0.values()
                ]
            ).to(dev)
        self.layer_order_ = list(maps0)
        opt = torch.optim.Adam(self.nets_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        bce = nn.BCEWithLogitsLoss()
        g = torch.Generator().manual_seed(self.seed)
        per_image = sum(m[0].numel() * m.element_size() for m in maps0.values())
        cached = self._all_maps(x, dev) if per_image * x.shape[0] <= self.max_cached_bytes else None
        self.nets_.train()
        for _ in range(self.iters):
            idx = torch.randint(x.shape[0], (min(self.batch_size, x.shape[0]),), generator=g)
            if cached is None:
                maps = self._forward_maps(x[idx].to(dev))
            else:
                maps = {n: m[idx.to(dev)] for n, m in cached.items()}
            yb = y[idx].to(dev)
            loss = sum(
                bce(net(maps[n]), yb) for n, net in zip(self.layer_order_, self.nets_, strict=True)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.nets_.eval()
        self.dims_ = {n: int(m.shape[1]) for n, m in maps0.items()}
        return self

    def score_layers(self, data: FeatureSet | torch.Tensor) -> np.ndarray:
        """``(N, L)`` per-layer sigmoid outputs."""
        self._check_fitted()
        x = self._images(data)
        dev = next(self.nets_.parameters()).device
        out = []
        with torch.inference_mode():
            for i in range(0, x.shape[0], self.score_batch_size):
                maps = self._forward_maps(x[i : i + self.score_batch_size].to(dev))
                for n in self.layer_order_:
                    if maps[n].shape[1] != self.dims_[n]:
                        raise ValueError(
                            f"Layer {n!r}: fitted on {self.dims_[n]} channels, got {maps[n].shape[1]}."
                        )
                probs = [
                    net(maps[n]).double().sigmoid()
                    for n, net in zip(self.layer_order_, self.nets_, strict=True)
                ]
                out.append(torch.stack(probs, 1).cpu())
        return torch.cat(out).numpy()

    def score(self, data: FeatureSet | torch.Tensor) -> np.ndarray:
        return self.score_layers(data).mean(1)


__all__ = ["DNN", "MapDetectorNet"]
