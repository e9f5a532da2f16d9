"""Mahalanobis detector (Lee et al. 2018): class Gaussians with one tied covariance per layer.

Per layer: class means μ_c and a shared covariance Σ of the class-centred training features,
shrunk by Ledoit–Wolf (ReLU features are low-rank, so the empirical Σ is near singular; when
N < D it *is* singular). With the Cholesky factor Σ = L Lᵀ, whitening ``w = L⁻¹ h`` turns the
Mahalanobis distance into a Euclidean one, ``(h−μ)ᵀ Σ⁻¹ (h−μ) = ‖L⁻¹h − L⁻¹μ‖²`` (no inverse).

Score per layer = ``min_c ½ (h−μ_c)ᵀ Σ⁻¹ (h−μ_c)`` = −max_c of Lee's confidence score.

Input pre-processing (Lee et al.): ``x̃ = x − m·sign(∇ₓ score_l(x))`` moves the image so that its
layer-l feature gets *closer* to the nearest class mean, which helps clean images more than
adversarial ones; the layer-l score is then read at x̃. The HFC code adds the gradient sign instead
(``sign="official"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.covariance import empirical_covariance, ledoit_wolf, oas

from hfc_edu.checks import check_class_labels
from hfc_edu.detectors.base import ArrayLike, Detector, FeatureSet, as_feature_set
from hfc_edu.modes import frozen_eval

log = logging.getLogger(__name__)


def shrunk_covariance(
    x: torch.Tensor, method: str | float | None = "ledoit_wolf"
) -> tuple[torch.Tensor, float]:
    """Covariance of already-centred ``x`` (N, D) in float64, and the shrinkage used.

    ``method``: ``"ledoit_wolf"``, ``"oas"``, a float in [0, 1] (fixed shrinkage towards
    ``tr(Σ)/D · I``), or None (empirical covariance, singular when N ≤ D).
    """
    xn = x.to(torch.float64).numpy()
    if method == "ledoit_wolf":
        cov, s = ledoit_wolf(xn, assume_centered=True)
    elif method == "oas":
        cov, s = oas(xn, assume_centered=True)
    elif method is None:
        cov, s = empirical_covariance(xn, assume_centered=True), 0.0
    elif isinstance(method, float | int) and 0.0 <= method <= 1.0:
        emp = empirical_covariance(xn, assume_centered=True)
        mu = np.trace(emp) / emp.shape[0]
        cov, s = (1 - method) * emp + method * mu * np.eye(emp.shape[0]), float(method)
    else:
        raise ValueError(
            f"shrinkage must be 'ledoit_wolf', 'oas', a float in [0, 1] or None, got {method!r}."
        )
    return torch.from_numpy(np.ascontiguousarray(cov)), float(s)


def cholesky_with_jitter(cov: torch.Tensor, max_tries: int = 8) -> torch.Tensor:
    """Lower Cholesky factor; adds ``10^k · 1e-10 · mean(diag)`` to the diagonal if needed."""
    scale = float(cov.diagonal().mean()) or 1.0
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    jitter = 0.0
    for i in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if int(info) == 0:
            if jitter:
                log.warning(
                    "Covariance was not positive definite; added jitter %.3g to its diagonal.",
                    jitter,
                )
            return chol
        jitter = scale * 1e-10 * 10**i
    raise ValueError(
        "The covariance is not positive definite even with jitter; use shrinkage='ledoit_wolf'."
    )


class ClassGaussians:
    """Class means and a tied covariance for one layer, with a whitening map.

    ``W = L⁻¹`` (from a triangular solve, Σ = L Lᵀ) maps features centred on the data mean to
    whitened coordinates. Scoring without gradients uses a float32 product when the covariance is
    well conditioned (cond(Σ) ≤ 1e4, so cond(W) ≤ 100 and the whitened features carry ~1e-6
    relative error; the default Ledoit–Wolf shrinkage usually gives that) and float64 otherwise;
    distances are always accumulated in float64.
    """

    FLOAT32_MAX_COND = 1e4

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, shrinkage: str | float | None = "ledoit_wolf"
    ) -> None:
        x = x.to(torch.float64)
        self.classes = y.unique()
        self.means = torch.stack([x[y == c].mean(0) for c in self.classes])  # (K, D)
        centred = x - self.means[torch.searchsorted(self.classes, y)]
        self.covariance, self.shrinkage = shrunk_covariance(centred, shrinkage)
        self.chol = cholesky_with_jitter(self.covariance)  # Σ = L Lᵀ
        eig = torch.linalg.eigvalsh(self.covariance)
        self.condition_number = float(eig[-1] / eig[0].clamp_min(1e-300))
        self.center = x.mean(0)  # distances are translation invariant; centring limits cancellation
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        self.whitening = torch.linalg.solve_triangular(self.chol, eye, upper=False)  # L⁻¹
        self._w32 = (
            self.whitening.float() if self.condition_number <= self.FLOAT32_MAX_COND else None
        )
        self.white_means = self.whiten(self.means)  # (K, D) float64
        self._casts: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def whiten(self, h: torch.Tensor) -> torch.Tensor:
        """``(N, D) -> (N, D)``: ``L⁻¹ (h − center)`` in float64 (differentiable)."""
        h = h.to(torch.float64)
        chol = self.chol.to(h.device)
        return torch.linalg.solve_triangular(chol, (h - self.center.to(h.device)).T, upper=False).T

    def distances(self, h: torch.Tensor, precise: bool = True) -> torch.Tensor:
        """``(N, D) -> (N, K)`` squared Mahalanobis distances to every class mean (float64).

        ``precise=False`` allows the float32 fast path (see the class docstring)."""
        if (
            not precise
            and self._w32 is not None
            and not (torch.is_grad_enabled() and h.requires_grad)
        ):
            # float32 fast path: centred, whitened features in float32 (~1e-6 relative error).
            dev = h.device
            w = (h.float() - self.center.to(dev, torch.float32)) @ self._w32.to(dev).T
            wm = self.white_means.to(dev, torch.float32)
        else:
            w = self.whiten(h)
            wm = self.white_means.to(w.device)
        d2 = torch.addmm((wm * wm).sum(1)[None], w, wm.T, alpha=-2.0).add_(
            (w * w).sum(1, keepdim=True)
        )
        return d2.clamp_min_(0.0).double()

    def class_distances(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(N,)`` squared Mahalanobis distance of each ``h_i`` (N, D) to the mean of class ``y_i``.

        Differentiable in ``h``, on ``h``'s device, in float64 for float64 ``h`` and float32
        otherwise (the whitening map is cast once per device and dtype); ``y`` must hold fitted
        classes. The detector-aware attack term :class:`~hfc_edu.hfc.MahalanobisLoss` is this sum.
        """
        dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
        key = (h.device, dtype)
        if key not in self._casts:
            self._casts[key] = tuple(
                t.to(device=h.device, dtype=dtype)
                for t in (self.center, self.whitening, self.white_means)
            ) + (self.classes.to(h.device),)
        center, whitening, white_means, classes = self._casts[key]
        rows = torch.searchsorted(classes, y.to(h.device))
        return ((h.to(dtype) - center) @ whitening.T - white_means[rows]).square().sum(1)

    def score(self, h: torch.Tensor) -> torch.Tensor:
        """``(N,)``: ``min_c ½ d²(h, μ_c)``."""
        return 0.5 * self.distances(h, precise=False).min(1).values


