"""Fitting a full-covariance Gaussian mixture by EM in torch, on any device.

scikit-learn fits the book profile's mixtures (K = 2) in seconds. At the paper profile's size
(K = 64 components on 256- to 512-channel layers) its EM costs about 2.3 s per iteration and per
(class, layer) on one CPU thread (N = 1000, D = 512; ``benchmarks/bench_gmm.py``), so
the official ``n_init=2, max_iter=1000`` runs for hours. :func:`fit_torch_gmm` runs the same
algorithm as scikit-learn's ``GaussianMixture`` (not the variational
``BayesianGaussianMixture`` of the official code) step for step in float64 on the model's
device: k-means initial responsibilities, then E and M steps until the mean log-likelihood
changes by less than ``tol``. From the same initial parameters it reproduces scikit-learn's fit to
float64 rounding (``tests/test_hfc_gmm.py``).
"""

from __future__ import annotations

import numpy as np
import torch

from hfc_edu.hfc.gmm import TorchGMM


def _m_step(
    x: torch.Tensor, resp: torch.Tensor, reg_covar: float, normalise_by_n: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log_weights (K,), means (K, D), precisions_cholesky (K, D, D))`` from ``resp (N, K)``.

    scikit-learn's ``_estimate_gaussian_parameters`` plus ``_compute_precision_cholesky``; the
    initial step divides the weights by N, the later ones by their sum (as scikit-learn).
    """
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    means = resp.T @ x / nk[:, None]
    diff = x[None] - means[:, None]  # (K, N, D)
    cov = torch.einsum("kn,kni,knj->kij", resp.T, diff, diff) / nk[:, None, None]
    cov = cov + reg_covar * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        raise ValueError(
            "A component's covariance is not positive definite: the features are degenerate "
            "(constant channels, or fewer samples than dimensions in a component). Increase "
            "reg_covar or use fewer components."
        )
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand_as(chol)
    prec_chol = torch.linalg.solve_triangular(chol, eye, upper=False).transpose(-1, -2)
    weights = nk / (x.shape[0] if normalise_by_n else nk.sum())
    return weights.log(), means, prec_chol


def fit_torch_gmm(
    features: torch.Tensor | np.ndarray,
    n_components: int,
    *,
    max_iter: int = 1000,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    random_state: int = 0,
    device: torch.device | str | None = None,
    weights_init: torch.Tensor | np.ndarray | None = None,
    means_init: torch.Tensor | np.ndarray | None = None,
    precisions_init: torch.Tensor | np.ndarray | None = None,
) -> tuple[TorchGMM, dict]:
    """EM for a full-covariance mixture of ``features (N, D)``; returns ``(gmm, info)``.

    Args:
        n_components: K.
        max_iter, tol, reg_covar: as scikit-learn's ``GaussianMixture``.
        random_state: seeds the k-means initialisation (scikit-learn's ``KMeans``, on CPU).
        device: where EM runs (default: the features' device); the result stays there.
        weights_init, means_init, precisions_init: start from these parameters instead (all
            three or none), as scikit-learn's arguments of the same names.

    ``info``: ``converged``, ``n_iter`` and ``lower_bound`` (the last mean log-likelihood).
    """
    x = torch.as_tensor(features)
    dev = torch.device(device) if device is not None else x.device
    x = x.detach().to(dev, torch.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or inf values.")
    if n_components < 1 or x.shape[0] < max(n_components, 2):
        raise ValueError(f"{x.shape[0]} samples cannot fit a mixture of {n_components} components.")
    given = [a is not None for a in (weights_init, means_init, precisions_init)]
    if any(given) and not all(given):
        raise ValueError("Pass weights_init, means_init and precisions_init together, or none.")
    if all(given):
        as64 = lambda a: torch.as_tensor(a).to(dev, torch.float64)  # noqa: E731
        log_w = as64(weights_init).log()
        means = as64(means_init)
        prec_chol = torch.linalg.cholesky(as64(precisions_init))
        if means.shape != (n_components, x.shape[1]):
            raise ValueError(
                f"means_init must be ({n_components}, {x.shape[1]}), got {tuple(means.shape)}."
            )
    else:
        from sklearn.cluster import KMeans

        labels = KMeans(n_components, n_init=1, random_state=random_state).fit(x.cpu().numpy())
        resp = torch.zeros(x.shape[0], n_components, dtype=x.dtype, device=dev)
        resp[torch.arange(x.shape[0]), torch.as_tensor(labels.labels_, device=dev).long()] = 1.0
        log_w, means, prec_chol = _m_step(x, resp, reg_covar, normalise_by_n=True)
    lower_bound, converged, n_iter = -float("inf"), False, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        weighted = TorchGMM(means, prec_chol, log_w).weighted_log_prob(x)  # (N, K)
        log_norm = torch.logsumexp(weighted, dim=1)
        resp = (weighted - log_norm[:, None]).exp()
        log_w, means, prec_chol = _m_step(x, resp, reg_covar, normalise_by_n=False)
        previous, lower_bound = lower_bound, float(log_norm.mean())
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    gmm = TorchGMM(means, prec_chol, log_w)
    return gmm, {"converged": converged, "n_iter": n_iter, "lower_bound": lower_bound}


__all__ = ["fit_torch_gmm"]
