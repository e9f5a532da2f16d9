"""HFC-PGD vs plain PGD (same steps), side by side in one process; plus the GMM fitting time.

Protocol: one model instance in eval mode, one input,
the same random start and schedule for every method; a warm-up run of each; interleaved rounds
with rotating order; per-round ratios against plain PGD, reported as their median. On CPU the
ratio uses process time (robust to noisy neighbours at 1 thread); wall time is reported too.

Methods:
* ``pgd``: ``hfc_edu.attacks.gradient_attack`` (plain targeted L∞ PGD);
* ``hfc_pgd``: ``hfc_edu.hfc.hfc_attack(base="PGD")`` — features from the same forward pass;
* ``hfc_two_pass`` (``--two-pass``): the naive variant — logits from one forward, the HFC
  features from a second forward through a FeatureExtractor (same maths).

Correctness gates before timing: ``hfc_attack(lam=0)`` equals plain PGD bit for bit, and the
two-pass variant produces the same x_adv as the fused one (up to a few sign flips from
floating-point summation order).

Usage::

    python benchmarks/bench_hfc.py                    # 2D ResNet-18, 64x3x64x64, K=8, 10 steps
    python benchmarks/bench_hfc.py --dims 3 --arch compact_resnet --channels 1 --size 28 \
        --batch 16 --components 2                     # 3D: the book's adrenal model's shape
    python benchmarks/bench_hfc.py --device cuda --threads 4 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from hfc_edu.attacks import gradient_attack
from hfc_edu.attacks.losses import CrossEntropy
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc import HFCLoss, fit_class_gmms, hfc_attack
from hfc_edu.models import build_model
from hfc_edu.modes import frozen_eval


def two_pass_hfc_pgd(model, fx, term, x, t, eps, alpha, steps, delta0):
    """The naive loop: a second forward pass for the features at every step."""
    ce = CrossEntropy(targeted=True)
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    x_adv = (x + delta0.clamp(-eps, eps)).clamp(0, 1)
    with frozen_eval(model):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            _, feats = fx(x_adv)  # second forward
            loss = (ce(logits, t, {}) + term(logits, t, feats)).sum()
            (g,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = torch.minimum(torch.maximum(x_adv - alpha * g.sign(), lo), hi)
    return x_adv.detach()


def progress(msg: str) -> None:
    print(f"[bench_hfc] {msg}", file=sys.stderr, flush=True)


def timed(fn, device: torch.device) -> tuple[float, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--dims", type=int, choices=(2, 3), default=2, help="2D images or 3D volumes")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--eps", type=float, default=8 / 255)
    p.add_argument("--components", type=int, default=8)
    p.add_argument(
        "--fit-per-class", type=int, default=256, help="random images per class for the GMMs"
    )
    p.add_argument(
        "--gaussian", action="store_true", help="GaussianMixture instead of the Bayesian one"
    )
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--two-pass", action="store_true", help="also time the naive two-forward variant"
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build_model(args.arch, args.channels, 2, args.dims, image_size=args.size).to(dev).eval()
    shape = (args.channels,) + (args.size,) * args.dims

    # GMMs on "random-ish" features: features of random images, two arbitrary classes.
    g = torch.Generator().manual_seed(1)
    n_fit = 2 * args.fit_per_class
    x_fit = torch.rand(n_fit, *shape, generator=g)
    brightness = torch.rand(n_fit, *[1] * len(shape), generator=g)
    x_fit = (x_fit * brightness).to(dev)  # vary the brightness
    y_fit = torch.arange(n_fit) % 2
    progress(f"fitting GMMs (K={args.components}) on {n_fit} random images ...")
    t0 = time.perf_counter()
    gmms = fit_class_gmms(
        model, x_fit, y_fit, n_components=args.components, bayesian=not args.gaussian, cache=False
    )
    fit_total = time.perf_counter() - t0
    progress(f"GMMs fitted in {time.perf_counter() - t0:.1f} s; correctness gates ...")

    x = torch.rand(args.batch, *shape, generator=g).to(dev)
    t = torch.randint(0, 2, (args.batch,), generator=g).to(dev)
    delta0 = ((torch.rand(x.shape, generator=g) * 2 - 1) * args.eps).to(dev)
    alpha, steps = 2 * args.eps / args.steps, args.steps
    common = dict(eps=args.eps, alpha=alpha, steps=steps, delta0=delta0)
    term = HFCLoss(gmms)
    fx = FeatureExtractor(model, layers=term.layers)

    methods = {
        "pgd": lambda: gradient_attack(model, x, t, targeted=True, **common).x_adv,
        "hfc_pgd": lambda: hfc_attack(model, x, t, gmms=gmms, **common).x_adv,
    }
    if args.two_pass:
        methods["hfc_two_pass"] = lambda: two_pass_hfc_pgd(
            model, fx, term, x, t, args.eps, alpha, steps, delta0
        )

    # Correctness gates (also the warm-up).
    ref = methods["pgd"]()
    lam0 = hfc_attack(model, x, t, gmms=gmms, lam=0.0, **common).x_adv
    assert torch.equal(ref, lam0), "hfc_attack(lam=0) differs from plain PGD"
    fused = methods["hfc_pgd"]()
    gates = {"lam0_equals_pgd": True, "hfc_changes_x_adv": bool((fused != ref).any())}
    if args.two_pass:
        naive = methods["hfc_two_pass"]()
        gates["two_pass_max_abs_diff"] = float((naive - fused).abs().max())
        gates["two_pass_frac_pixels_equal"] = float((naive == fused).float().mean())

    progress("timing ...")
    names = list(methods)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            w, c = timed(methods[n], dev)
            wall[n].append(w)
            cpu[n].append(c)
            progress(f"round {r + 1}/{args.rounds} {n}: wall {w:.2f} s, cpu {c:.2f} s")
    basis = cpu if dev.type == "cpu" else wall
    rows = {}
    for n in names:
        ratios = [a / b for a, b in zip(basis[n], basis["pgd"], strict=True)]
        rows[n] = dict(
            wall_min_s=round(min(wall[n]), 3),
            wall_median_s=round(statistics.median(wall[n]), 3),
            cpu_min_s=round(min(cpu[n]), 3),
            img_per_s=round(args.batch / min(wall[n]), 2),
            ratio_vs_pgd_median=round(statistics.median(ratios), 4),
            ratios=[round(v, 4) for v in ratios],
        )
    report = dict(
        setup=dict(
            arch=args.arch,
            input=[args.batch, *shape],
            steps=steps,
            eps=args.eps,
            gmm_components=args.components,
            gmm_estimator=gmms.settings["estimator"],
            constrained_layers=len(term.layers),
            channels=sorted(set(gmms.channels.values())),
            threads=torch.get_num_threads(),
            device=str(dev),
            rounds=args.rounds,
            ratio_basis="process time" if dev.type == "cpu" else "wall time (synchronized)",
            torch=torch.__version__,
            python=platform.python_version(),
            cpu=platform.processor() or platform.machine(),
        ),
        gmm_fit=dict(
            images=n_fit,
            feature_extraction_s=gmms.settings["extract_seconds"],
            sklearn_fit_s=gmms.settings["fit_seconds"],
            total_s=round(fit_total, 2),
            fits=len(gmms.layer_names) * gmms.num_classes,
        ),
        gates=gates,
        results=rows,
    )
    print(json.dumps(report, indent=2))
    ratio = rows["hfc_pgd"]["ratio_vs_pgd_median"]
    print(f"\nHFC-PGD / PGD (median of per-round ratios): {ratio:.3f}  (target <= 1.15)")
    if args.two_pass:
        print(f"two-pass HFC-PGD / PGD: {rows['hfc_two_pass']['ratio_vs_pgd_median']:.3f}")


if __name__ == "__main__":
    main()