class MAHA(Detector):
    """Mahalanobis distance to the closest class mean, per layer, with optional pre-processing.

    Args:
        layers: layer name(s), ``"all"`` or None (= all layers).
        shrinkage: covariance estimator, see :func:`shrunk_covariance` (default Ledoit–Wolf).
        magnitude: input pre-processing step m (0 = none; the HFC code uses 0.0005).
        extractor: the :class:`~hfc_edu.features.FeatureExtractor` (``pool="gap"``) that produced
            the features; required when ``magnitude > 0`` (needs ``data.x``).
        sign: ``"lee"`` (x − m·sign∇, towards the class mean; the original paper) or
            ``"official"`` (x + m·sign∇, the HFC code).
        batch_size: images per forward/backward pass in pre-processing.

    ``fit(data, y)``: clean **training** features of the classifier and their class labels.
    ``score_layers(data)``: ``(N, L)``; ``score(data)``: the last layer. ``ScoreLR(MAHA(...))``
    gives the papers' logistic regression over layers.
    """

    fit_on = "clean"

    def __init__(
        self,
        layers: str | Sequence[str] | None = None,
        shrinkage: str | float | None = "ledoit_wolf",
        magnitude: float = 0.0,
        extractor=None,
        sign: str = "lee",
        batch_size: int = 128,
    ) -> None:
        if sign not in ("lee", "official"):
            raise ValueError(f"sign must be 'lee' or 'official', got {sign!r}.")
        if magnitude < 0:
            raise ValueError(f"magnitude must be >= 0, got {magnitude}.")
        if magnitude > 0 and extractor is None:
            raise ValueError(
                "Input pre-processing (magnitude > 0) needs the FeatureExtractor: pass extractor=fx."
            )
        self.layers = layers
        self.shrinkage = shrinkage
        self.magnitude = magnitude
        self.extractor = extractor
        self.sign = sign
        self.batch_size = batch_size

    def fit(self, data: FeatureSet | dict, y: ArrayLike) -> MAHA:
        data = as_feature_set(data)
        feats = self._fit_layout(data, self._select_layers(data, self.layers, "all"))
        y = check_class_labels(y, len(data), "Class labels y")
        n_classes = int(y.unique().numel())
        if len(data) <= n_classes:
            raise ValueError(
                f"MAHA needs more samples ({len(data)}) than classes ({n_classes}) to estimate a covariance."
            )
        if self.magnitude > 0:
            produced = self.extractor.layer_names
            missing = [n for n in feats if n not in produced]
            if missing:
                raise ValueError(
                    f"MAHA's input pre-processing reads the fitted layers {missing} through its "
                    f"extractor, which produces only {produced}. Fit on the extractor's layers "
                    "(MAHA(layers=fx.layer_names, ...)) or pass the extractor that made the features."
                )
        self.gaussians_ = {n: ClassGaussians(t, y, self.shrinkage) for n, t in feats.items()}
        return self

    def distances(self, data: FeatureSet | dict) -> dict[str, torch.Tensor]:
        """``{layer: (N, K)}`` squared Mahalanobis distances (no pre-processing)."""
        feats = self._score_layout(as_feature_set(data))
        return {n: self.gaussians_[n].distances(t) for n, t in feats.items()}

    def score_layers(self, data: FeatureSet | dict) -> np.ndarray:
        data = as_feature_set(data)
        feats = self._score_layout(data)
        if self.magnitude == 0:
            cols = [self.gaussians_[n].score(t) for n, t in feats.items()]
            return torch.stack(cols, 1).numpy()
        if data.x is None:
            raise ValueError(
                "MAHA with input pre-processing needs the images: pass a FeatureSet with x."
            )
        return self._preprocessed_scores(data.x).numpy()

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        return self.score_layers(data)[:, -1]

    def _preprocessed_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, L)``: layer-l score at ``x ∓ m·sign(∇ₓ score_l(x))``, one backward per layer."""
        fx = self.extractor
        layers = list(self.dims_)
        direction = -1.0 if self.sign == "lee" else 1.0
        out = torch.empty(x.shape[0], len(layers), dtype=torch.float64)
        params = list(fx.model.parameters())
        dev = params[0].device if params else torch.device("cpu")
        with frozen_eval(fx.model):
            for i in range(0, x.shape[0], self.batch_size):
                xb = x[i : i + self.batch_size].to(dev).float().requires_grad_(True)
                _, feats = fx(xb)
                steps = []
                for j, name in enumerate(layers):
                    s = self.gaussians_[name].score(feats[name].double()).sum()
                    (g,) = torch.autograd.grad(s, xb, retain_graph=j < len(layers) - 1)
                    steps.append(direction * self.magnitude * g.sign())
                with torch.inference_mode():
                    for j, name in enumerate(layers):
                        _, f2 = fx(xb.detach() + steps[j])
                        out[i : i + len(xb), j] = self.gaussians_[name].score(
                            f2[name].double().cpu()
                        )
        return out


__all__ = ["MAHA", "ClassGaussians", "cholesky_with_jitter", "shrunk_covariance"]
