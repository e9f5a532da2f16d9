"""Gaussian mixtures as torch modules: scikit-learn fits them, torch evaluates them.

A fitted mixture is stored as buffers ``means (*B, K, D)``, ``precisions_cholesky (*B, K, D, D)``
and ``log_weights (*B, K)``, where ``U_k = precisions_cholesky[k]`` is scikit-learn's
``precisions_cholesky_[k]``: ``Σ_k⁻¹ = U_k U_kᵀ``. The optional leading batch shape ``B`` holds
several mixtures of the same size side by side (one per class in
:class:`~hfc_edu.hfc.ClassConditionalGMMs`), so a whole class-conditional model is evaluated
with one einsum and no Python loop over classes or components.

With ``r_k = (x − μ_k) U_k`` the squared Mahalanobis distance is ``‖r_k‖² = (x−μ_k)ᵀ Σ_k⁻¹ (x−μ_k)``
and ``log N(x; μ_k, Σ_k) = −½‖r_k‖² + Σ_i log U_k[i, i] − (D/2) log 2π``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


def _full_precisions_cholesky(est) -> np.ndarray:
    """scikit-learn's ``precisions_cholesky_`` of any covariance type as ``(K, D, D)``."""
    pc = np.asarray(est.precisions_cholesky_, dtype=np.float64)
    k, d = est.means_.shape
    kind = est.covariance_type
    if kind == "full":
        return pc
    if kind == "tied":
        return np.broadcast_to(pc, (k, d, d)).copy()
    if kind == "diag":
        return np.stack([np.diag(row) for row in pc])
    if kind == "spherical":
        return pc[:, None, None] * np.eye(d)[None]
    raise ValueError(f"Unknown covariance_type {kind!r}.")


def _variational_log_weights(est) -> np.ndarray:
    """Per-component constants that ``score_samples`` adds to ``log N(x; means_, Σ)``.

    GaussianMixture: ``log weights_``. BayesianGaussianMixture: ``E_q[log π_k]`` plus the
    Normal–Wishart expectation terms of ``E_q[log N(x | μ_k, Λ_k)]`` that do not depend on x
    (scikit-learn's ``_estimate_log_weights`` and the x-free part of ``_estimate_log_prob``).
    """
    from scipy.special import digamma
    from sklearn.mixture import BayesianGaussianMixture

    if not isinstance(est, BayesianGaussianMixture):
        return np.log(est.weights_)
    d = est.means_.shape[1]
    conc = est.weight_concentration_
    if est.weight_concentration_prior_type == "dirichlet_process":
        dg_sum = digamma(conc[0] + conc[1])
        e_log_pi = (
            digamma(conc[0]) - dg_sum + np.hstack((0, np.cumsum(digamma(conc[1]) - dg_sum)[:-1]))
        )
    else:
        e_log_pi = digamma(conc) - digamma(np.sum(conc))
    nu = est.degrees_of_freedom_
    log_lambda = d * np.log(2.0) + np.sum(digamma(0.5 * (nu - np.arange(d)[:, None])), 0)
    return e_log_pi - 0.5 * d * np.log(nu) + 0.5 * (log_lambda - d / est.mean_precision_)


