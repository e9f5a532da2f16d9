"""Kernel density (KD, Feinman et al. 2017): how typical a feature is for its predicted class.

For class c with training features ``X_c`` (n_c, D) and bandwidth h, the Gaussian KDE is the
equal-weight mixture ``p_c(z) = (1/n_c) Σ_i N(z; x_i, h² I)``, so

    log p_c(z) = logsumexp_i(−‖z − x_i‖² / (2h²)) − log n_c − (D/2)·log(2π h²).

The score is ``−log p_ĉ(z)`` under the **predicted** class ĉ (low density = adversarial). It is
computed exactly in float64 with one matrix product per chunk; scikit-learn's ``KernelDensity``
(the HFC code's estimator) returns wrong log densities at D = 512 (see benchmarks/bench_detectors.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from hfc_edu.checks import check_class_labels
from hfc_edu.detectors.base import ArrayLike, Detector, FeatureSet, as_feature_set

log = logging.getLogger(__name__)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, D), (M, D) -> (N, M)`` squared Euclidean distances (clamped at 0), in the inputs' dtype.

    Uses ``‖a‖² + ‖b‖² − 2ab`` (one GEMM); in float64 the cancellation error is ~1e-16·‖a‖².
    Differentiable in ``a`` and ``b``.
    """
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * (a @ b.T)
    return d2.clamp_min(0.0) if d2.requires_grad else d2.clamp_min_(0.0)


