"""TorchGMM against scikit-learn: log-likelihoods, component choice, stacking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from hfc_edu.hfc import TorchGMM, fit_sklearn_gmm


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) * 0.3
    b = rng.normal(2.0, 0.7, size=(120, 12))
    query = rng.normal(1.0, 2.0, size=(40, 12))  # includes points far from both clusters
    return np.concatenate([a, b]), query


def _plugin_reference(est, x: np.ndarray) -> np.ndarray:
    """Independent plug-in log-density from covariances_ (scipy), not from precisions."""
    covs = est.covariances_
    if est.covariance_type == "diag":
        covs = np.stack([np.diag(c) for c in covs])
    comps = [
        np.log(w) + multivariate_normal(m, c).logpdf(x)
        for w, m, c in zip(est.weights_, est.means_, covs, strict=True)
    ]
    return logsumexp(np.stack(comps, 1), axis=1)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied", "spherical"])
def test_gaussian_mixture_score_samples(data, covariance_type):
    x, q = data
    est = GaussianMixture(n_components=3, covariance_type=covariance_type, random_state=0).fit(x)
    g = TorchGMM.from_sklearn(est)
    ref = est.score_samples(q)
    got = g.log_prob(torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)
    # the variational constants of a GaussianMixture are its log-weights
    np.testing.assert_allclose(
        g.log_prob(torch.from_numpy(q), variational=True).numpy(), ref, atol=1e-8
    )
    # k* = sklearn's predict (argmax of log π_k + log N_k)
    np.testing.assert_array_equal(g.nearest_component(torch.from_numpy(q)).numpy(), est.predict(q))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_bayesian_mixture_score_samples(data, covariance_type):
    x, q = data
    est = BayesianGaussianMixture(
        n_components=4, covariance_type=covariance_type, n_init=2, max_iter=1000, random_state=0
    ).fit(x)
    g = TorchGMM.from_sklearn(est)
    qt = torch.from_numpy(q)
    # sklearn's score_samples of a BGM is the variational expectation
    np.testing.assert_allclose(
        g.log_prob(qt, variational=True).numpy(), est.score_samples(q), rtol=0, atol=1e-8
    )
    # the default is the plug-in density of (weights_, means_, covariances_)
    np.testing.assert_allclose(g.log_prob(qt).numpy(), _plugin_reference(est, q), rtol=0, atol=1e-8)
    # ... which is a different number: the test above can tell them apart
    assert np.abs(g.log_prob(qt).numpy() - est.score_samples(q)).max() > 1e-3


def test_mahalanobis_is_the_precision_quadratic_form(data):
    x, q = data
    est = GaussianMixture(n_components=2, random_state=0).fit(x)
    g = TorchGMM.from_sklearn(est)
    m = g.mahalanobis_sq(torch.from_numpy(q)).numpy()
    for k in range(2):
        diff = q - est.means_[k]
        ref = np.einsum("nd,de,ne->n", diff, est.precisions_[k], diff)
        np.testing.assert_allclose(m[:, k], ref, rtol=1e-9)


def test_stack_and_index(data):
    x, q = data
    g0 = TorchGMM.from_sklearn(GaussianMixture(n_components=2, random_state=0).fit(x[:150]))
    g1 = TorchGMM.from_sklearn(GaussianMixture(n_components=2, random_state=0).fit(x[150:]))
    st = TorchGMM.stack([g0, g1])
    assert st.batch_shape == (2,) and st.n_components == 2 and st.dim == 12
    qt = torch.from_numpy(q)
    lp = st.log_prob(qt)  # (N, 2)
    assert lp.shape == (40, 2)
    torch.testing.assert_close(lp[:, 0], g0.log_prob(qt), rtol=0, atol=1e-10)
    torch.testing.assert_close(lp[:, 1], g1.log_prob(qt), rtol=0, atol=1e-10)
    torch.testing.assert_close(st[1].means, g1.means)
    assert st.nearest_component(qt).shape == (40, 2)


def test_nearest_residual_is_the_hfc_algebra(data):
    """Per sample, in the mixture its index selects: k* = sklearn's predict, and the residual
    r = (x − μ_k*) U_k* with ‖r‖² the squared Mahalanobis distance; gradients reach x."""
    x, q = data
    ests = [GaussianMixture(n_components=3, random_state=s).fit(x[s::2]) for s in (0, 1)]
    st = TorchGMM.stack([TorchGMM.from_sklearn(e) for e in ests])
    qt = torch.from_numpy(q).requires_grad_(True)
    index = torch.arange(40) % 2
    r, k = st.nearest_residual(qt, index)
    assert r.shape == (40, 12) and k.shape == (40,)
    for i in range(40):
        e = ests[int(index[i])]
        assert k[i] == e.predict(q[i : i + 1])[0]
        diff = q[i] - e.means_[k[i]]
        np.testing.assert_allclose(
            r[i].square().sum().item(), diff @ e.precisions_[k[i]] @ diff, rtol=1e-10
        )
    torch.testing.assert_close(k, st.nearest_component(qt.detach())[torch.arange(40), index])
    (g,) = torch.autograd.grad(r.square().sum(), qt)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError, match="one batch dimension"):
        st[0].nearest_residual(qt, index)


def test_to_float32_keeps_values_close(data):
    x, q = data
    g = TorchGMM.from_sklearn(GaussianMixture(n_components=2, random_state=0).fit(x))
    g32 = TorchGMM.from_sklearn(GaussianMixture(n_components=2, random_state=0).fit(x)).float()
    assert g32.means.dtype == torch.float32
    torch.testing.assert_close(
        g32.log_prob(torch.from_numpy(q).float()).double(),
        g.log_prob(torch.from_numpy(q)),
        rtol=1e-5,
        atol=1e-4,
    )


def test_bad_input(data):
    x, q = data
    g = TorchGMM.from_sklearn(GaussianMixture(n_components=2, random_state=0).fit(x))
    with pytest.raises(ValueError, match=r"x must be \(N, 12\)"):
        g.log_prob(torch.zeros(3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        g.log_prob(q)
    with pytest.raises(IndexError, match="single mixture"):
        g[0]
    with pytest.raises(ValueError, match="not fitted"):
        TorchGMM.from_sklearn(GaussianMixture(n_components=2))
    with pytest.raises(ValueError, match="precisions_cholesky must be"):
        TorchGMM(torch.zeros(2, 3), torch.zeros(2, 3, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="positive diagonal"):
        TorchGMM(torch.zeros(2, 3), torch.zeros(2, 3, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="equal"):
        TorchGMM.stack([g, TorchGMM(torch.zeros(1, 12), torch.eye(12)[None], torch.zeros(1))])
    with pytest.raises(ValueError, match="cannot fit a mixture of 4"):
        fit_sklearn_gmm(x[:3], 4)
    with pytest.raises(ValueError, match="NaN"):
        fit_sklearn_gmm(np.full((10, 2), np.nan), 1)


def test_fit_is_deterministic_with_a_seed(data):
    x, _ = data
    a = fit_sklearn_gmm(x, 3, random_state=1, max_iter=200)
    b = fit_sklearn_gmm(x, 3, random_state=1, max_iter=200)
    np.testing.assert_array_equal(a.means_, b.means_)
    assert isinstance(a, BayesianGaussianMixture)
    assert isinstance(fit_sklearn_gmm(x, 2, bayesian=False), GaussianMixture)


# -- EM in torch (the paper profile's fit) ----------------------------------------------------
def _features(n: int = 300, d: int = 24, seed: int = 0) -> np.ndarray:
    """Non-negative, correlated features like pooled ReLU maps."""
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(size=(n, 6)) @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(n, d)))


@pytest.mark.parametrize("kw", [dict(), dict(max_iter=4, tol=0.0)])
def test_torch_em_reproduces_sklearn_gaussian_mixture(kw):
    """Same k-means start, same EM: parameters and log-likelihoods to float64 rounding."""
    import warnings

    from hfc_edu.hfc import fit_torch_gmm

    x = _features()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning for max_iter=4
        est = GaussianMixture(5, covariance_type="full", random_state=0, **kw).fit(x)
    gmm, info = fit_torch_gmm(x, 5, random_state=0, **kw)
    assert (info["n_iter"], info["converged"]) == (est.n_iter_, est.converged_)
    assert info["lower_bound"] == pytest.approx(est.lower_bound_, abs=1e-9)
    np.testing.assert_allclose(gmm.means.numpy(), est.means_, atol=1e-10)
    np.testing.assert_allclose(gmm.log_weights.exp().numpy(), est.weights_, atol=1e-12)
    np.testing.assert_allclose(
        gmm.log_prob(torch.as_tensor(x)).numpy(), est.score_samples(x), rtol=0, atol=1e-8
    )


def test_torch_em_from_given_parameters_and_its_errors():
    from hfc_edu.hfc import fit_torch_gmm

    x = _features(d=8)
    w0, mu0, p0 = np.full(3, 1 / 3), x[[0, 100, 200]], np.stack([np.eye(8)] * 3)
    est = GaussianMixture(
        3, covariance_type="full", max_iter=6, tol=0.0,
        weights_init=w0, means_init=mu0, precisions_init=p0,
    ).fit(x)  # fmt: skip
    gmm, _ = fit_torch_gmm(
        x, 3, max_iter=6, tol=0.0, weights_init=w0, means_init=mu0, precisions_init=p0
    )
    np.testing.assert_allclose(
        gmm.log_prob(torch.as_tensor(x)).numpy(), est.score_samples(x), rtol=0, atol=1e-8
    )
    with pytest.raises(ValueError, match="together"):
        fit_torch_gmm(x, 3, means_init=mu0)
    with pytest.raises(ValueError, match="cannot fit"):
        fit_torch_gmm(x[:2], 3)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_torch_gmm(x[None], 3)


def test_torch_backend_of_the_class_gmms():
    from hfc_edu.hfc import fit_gmms_on_features

    x = torch.as_tensor(_features(n=120, d=6)).float()
    y = torch.arange(120) % 2
    g = fit_gmms_on_features(
        {"a": x}, y, 2, "fp", n_components=2, bayesian=False, backend="torch", n_init=2
    )
    ref = fit_gmms_on_features({"a": x}, y, 2, "fp", n_components=2, bayesian=False, n_init=1)
    assert g.settings["backend"] == "torch" and "backend" not in ref.settings
    lp, lp_ref = g.layer("a").log_prob(x.double()), ref.layer("a").log_prob(x.double())
    assert lp.shape == lp_ref.shape == (120, 2)
    # n_init=2 keeps the better of two starts: at least scikit-learn's single start
    assert lp.mean() >= lp_ref.mean() - 1e-6
    with pytest.raises(ValueError, match="bayesian=False"):
        fit_gmms_on_features({"a": x}, y, 2, "fp", backend="torch")
    with pytest.raises(ValueError, match="backend must be"):
        fit_gmms_on_features({"a": x}, y, 2, "fp", backend="jax")
