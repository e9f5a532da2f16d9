"""The detection protocol of the HFC paper (and Ma et al.), with the official code's bugs fixed.

1. Keep the test images the classifier gets right (:func:`correct_mask`).
2. Split them 70/30 into detector-training and detector-test parts, in order (the official code) or
   seeded-shuffled (:func:`split_indices`).
3. Negatives are the clean images **and genuinely noisy copies** (:func:`make_noisy`; the official
   code's "noise" images equal the clean ones). Positives are the **successful** adversarial
   examples only (:func:`success_mask`).

:func:`split_detection_set` does 2–3 and returns a :class:`DetectionData` of two
:class:`DetectionSplit` s; ``split.features(fx)`` turns one into detector inputs and labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hfc_edu.detectors.base import FeatureSet
from hfc_edu.models.training import predict_logits


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``(N,)`` predicted labels of images ``x`` in eval mode (mode restored), on CPU."""
    return predict_logits(model, x, batch_size).argmax(1)


def correct_mask(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """``(N,)`` bool: which images the model classifies correctly."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}.")
    return predict(model, x, batch_size) == y.cpu()


def correct_subset(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n: int | None,
    *,
    seed: int = 0,
    ordered: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """Indices into ``x`` of a seeded random draw of at most ``n`` correctly classified images.

    The papers attack correctly classified test images only. The draw is a random permutation
    from ``torch.Generator().manual_seed(seed)`` of the correct images, cut to ``n`` (None: all);
    ``ordered=True`` sorts the drawn indices, ``ordered=False`` keeps the random order (a random
    70/30 split then follows from cutting the list). Raises if no image is classified correctly.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be None or an int >= 1, got {n!r}.")
    idx = correct_mask(model, x, y, batch_size).nonzero().flatten()
    if len(idx) == 0:
        raise ValueError("The model classifies none of these images correctly.")
    idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
    if n is not None:
        idx = idx[:n]
    return idx.sort().values if ordered else idx


def success_mask(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    targeted: bool = False,
    batch_size: int = 256,
) -> torch.Tensor:
    """``(N,)`` bool: untargeted: prediction != true label ``y``; targeted: prediction == target ``y``."""
    if len(x_adv) != len(y):
        raise ValueError(f"x_adv and y differ in length: {len(x_adv)} vs {len(y)}.")
    pred = predict(model, x_adv, batch_size)
    return pred == y.cpu() if targeted else pred != y.cpu()


def split_indices(
    n: int, train_fraction: float = 0.7, shuffle: bool = False, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the detector-training part (first ``round(train_fraction·n)``) and the rest.

    ``shuffle=False`` keeps the order (the official code: first 70% / last 30%).
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}.")
    n_train = int(round(train_fraction * n))
    if n_train < 1 or n_train >= n:
        raise ValueError(
            f"Cannot split {n} image(s) into non-empty parts with train_fraction={train_fraction}."
        )
    idx = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(n)
    )
    return idx[:n_train], idx[n_train:]


