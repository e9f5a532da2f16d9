"""Bayesian uncertainty (BU, Feinman et al. 2017): spread of Monte-Carlo dropout predictions.

Only the model's dropout modules are switched to training mode (BatchNorm keeps its running
statistics); T stochastic passes run under ``inference_mode``. Two scores:

* ``variant="feinman"`` (the reference): variance over passes of the softmax outputs, averaged
  over classes, ``mean_k Var_t[softmax(f_t(x))_k]``;
* ``variant="official"`` (the HFC code): standard deviation over passes of the raw logit 0.

Both use the population (ddof = 0) statistics of NumPy's ``var``/``std``, as the references do.
For a zoo :class:`~hfc_edu.models.Classifier` whose only dropout is its head, the backbone runs
once and only ``fc(dropout(z))`` is repeated: identical numbers (same random masks in the same
order), T times cheaper.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hfc_edu.detectors.base import Detector, FeatureSet, as_feature_set, check_finite
from hfc_edu.models.zoo import Classifier
from hfc_edu.modes import dropout_modules, mc_dropout


def mc_predictions(
    model: nn.Module,
    x: torch.Tensor,
    passes: int = 50,
    batch_size: int = 128,
    output: str = "softmax",
) -> torch.Tensor:
    """``(passes, N, K)`` MC-dropout outputs (``"softmax"`` or ``"logits"``), float32 on CPU."""
    if passes < 2:
        raise ValueError(f"passes must be at least 2, got {passes}.")
    if output not in ("softmax", "logits"):
        raise ValueError(f"output must be 'softmax' or 'logits', got {output!r}.")
    dev = next(model.parameters()).device
    outs = []
    with mc_dropout(model) as drops, torch.inference_mode():
        head_only = isinstance(model, Classifier) and drops == [model.dropout]
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(dev)
            if head_only:
                z = model.embed(xb)
                chunk = torch.stack([model.head(z) for _ in range(passes)])
            else:
                chunk = torch.stack([model(xb) for _ in range(passes)])
            if output == "softmax":
                chunk = chunk.softmax(-1)
            outs.append(chunk.float().cpu())
    return torch.cat(outs, 1)


class BU(Detector):
    """MC-dropout uncertainty; higher = more uncertain = more adversarial.

    Args:
        model: the classifier (must contain a dropout module with p > 0).
        passes: Monte-Carlo passes T (50 in the papers).
        variant: ``"feinman"`` (mean softmax variance) or ``"official"`` (std of logit 0).
        batch_size: images per forward pass.

    Needs no fitting; ``score(data)`` reads ``data.x``.
    """

    fit_on = None

    def __init__(
        self, model: nn.Module, passes: int = 50, variant: str = "feinman", batch_size: int = 128
    ) -> None:
        if variant not in ("feinman", "official"):
            raise ValueError(f"variant must be 'feinman' or 'official', got {variant!r}.")
        if passes < 2:
            raise ValueError(f"passes must be at least 2, got {passes}.")
        if not dropout_modules(model):
            raise ValueError(
                f"{type(model).__name__} has no dropout module with p > 0: BU would be identically zero. "
                "Build the model with dropout > 0, e.g. build_model(..., dropout=0.3)."
            )
        self.model = model
        self.passes = passes
        self.variant = variant
        self.batch_size = batch_size
        self.dims_ = {}  # nothing to fit

    def fit(self, data=None, y=None) -> BU:
        """Nothing to learn (``fit_on = None``): returns ``self``."""
        return self

    def score(self, data: FeatureSet | dict | torch.Tensor) -> np.ndarray:
        """``(N,)`` uncertainty of the images ``data.x`` (a bare image tensor is accepted too)."""
        if isinstance(data, torch.Tensor):
            x = data
        else:
            x = as_feature_set(data).x
            if x is None:
                raise ValueError(
                    "BU needs the images: pass a FeatureSet with x (or the image tensor)."
                )
        check_finite(x.flatten(1), "Images")
        if self.variant == "feinman":
            p = mc_predictions(self.model, x, self.passes, self.batch_size, "softmax").double()
            return p.var(0, unbiased=False).mean(-1).numpy()
        z = mc_predictions(self.model, x, self.passes, self.batch_size, "logits").double()
        return z[..., 0].std(0, unbiased=False).numpy()


__all__ = ["BU", "mc_predictions"]
