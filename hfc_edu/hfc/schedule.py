"""HFC's step schedule: a fixed small step α and ``T = 2·⌊ε/α⌋`` iterations (path length 2ε).

The official code (Yao et al. MICCAI 2021 / TMI 2023) ties the number of iterations to ε
instead of fixing it (base attacks use T = 10, α = 2ε/10). Its step sizes, in [0, 1] pixel
units:

========================  ===============  =====  ======  ======
dataset / model           α                T at ε = 1, 2, 4 /256
========================  ===============  =====  ======  ======
APTOS / VGG-16            2/256/20          20     40      80
APTOS / ResNet-50         0.5/256/20        80    160     320
CXR / VGG-16              2/256/50          50    100     200
CXR / ResNet-50           0.5/256/50       200    400     800
Brain / 3-D ResNet        0.5/256/20        80    160     320
========================  ===============  =====  ======  ======

For the book's compact models the default is ``α = ε/20``, i.e. ``T = 40`` at every ε: the
many-small-steps regime of the table (APTOS / VGG-16 at ε = 2/256 uses exactly this), at a
CPU-friendly cost (the ResNet-50 rows use 4-10 times more steps). For ablations give both attacks the same schedule, e.g.
``hfc_schedule(eps, steps=10)`` (α = 2ε/10, the base attacks' default) or pass the HFC
``(alpha, steps)`` to the plain attack.
"""

from __future__ import annotations

import math

from hfc_edu.checks import check_eps, check_steps

#: The official code's HFC step sizes α (pixel units in [0, 1]) per (dataset, model).
OFFICIAL_ALPHA: dict[tuple[str, str], float] = {
    ("APTOS", "vgg16"): 2 / 256 / 20,
    ("APTOS", "resnet50"): 0.5 / 256 / 20,
    ("CXR", "vgg16"): 2 / 256 / 50,
    ("CXR", "resnet50"): 0.5 / 256 / 50,
    ("Brain", "resnet3d"): 0.5 / 256 / 20,
    ("CIFAR", "resnet50"): 0.5 / 256 / 10,
}

#: Book default: α = ε · DEFAULT_ALPHA_FRACTION (→ T = 40).
DEFAULT_ALPHA_FRACTION = 1 / 20


def hfc_schedule(
    eps: float,
    alpha: float | None = None,
    steps: int | None = None,
    *,
    alpha_fraction: float = DEFAULT_ALPHA_FRACTION,
) -> tuple[float, int]:
    """``(alpha, steps)`` with path length ``alpha · steps = 2ε`` (the papers' schedule).

    * neither given: ``alpha = alpha_fraction · ε`` (default ε/20) and ``steps = 2/alpha_fraction``;
    * ``alpha`` only: ``steps = 2·⌊ε/α⌋`` as the official code (e.g. ``OFFICIAL_ALPHA``);
    * ``steps`` only: ``alpha = 2ε/steps`` (e.g. ``steps=10`` is the base attacks' schedule);
    * both: returned unchanged (after validation).
    """
    eps = check_eps(eps, positive=True)
    if steps is not None:
        check_steps(steps)
    if alpha is not None and (
        isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0
    ):
        raise ValueError(f"alpha must be a float > 0, got {alpha!r}.")
    if alpha is not None and steps is not None:
        return float(alpha), steps
    if steps is not None:
        return 2.0 * eps / steps, steps
    if alpha is None:
        if not 0 < alpha_fraction <= 1:
            raise ValueError(f"alpha_fraction must be in (0, 1], got {alpha_fraction}.")
        alpha = alpha_fraction * eps
    n = math.floor(eps / alpha * (1 + 1e-9))  # int(ε/α), robust to 1/256-style rounding
    if n < 1:
        raise ValueError(f"alpha={alpha:g} is larger than eps={eps:g}: no step fits the budget.")
    return float(alpha), 2 * n


__all__ = ["DEFAULT_ALPHA_FRACTION", "OFFICIAL_ALPHA", "hfc_schedule"]
