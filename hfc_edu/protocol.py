"""The detection protocol of the HFC paper (and Ma et al.), with the official code's bugs fixed.

1. Keep the test images the classifier gets right (:func:`correct_mask`, :func:`correct_subset`).
2. Split them 70/30 into detector-training and detector-test parts, in order (the official code) or
   seeded-shuffled (:func:`split_indices`).
3. Negatives are the clean images **and genuinely noisy copies** (:func:`make_noisy`; the official
   code's "noise" images equal the clean ones). Positives are the **successful** adversarial
   examples only.

:func:`split_detection_set` does 2–3 on **indices**: it returns :class:`DetectionSplits`, two
:class:`DetectionSplit` s of positions into the attacked images, and
``split.gather(clean, noisy, adv)`` picks the rows of one part from any aligned images or
features (tensors or :class:`~hfc_edu.detectors.FeatureSet` s), with their ``is_adv`` labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

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


def per_class_subset(y: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Positions of up to ``n`` seeded random rows of every class of ``y`` (classes in order).

    One generator seeded with ``seed`` draws a permutation per class, in class order; a class
    with fewer than ``n`` rows gives all of them (e.g. the images that fit HFC's mixtures).
    """
    y = torch.as_tensor(y).cpu().reshape(-1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if y.numel() == 0:
        raise ValueError("y is empty.")
    g = torch.Generator().manual_seed(seed)
    parts = []
    for c in range(int(y.max()) + 1):
        idx = torch.nonzero(y == c).flatten()
        parts.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(parts)


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


Rows = TypeVar("Rows", torch.Tensor, FeatureSet)


def _take(rows: Rows, index: torch.Tensor) -> Rows:
    return rows.subset(index) if isinstance(rows, FeatureSet) else rows[index]


@dataclass(frozen=True)
class DetectionSplit:
    """One part (detector-train or detector-test) of the detection set, as positions.

    Attributes:
        index: ``(n,)`` positions of its clean images (correctly classified) in the attacked
            images; they and their noisy copies are the negatives.
        adv_index: ``(m,)`` the positions among ``index`` whose attack succeeded: the sources of
            the positives (m ≤ n).
    """

    index: torch.Tensor
    adv_index: torch.Tensor

    @property
    def n_neg(self) -> int:
        """Negatives: the clean images and their noisy copies."""
        return 2 * len(self.index)

    @property
    def n_pos(self) -> int:
        """Positives: the successful adversarial examples."""
        return len(self.adv_index)

    def is_adv(self) -> torch.Tensor:
        """``(n_neg + n_pos,)`` int64 labels of :meth:`gather`'s rows: 0 clean or noisy, 1 adversarial."""
        return torch.cat(
            [torch.zeros(self.n_neg, dtype=torch.long), torch.ones(self.n_pos, dtype=torch.long)]
        )

    def gather(self, clean: Rows, noisy: Rows, adv: Rows) -> tuple[Rows, torch.Tensor]:
        """``cat(clean[index], noisy[index], adv[adv_index])`` and :meth:`is_adv`.

        ``clean``, ``noisy`` and ``adv`` are aligned with the attacked images (row i of each
        belongs to image i): image tensors ``(N, ...)`` or :class:`~hfc_edu.detectors.FeatureSet` s.
        """
        parts = [_take(clean, self.index), _take(noisy, self.index), _take(adv, self.adv_index)]
        rows = FeatureSet.concat(parts) if isinstance(clean, FeatureSet) else torch.cat(parts)
        return rows, self.is_adv()

    def with_success(self, success: torch.Tensor) -> DetectionSplit:
        """The same negatives with the positives of another attack on the same images:
        ``success`` is ``(n,)`` bool, aligned with :attr:`index`."""
        ok = torch.as_tensor(success).bool().cpu().reshape(-1)
        if len(ok) != len(self.index):
            raise ValueError(
                f"success must be aligned with the {len(self.index)} images of this split, "
                f"got {len(ok)} entries."
            )
        return DetectionSplit(self.index, self.index[ok])


@dataclass(frozen=True)
class DetectionSplits:
    """Detector-training (``train``) and detector-test (``test``) parts."""

    train: DetectionSplit
    test: DetectionSplit


def split_detection_set(
    success: torch.Tensor,
    keep: torch.Tensor | None = None,
    train_fraction: float = 0.7,
    shuffle: bool = False,
    seed: int = 0,
) -> DetectionSplits:
    """Split N attacked images into detector-train and detector-test parts, by position.

    Args:
        success: ``(N,)`` bool, whether the attack on each image succeeded (only successful
            adversarial examples become positives).
        keep: optional ``(N,)`` mask of the images to use, normally :func:`correct_mask`; when
            None, all N are assumed correctly classified.
        train_fraction, shuffle, seed: see :func:`split_indices`.
    """
    succ = torch.as_tensor(success).bool().cpu().reshape(-1)
    n = len(succ)
    orig = torch.arange(n)
    if keep is not None:
        keep = torch.as_tensor(keep).bool().cpu().reshape(-1)
        if len(keep) != n:
            raise ValueError(f"keep has {len(keep)} entries but success has {n}; align them.")
        orig = orig[keep]
    tr, te = split_indices(len(orig), train_fraction, shuffle, seed)

    def part(sel: torch.Tensor) -> DetectionSplit:
        idx = orig[sel]
        return DetectionSplit(idx, idx[succ[idx]])

    return DetectionSplits(part(tr), part(te))


__all__ = [
    "DetectionSplit",
    "DetectionSplits",
    "correct_mask",
    "correct_subset",
    "make_noisy",
    "per_class_subset",
    "predict",
    "split_detection_set",
    "split_indices",
]
