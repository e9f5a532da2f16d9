"""Profiles, seeding and device choice: the one call at the top of every notebook.

Three profiles exist:

* ``book`` (default): runs on 2 CPU cores; compact models; the highest resolution each
  dataset offers up to 128 px. Stored notebook outputs come from this profile on CPU.
* ``paper``: the papers' scale (224 px, ResNet-50, many iterations); opt-in through
  ``HFC_EDU_PROFILE=paper`` and meant for a GPU.
* ``smoke``: every code path at a tiny size (tests, and the GPU path on a CPU); its numbers
  mean nothing.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

log = logging.getLogger("hfc_edu")

PROFILE_ENV = "HFC_EDU_PROFILE"
#: Overrides the seed every chapter passes to :func:`setup`; only for measuring how much the
#: chapters' numbers vary between seeds (``scripts/measure_claims.py``). A warning says so.
SEED_ENV = "HFC_EDU_SEED"


@dataclass(frozen=True)
class Profile:
    """Size knobs that notebooks and pipelines read instead of hard-coding numbers."""

    name: str
    image_size: int  # largest 2D resolution used (px)
    model: str  # model-zoo name for 2D classifiers
    model_3d: str  # model-zoo name for 3D classifiers
    epochs: int  # training epochs
    batch_size: int
    n_attack: int  # images attacked per experiment
    attack_steps: int  # iterations of BIM/PGD/MIM/CW-Linf
    cw_steps: int  # optimisation steps of CW-L2
    gmm_components: int  # HFC GMM components per (class, layer)
    mc_passes: int  # BU Monte-Carlo dropout passes
    dropout: float = 0.3  # dropout before the linear head (BU needs it; the HFC code uses 0.3)
    # -- detection (chapter 5): defaults of run_detection and the detector registry -----------
    n_fit: int | None = None  # training images that fit KD, MAHA and LID (None: all)
    dnn_iters: int = 200  # DNN detector training iterations (the HFC code: 200)
    dnn_widths: tuple[int, int] = (96, 192)  # DNN detector conv widths (the HFC code: 96, 192)
    dnn_blocks: int | None = None  # DNN detector on the last k block outputs (None: every layer)
    # HFC mixtures: scikit-learn's variational fit (the official code's), or EM in torch on the
    # device (scikit-learn's GaussianMixture algorithm) where K = 64 makes the CPU fit take hours
    gmm_backend: str = "sklearn"
    extra: dict = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "book": Profile(
        name="book",
        image_size=128,
        model="compact_resnet",
        model_3d="compact_resnet",
        epochs=8,
        batch_size=64,
        n_attack=300,
        attack_steps=10,
        cw_steps=50,
        gmm_components=2,
        mc_passes=20,
        n_fit=1000,
        dnn_iters=30,
        dnn_widths=(16, 32),
        dnn_blocks=3,
    ),
    # A tiny run of every code path (CI's test of `hfc-edu reproduce`, the GPU path on a CPU):
    # the book's classifier training settings (so the shipped 28 px weights answer), everything
    # else as small as the protocol allows. Its numbers mean nothing.
    "smoke": Profile(
        name="smoke",
        image_size=28,
        model="compact_resnet",
        model_3d="compact_resnet",
        epochs=8,
        batch_size=64,
        n_attack=48,
        attack_steps=3,
        cw_steps=5,
        gmm_components=1,
        mc_passes=2,
        n_fit=60,
        dnn_iters=2,
        dnn_widths=(4, 8),
        dnn_blocks=1,
        gmm_backend="torch",  # the paper profile's fit, so CI runs it
    ),
    "paper": Profile(
        name="paper",
        image_size=224,
        model="resnet50",
        model_3d="resnet18",
        epochs=30,
        batch_size=64,
        n_attack=1000,
        attack_steps=10,
        cw_steps=100,
        gmm_components=64,
        mc_passes=50,
        n_fit=None,
        dnn_iters=200,
        dnn_widths=(96, 192),
        dnn_blocks=None,
        gmm_backend="torch",
    ),
}


@dataclass(frozen=True)
class Config:
    """What :func:`setup` decided: profile, seed, device and thread count."""

    profile: Profile
    seed: int
    device: torch.device
    threads: int

    def __repr__(self) -> str:  # the device is left out so stored outputs match on GPU
        return f"Config(profile={self.profile.name!r}, seed={self.seed})"

    def as_dict(self) -> dict:
        d = asdict(self.profile)
        d.update(seed=self.seed, device=str(self.device), threads=self.threads)
        return d


_active: Profile | None = None  # set by setup()


def get_profile(name: str | Profile | None = None) -> Profile:
    """The profile named ``name``; else the one :func:`setup` chose; else ``$HFC_EDU_PROFILE``;
    else ``book``. A :class:`Profile` is returned as it is."""
    if isinstance(name, Profile):
        return name
    if name is None and _active is not None:
        return _active
    name = (name or os.environ.get(PROFILE_ENV) or "book").strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r} (from the argument or ${PROFILE_ENV}). "
            f"Choose one of {sorted(PROFILES)}."
        )
    return PROFILES[name]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds legacy global-state users, e.g. scikit-learn defaults)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA where present, else CPU."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for but torch sees no CUDA GPU.")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def setup(
    seed: int = 0,
    profile: str | None = None,
    device: str | torch.device | None = None,
    deterministic: bool = True,
) -> Config:
    """Seed everything, turn on deterministic algorithms, pick the device and the profile.

    Threads follow ``OMP_NUM_THREADS`` when it is set. ``$HFC_EDU_SEED``, when set, replaces
    ``seed`` (with a warning): it exists to measure the chapters' variation between seeds.
    Returns a :class:`Config`.
    """
    global _active
    _active = None  # the argument, else $HFC_EDU_PROFILE, decides afresh
    prof = get_profile(profile)
    _active = prof
    override = os.environ.get(SEED_ENV)
    if override:
        try:
            new_seed = int(override)
        except ValueError:
            raise ValueError(f"${SEED_ENV} must be an integer, got {override!r}.") from None
        if new_seed != seed:
            log.warning("Seed %d replaced by $%s=%d.", seed, SEED_ENV, new_seed)
        seed = new_seed
    seed_everything(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return Config(profile=prof, seed=seed, device=dev, threads=torch.get_num_threads())
