"""Benchmark: hfc_edu's vectorised LID, KD and MAHA scoring vs the reference formulations.

The references are written from the papers' code as described in /work/shared/spec/library.md §5:

* LID (Ma et al.): per mini-batch of 100, ``scipy.spatial.distance.cdist`` + ``np.apply_along_axis(np.sort)``,
  drop the nearest neighbour, ``-k / Σ log(r_i / r_k)`` per row.
* KD (Feinman et al., HFC code): one ``sklearn.neighbors.KernelDensity`` per class, ``score_samples``
  of the queries predicted as that class (batched, the reference's fastest form).
* MAHA (Lee et al.): ``EmpiricalCovariance().precision_`` of the class-centred features, then for
  every batch of 100 and every class ``-0.5 · (f−μ_c) P (f−μ_c)ᵀ`` and its diagonal.

hfc_edu's versions are fed the same features, reference batches and covariance estimator, and the
results are compared (max abs / rel difference). KD is also compared with an exact NumPy float64
``logsumexp`` on a subset, which shows where scikit-learn's KernelDensity itself is wrong.

Run:  python benchmarks/bench_detectors.py [--n 10000] [--dim 512] [--repeats 3]
Single thread (torch.set_num_threads(1), BLAS pools limited to 1).
"""

from __future__ import annotations

import argparse
import platform
import time
from functools import partial

import numpy as np
import scipy
import sklearn
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from sklearn.neighbors import KernelDensity
from threadpoolctl import threadpool_limits

from hfc_edu.detectors import KD, LID, MAHA, FeatureSet


