"""What detectors read (:class:`FeatureSet`) and what they have in common (:class:`Detector`).

The contract every detector follows, in one place:

* **Sign convention: higher score = more adversarial.** ``score(data)`` returns a NumPy array
  ``(N,)``; every metric (:mod:`hfc_edu.metrics`: AUC, TPR at a TNR) and every table reads
  scores this way, with no sign flipping anywhere. Density detectors therefore score *low*
  density or *high* distance: KD −log density, MAHA half the squared Mahalanobis distance to the
  closest class mean, LID the local intrinsic dimensionality, BU the MC-dropout variance;
  supervised detectors their log-odds, margin or probability of "adversarial".
* ``fit(data, y)`` returns ``self``, and :attr:`Detector.fit_on` says what it learns from — the
  two stages of the detection protocol of Ma et al. (ICLR 2018) and Yao et al. (2021):

  - ``fit_on = "clean"`` (KD, MAHA's class Gaussians, LID's reference): ``y`` = class labels of
    clean features of the classifier's **training** images; fitted once and shared by every
    attack;
  - ``fit_on = "is_adv"`` (:class:`~hfc_edu.detectors.ScoreLR`, DFeat, QFeat, SVM, DNN):
    ``y`` = ``is_adv`` (1 adversarial, 0 clean or noisy) of the detector-training split of one
    attack; fitted per attack. A detector built on others (ScoreLR over KD, MAHA, LID) lists the
    parts to fit on clean features in :meth:`Detector.clean_parts`;
  - ``fit_on = None`` (BU): nothing to learn.

  :func:`~hfc_edu.experiments.detection.run_detection` reads only these two attributes: it
  fits every unfitted clean part once, then a copy of every ``"is_adv"`` detector per attack
  (``fit`` assigns its fitted attributes anew, as scikit-learn estimators do, so a shallow copy
  shares the clean parts and nothing else).
* Layer-wise detectors also have ``score_layers(data)`` ``(N, L)``, one column per layer, which
  :class:`~hfc_edu.detectors.ScoreLR` combines by logistic regression.
* Scalers and quantisers are fitted on training data only.

``data`` is a :class:`FeatureSet` (pooled features per layer, predictions, optionally the images)
or simply a dict ``{layer: (N, C)}`` for detectors that need nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _to_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    if isinstance(a, torch.Tensor):
        return a
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(a).__name__}.")


@dataclass
class FeatureSet:
    """Inputs of the detectors for N images.

    Attributes:
        feats: ordered dict ``{layer: (N, C_l)}`` of pooled features, shallow to deep (the order of
            :class:`~hfc_edu.features.FeatureExtractor`); the last entry is the penultimate layer.
        pred: ``(N,)`` predicted labels; filled from ``logits`` when not given.
        logits: ``(N, K)`` classifier outputs, optional.
        x: the images ``(N, C, H, W)`` or ``(N, C, D, H, W)``, needed only by BU, MAHA's input
            pre-processing and the DNN detector.
    """

    feats: dict[str, torch.Tensor]
    pred: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    x: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.feats, Mapping) or not self.feats:
            raise ValueError("feats must be a non-empty dict {layer name: (N, C) features}.")
        self.feats = {
            str(k): _to_tensor(v, f"feats[{k!r}]").detach() for k, v in self.feats.items()
        }
        if self.logits is not None:
            self.logits = _to_tensor(self.logits, "logits").detach()
            if self.pred is None:
                self.pred = self.logits.argmax(1)
        if self.pred is not None:
            self.pred = _to_tensor(self.pred, "pred").detach().long().reshape(-1)
        if self.x is not None:
            self.x = _to_tensor(self.x, "x").detach()
        n = {k: int(v.shape[0]) for k, v in self.feats.items()}
        for name, t in (("pred", self.pred), ("logits", self.logits), ("x", self.x)):
            if t is not None:
                n[name] = int(t.shape[0])
        if len(set(n.values())) != 1:
            raise ValueError(f"All parts of a FeatureSet need the same number of samples, got {n}.")

    def __len__(self) -> int:
        return int(next(iter(self.feats.values())).shape[0])

    @property
    def layers(self) -> list[str]:
        return list(self.feats)

    def subset(self, index: ArrayLike) -> FeatureSet:
        """Rows ``index`` (integer indices or a boolean mask) of every part."""
        idx = _to_tensor(index, "index")
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.long()
        take = lambda t: None if t is None else t[idx]  # noqa: E731
        return FeatureSet(
            {k: v[idx] for k, v in self.feats.items()},
            take(self.pred),
            take(self.logits),
            take(self.x),
        )

    @staticmethod
    def concat(sets: Sequence[FeatureSet]) -> FeatureSet:
        """Stack feature sets with the same layers (row order kept)."""
        if not sets:
            raise ValueError("concat needs at least one FeatureSet.")
        layers = sets[0].layers
        for s in sets[1:]:
            if s.layers != layers:
                raise ValueError(
                    f"Cannot concatenate FeatureSets with layers {layers} and {s.layers}."
                )

        def cat(attr: str) -> torch.Tensor | None:
            parts = [getattr(s, attr) for s in sets]
            if any(p is None for p in parts):
                return None
            return torch.cat(parts)

        feats = {k: torch.cat([s.feats[k] for s in sets]) for k in layers}
        return FeatureSet(feats, cat("pred"), cat("logits"), cat("x"))

    @classmethod
    def from_images(
        cls, fx, x: torch.Tensor, batch_size: int = 256, keep_images: bool = True
    ) -> FeatureSet:
        """Features, logits and predictions of images ``x`` through a FeatureExtractor ``fx``
        (one forward pass per mini-batch, on CPU, without gradients)."""
        logits, feats = fx.extract(x, batch_size=batch_size)
        return cls(feats, logits=logits, x=x.detach().cpu() if keep_images else None)


def as_feature_set(data: FeatureSet | Mapping[str, ArrayLike]) -> FeatureSet:
    """Accept a FeatureSet or a bare ``{layer: (N, C)}`` dict."""
    if isinstance(data, FeatureSet):
        return data
    if isinstance(data, Mapping):
        return FeatureSet(dict(data))
    raise TypeError(
        f"Expected a FeatureSet or a dict {{layer: (N, C) features}}, got {type(data).__name__}."
    )


def check_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point() and torch.isfinite(t.sum()):  # fast path: a sum of finite numbers
        return  # is finite unless it overflows, and then the exact check below runs
    if not torch.isfinite(t).all():
        bad = (
            int((~torch.isfinite(t)).any(dim=-1).sum())
            if t.ndim > 1
            else int((~torch.isfinite(t)).sum())
        )
        raise ValueError(
            f"{what} contains NaN or infinite values ({bad} sample(s)); remove or repair those samples first."
        )


class Detector:
    """Base class: the fit contract (module docstring), sklearn-like ``get_params``, fitted-state
    and feature-layout checks. Higher score = more adversarial."""

    #: what ``fit`` learns from: ``"clean"`` (clean training features and class labels, once),
    #: ``"is_adv"`` (detector-training data of one attack) or None (nothing)
    fit_on: str | None = "is_adv"

    #: set by ``fit``: layer name -> feature dimension seen at fit time
    dims_: dict[str, int] | None = None

    def clean_parts(self) -> list[Detector]:
        """The detectors (this one, or parts of it) to fit on clean training features."""
        return [self] if self.fit_on == "clean" else []

    def get_params(self, deep: bool = False) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, torch.nn.Module)
        )
        return f"{type(self).__name__}({args})"

    @property
    def is_fitted(self) -> bool:
        return self.dims_ is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted yet: call fit(...) before score(...)."
            )

    def _select_layers(
        self, data: FeatureSet, layers: str | Sequence[str] | None, default: str
    ) -> list[str]:
        """Resolve ``layers``: a name, a list, ``"all"``, or None (= ``default``: "last" or "all")."""
        available = data.layers
        if layers is None:
            layers = default
        if layers == "all":
            return available
        if layers == "last":
            return [available[-1]]
        names = [layers] if isinstance(layers, str) else list(layers)
        unknown = [n for n in names if n not in data.feats]
        if unknown:
            raise ValueError(f"Unknown layer(s) {unknown}; the features have layers {available}.")
        if not names:
            raise ValueError("layers must name at least one layer.")
        return names

    def _fit_layout(self, data: FeatureSet, layers: list[str]) -> dict[str, torch.Tensor]:
        """Check the chosen features at fit time and remember their names and sizes."""
        out = {}
        for name in layers:
            t = data.feats[name]
            if t.ndim != 2:
                raise ValueError(
                    f"Layer {name!r} has shape {tuple(t.shape)}; detectors expect pooled features (N, C). "
                    "Use FeatureExtractor(..., pool='gap')."
                )
            check_finite(t, f"Features of layer {name!r}")
            out[name] = t
        self.dims_ = {n: int(t.shape[1]) for n, t in out.items()}
        return out

    def _score_layout(self, data: FeatureSet) -> dict[str, torch.Tensor]:
        """The fitted layers of ``data``, checked against the fit-time layout."""
        self._check_fitted()
        assert self.dims_ is not None
        missing = [n for n in self.dims_ if n not in data.feats]
        if missing:
            raise ValueError(
                f"{type(self).__name__} was fitted on layers {list(self.dims_)}, but the features to score "
                f"lack {missing} (they have {data.layers})."
            )
        out = {}
        for name, dim in self.dims_.items():
            t = data.feats[name]
            if t.ndim != 2 or t.shape[1] != dim:
                raise ValueError(
                    f"Layer {name!r}: fitted on {dim} features per sample, got shape {tuple(t.shape)}. "
                    "Score with features from the same model and layers as at fit time."
                )
            check_finite(t, f"Features of layer {name!r}")
            out[name] = t
        return out

    # Subclasses implement fit and score.
    def fit(self, data, y=None):  # pragma: no cover - interface
        raise NotImplementedError

    def score(self, data) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


__all__ = ["ArrayLike", "Detector", "FeatureSet", "as_feature_set", "check_finite"]
