"""The hierarchical feature constraint (HFC) as an attack loss term.

For every constrained layer ``l`` and the attack's target class ``t`` (Yao et al. MICCAI 2021,
TMI 2023)::

    k*  = argmax_k  log π_k + log N(h_l; μ_k, Σ_k)          (target class's GMM, no gradient)
    J_l = ‖(h_l − μ_{k*}) U_{k*}‖² / C_l                    (= Mahalanobis² / C_l)
    HFC = λ · Σ_l w_l · J_l                                 (the papers)
    HFC = λ · Σ_l w_l · max(0, J_l − τ_{l,t})               (with ``floor``: the book's option)

``h_l (N, C_l)`` is the GAP feature of layer ``l`` from the attack's own forward pass (the
attack runs a :class:`~hfc_edu.features.FeatureExtractor`; there is no second forward), ``U``
the precision-Cholesky factor (``Σ⁻¹ = U Uᵀ``). ``k*`` is picked again at every step. The
algebra (whitening, scores, the choice of ``k*``) is :meth:`TorchGMM.nearest_residual
<hfc_edu.hfc.gmm.TorchGMM.nearest_residual>`. Layers wider than ``max_channels`` (512, as the
official code) are skipped by default.

The floor ``τ_{l,t}`` (:func:`typical_floor`: a quantile of ``J_l`` over clean held-out images
of class ``t``) stops the pull once the features are as typical as clean images of the target
class, instead of driving them to a component mean (over-hiding, chapter 6 of the book).

Compose it with a classification loss::

    loss = CrossEntropy(targeted=True) + HFCLoss(gmms)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from hfc_edu.attacks.losses import Features, Loss
from hfc_edu.hfc.class_gmms import DEFAULT_MAX_CHANNELS, ClassConditionalGMMs
from hfc_edu.hfc.gmm import TorchGMM


def _compute_type(f: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """float64 features stay float64 (gradient checks); anything else is computed in float32."""
    return f.device, (torch.float64 if f.dtype == torch.float64 else torch.float32)


class HFCLoss(Loss):
    """HFC term, per sample ``(N,)``; ``y`` are the attack's TARGET classes.

    Args:
        gmms: the fitted class-conditional GMMs.
        layers: layers to constrain (default: every fitted layer with ``<= max_channels``
            channels).
        max_channels: skip wider layers when ``layers`` is None; explicitly named wider layers
            raise ``ValueError``. None keeps all.
        lam: the global weight λ (official default 1).
        layer_weights: optional extra weight ``w_l`` per layer name (default 1 each).
        floor: optional ``{layer: (num_classes,) tensor}`` of per-class floors ``τ_{l,c}``
            (:func:`typical_floor`); the layer's term becomes ``max(0, J_l − τ_{l,t})``. Every
            constrained layer needs one. None (default): the papers' term.

    The Mahalanobis term is computed in float32 on the features' device (float64 if the
    features are float64, e.g. for gradient checks); the converted mixtures are cached per
    (device, dtype), and ``gmms`` keeps its float64 buffers.

    Bad input gets a ``ValueError`` at the boundary: shapes at every call (no host sync),
    values (target classes in ``[0, C)``, finite features) in :meth:`check`, which an attack
    calls once (not once per step) and :meth:`layer_terms` / :meth:`nearest_components` call
    themselves.
    """

    needs_features = True

    def __init__(
        self,
        gmms: ClassConditionalGMMs,
        layers: Sequence[str] | None = None,
        max_channels: int | None = DEFAULT_MAX_CHANNELS,
        lam: float = 1.0,
        layer_weights: Mapping[str, float] | None = None,
        floor: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(gmms, ClassConditionalGMMs):
            raise TypeError(
                f"gmms must be a ClassConditionalGMMs (from hfc_edu.hfc.fit_class_gmms), got "
                f"{type(gmms).__name__}."
            )
        if isinstance(layers, str):
            raise TypeError("layers must be a list of layer names, not a string.")
        if layers is None:
            chosen = [
                n
                for n in gmms.layer_names
                if max_channels is None or gmms.channels[n] <= max_channels
            ]
            if not chosen:
                raise ValueError(f"No fitted layer has <= max_channels={max_channels} channels.")
        else:
            chosen = list(layers)
            if not chosen:
                raise ValueError("layers is empty: name at least one layer to constrain.")
            gmms.check_layers(chosen)
            wide = [
                n for n in chosen if max_channels is not None and gmms.channels[n] > max_channels
            ]
            if wide:
                raise ValueError(
                    f"Layer(s) {wide} have more than max_channels={max_channels} channels; "
                    "leave them out or pass max_channels=None."
                )
        lam = float(lam)
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        layer_weights = dict(layer_weights or {})
        unknown = [n for n in layer_weights if n not in chosen]
        if unknown:
            raise ValueError(
                f"layer_weights names layer(s) {unknown} that are not constrained: {chosen}."
            )
        self.floor = None if floor is None else _check_floor(floor, chosen, gmms.num_classes)
        self.gmms = gmms
        self.layers: list[str] = chosen
        self.lam = lam
        #: the factor in front of J_l (already divided by C_l) per layer: λ · w_l.
        self.weights: dict[str, float] = {n: lam * float(layer_weights.get(n, 1.0)) for n in chosen}
        self._converted: dict[tuple[str, torch.device, torch.dtype], TorchGMM] = {}

    def __repr__(self) -> str:
        floor = ", floor" if self.floor is not None else ""
        return (
            f"HFCLoss(layers={len(self.layers)}, K={self.gmms.n_components}, lam={self.lam:g}"
            f"{floor})"
        )

    def mixture(self, name: str, device: torch.device, dtype: torch.dtype) -> TorchGMM:
        """Layer ``name``'s class-stacked :class:`TorchGMM` on ``device``/``dtype`` (cached)."""
        key = (name, torch.device(device), dtype)
        if key not in self._converted:
            self._converted[key] = copy.deepcopy(self.gmms.layer(name)).to(device, dtype)
        return self._converted[key]

    def _check_shapes(self, y: torch.Tensor, features: Features) -> None:
        missing = [n for n in self.layers if n not in features]
        if missing:
            raise ValueError(
                f"HFCLoss constrains layer(s) {missing}, which the attack's features do not "
                f"contain ({list(features)}). Attack with FeatureExtractor(model, layers=gmms.layer_names)."
            )
        if not isinstance(y, torch.Tensor) or y.ndim != 1:
            raise ValueError("y (the target classes) must be a 1-D tensor of class indices.")
        for n in self.layers:
            f = features[n]
            if f.ndim != 2 or f.shape[1] != self.gmms.channels[n] or f.shape[0] != y.shape[0]:
                raise ValueError(
                    f"Features of layer {n!r} must be GAP features (N={y.shape[0]}, "
                    f"{self.gmms.channels[n]}), got {tuple(f.shape)}; the GMMs belong to another "
                    "model or the FeatureExtractor does not pool (use pool='gap')."
                )

    def check(self, logits: torch.Tensor | None, y: torch.Tensor, features: Features) -> None:
        """Shapes, target classes in ``[0, C)`` and finite features (one host sync)."""
        self._check_shapes(y, features)
        c = self.gmms.num_classes
        y = y.detach()
        flags = [((y < 0) | (y >= c)).any()]
        flags += [(~torch.isfinite(features[n].detach())).any().to(y.device) for n in self.layers]
        bad = torch.stack(flags).tolist()
        if bad[0]:
            raise ValueError(
                f"Target class(es) outside [0, {c}): the GMMs cover {c} classes (min target "
                f"{int(y.min())}, max {int(y.max())}); HFC needs the GMMs of every target class."
            )
        nonfinite = [n for n, b in zip(self.layers, bad[1:], strict=True) if b]
        if nonfinite:
            raise ValueError(
                f"The features of layer(s) {nonfinite} contain NaN or inf values: the model "
                "produced them for these images (check the input and the model's weights)."
            )

    @torch.no_grad()
    def nearest_components(self, y: torch.Tensor, features: Features) -> dict[str, torch.Tensor]:
        """``k*`` per layer ``(N,)``: the most likely component of the target class's GMM."""
        y = y.long()
        self.check(None, y, features)
        dev, dt = _compute_type(features[self.layers[0]])
        return {
            n: self.mixture(n, dev, dt).nearest_residual(features[n].to(dt), y)[1]
            for n in self.layers
        }

    def layer_terms(self, y: torch.Tensor, features: Features) -> dict[str, torch.Tensor]:
        """Unweighted ``J_l = ‖(h_l − μ_{k*}) U_{k*}‖² / C_l`` per layer, each ``(N,)``."""
        y = y.long()
        self.check(None, y, features)
        return self._layer_terms(y, features)

    def _layer_terms(self, y: torch.Tensor, features: Features) -> dict[str, torch.Tensor]:
        dev, dt = _compute_type(features[self.layers[0]])
        out = {}
        for n in self.layers:
            r, _ = self.mixture(n, dev, dt).nearest_residual(features[n].to(dt), y)
            out[n] = r.square().sum(1) / self.gmms.channels[n]
        return out

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, features: Features) -> torch.Tensor:
        y = y.long()
        self._check_shapes(y, features)  # values: check(), once per attack
        terms = self._layer_terms(y, features)
        if self.floor is not None:
            terms = {
                n: (t - self.floor[n].to(t.device, t.dtype)[y]).clamp_min(0)
                for n, t in terms.items()
            }
        return sum(self.weights[n] * t for n, t in terms.items())


