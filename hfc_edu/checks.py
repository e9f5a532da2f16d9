"""Input checks, one home: images, labels, budgets ε, per-sample broadcasting.

Every check that needs tensor values is folded into ONE host sync per attack call (never
one per step): the flags are computed on the device, stacked, and read with a single
``.tolist()``.

The ε rule (:func:`check_eps`, :func:`check_eps_list`) is the one every attack, the HFC
schedule and every experiment applies: a finite budget >= 0 (> 0 where a zero budget means
nothing), in pixel units of images in [0, 1]; an L∞ budget is at most 1, so the papers'
"1/256 units" must be written ``k / 256`` (``eps=4`` is refused with that hint).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

Scalar = float | int
PerSample = Scalar | torch.Tensor


def batch_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(N,) -> (N, 1, ..., 1)`` with ``ndim`` dimensions, to broadcast against images."""
    return t.view(-1, *([1] * (ndim - 1)))


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """Type, shape and dtype of an image batch ``(N, C, H, W)`` or ``(N, C, D, H, W)`` (no sync)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert with x.float() / 255 for uint8 images."
        )
    if x.ndim not in (4, 5):
        raise ValueError(
            f"{name} must be (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}; "
            "add the batch/channel dimension with x[None] or x.unsqueeze(1)."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch.")


def check_labels(y: torch.Tensor, x: torch.Tensor, name: str = "y") -> torch.Tensor:
    """Shape ``(N,)`` and integer dtype; returns ``y`` as int64 on ``x``'s device (no sync)."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}.")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise TypeError(
            f"{name} must hold integer class indices (torch.long), got dtype {y.dtype}; "
            "for one-hot labels pass y.argmax(1)."
        )
    if y.shape != (x.shape[0],):
        raise ValueError(
            f"{name} must have shape ({x.shape[0]},) (one class index per image), "
            f"got {tuple(y.shape)}."
        )
    return y.to(device=x.device, dtype=torch.long)


def check_scalar(value: Scalar, name: str, *, positive: bool = False) -> float:
    """A finite float >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}.")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or v < 0 or (positive and v == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}.")
    return v


def check_eps(
    eps: Scalar, name: str = "eps", *, positive: bool = False, norm: str = "linf"
) -> float:
    """The ε rule: a finite float >= 0 (> 0 if ``positive``); at most 1 for ``norm="linf"``.

    ``norm="l2"`` budgets have no upper bound (an L2 ball of radius > 1 fits in a large image).
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(
            f"{name} must be a float in pixel units (e.g. 1/256), got {type(eps).__name__}."
        )
    v = float(eps)
    bound = "> 0" if positive else ">= 0"
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {eps}.")
    if norm == "linf" and v > 1:
        raise ValueError(
            f"{name} must be at most 1 (pixel units of images in [0, 1]), got {eps}; the "
            "papers' '1/256 units' are written k/256 (e.g. 4/256, not 4)."
        )
    return v


def check_eps_list(
    eps: Sequence[Scalar], name: str = "eps", *, positive: bool = False, norm: str = "linf"
) -> list[float]:
    """A non-empty list of distinct budgets, each following :func:`check_eps` (a list, a tuple
    or a 1-D array)."""
    if getattr(eps, "ndim", None) == 1 and hasattr(eps, "tolist"):  # NumPy array, 1-D tensor
        eps = eps.tolist()
    if isinstance(eps, str | bytes) or not isinstance(eps, Sequence):
        raise TypeError(
            f"{name} must be a list of budgets in pixel units, e.g. [1/256, 2/256], got "
            f"{type(eps).__name__}."
        )
    values = [check_eps(e, name, positive=positive, norm=norm) for e in eps]
    if not values:
        raise ValueError(f"{name} is empty; pass budgets such as [1/256, 2/256].")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated values: {values}.")
    return values


def check_batch_size(batch_size: int | None, name: str = "batch_size") -> int | None:
    """None (one pass) or an int >= 1."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"{name} must be None or an int >= 1, got {batch_size!r}.")
    return batch_size


def check_steps(steps: int, name: str = "steps") -> int:
    """An int >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{name} must be an int >= 1, got {steps!r}.")
    return steps


