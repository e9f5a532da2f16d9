"""Fitting one HFC mixture at the paper profile's size: scikit-learn against EM in torch.

One (class, layer) of the paper profile: K = 64 full-covariance components on D = 512 pooled
channels of N = 1000 training images. Each method runs a fixed number of EM iterations
(``tol=0``) from the same k-means start; the table gives seconds per iteration, the ratio against
scikit-learn's ``GaussianMixture`` and what the official ``n_init=2, max_iter=1000`` would cost at
that rate. Before timing, the torch fit's log-likelihoods are checked against scikit-learn's.
The features are synthetic (non-negative, correlated, like pooled ReLU maps): the cost of an EM
iteration does not depend on the values.

Usage::

    python benchmarks/bench_gmm.py                        # CPU, K=64, D=512, N=1000, 4 iterations
    python benchmarks/bench_gmm.py --device cuda --iters 20
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

from hfc_edu.hfc import fit_torch_gmm


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    warnings.simplefilter("ignore")  # ConvergenceWarning: the iterations are capped on purpose
    rng = np.random.default_rng(0)
    n, d, k, it = args.n, args.dim, args.components, args.iters
    x = np.abs(rng.normal(size=(n, 32)) @ rng.normal(size=(32, d)) + 0.3 * rng.normal(size=(n, d)))
    print(
        f"one mixture: N={n}, D={d}, K={k}, {it} EM iterations (tol=0); torch "
        f"{torch.__version__} on {args.device}, {torch.get_num_threads()} thread(s)"
    )

    # correctness gate: a short fit, torch against scikit-learn, same start
    est = GaussianMixture(k, covariance_type="full", max_iter=2, tol=0, random_state=0).fit(x)
    gmm, _ = fit_torch_gmm(x, k, max_iter=2, tol=0, random_state=0, device=args.device)
    gap = np.abs(gmm.cpu().log_prob(torch.as_tensor(x)).numpy() - est.score_samples(x)).max()
    print(f"gate: largest log-likelihood difference torch vs scikit-learn {gap:.2e}")

    def cost(fn, iters: int) -> float:
        # time of `iters` iterations minus time of 1 iteration (initialisation excluded)
        return (_time(lambda: fn(iters)) - _time(lambda: fn(1))) / (iters - 1)

    def sk(iters, cls=GaussianMixture):
        cls(n_components=k, covariance_type="full", max_iter=iters, tol=0, random_state=0).fit(x)

    def bgm(iters):
        sk(iters, BayesianGaussianMixture)

    def th(iters):
        fit_torch_gmm(x, k, max_iter=iters, tol=0, random_state=0, device=args.device)

    rows = {
        "scikit-learn GaussianMixture": cost(sk, it),
        "scikit-learn BayesianGaussianMixture (official)": cost(bgm, it),
        f"hfc_edu fit_torch_gmm ({args.device})": cost(th, it),
    }
    ref = rows["scikit-learn GaussianMixture"]
    print(f"{'method':50s} {'s/iter':>8s} {'ratio':>7s} {'2 x 1000 iter':>14s}")
    for name, sec in rows.items():
        print(f"{name:50s} {sec:8.3f} {sec / ref:7.3f} {2000 * sec / 3600:12.1f} h")


if __name__ == "__main__":
    main()