class TorchGMM(nn.Module):
    """Full-covariance Gaussian mixture(s) with torch buffers (no parameters).

    Args:
        means: ``(*B, K, D)`` component means.
        precisions_cholesky: ``(*B, K, D, D)`` upper factors ``U_k`` with ``Σ_k⁻¹ = U_k U_kᵀ``.
        log_weights: ``(*B, K)`` log mixing weights (the point estimate, ``log weights_``).
        variational_log_weights: ``(*B, K)`` the per-component constants scikit-learn's
            ``BayesianGaussianMixture.score_samples`` uses instead (defaults to ``log_weights``).

    All methods take ``x (N, D)`` and return ``(N, *B, ...)``; ``x`` is cast to the buffers'
    dtype (move the module with ``.to(device, dtype)``).
    """

    means: torch.Tensor
    precisions_cholesky: torch.Tensor
    log_weights: torch.Tensor
    variational_log_weights: torch.Tensor
    log_det: torch.Tensor

    def __init__(
        self,
        means: torch.Tensor,
        precisions_cholesky: torch.Tensor,
        log_weights: torch.Tensor,
        variational_log_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        precisions_cholesky = torch.as_tensor(precisions_cholesky, dtype=means.dtype)
        log_weights = torch.as_tensor(log_weights, dtype=means.dtype)
        if means.ndim < 2:
            raise ValueError(f"means must be (*B, K, D), got shape {tuple(means.shape)}.")
        if precisions_cholesky.shape != (*means.shape, means.shape[-1]):
            raise ValueError(
                f"precisions_cholesky must be {(*means.shape, means.shape[-1])} for means of shape "
                f"{tuple(means.shape)}, got {tuple(precisions_cholesky.shape)}."
            )
        if log_weights.shape != means.shape[:-1]:
            raise ValueError(
                f"log_weights must be {tuple(means.shape[:-1])}, got {tuple(log_weights.shape)}."
            )
        if variational_log_weights is None:
            variational_log_weights = log_weights.clone()
        variational_log_weights = torch.as_tensor(variational_log_weights, dtype=means.dtype)
        if variational_log_weights.shape != log_weights.shape:
            raise ValueError("variational_log_weights must have the shape of log_weights.")
        self.register_buffer("means", means)
        self.register_buffer("precisions_cholesky", precisions_cholesky)
        self.register_buffer("log_weights", log_weights)
        self.register_buffer("variational_log_weights", variational_log_weights)
        diag = torch.diagonal(precisions_cholesky, dim1=-2, dim2=-1)
        if (diag <= 0).any():
            raise ValueError(
                "precisions_cholesky must have a positive diagonal (a Cholesky factor)."
            )
        self.register_buffer("log_det", diag.log().sum(-1))  # ½ log|Σ_k⁻¹|, (*B, K)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_sklearn(cls, est, dtype: torch.dtype = torch.float64) -> TorchGMM:
        """From a fitted ``GaussianMixture`` or ``BayesianGaussianMixture`` (any covariance type)."""
        if not hasattr(est, "precisions_cholesky_"):
            raise ValueError(f"{type(est).__name__} is not fitted; call .fit(X) first.")
        return cls(
            torch.as_tensor(np.asarray(est.means_, dtype=np.float64), dtype=dtype),
            torch.as_tensor(_full_precisions_cholesky(est), dtype=dtype),
            torch.as_tensor(np.log(np.asarray(est.weights_, dtype=np.float64)), dtype=dtype),
            torch.as_tensor(_variational_log_weights(est), dtype=dtype),
        )

    @classmethod
    def stack(cls, gmms: Sequence[TorchGMM]) -> TorchGMM:
        """Stack mixtures of equal ``(K, D)`` along a new leading batch dimension."""
        if not gmms:
            raise ValueError("Nothing to stack.")
        shapes = {tuple(g.means.shape) for g in gmms}
        if len(shapes) != 1:
            raise ValueError(f"Mixtures to stack must have equal (K, D); got {sorted(shapes)}.")
        return cls(
            torch.stack([g.means for g in gmms]),
            torch.stack([g.precisions_cholesky for g in gmms]),
            torch.stack([g.log_weights for g in gmms]),
            torch.stack([g.variational_log_weights for g in gmms]),
        )

    def __getitem__(self, index) -> TorchGMM:
        """Select along the batch dimensions, e.g. ``gmms[c]`` -> the mixture of class ``c``."""
        if self.means.ndim == 2:
            raise IndexError("This TorchGMM holds a single mixture; there is nothing to index.")
        return TorchGMM(
            self.means[index],
            self.precisions_cholesky[index],
            self.log_weights[index],
            self.variational_log_weights[index],
        )

    # -- shape ----------------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return int(self.means.shape[-2])

    @property
    def dim(self) -> int:
        return int(self.means.shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[:-2])

    def extra_repr(self) -> str:
        return f"batch_shape={self.batch_shape}, n_components={self.n_components}, dim={self.dim}"

    # -- evaluation -----------------------------------------------------------------------
    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor (N, D), got {type(x).__name__}.")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be (N, {self.dim}), got shape {tuple(x.shape)}.")
        return x.to(self.means.dtype)

    def whiten(self, x: torch.Tensor) -> torch.Tensor:
        """``r_k = (x − μ_k) U_k``: ``(N, D) -> (N, *B, K, D)``."""
        x = self._check_x(x)
        diff = x.view(x.shape[0], *([1] * (self.means.ndim - 1)), self.dim) - self.means
        return torch.einsum("n...d,...de->n...e", diff, self.precisions_cholesky)

    def mahalanobis_sq(self, x: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance to every component: ``(N, D) -> (N, *B, K)``."""
        return self.whiten(x).square().sum(-1)

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; μ_k, Σ_k)``, without the weights: ``(N, D) -> (N, *B, K)``."""
        return self._log_prob_whitened(self.whiten(x))

    def _log_prob_whitened(self, r: torch.Tensor) -> torch.Tensor:
        """``log N`` from the whitened residuals ``r (N, *B, K, D)``: ``(N, *B, K)``."""
        return -0.5 * r.square().sum(-1) + self.log_det - 0.5 * self.dim * LOG_2PI

    def weighted_log_prob(self, x: torch.Tensor, variational: bool = False) -> torch.Tensor:
        """``log π_k + log N(x; μ_k, Σ_k)``: ``(N, D) -> (N, *B, K)``.

        ``variational=True`` uses scikit-learn's variational constants (see the class doc).
        """
        w = self.variational_log_weights if variational else self.log_weights
        return self.component_log_prob(x) + w

    def nearest_residual(
        self, x: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """HFC's selected component and whitened residual, one mixture per sample.

        For a class-stacked mixture (batch shape ``(C,)``) and ``index (N,)`` (e.g. each
        sample's target class): ``k*_n = argmax_k log π_{c,k} + log N(x_n; μ_{c,k}, Σ_{c,k})``
        with ``c = index[n]`` (chosen without gradient, as :meth:`nearest_component`), and
        ``r_n = (x_n − μ_{c,k*}) U_{c,k*}``, differentiable in ``x``. ``‖r_n‖²`` is the squared
        Mahalanobis distance to that component.

        The residuals of every (class, component) come from one batched product (cost
        ``N·C·K·D²``, exact: the difference is taken before the product), the scores
        ``(N, C, K)`` from them, and only the selected residual carries the gradient.

        Returns ``r (N, D)`` and ``k* (N,)``. ``index`` must lie in ``[0, C)`` (not checked
        here: no host sync; :class:`~hfc_edu.hfc.HFCLoss` checks once per attack).
        """
        if self.means.ndim != 3:
            raise ValueError(
                f"nearest_residual needs one batch dimension (C, K, D), got means of shape "
                f"{tuple(self.means.shape)}."
            )
        r_all = self.whiten(x)  # (N, C, K, D)
        rows = torch.arange(r_all.shape[0], device=r_all.device)
        with torch.no_grad():
            # log π + log N up to the constant −(D/2) log 2π, which the argmax ignores
            scores = (self.log_weights + self.log_det) - 0.5 * r_all.detach().square().sum(-1)
            k = scores[rows, index].argmax(-1)
        return r_all[rows, index, k], k

    def log_prob(self, x: torch.Tensor, variational: bool = False) -> torch.Tensor:
        """Mixture log-density ``log Σ_k π_k N(x; μ_k, Σ_k)``: ``(N, D) -> (N, *B)``.

        The default is the plug-in density of the fitted point estimate (``weights_``,
        ``means_``, ``covariances_``), which equals ``GaussianMixture.score_samples``.
        ``variational=True`` equals ``BayesianGaussianMixture.score_samples`` (the variational
        expectation ``E_q[log π_k + log N(x | μ_k, Λ_k)]`` inside the log-sum-exp).
        """
        return torch.logsumexp(self.weighted_log_prob(x, variational), dim=-1)

    def nearest_component(self, x: torch.Tensor) -> torch.Tensor:
        """``argmax_k log π_k + log N(x; μ_k, Σ_k)`` (HFC's ``k*``): ``(N, D) -> (N, *B)`` long."""
        return self.weighted_log_prob(x).argmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)


def fit_sklearn_gmm(
    features: np.ndarray | torch.Tensor,
    n_components: int,
    *,
    bayesian: bool = True,
    covariance_type: str = "full",
    n_init: int = 2,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    random_state: int | None = 0,
):
    """Fit one scikit-learn mixture on ``features (N, D)`` (float64) and return the estimator.

    Defaults are the official HFC code's (``BayesianGaussianMixture(n_components, n_init=2,
    max_iter=1000)``, full covariance, scikit-learn's ``reg_covar`` and ``tol``) plus a
    ``random_state`` for determinism; ``bayesian=False`` fits a ``GaussianMixture``.
    """
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else features
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf values.")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}.")
    if x.shape[0] < max(n_components, 2):
        raise ValueError(
            f"{x.shape[0]} samples cannot fit a mixture of {n_components} components; "
            f"use at least max(n_components, 2) samples or fewer components."
        )
    cls = BayesianGaussianMixture if bayesian else GaussianMixture
    est = cls(
        n_components=n_components,
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        reg_covar=reg_covar,
        tol=tol,
        random_state=random_state,
    )
    return est.fit(x)


__all__ = ["TorchGMM", "fit_sklearn_gmm"]