def make_features(n: int, dim: int, seed: int, n_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """ReLU-like features: class-shifted rank-64 signal through a ReLU, plus small full-rank noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    mix = np.random.default_rng(123).standard_normal((64, dim)) / 8.0
    shift = np.random.default_rng(321).standard_normal((n_classes, 64))
    z = rng.standard_normal((n, 64)) + shift[y]
    f = np.maximum(z @ mix, 0.0) + 0.05 * rng.standard_normal((n, dim))
    return f.astype(np.float32), y


def compare(ref_fn, our_fn, repeats: int) -> dict:
    """Warm both up, then ``repeats`` interleaved rounds (order alternating) timed with
    ``time.process_time`` (CPU time of this single-threaded process: robust to busy neighbours)."""
    out = {"ref_out": ref_fn(), "our_out": our_fn(), "ref": [], "ours": []}
    for i in range(repeats):
        order = [("ref", ref_fn), ("ours", our_fn)]
        for key, fn in order if i % 2 == 0 else order[::-1]:
            t0 = time.process_time()
            fn()
            out[key].append(time.process_time() - t0)
    return out


def diff(a: np.ndarray, b: np.ndarray) -> str:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    abs_d = np.abs(a - b)
    rel = abs_d / np.maximum(np.abs(b), 1e-300)
    return f"max abs diff {abs_d.max():.3g}, max rel diff {rel.max():.3g}"


def report(name: str, res: dict) -> None:
    ref, ours = np.array(res["ref"]), np.array(res["ours"])
    ratio = np.median(ref / ours)
    print(
        f"{name:<22} reference min {ref.min() * 1e3:9.1f} ms (median {np.median(ref) * 1e3:9.1f})   "
        f"hfc_edu min {ours.min() * 1e3:8.1f} ms (median {np.median(ours) * 1e3:8.1f})   "
        f"speed-up (median of per-round ratios) {ratio:5.1f}x"
    )


# ----------------------------------------------------------------------------- LID
def lid_reference(
    query: np.ndarray, reference: np.ndarray, ref_idx: np.ndarray, k: int, bs: int
) -> np.ndarray:
    out = np.empty(len(query))
    for b, start in enumerate(range(0, len(query), bs)):
        batch = reference[ref_idx[b]]
        kk = min(k, len(batch) - 1)
        d = cdist(query[start : start + bs], batch)
        d = np.apply_along_axis(np.sort, 1, d)[:, 1 : kk + 1]
        out[start : start + bs] = np.apply_along_axis(
            lambda v, kk=kk: -kk / np.sum(np.log(v / v[-1])), 1, d
        )
    return out


# ----------------------------------------------------------------------------- KD
def kd_reference(
    train: np.ndarray, y: np.ndarray, query: np.ndarray, pred: np.ndarray, h: float
) -> np.ndarray:
    out = np.empty(len(query))
    for c in np.unique(y):
        kde = KernelDensity(kernel="gaussian", bandwidth=h).fit(train[y == c])
        m = pred == c
        out[m] = -kde.score_samples(query[m])
    return out


def kd_exact_numpy(train: np.ndarray, query: np.ndarray, h: float) -> np.ndarray:
    """Independent brute force: −log KDE density, float64 ``scipy.special.logsumexp``."""
    x = train.astype(np.float64)
    q = query.astype(np.float64)
    d2 = cdist(q, x, "sqeuclidean")
    return -(
        logsumexp(-d2 / (2 * h * h), axis=1)
        - np.log(len(x))
        - 0.5 * x.shape[1] * np.log(2 * np.pi * h * h)
    )


# ----------------------------------------------------------------------------- MAHA
def maha_reference(
    train: np.ndarray, y: np.ndarray, query: np.ndarray, estimator, bs: int = 100
) -> np.ndarray:
    """Lee et al.'s formulation, in float64: precision of the class-centred features, then per
    batch of 100 and per class the diagonal of ``(f−μ_c) P (f−μ_c)ᵀ``."""
    classes = np.unique(y)
    means = [train[y == c].astype(np.float64).mean(0) for c in classes]
    centred = np.concatenate([train[y == c] - means[i] for i, c in enumerate(classes)])
    prec = torch.from_numpy(estimator.fit(centred).precision_)
    mu = [torch.from_numpy(m) for m in means]
    q = torch.from_numpy(query).double()
    out = []
    for start in range(0, len(q), bs):
        f = q[start : start + bs]
        conf = []
        for c in range(len(classes)):
            zf = f - mu[c]
            conf.append(-0.5 * torch.mm(torch.mm(zf, prec), zf.t()).diag())
        out.append(torch.stack(conf, 1).max(1).values)
    return -torch.cat(out).numpy()  # hfc_edu's score is −max_c confidence


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=10_000, help="training (reference) and query samples")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--kd-queries", type=int, default=10_000, help="KD queries (sklearn takes ~1 min)"
    )
    ap.add_argument("--kd-exact-subset", type=int, default=2_000)
    ap.add_argument("--skip-kd", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}, {platform.machine()}, 1 thread; times are process CPU time"
    )
    train, y = make_features(args.n, args.dim, seed=0)
    query, pred = make_features(args.n, args.dim, seed=1)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    print(f"features: {args.n} train x {args.dim}, {args.n} queries x {args.dim} (float32)\n")

    # LID: the same reference mini-batches for both; the reference code always skips the nearest.
    for skip in (True, False):
        lid = LID(k=20, batch_size=100, skip_nearest=skip).fit({"z": t(train)})
        ref_idx = lid._reference_indices(-(-args.n // 100)).numpy()
        q_set = FeatureSet({"z": t(query)})
        if skip:
            res = compare(
                partial(lid_reference, query, train, ref_idx, 20, 100),
                partial(lid.score, q_set),
                args.repeats,
            )
            report("LID (k=20, batch 100)", res)
            print(f"{'':22} {diff(res['our_out'], res['ref_out'])}")
        else:
            o = compare(partial(lid.score, q_set), partial(lid.score, q_set), 1)
            print(f"{'':22} skip_nearest=False: {min(o['ours']) * 1e3:.1f} ms")

    # MAHA: the reference's formulation with the same covariance estimator.
    for n_classes in (2, 10):
        tr_k, y_k = make_features(args.n, args.dim, seed=0, n_classes=n_classes)
        q_k, _ = make_features(args.n, args.dim, seed=1, n_classes=n_classes)
        for label, shrink, est in (
            ("empirical", None, EmpiricalCovariance(assume_centered=True)),
            ("Ledoit-Wolf", "ledoit_wolf", LedoitWolf(assume_centered=True)),
        ):
            t0 = time.process_time()
            maha = MAHA(shrinkage=shrink).fit({"z": t(tr_k)}, t(y_k))
            t_fit = time.process_time() - t0
            g = maha.gaussians_["z"]
            m_set = FeatureSet({"z": t(q_k)})
            res = compare(
                partial(maha_reference, tr_k, y_k, q_k, est),
                partial(maha.score, m_set),
                args.repeats,
            )
            report(f"MAHA K={n_classes} {label}", res)
            path = "float32 whitening" if g._w32 is not None else "float64 whitening"
            print(
                f"{'':22} {diff(res['our_out'], res['ref_out'])}; cond(cov) {g.condition_number:.3g} -> {path}; "
                f"fit {t_fit * 1e3:.0f} ms"
            )

    if args.skip_kd:
        return
    # KD, bandwidth 1.0 (the HFC code's sklearn default).
    nq = min(args.kd_queries, args.n)
    kd = KD(bandwidth=1.0).fit({"z": t(train)}, t(y))
    kq = FeatureSet({"z": t(query[:nq])}, pred=t(pred[:nq]))
    t0 = time.process_time()  # one call only: the reference takes about a minute
    ref_kd = kd_reference(train, y, query[:nq], pred[:nq], 1.0)
    t_ref = time.process_time() - t0
    ours = compare(lambda: kd.score(kq), lambda: kd.score(kq), args.repeats)
    res = {
        "ref": [t_ref],
        "ours": [min(ours["ours"])],
        "ref_out": ref_kd,
        "our_out": ours["our_out"],
    }
    report(f"KD ({nq} queries)", res)
    print(f"{'':22} hfc_edu vs sklearn KernelDensity: {diff(res['our_out'], ref_kd)}")
    ns = min(args.kd_exact_subset, nq)
    exact = np.empty(ns)
    for c in (0, 1):
        m = pred[:ns] == c
        exact[m] = kd_exact_numpy(train[y == c], query[:ns][m], 1.0)
    bad = np.abs(ref_kd[:ns] - exact) > 1e-6 * np.abs(exact)
    print(
        f"{'':22} on {ns} queries vs an exact NumPy float64 logsumexp: hfc_edu {diff(res['our_out'][:ns], exact)}"
    )
    print(
        f"{'':22} sklearn KernelDensity {diff(ref_kd[:ns], exact)}; "
        f"{bad.sum()} of {ns} queries off by > 1e-6 relative"
    )


if __name__ == "__main__":
    main()
