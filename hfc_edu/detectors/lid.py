"""Local intrinsic dimensionality (LID, Ma et al. 2018), maximum-likelihood estimate.

With ``r_1 ≤ … ≤ r_k`` the distances from a query to its k nearest neighbours in a reference
mini-batch of clean features,

    LID(x) = −( (1/k) Σ_{i=1..k} log(r_i / r_k) )⁻¹.

Adversarial features leave the clean manifold, so their neighbourhood looks higher-dimensional.
The reference code drops the nearest neighbour of every query (``[:, 1:k+1]``), which removes the
query itself when it belongs to the reference batch (clean queries) but a genuine neighbour
otherwise (noisy and adversarial queries); ``skip_nearest=True`` reproduces that. With
``skip_nearest=False`` only reference points *identical* to the query (the query itself) are
dropped, so every query's k neighbours are genuine.

Precision: distances come from one matrix product, ``‖q‖² + ‖r‖² − 2 q·r``, on features centred
on the reference mean. Its rounding error is about ``eps · (‖q‖² + ‖r‖²)``, harmless when the
neighbours are not much closer than the spread of the data (high-dimensional features) but not
when they are (densely sampled low-dimensional data). ``dtype="auto"`` computes in float32 and
recomputes in float64 every chunk where a selected squared distance is below
``1e4 · 32 · eps₃₂ · (‖q‖² + max ‖r‖²)``, so that no selected distance carries more than ~1e-4
relative error.

Degenerate neighbourhoods: when a query's k neighbours all lie at the same distance (duplicated
reference points, or a collapsed layer whose features are all alike), every ``log(r_i / r_k)``
is 0 and the estimate is infinite. Such queries (mean log ratio within ``1e3 · eps`` of 0, after
a float64 recomputation in ``"auto"`` mode) raise a ``ValueError`` that says so, instead of
returning −∞ or ~1e15.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hfc_edu.detectors.base import Detector, FeatureSet, as_feature_set

_F32_GUARD = 1e4 * 32 * torch.finfo(torch.float32).eps  # ≈ 0.04, see the module docstring
_DEGENERATE = 1e3  # mean log ratio within _DEGENERATE · eps of 0: all k neighbours equidistant


def _k_smallest(d2: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` smallest entries along the last axis, unordered except that the last one is the
    largest of them. On CPU ``np.partition`` (introselect) is ~10x faster than ``torch.topk``."""
    if d2.device.type == "cpu":
        part = np.partition(d2.numpy(), n - 1, axis=-1)
        return torch.from_numpy(np.ascontiguousarray(part[..., :n]))
    return torch.topk(d2, n, dim=-1, largest=False, sorted=True).values