def gaussian_kde_log_density(
    query: torch.Tensor, data: torch.Tensor, bandwidth: float, chunk_size: int = 2048
) -> torch.Tensor:
    """Log density of a Gaussian KDE (sklearn's normalisation) at ``query`` (N, D) -> (N,).

    ``log p(z) = logsumexp_i(−‖z − x_i‖² / (2h²)) − log n − (D/2)·log(2π h²)`` over the rows
    ``x_i`` of ``data`` (n, D). Computed in the wider dtype of the two (float64 data: float64) on
    their device, differentiable in ``query``; both are centred on the data mean first, which
    limits the GEMM's cancellation error in float32. The KD detector and the detector-aware
    attack term :class:`~hfc_edu.hfc.KDLoss` both use it.
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    dtype = torch.promote_types(query.dtype, data.dtype)
    x = data.to(dtype)
    center = x.mean(0)
    q, x = query.to(dtype) - center, x - center
    n, d = x.shape
    const = -math.log(n) - 0.5 * d * math.log(2.0 * math.pi * bandwidth**2)
    scale = -0.5 / bandwidth**2
    parts = [
        torch.logsumexp(squared_distances(q[i : i + chunk_size], x) * scale, dim=1)
        for i in range(0, q.shape[0], chunk_size)
    ]
    return torch.cat(parts) + const


def median_bandwidth(x: torch.Tensor, max_points: int = 2000, seed: int = 0) -> float:
    """Median heuristic: the median pairwise distance of (at most ``max_points``) samples."""
    x = x.to(torch.float64)
    if x.shape[0] > max_points:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_points]]
    d2 = squared_distances(x, x)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1)
    med = float(d2[iu[0], iu[1]].sqrt().quantile(0.5))  # interpolated median, as NumPy
    if med <= 0:
        raise ValueError("All features are identical: cannot choose a bandwidth.")
    return med


def cv_bandwidth(
    x: torch.Tensor,
    y: torch.Tensor,
    grid: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> float:
    """Bandwidth maximising the held-out class-conditional log-likelihood.

    Each class is split (seeded) into fit and validation parts; the default grid spans
    ``median_bandwidth · geomspace(1e-2, 1, 25)`` (the ML bandwidth is about the nearest-neighbour
    distance / √D, far below the median distance in high dimension).
    """
    g = torch.Generator().manual_seed(seed)
    if grid is None:
        grid = (median_bandwidth(x, seed=seed) * np.geomspace(1e-2, 1.0, 25)).tolist()
    parts = []
    for c in y.unique():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = max(1, int(round(val_fraction * len(idx))))
        if len(idx) - n_val < 1:
            raise ValueError(
                f"Class {int(c)} has {len(idx)} sample(s): too few for CV bandwidth selection."
            )
        parts.append((x[idx[n_val:]], x[idx[:n_val]]))
    n_val_total = sum(len(v) for _, v in parts)
    d = x.shape[1]
    # squared distances once per class, reused for every bandwidth of the grid
    blocks = [
        (squared_distances(v.to(torch.float64), f.to(torch.float64)), len(f)) for f, v in parts
    ]
    scores = []
    for h in grid:
        const = -0.5 * d * math.log(2.0 * math.pi * h * h)
        ll = sum(
            float((torch.logsumexp(d2 * (-0.5 / h**2), 1) - math.log(n)).sum()) for d2, n in blocks
        )
        scores.append(ll / n_val_total + const)
    best = int(np.argmax(scores))
    if best in (0, len(grid) - 1):
        log.warning(
            "CV bandwidth %.4g is at the edge of the grid; consider a wider grid.", grid[best]
        )
    return float(grid[best])


class KD(Detector):
    """Class-conditional Gaussian kernel density of deep features; score = −log density.

    Args:
        bandwidth: a float (1.0 = scikit-learn's default, used by the HFC code), ``"median"``
            (median pairwise distance) or ``"cv"`` (held-out log-likelihood), chosen per layer.
        layers: a layer name, a list, ``"all"`` or None (= the last, penultimate layer).
        chunk_size: queries per matrix product (memory ~ chunk_size · n_class · 8 bytes).

    ``fit(data, y)``: clean **training** features of the classifier and their class labels ``y``.
    ``score(data)``: ``(N,)`` −log density under the predicted class (``data.pred``) at the last
    fitted layer; ``score_layers(data)``: ``(N, L)``, one column per fitted layer. The fitted
    per-class features ``data_[layer][c]`` and ``bandwidths_`` also define the detector-aware
    attack term :meth:`hfc_edu.hfc.KDLoss.from_detector`.
    """

    fit_on = "clean"

    def __init__(
        self,
        bandwidth: float | str = 1.0,
        layers: str | Sequence[str] | None = None,
        chunk_size: int = 2048,
        seed: int = 0,
    ) -> None:
        if isinstance(bandwidth, str):
            if bandwidth not in ("median", "cv"):
                raise ValueError(
                    f"bandwidth must be a positive float, 'median' or 'cv', got {bandwidth!r}."
                )
        elif not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
        self.bandwidth = bandwidth
        self.layers = layers
        self.chunk_size = chunk_size
        self.seed = seed

    def fit(self, data: FeatureSet | dict, y: ArrayLike) -> KD:
        data = as_feature_set(data)
        feats = self._fit_layout(data, self._select_layers(data, self.layers, "last"))
        y = check_class_labels(y, len(data), "Class labels y")
        self.classes_ = y.unique()
        self.data_: dict[str, dict[int, torch.Tensor]] = {}
        self.bandwidths_: dict[str, float] = {}
        for name, t in feats.items():
            t64 = t.to(torch.float64)
            if self.bandwidth == "median":
                h = median_bandwidth(t64, seed=self.seed)
            elif self.bandwidth == "cv":
                h = cv_bandwidth(t64, y, seed=self.seed)
            else:
                h = float(self.bandwidth)
            self.bandwidths_[name] = h
            self.data_[name] = {int(c): t64[y == c] for c in self.classes_}
        return self

    def score_layers(self, data: FeatureSet | dict) -> np.ndarray:
        data = as_feature_set(data)
        feats = self._score_layout(data)
        if data.pred is None:
            raise ValueError(
                "KD scores under the predicted class: pass a FeatureSet with pred or logits."
            )
        pred = data.pred
        unknown = sorted(set(pred.unique().tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise ValueError(f"Predicted class(es) {unknown} had no training samples at fit time.")
        out = torch.empty(len(data), len(feats), dtype=torch.float64)
        for j, (name, t) in enumerate(feats.items()):
            for c, xc in self.data_[name].items():
                m = pred == c
                if m.any():
                    out[m, j] = -gaussian_kde_log_density(
                        t[m], xc, self.bandwidths_[name], self.chunk_size
                    )
        return out.numpy()

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        return self.score_layers(data)[:, -1]


__all__ = [
    "KD",
    "cv_bandwidth",
    "gaussian_kde_log_density",
    "median_bandwidth",
    "squared_distances",
]
