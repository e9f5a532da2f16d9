"""The numerics fingerprint of this machine: what decides whether floats repeat bit for bit.

Training and attacks are deterministic for a given seed on one machine, but which CPU kernels
torch, oneDNN and MKL pick depends on the processor, so another machine computes slightly
different floats (and a different chest X-ray accuracy in the third decimal). The book's stored
outputs are therefore compared byte for byte only where :func:`machine_fingerprint` equals the one
recorded when they were stored; elsewhere the chapters' claim checks (:mod:`hfc_edu.claims`)
decide. To see another machine's numerics on your own, run with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from functools import lru_cache

#: Environment variable through which a test session hands the fingerprint to its workers.
FINGERPRINT_ENV = "HFC_EDU_MACHINE_FINGERPRINT"

_PROBE = (
    "import torch\n"
    "torch.set_num_threads(1)\n"
    "with torch.no_grad():\n"
    "    torch.nn.functional.conv2d(torch.rand(8, 16, 32, 32), torch.rand(16, 16, 3, 3))\n"
)


def onednn_isa() -> str:
    """The instruction set oneDNN dispatches to here (e.g. ``"Intel AVX2"``), from its verbose
    log in a short subprocess (about two seconds); ``"unknown"`` if it cannot be read."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1")
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.search(r"isa:([^\n,]+)", out.stdout + out.stderr)
    return m.group(1).strip() if m else "unknown"


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... (MKL takes other code paths on other vendors)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def machine_fingerprint() -> dict[str, str]:
    """What must be equal for stored notebook outputs to repeat exactly.

    torch, NumPy and scikit-learn versions, ATen's CPU capability, oneDNN's ISA, the CPU
    vendor, and the ``MKL_CBWR`` setting. Reads ``$HFC_EDU_MACHINE_FINGERPRINT`` (JSON) when a
    parent process has computed it already.
    """
    cached = os.environ.get(FINGERPRINT_ENV)
    if cached:
        return json.loads(cached)
    import numpy
    import sklearn
    import torch

    return {
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "cpu_vendor": cpu_vendor(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", ""),
    }


def fingerprint_diff(a: dict[str, str], b: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``{key: (a's value, b's value)}`` for every key where two fingerprints differ."""
    return {
        k: (a.get(k, "-"), b.get(k, "-")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    }


__all__ = ["FINGERPRINT_ENV", "cpu_vendor", "fingerprint_diff", "machine_fingerprint", "onednn_isa"]


#: Kernel variables that move an AVX-512 (or newer) machine onto AVX2 code paths.
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
#: Kernel variables that move an AVX2 machine onto its baseline (SSE) code paths.
BASELINE_KERNELS = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_CBWR": "COMPATIBLE",
}


def other_kernels() -> dict[str, str]:
    """Environment variables that make torch, oneDNN and MKL on this machine pick kernels
    other than their own choice, to see another machine's numerics here: AVX2 code paths on
    a machine whose torch picks AVX-512, the baseline (SSE) paths on a machine that is AVX2
    already (there the AVX2 variables would change nothing)."""
    import torch

    native = torch.backends.cpu.get_cpu_capability().upper()
    return dict(BASELINE_KERNELS if native in ("AVX2", "DEFAULT") else AVX2_KERNELS)