def _lid_chunks(
    q: torch.Tensor, r: torch.Tensor, rn: torch.Tensor, k: int, skip_nearest: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LID of centred queries ``q`` (..., N, D) against centred references ``r`` (..., M, D),
    ``rn = ‖r‖²`` (..., M). Returns float64 LID (..., N), a bool "float32-imprecise" flag
    (..., N) and a bool "equidistant neighbours" flag (..., N)."""
    qn = (q * q).sum(-1, keepdim=True)
    d2 = (
        torch.matmul(q, r.transpose(-1, -2))
        .mul_(-2.0)
        .add_(rn.unsqueeze(-2))
        .add_(qn)
        .clamp_min_(0.0)
    )
    if not skip_nearest:  # drop duplicates of the query (rounding-level distances)
        dup = 64.0 * torch.finfo(d2.dtype).eps
        d2.masked_fill_(d2 <= dup * (qn + rn.unsqueeze(-2)), float("inf"))
    vals = _k_smallest(d2, k + int(skip_nearest)).double()  # last = d2 of the k-th used neighbour
    if torch.isinf(vals[..., -1]).any():
        raise ValueError(
            f"Fewer than k={k} reference points differ from the query; lower k or enlarge the reference."
        )
    # (1/k) Σ log(r_i/r_k) = ½ [(1/k) Σ_i log d2_i − log d2_k], over the k neighbours used.
    log_vals = vals.log()
    if skip_nearest:  # drop the nearest (its distance may be 0: mask it, do not subtract its log)
        keep = torch.ones_like(vals, dtype=torch.bool).scatter_(
            -1, vals.argmin(-1, keepdim=True), False
        )
        sum_log = torch.where(keep, log_vals, 0.0).sum(-1)
        nearest_used = torch.where(keep, vals, float("inf")).min(-1).values
    else:
        sum_log = log_vals.sum(-1)
        nearest_used = vals.min(-1).values
    mean_log_ratio = 0.5 * (sum_log / k - log_vals[..., -1])  # (1/k) Σ log(r_i/r_k) <= 0
    degenerate = mean_log_ratio > -_DEGENERATE * torch.finfo(d2.dtype).eps
    lid = -1.0 / mean_log_ratio
    scale = qn.squeeze(-1).double() + rn.max(-1, keepdim=True).values.double()
    return lid, nearest_used < _F32_GUARD * scale, degenerate


def _raise_equidistant(n_bad: int, k: int, where: str = "") -> None:
    raise ValueError(
        f"{n_bad} query(ies){where} have k={k} nearest reference points that are all equidistant "
        "(distance ratios 1 up to rounding), so the LID estimate −(mean log(r_i/r_k))⁻¹ is "
        "infinite. This happens with duplicated reference points or collapsed features (e.g. a "
        "layer whose features are all alike): use a reference of distinct points or drop that layer."
    )


def _check_k(k: int, m: int) -> None:
    if not 1 <= k <= m - 1:
        raise ValueError(
            f"k={k} needs at least k+1={k + 1} reference points, got {m} (the query itself or the "
            "skipped nearest neighbour does not count). Lower k or enlarge the reference batch."
        )


def lid_mle(
    query: torch.Tensor,
    reference: torch.Tensor,
    k: int = 20,
    skip_nearest: bool = False,
    dtype: torch.dtype | str = "auto",
) -> torch.Tensor:
    """MLE of the LID of each query against a reference set, batched.

    Args:
        query: ``(..., N, D)`` query features.
        reference: ``(..., M, D)`` reference features (same leading batch dimensions).
        k: number of neighbours.
        skip_nearest: drop the nearest reference point of every query first (the reference code).
            Otherwise only duplicates of the query (distance 0 up to rounding) are dropped.
        dtype: ``torch.float32``, ``torch.float64`` or ``"auto"`` (float32 with float64 where
            needed, see the module docstring).

    Returns: ``(..., N)`` LID estimates (float64).
    """
    if query.shape[-1] != reference.shape[-1]:
        raise ValueError(
            f"Query and reference dimensions differ: {query.shape[-1]} vs {reference.shape[-1]}."
        )
    _check_k(k, reference.shape[-2])
    r64 = reference.to(torch.float64)
    mu = r64.mean(-2, keepdim=True)
    q64, r64 = query.to(torch.float64) - mu, r64 - mu
    first = torch.float32 if dtype == "auto" else dtype
    q, r = q64.to(first), r64.to(first)
    lid, imprecise, degenerate = _lid_chunks(q, r, (r * r).sum(-1), k, skip_nearest)
    if dtype == "auto" and (imprecise | degenerate).any():
        lid, _, degenerate = _lid_chunks(q64, r64, (r64 * r64).sum(-1), k, skip_nearest)
    if degenerate.any():
        _raise_equidistant(int(degenerate.sum()), k)
    return lid


class LID(Detector):
    """Per-layer LID against random mini-batches of clean reference features.

    Args:
        k: neighbours (20 in the papers; capped by ``batch_size − 1``).
        batch_size: queries are scored in chunks of ``batch_size``, each against its own random
            reference mini-batch of ``batch_size`` clean features (100 in Ma et al.).
        skip_nearest: see the module docstring (True = the reference code's quirk).
        layers: layer name(s), ``"all"`` or None (= all layers).
        dtype: ``"auto"``, ``torch.float32`` or ``torch.float64`` (see the module docstring).
        seed: seeds the reference mini-batches (chunk i always uses the same draw).
        fixed_reference: keep only the first ``batch_size`` fitted rows and score **every** query
            against that one batch (the detection pipeline's choice, as the official code's
            detector training: with a random batch per chunk, clean, noisy and adversarial
            queries, which sit in different chunks, would meet different references, a batch
            effect confounded with the label).

    ``fit(data)``: stores clean reference features (the pipeline: clean features of the
    classifier's training images). ``score_layers(data)``: ``(N, L)`` LID per layer;
    ``score(data)``: the last layer's LID. Use ``ScoreLR(LID(...))`` for the papers'
    logistic-regression detector over all layers.
    """

    fit_on = "clean"

    def __init__(
        self,
        k: int = 20,
        batch_size: int = 100,
        skip_nearest: bool = False,
        layers: str | Sequence[str] | None = None,
        dtype: torch.dtype | str = "auto",
        seed: int = 0,
        fixed_reference: bool = False,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}.")
        if dtype not in ("auto", torch.float32, torch.float64):
            raise ValueError(
                f"dtype must be 'auto', torch.float32 or torch.float64, got {dtype!r}."
            )
        self.k = k
        self.batch_size = batch_size
        self.skip_nearest = skip_nearest
        self.layers = layers
        self.dtype = dtype
        self.seed = seed
        self.fixed_reference = fixed_reference

    def fit(self, data: FeatureSet | dict, y=None) -> LID:
        """Store clean reference features ``data`` (``y`` is ignored)."""
        data = as_feature_set(data)
        if self.fixed_reference:
            data = data.subset(torch.arange(min(self.batch_size, len(data))))
        feats = self._fit_layout(data, self._select_layers(data, self.layers, "all"))
        m = len(data)
        if m < self.k + 1:
            raise ValueError(
                f"LID with k={self.k} needs at least {self.k + 1} reference samples, got {m}."
            )
        self.k_ = min(self.k, min(self.batch_size, m) - 1)
        # Centre once on the reference mean (distances unchanged, less cancellation).
        self.mean_ = {n: t.to(torch.float64).mean(0) for n, t in feats.items()}
        self.reference_ = {n: t.to(torch.float64) - self.mean_[n] for n, t in feats.items()}
        self.reference32_ = {n: r.float() for n, r in self.reference_.items()}
        return self

    def _reference_indices(self, n_chunks: int) -> torch.Tensor:
        """``(n_chunks, b)`` indices of the reference mini-batch of every query chunk: consecutive
        blocks of seeded random permutations of the reference set (disjoint within a permutation)."""
        m = next(iter(self.reference_.values())).shape[0]
        b = min(self.batch_size, m)
        per_perm = m // b
        g = torch.Generator().manual_seed(self.seed)
        n_perm = -(-n_chunks // per_perm)
        blocks = [
            torch.randperm(m, generator=g)[: per_perm * b].reshape(per_perm, b)
            for _ in range(n_perm)
        ]
        return torch.cat(blocks)[:n_chunks]

    def _layer_lid(self, name: str, t: torch.Tensor, ref_idx: torch.Tensor) -> torch.Tensor:
        """LID of queries ``t`` (N, D) for one layer; chunk i uses reference rows ``ref_idx[i]``."""
        n, bs = t.shape[0], self.batch_size
        n_chunks = ref_idx.shape[0]
        first = torch.float32 if self.dtype == "auto" else self.dtype
        ref = self.reference32_[name] if first == torch.float32 else self.reference_[name]

        def chunked(
            q: torch.Tensor,
        ) -> torch.Tensor:  # (N, D) -> (n_chunks, bs, D), last chunk padded
            pad = n_chunks * bs - n
            if pad:
                q = torch.cat([q, q[-1:].expand(pad, -1)])
            return q.reshape(n_chunks, bs, -1)

        mean = self.mean_[name]
        q = chunked(t.to(first) - mean.to(first))
        r = ref[ref_idx]  # (n_chunks, b, D)
        lid, imprecise, degenerate = _lid_chunks(q, r, (r * r).sum(-1), self.k_, self.skip_nearest)
        if self.dtype == "auto":
            redo = (imprecise | degenerate).any(1).nonzero().flatten()
            if len(redo):  # recompute those chunks in float64
                q64 = chunked(t.to(torch.float64) - mean)[redo]
                r64 = self.reference_[name][ref_idx[redo]]
                lid[redo], _, degenerate[redo] = _lid_chunks(
                    q64, r64, (r64 * r64).sum(-1), self.k_, self.skip_nearest
                )
        bad = degenerate.flatten()[:n]
        if bad.any():
            _raise_equidistant(int(bad.sum()), self.k_, f" at layer {name!r}")
        return lid.flatten()[:n]

    def score_layers(self, data: FeatureSet | dict) -> np.ndarray:
        data = as_feature_set(data)
        feats = self._score_layout(data)
        ref_idx = self._reference_indices(-(-len(data) // self.batch_size))
        cols = [self._layer_lid(name, t, ref_idx) for name, t in feats.items()]
        return torch.stack(cols, 1).numpy()

    def score(self, data: FeatureSet | dict) -> np.ndarray:
        return self.score_layers(data)[:, -1]


__all__ = ["LID", "lid_mle"]