def per_sample(
    value: PerSample, n: int, x: torch.Tensor, name: str, *, norm: str | None = None
) -> torch.Tensor:
    """A float or an ``(N,)`` / scalar tensor as an ``(N,)`` tensor on ``x``'s device and dtype.

    Float values are validated here (with the ε rule when ``norm`` is given); tensor values
    are validated in :func:`sync_checks`.
    """
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            value = value.float()
        if value.ndim == 0:
            value = value.expand(n)
        if value.shape != (n,):
            raise ValueError(
                f"{name} as a tensor must have shape ({n},) (one value per image), "
                f"got {tuple(value.shape)}."
            )
        return value.to(device=x.device, dtype=x.dtype)
    v = check_scalar(value, name) if norm is None else check_eps(value, name, norm=norm)
    return torch.full((n,), v, device=x.device, dtype=x.dtype)


def sync_checks(
    x: torch.Tensor,
    *,
    labels: Sequence[tuple[str, torch.Tensor]] = (),
    tensors: Sequence[tuple[str, torch.Tensor, float | None]] = (),
    num_classes: int | None = None,
) -> None:
    """Value checks with one host sync: ``x`` without NaN and in [0, 1], labels >= 0 (and
    < K), per-sample tensors ``(name, values, upper)`` (eps, alpha) finite, >= 0 and at most
    ``upper`` (None: no upper bound; the L∞ ε rule uses 1)."""
    flags = [x.isnan().any(), (x < 0).any() | (x > 1).any()]
    for _, y in labels:
        flags.append((y < 0).any() if num_classes is None else ((y < 0) | (y >= num_classes)).any())
    for _, t, upper in tensors:
        bad = (~torch.isfinite(t)).any() | (t < 0).any()
        flags.append(bad if upper is None else bad | (t > upper).any())
    bad = torch.stack(flags).tolist()
    if bad[0]:
        raise ValueError("x contains NaN values.")
    if bad[1]:
        raise ValueError(
            f"x must lie in [0, 1] (got min {x.min().item():.4g}, max {x.max().item():.4g}); "
            "attacks work on un-normalised images, the model normalises internally."
        )
    for (name, y), b in zip(labels, bad[2 : 2 + len(labels)], strict=True):
        if b:
            rng = f"[0, {num_classes})" if num_classes is not None else ">= 0"
            raise ValueError(
                f"{name} holds class indices outside {rng}: min {y.min().item()}, max {y.max().item()}."
            )
    for (name, _, upper), b in zip(tensors, bad[2 + len(labels) :], strict=True):
        if b:
            rng = ">= 0" if upper is None else f"in [0, {upper:g}]"
            raise ValueError(f"{name} must be finite and {rng} for every sample.")


def check_targets_differ(targets: torch.Tensor, y_true: torch.Tensor) -> None:
    """In a targeted attack the target must differ from the true class (one sync)."""
    same = targets == y_true
    if same.any().item():
        idx = same.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"Targeted attack: the target equals the true class for sample(s) {idx}; "
            "choose targets with hfc_edu.attacks.targets (other_class, random_target, least_likely)."
        )


# ------------------------------------------------------------------------------------------
# Detector labels (the detectors' fit inputs; owned by the detectors: hfc_edu/detectors).
# ``check_labels`` above checks an attack's labels against its images; the two below check the
# labels a detector is fitted with: class labels of clean training features (KD, MAHA) and the
# detection labels ``is_adv`` (0 = clean or noisy, 1 = adversarial) of the supervised detectors.
# ------------------------------------------------------------------------------------------
def _label_vector(y, n: int, name: str) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"{name} must be a torch.Tensor or numpy array, got {type(y).__name__}."
            ) from None
    y = y.detach().cpu().reshape(-1)
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(f"{name} must hold integer labels.")
    y = y.long()
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels for {n} samples.")
    return y


def check_class_labels(y, n: int, name: str = "y") -> torch.Tensor:
    """``(n,)`` int64 CPU class indices >= 0 with at least two classes, to fit a class density."""
    y = _label_vector(y, n, name)
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices.")
    if y.unique().numel() < 2:
        raise ValueError(
            f"{name} contains a single class ({y.unique().tolist()}); fitting needs at least two "
            "classes."
        )
    return y


def check_is_adv(is_adv, n: int, name: str = "is_adv") -> torch.Tensor:
    """``(n,)`` int64 CPU detection labels, 0 (clean or noisy) or 1 (adversarial), both present."""
    y = _label_vector(is_adv, n, name)
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(
            f"{name} must be 0 (clean or noisy) or 1 (adversarial), got values "
            f"{y.unique().tolist()}."
        )
    if y.unique().numel() < 2:
        raise ValueError(
            f"{name} contains a single class ({y.unique().tolist()}); fitting needs both "
            "negatives (0) and positives (1)."
        )
    return y