def _check_floor(
    floor: Mapping[str, torch.Tensor], layers: Sequence[str], num_classes: int
) -> dict[str, torch.Tensor]:
    if not isinstance(floor, Mapping):
        raise TypeError("floor must be a dict {layer: (num_classes,) tensor} (typical_floor).")
    missing = [n for n in layers if n not in floor]
    extra = [n for n in floor if n not in layers]
    if missing or extra:
        raise ValueError(
            f"floor must name exactly the constrained layers {list(layers)}; missing {missing}, "
            f"not constrained {extra}."
        )
    out = {}
    for n in layers:
        t = torch.as_tensor(floor[n], dtype=torch.float64).detach().cpu()
        if t.shape != (num_classes,) or not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(
                f"floor[{n!r}] must be {num_classes} finite values >= 0 (one per class), got "
                f"{t.tolist() if t.numel() <= 10 else tuple(t.shape)}."
            )
        out[n] = t
    return out


@torch.no_grad()
def typical_floor(
    term: HFCLoss, features: Features, y: torch.Tensor, q: float = 0.5
) -> dict[str, torch.Tensor]:
    """Per layer and class, the ``q``-quantile of ``J_l`` of clean images under their own class.

    Args:
        term: the :class:`HFCLoss` whose layers and mixtures are used.
        features: GAP features ``{layer: (N, C_l)}`` of clean images the mixtures were NOT
            fitted on (e.g. the validation split): in-sample distances are too small.
        y: ``(N,)`` their true classes; every class needs at least 5 images.
        q: the quantile (0.5: the median clean image of the class).

    Returns ``{layer: (num_classes,) float64}``, for ``HFCLoss(..., floor=...)``.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}.")
    y = torch.as_tensor(y).long().cpu()
    c = term.gmms.num_classes
    counts = torch.bincount(y, minlength=c)
    if len(counts) > c or bool((counts < 5).any()):
        raise ValueError(
            f"typical_floor needs at least 5 clean images of each of the {c} classes; got counts "
            f"{counts.tolist()}."
        )
    terms = term.layer_terms(y, {n: features[n].detach().cpu() for n in term.layers})
    return {
        n: torch.stack([t[y == k].double().quantile(q) for k in range(c)]) for n, t in terms.items()
    }


__all__ = ["HFCLoss", "typical_floor"]
