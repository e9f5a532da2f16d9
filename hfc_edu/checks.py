"""Input validation and per-sample broadcasting shared by all attacks.

Every check that needs tensor values is folded into ONE host sync per attack call (never
one per step): the flags are computed on the device, stacked, and read with a single
``.tolist()``.
"""

from __future__ import annotations

import math
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


def per_sample(value: PerSample, n: int, x: torch.Tensor, name: str) -> torch.Tensor:
    """A float or an ``(N,)`` / scalar tensor as an ``(N,)`` tensor on ``x``'s device and dtype.

    Float values are validated here; tensor values are validated in :func:`sync_checks`.
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
    v = check_scalar(value, name)
    return torch.full((n,), v, device=x.device, dtype=x.dtype)


def sync_checks(
    x: torch.Tensor,
    *,
    labels: Sequence[tuple[str, torch.Tensor]] = (),
    tensors: Sequence[tuple[str, torch.Tensor]] = (),
    num_classes: int | None = None,
) -> None:
    """Value checks with one host sync: ``x`` finite and in [0, 1], labels >= 0 (and < K),
    per-sample tensors (eps, alpha) finite and >= 0."""
    flags = [x.isnan().any(), (x < 0).any() | (x > 1).any()]
    for _, y in labels:
        flags.append((y < 0).any() if num_classes is None else ((y < 0) | (y >= num_classes)).any())
    for _, t in tensors:
        flags.append((~torch.isfinite(t)).any() | (t < 0).any())
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
    for (name, _), b in zip(tensors, bad[2 + len(labels) :], strict=True):
        if b:
            raise ValueError(
                f"{name} must be finite and >= 0 for every sample (found NaN/inf/negative)."
            )


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
