"""Benchmark: hfc_edu attacks vs torchattacks, side by side in one process (ratio-based).

Protocol: one model instance in eval mode, the same inputs and hyperparameters (L∞ PGD,
ε = 8/255, α = 2/255, 10 steps, random start), a correctness gate before timing (same δ0 ->
same output to 1e-6), a warm-up, then interleaved rounds with a rotating order. On CPU: ``torch.set_num_threads(1)`` and process-CPU time; on
CUDA: wall time between ``torch.cuda.synchronize()`` calls. The number to track is the
median over rounds of the per-round ratio.

    python benchmarks/bench_attacks.py --device cpu --rounds 5
    python benchmarks/bench_attacks.py --device cuda --rounds 10

Needs ``pip install torchattacks==3.5.1 --no-deps``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from hfc_edu.attacks import pgd, sweep
from hfc_edu.models import build_model

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 10


def _timer(device: torch.device) -> Callable[[Callable[[], object]], tuple[float, float]]:
    """Returns ``run(fn) -> (seconds, wall seconds)``; seconds = process CPU time on CPU."""

    def run(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        return (cpu if device.type == "cpu" else wall), wall

    return run


def interleaved(
    methods: dict[str, Callable[[], object]], rounds: int, device: torch.device, warmup: bool = True
):
    """Times every method once per round, rotating the order; returns name -> [seconds]."""
    run = _timer(device)
    if warmup:
        for fn in methods.values():
            fn()
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            times[n].append(run(methods[n])[0])
    return times


def report(title: str, times: dict[str, list[float]], n_images: int, ratios: list[tuple[str, str]]):
    print(f"\n== {title}")
    for name, ts in times.items():
        print(
            f"  {name:<28s} min {min(ts):8.3f} s  median {statistics.median(ts):8.3f} s  "
            f"{n_images / min(ts):8.1f} img/s"
        )
    out = {}
    for num, den in ratios:
        per_round = [a / b for a, b in zip(times[num], times[den], strict=True)]
        med = statistics.median(per_round)
        out[(num, den)] = med
        print(
            f"  ratio {num} / {den}: median {med:.3f}  "
            f"(rounds: {', '.join(f'{v:.3f}' for v in per_round)})"
        )
    return out


def correctness_gate(model, x, y, torchattacks) -> float:
    """Same δ0 -> hfc_edu PGD == torchattacks PGD (max abs diff)."""
    ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    torch.manual_seed(0)
    ref = ta(x, y)
    torch.manual_seed(0)
    delta0 = torch.empty_like(x).uniform_(-EPS, EPS)
    ours = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, delta0=delta0).x_adv
    diff = (ours - ref).abs().max().item()
    linf = (ours - x).abs().max().item()
    print(
        f"  gate: max |hfc_edu - torchattacks| = {diff:.2e}; ||x_adv - x||_inf = {linf * 255:.4f}/255"
    )
    if diff > 1e-6 or linf > EPS + 1e-6 or ours.min() < 0 or ours.max() > 1:
        raise SystemExit("correctness gate failed")
    return diff


def bench_workload(name, model, x, y, args, torchattacks, device, amp: str):
    print(f"\n### {name}: x {tuple(x.shape)}, {type(model).__name__}, device {device}")
    correctness_gate(model, x, y, torchattacks)  # also the warm-up of torchattacks
    # success-rate change with mixed precision (same random start); warms up both paths
    g = lambda: torch.Generator(device=x.device).manual_seed(0)  # noqa: E731
    r32 = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, generator=g())
    if amp != "off":
        r16 = pgd(model, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, generator=g(), amp=amp)
        agree = (r32.success == r16.success).float().mean().item()
        print(
            f"  success rate fp32 {r32.success_rate:.3f}, amp={amp} {r16.success_rate:.3f} "
            f"(change {r16.success_rate - r32.success_rate:+.3f}; per-sample agreement "
            f"{agree:.3f})"
        )
    ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=True)
    # hfc_edu's attack returns an AttackResult: its last forward (logits, success, norms at
    # x_adv) is part of the timed work, while torchattacks returns the images only.
    kw = dict(eps=EPS, alpha=ALPHA, steps=STEPS)
    methods = {
        "torchattacks.PGD": lambda: ta(x, y),
        "hfc_edu.PGD": lambda: pgd(model, x, y, **kw),
    }
    ratios = [("hfc_edu.PGD", "torchattacks.PGD")]
    if amp != "off":
        methods[f"hfc_edu.PGD amp={amp}"] = lambda: pgd(model, x, y, amp=amp, **kw)
        ratios.append((f"hfc_edu.PGD amp={amp}", "hfc_edu.PGD"))
    times = interleaved(methods, args.rounds, device, warmup=False)  # warmed up above
    report(f"{name}: PGD-10 L∞", times, len(x), ratios)


def bench_sweep(name, model, x, y, args, device, eps_list):
    print(f"\n### {name}: {len(eps_list)}-ε sweep, x {tuple(x.shape)}")
    kw = dict(steps=STEPS, random_start=None)
    seq = [pgd(model, x, y, eps=e, **kw).x_adv for e in eps_list]
    one = [r.x_adv for r in sweep("PGD", model, x, y, eps=eps_list, sweep_batch=None, **kw)]
    diff = max((a - b).abs().max().item() for a, b in zip(seq, one, strict=True))
    print(f"  gate: max |sweep - sequential| = {diff:.2e}")
    methods = {
        "sequential (4 calls)": lambda: [pgd(model, x, y, eps=e, **kw) for e in eps_list],
        "sweep auto": lambda: sweep("PGD", model, x, y, eps=eps_list, **kw),
        "sweep all in one pass": lambda: sweep(
            "PGD", model, x, y, eps=eps_list, sweep_batch=None, **kw
        ),
    }
    times = interleaved(methods, args.rounds, device)
    report(
        f"{name}: ε sweep",
        times,
        len(x) * len(eps_list),
        [(m, "sequential (4 calls)") for m in ("sweep auto", "sweep all in one pass")],
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default 1 on CPU)")
    p.add_argument(
        "--only",
        choices=["2d", "3d", "sweep", "sweep18"],
        nargs="*",
        default=["2d", "3d", "sweep", "sweep18"],
        help="workloads (sweep18: the ε sweep on ResNet-18 64 px, slow on CPU)",
    )
    p.add_argument(
        "--amp",
        default=None,
        help="amp dtype (default bf16 on CPU, fp16 on CUDA); 'off' leaves the amp row out "
        "(a shorter run)",
    )
    args = p.parse_args()
    try:
        import torchattacks
    except ImportError as err:
        raise SystemExit("pip install torchattacks==3.5.1 --no-deps") from err

    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    elif args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp = args.amp or ("bf16" if device.type == "cpu" else "fp16")
    print(
        f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
        f"python {platform.python_version()}, threads {torch.get_num_threads()}, "
        f"cpu {platform.processor() or platform.machine()}"
        + (
            f", gpu {torch.cuda.get_device_name(device)}, cuda {torch.version.cuda}"
            if device.type == "cuda"
            else ""
        )
    )
    torch.manual_seed(0)
    if "2d" in args.only or "sweep18" in args.only:
        m2 = build_model("resnet18", 3, 2, image_size=64).to(device).eval()
    if "2d" in args.only:
        x = torch.rand(64, 3, 64, 64, device=device)
        y = torch.randint(0, 2, (64,), device=device)
        bench_workload("2D ResNet-18", m2, x, y, args, torchattacks, device, amp)
    if "3d" in args.only:
        m3 = build_model("compact_resnet", 1, 2, spatial_dims=3, image_size=32).to(device).eval()
        x = torch.rand(8, 1, 32, 32, 32, device=device)
        y = torch.randint(0, 2, (8,), device=device)
        bench_workload("3D compact ResNet", m3, x, y, args, torchattacks, device, amp)
    eps_list = [1 / 255, 2 / 255, 4 / 255, 8 / 255]
    if "sweep" in args.only:
        m = build_model("compact_resnet", 1, 2, image_size=28).to(device).eval()
        x = torch.rand(8, 1, 28, 28, device=device)
        y = torch.randint(0, 2, (8,), device=device)
        bench_sweep("2D compact ResNet 28 px, N=8", m, x, y, args, device, eps_list)
        m = build_model("compact_resnet", 1, 2, spatial_dims=3, image_size=16).to(device).eval()
        x = torch.rand(4, 1, 16, 16, 16, device=device)
        y = torch.randint(0, 2, (4,), device=device)
        bench_sweep("3D compact ResNet 16³, N=4", m, x, y, args, device, eps_list)
    if "sweep18" in args.only:
        x = torch.rand(8, 3, 64, 64, device=device)
        y = torch.randint(0, 2, (8,), device=device)
        bench_sweep("2D ResNet-18 64 px, N=8", m2, x, y, args, device, eps_list)


if __name__ == "__main__":
    main()