def make_noisy(
    x: torch.Tensor,
    eps: float | None = None,
    kind: str = "uniform",
    generator: torch.Generator | None = None,
    l2: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Noisy copies of images ``x`` in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``, clipped to [0, 1].

    Args:
        eps: L∞ size for ``kind="uniform"`` (x + U(−ε, ε)) and ``kind="sign"`` (x ± ε, random signs).
        kind: ``"uniform"``, ``"sign"`` or ``"gaussian"``.
        generator: a CPU ``torch.Generator`` for reproducible noise.
        l2: for ``kind="gaussian"``: the L2 norm per image (float or ``(N,)``), e.g. the adversarial
            perturbations' ``(x_adv − x).flatten(1).norm(dim=1)``; the noise is a Gaussian direction
            scaled to exactly that norm before clipping.
    """
    if kind not in ("uniform", "sign", "gaussian"):
        raise ValueError(f"kind must be 'uniform', 'sign' or 'gaussian', got {kind!r}.")
    shape = x.shape
    if kind in ("uniform", "sign"):
        if eps is None or not eps > 0:
            raise ValueError(f"kind={kind!r} needs eps > 0, got {eps}.")
        if kind == "uniform":
            noise = (torch.rand(shape, generator=generator) * 2 - 1) * eps
        else:
            noise = (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1) * eps
    else:
        if l2 is None:
            raise ValueError(
                "kind='gaussian' needs l2 (the L2 norm per image, e.g. of the adversarial perturbation)."
            )
        l2 = torch.as_tensor(l2, dtype=torch.float32).reshape(-1)
        if l2.numel() not in (1, shape[0]):
            raise ValueError(
                f"l2 must be a float or have one value per image ({shape[0]}), got {l2.numel()}."
            )
        if (l2 < 0).any():
            raise ValueError("l2 must be non-negative.")
        g = torch.randn(shape, generator=generator)
        norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        noise = g * (l2 / norm).view(-1, *[1] * (len(shape) - 1))
    return (x + noise.to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


@dataclass
class DetectionSplit:
    """One part (detector-train or detector-test) of the detection set.

    Attributes:
        clean: ``(n, ...)`` correctly classified clean images; ``noisy``: their noisy copies.
        adv: ``(m, ...)`` the **successful** adversarial examples (m ≤ n).
        y: ``(n,)`` true labels of ``clean``; ``index``: their positions in the original arrays.
        adv_index: ``(m,)`` positions (in the original arrays) of the sources of ``adv``.
    """

    clean: torch.Tensor
    noisy: torch.Tensor
    adv: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    adv_index: torch.Tensor

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``cat(clean, noisy, adv)`` and labels (0 = clean/noisy, 1 = adversarial)."""
        x = torch.cat([self.clean, self.noisy, self.adv])
        is_adv = torch.cat(
            [
                torch.zeros(2 * len(self.clean), dtype=torch.long),
                torch.ones(len(self.adv), dtype=torch.long),
            ]
        )
        return x, is_adv

    def features(
        self, fx, batch_size: int = 256, keep_images: bool = True
    ) -> tuple[FeatureSet, torch.Tensor]:
        """Detector inputs (one :class:`FeatureSet`) and labels for ``cat(clean, noisy, adv)``."""
        x, is_adv = self.inputs()
        return FeatureSet.from_images(fx, x, batch_size=batch_size, keep_images=keep_images), is_adv

    def with_adv(self, x_adv: torch.Tensor, success: torch.Tensor) -> DetectionSplit:
        """The same negatives with new adversarial examples (e.g. HFC), aligned with ``clean``."""
        if len(x_adv) != len(self.clean) or len(success) != len(self.clean):
            raise ValueError(
                f"x_adv and success must be aligned with the {len(self.clean)} clean images of this split, "
                f"got {len(x_adv)} and {len(success)}."
            )
        ok = success.bool().cpu()
        return DetectionSplit(self.clean, self.noisy, x_adv[ok], self.y, self.index, self.index[ok])


@dataclass
class DetectionData:
    """Detector-training (``train``) and detector-test (``test``) splits."""

    train: DetectionSplit
    test: DetectionSplit


def split_detection_set(
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    success: torch.Tensor,
    x_noisy: torch.Tensor,
    keep: torch.Tensor | None = None,
    train_fraction: float = 0.7,
    shuffle: bool = False,
    seed: int = 0,
) -> DetectionData:
    """Split aligned clean / noisy / adversarial images into detector-train and detector-test parts.

    Args:
        x, y: clean test images and true labels, ``(N, ...)`` and ``(N,)``.
        x_adv, success: adversarial examples of ``x`` and whether each one succeeded ``(N,)``.
        x_noisy: noisy copies of ``x`` (:func:`make_noisy`); must differ from ``x``.
        keep: optional ``(N,)`` mask of the images to use, normally :func:`correct_mask`; when None,
            ``x`` is assumed to hold correctly classified images only.
        train_fraction, shuffle, seed: see :func:`split_indices`.
    """
    n = len(x)
    for name, t in (("y", y), ("x_adv", x_adv), ("success", success), ("x_noisy", x_noisy)):
        if len(t) != n:
            raise ValueError(
                f"{name} has {len(t)} entries but x has {n}; all inputs must be aligned."
            )
    if x_adv.shape != x.shape or x_noisy.shape != x.shape:
        raise ValueError(
            f"x_adv {tuple(x_adv.shape)} and x_noisy {tuple(x_noisy.shape)} must have x's shape {tuple(x.shape)}."
        )
    if torch.equal(x_noisy, x):
        raise ValueError(
            "x_noisy equals x (the official code's bug): build noisy negatives with make_noisy."
        )
    orig = torch.arange(n)
    if keep is not None:
        keep = keep.bool().cpu()
        if len(keep) != n:
            raise ValueError(f"keep has {len(keep)} entries but x has {n}.")
        orig = orig[keep]
    tr, te = split_indices(len(orig), train_fraction, shuffle, seed)
    succ = success.bool().cpu()

    def part(sel: torch.Tensor) -> DetectionSplit:
        idx = orig[sel]
        ok = idx[succ[idx]]
        return DetectionSplit(x[idx], x_noisy[idx], x_adv[ok], y[idx], idx, ok)

    return DetectionData(part(tr), part(te))


__all__ = [
    "DetectionData",
    "DetectionSplit",
    "correct_mask",
    "correct_subset",
    "make_noisy",
    "predict",
    "split_detection_set",
    "split_indices",
    "success_mask",
]
