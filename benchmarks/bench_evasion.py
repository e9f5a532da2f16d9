"""Evasion terms (chapter 10): the torch SVM term against scikit-learn's SVC, and what the terms
add to an HFC attack, side by side in one process.

1. ``SVMTerm.decision`` (torch, float64, differentiable) against ``SVC.decision_function``
   (scikit-learn, the peer that fitted it) on the same features. Correctness gate first: the two
   agree to 1e-8 in float64. Then the median time of each over interleaved rounds, and the
   ratio; the torch term's forward + backward is timed too (what an attack step pays).
2. HFC-PGD against HFC-PGD plus the evasion terms of a fitted ``ScoreLR([MAHA, GMMScore])`` and
   an ``SVM`` on a compact ResNet: the ratio of the attack's time per step.

Usage::

    python benchmarks/bench_evasion.py                  # 28 px, 1 channel, batch 64
    python benchmarks/bench_evasion.py --size 128 --batch 32 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from hfc_edu.detectors import MAHA, SVM, FeatureSet, GMMScore, ScoreLR
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc import HFCLoss, evasion_term, feature_attack, fit_class_gmms
from hfc_edu.models import build_model


def timed(fn, rounds: int) -> float:
    """Median process time of ``fn()`` over ``rounds`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def bench_svm(n: int, dim: int, rounds: int) -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    h = torch.randn(n, dim, generator=g, dtype=torch.float64) + 0.7 * y[:, None]
    fs = FeatureSet({"pen": h})
    svm = SVM().fit(fs, y)
    term = SVMTerm_of(svm)
    ref = svm.score(fs)
    got = term.decision({"pen": h}).numpy()
    err = float(np.abs(ref - got).max())
    assert err < 1e-8, f"SVMTerm differs from SVC.decision_function by {err}"
    x = h.clone().requires_grad_(True)

    def fwd_bwd():
        term.decision({"pen": x}).sum().backward()

    t_sk = timed(lambda: svm.score(fs), rounds)
    with torch.no_grad():
        t_torch = timed(lambda: term.decision({"pen": h}), rounds)
    t_grad = timed(fwd_bwd, rounds)
    print(
        f"SVM decision, {n} x {dim} features, {len(term.dual)} support vectors (max |diff| {err:.1e})"
    )
    print(f"  scikit-learn SVC.decision_function  {t_sk * 1e3:8.2f} ms")
    print(
        f"  SVMTerm.decision (torch)            {t_torch * 1e3:8.2f} ms   ratio {t_torch / t_sk:.2f}"
    )
    print(
        f"  SVMTerm forward + backward          {t_grad * 1e3:8.2f} ms   ratio {t_grad / t_sk:.2f}"
    )


def SVMTerm_of(svm):  # noqa: N802 - reads as the class it returns
    term, exact = evasion_term(svm)
    assert exact
    return term


def bench_attack(size: int, batch: int, rounds: int, steps: int) -> None:
    torch.manual_seed(0)
    model = build_model("compact_resnet", 1, 2, image_size=size).eval()
    x = torch.rand(4 * batch, 1, size, size)
    y = torch.arange(len(x)) % 2  # class labels for the statistics (an untrained model)
    gmms = fit_class_gmms(model, x, y, n_components=2, cache=False)
    fx = FeatureExtractor(model)
    fs = FeatureSet.from_images(fx, x)
    is_adv = (torch.arange(len(x)) % 2).long()  # labels only shape the fitted terms here
    lr = ScoreLR([MAHA().fit(fs, y), GMMScore(gmms)]).fit(fs, is_adv)
    svm = SVM().fit(fs, is_adv)
    hfc = HFCLoss(gmms, lam=0.3)
    with_terms = hfc + evasion_term(lr)[0] + evasion_term(svm)[0]
    xb, t = x[:batch], 1 - y[:batch]
    start = torch.zeros_like(xb)

    def run(term):
        return lambda: feature_attack(model, xb, t, 4 / 256, term, steps=steps, delta0=start)

    t_hfc = timed(run(hfc), rounds)
    t_all = timed(run(with_terms), rounds)
    print(f"HFC-PGD, {batch} images {size} px, {steps} steps")
    print(f"  HFC only                            {t_hfc / steps * 1e3:8.2f} ms/step")
    print(
        f"  HFC + ScoreLR(MAHA, GMM) + SVM      {t_all / steps * 1e3:8.2f} ms/step   ratio {t_all / t_hfc:.2f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} thread(s), CPU")
    bench_svm(1000, 128, a.rounds)
    bench_attack(a.size, a.batch, a.rounds, a.steps)


if __name__ == "__main__":
    main()
