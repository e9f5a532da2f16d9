"""Chapter 4 experiments: two views of how vulnerable a classifier and its deep features are.

* Ma et al.'s view, :func:`vulnerability_suite`: accuracy (and attack success on the correctly
  classified images) of untargeted L∞ PGD against the budget ε, through
  :func:`hfc_edu.experiments.robustness.accuracy_vs_eps`.
* Yao et al.'s stress test, :func:`feature_stress_test`: PGD with the same budgets on the mean
  activation of one layer, ``±mean_c GAP(h_l(x'))_c``, instead of a classification loss; the
  move is reported in units of the clean features' spread, ``|Δh| / std_ref(h)``.

:func:`vulnerability_suite` and :func:`stress_suite` run both on several trained models (anything
with ``.model`` and ``.data``, e.g. :class:`~hfc_edu.models.TrainedModel`) on a seeded sample of
test images (:func:`~hfc_edu.protocol.correct_subset` for the stress test), and
:func:`stress_summary` condenses the stress table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import Loss, sweep
from hfc_edu.checks import check_eps_list, check_images
from hfc_edu.experiments.robustness import accuracy_vs_eps
from hfc_edu.features import FeatureExtractor
from hfc_edu.protocol import correct_subset

log = logging.getLogger(__name__)

__all__ = [
    "MeanActivation",
    "feature_stress_test",
    "stress_suite",
    "stress_summary",
    "vulnerability_suite",
]

DIRECTIONS = ("up", "down")


class MeanActivation(Loss):
    """Attack loss on one layer's mean activation: minimising it pushes ``mean_c h_l`` up
    (``direction="up"``, the loss is ``−mean``) or down (``"down"``, the loss is ``+mean``).

    ``features[layer]`` must be the GAP feature ``(N, C_l)``; returns ``(N,)``.
    """

    needs_features = True

    def __init__(self, layer: str, direction: str = "up") -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}.")
        self.layer, self.direction = layer, direction

    def __call__(self, logits, y, features):
        if self.layer not in features:
            raise ValueError(
                f"Layer {self.layer!r} is not among the extracted features {list(features)}."
            )
        m = features[self.layer].float().mean(1)
        return -m if self.direction == "up" else m

    def __repr__(self) -> str:
        return f"MeanActivation({self.layer!r}, {self.direction!r})"


def _layer_list(model: nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    return FeatureExtractor(model, layers=layers).layer_names


def _mean_activation(
    fx: FeatureExtractor, x: torch.Tensor, layer: str, batch_size: int
) -> torch.Tensor:
    return _mean_activations(fx, x, batch_size)[layer]


def _mean_activations(
    fx: FeatureExtractor, x: torch.Tensor, batch_size: int
) -> dict[str, torch.Tensor]:
    """``{layer: (N,) mean_c GAP(h_l)_c}`` for every layer of ``fx``, in one pass over ``x``."""
    _, f = fx.extract(x, batch_size)
    return {name: v.double().mean(1) for name, v in f.items()}


def feature_stress_test(
    model: nn.Module,
    x: torch.Tensor,
    eps: Sequence[float],
    layers: str | Sequence[str] | None = "blocks",
    steps: int = 10,
    *,
    x_ref: torch.Tensor,
    directions: Sequence[str] = DIRECTIONS,
    random_start: str | None = "symmetric",
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> pd.DataFrame:
    """The stress test: how far can an ε-bounded attack push a layer's mean activation?

    For every layer ``l`` and direction, L∞ PGD (the registered ``"PGD"``, α = 2ε/steps, as
    the classification attacks; all ε in one :func:`~hfc_edu.attacks.sweep`) minimises
    ``∓ mean_c GAP(h_l(x'))_c`` (:class:`MeanActivation`). The move
    ``Δh = h(x') − h(x)`` of the scalar ``h = mean_c GAP(h_l)_c`` is divided by the standard
    deviation of ``h`` over the reference images ``x_ref`` (e.g. the training set).

    Args:
        model: a zoo Classifier (or a model with ``layers`` given as module names).
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` images in [0, 1].
        eps: budgets in pixel units, e.g. ``[0.5/256, 1/256, 2/256, 4/256]``.
        layers: ``"blocks"`` (stem + block outputs), ``"relu"`` (all) or a list of names.
        x_ref: images whose features define the clean spread ``std_ref(h)``.
        directions: any of ``"up"``, ``"down"``.

    Returns a long table, one row per (layer, direction, ε, image): ``layer``, ``depth``
    (0 = shallowest), ``direction``, ``eps``, ``eps_256``, ``image``, ``h_clean``, ``h_adv``,
    ``shift_sd`` = ``Δh / std_ref`` and ``stress`` = ``|Δh| / std_ref``.
    """
    check_images(x)
    check_images(x_ref, "x_ref")
    if x_ref.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x_ref images {tuple(x_ref.shape[1:])} differ in shape from x {tuple(x.shape[1:])}."
        )
    if len(x_ref) < 2:
        raise ValueError("x_ref needs at least 2 images to estimate a standard deviation.")
    eps_list = check_eps_list(eps, positive=True)  # ε = 0 would move nothing
    directions = list(directions)
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad or not directions:
        raise ValueError(
            f"directions must be a non-empty subset of {DIRECTIONS}, got {directions}."
        )
    names = _layer_list(model, layers)
    x = x.detach()
    y = torch.zeros(len(x), dtype=torch.long, device=x.device)  # MeanActivation ignores labels
    rows = []
    # one pass over x_ref and over x for every layer, not one per layer
    every_layer = FeatureExtractor(model, layers=names)
    h_refs = _mean_activations(every_layer, x_ref, batch_size)
    h_cleans = _mean_activations(every_layer, x, batch_size)
    for depth, layer in enumerate(names):
        fx = FeatureExtractor(model, layers=[layer])
        h_ref = h_refs[layer]
        sd = float(h_ref.std())
        if sd == 0:
            raise ValueError(
                f"Layer {layer!r} has zero spread on x_ref; use more or other reference images."
            )
        h0 = h_cleans[layer]
        for direction in directions:
            results = sweep(
                "PGD", fx, x, y, eps=eps_list, steps=steps, loss=MeanActivation(layer, direction),
                random_start=random_start, generator=generator, sweep_batch=batch_size,
            )  # fmt: skip
            for e, res in zip(eps_list, results, strict=True):
                h1 = _mean_activation(fx, res.x_adv, layer, batch_size)
                shift = ((h1 - h0) / sd).numpy()
                rows.append(
                    pd.DataFrame(
                        {
                            "layer": layer,
                            "depth": depth,
                            "direction": direction,
                            "eps": e,
                            "eps_256": e * 256,
                            "image": np.arange(len(x)),
                            "h_clean": h0.numpy(),
                            "h_adv": h1.numpy(),
                            "shift_sd": shift,
                            "stress": np.abs(shift),
                        }
                    )  # fmt: skip
                )
    return pd.concat(rows, ignore_index=True)


def stress_summary(
    df: pd.DataFrame, by: Sequence[str] = ("layer", "direction", "eps_256")
) -> pd.DataFrame:
    """Median and 90th percentile of ``stress`` (and the fraction of images moved by more than
    3 clean standard deviations) per group; ``model`` is added to the groups when present."""
    keys = (["model"] if "model" in df.columns and "model" not in by else []) + list(by)
    missing = [k for k in keys + ["stress"] if k not in df.columns]
    if missing:
        raise ValueError(f"Columns {missing} are missing; pass the table from feature_stress_test.")
    g = df.groupby(keys, sort=False)["stress"]
    out = pd.DataFrame(
        {
            "median": g.median(),
            "p90": g.quantile(0.9),
            "beyond_3sd": g.apply(lambda s: float((s > 3).mean())),
        }
    )
    return out


def _unpack(name: str, tm) -> tuple[nn.Module, object]:
    if not hasattr(tm, "model") or not hasattr(tm, "data"):
        raise TypeError(
            f"models[{name!r}] must have .model and .data (a TrainedModel), got {type(tm).__name__}."
        )
    return tm.model, tm.data


def vulnerability_suite(
    models: Mapping[str, object], eps: Sequence[float], n: int, steps: int = 10, seed: int = 0
) -> pd.DataFrame:
    """Accuracy under untargeted L∞ PGD (α = 2ε/steps, symmetric random start seeded with
    ``seed``) against ε for each named model, on ``n`` seeded test images (all, not only the
    correct ones, so accuracy at ε = 0 is the clean accuracy of the sample).

    Returns :func:`~hfc_edu.experiments.robustness.accuracy_vs_eps`'s table with a ``model``
    column in front.
    """
    frames = []
    for name, tm in models.items():
        model, data = _unpack(name, tm)
        x, y = data.x_test, data.y_test
        pick = (
            torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        )
        df = accuracy_vs_eps(
            model, x[pick], y[pick], "PGD", eps, steps=steps, batch_size=256, seed=seed
        )
        df.insert(0, "model", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def stress_suite(
    models: Mapping[str, object],
    eps: Sequence[float],
    n: int,
    layers: str | Sequence[str] | None = "blocks",
    steps: int = 10,
    n_ref: int = 1000,
    directions: Sequence[str] = DIRECTIONS,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`feature_stress_test` for each named model on ``n`` correctly classified test images,
    with the spread taken over ``n_ref`` seeded training images."""
    frames = []
    for name, tm in models.items():
        model, data = _unpack(name, tm)
        x = data.x_test[correct_subset(model, data.x_test, data.y_test, n, seed=seed)]
        ref = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed))[
            :n_ref
        ]
        df = feature_stress_test(
            model, x, eps, layers, steps, x_ref=data.x_train[ref], directions=directions,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        df.insert(0, "model", name)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
