"""The model call of an attack: one forward pass -> per-sample loss, logits (and features).

:class:`LossForward` hides three adapters from the attack loops:

* a loss that ``needs_features`` gets the features of the SAME forward pass, through a
  :class:`~hfc_edu.features.FeatureExtractor` (built here, or passed as the model);
* ``output_fn`` turns a tuple/dict model output into logits;
* optional autocast (``amp``) around the model call only; logits, features and the loss
  stay in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hfc_edu.attacks.losses import Features, Loss
from hfc_edu.features import FeatureExtractor

OutputFn = Callable[[Any], torch.Tensor]
Amp = str | torch.dtype | bool | None

_AMP_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def amp_dtype(amp: Amp, device: torch.device) -> torch.dtype | None:
    """Parse the ``amp`` flag: None/False (off), True (bf16), "bf16", "fp16" or a dtype."""
    if amp is None or amp is False:
        return None
    if amp is True:
        dtype = torch.bfloat16
    elif isinstance(amp, torch.dtype):
        dtype = amp
    elif isinstance(amp, str) and amp.lower() in _AMP_NAMES:
        dtype = _AMP_NAMES[amp.lower()]
    else:
        raise ValueError(f"amp must be None, True, 'bf16' or 'fp16', got {amp!r}.")
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"amp dtype must be bfloat16 or float16, got {dtype}.")
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast is not supported for attacks on CPU; use amp='bf16'.")
    return dtype


class LossForward:
    """``(x_adv, y) -> (loss (N,), logits (N, K))`` with one forward pass of ``model``.

    ``on_first_logits(K)`` (if set) and the loss's :meth:`~hfc_edu.attacks.losses.Loss.check`
    run once, before the first loss, when the number of classes is known: the attacks' value
    checks that need a host sync go there, never into the step loop.

    Args:
        model: an ``nn.Module`` returning logits ``(N, K)`` (or anything ``output_fn``
            maps to logits), or a :class:`~hfc_edu.features.FeatureExtractor`.
        loss: the loss the attack minimises.
        output_fn: adapter from the model's raw output to logits.
        amp: autocast dtype for the model call (None = off).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss,
        output_fn: OutputFn | None,
        amp: torch.dtype | None,
        device: torch.device,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be 'ce', 'cw' or a Loss, got {type(loss).__name__}.")
        if output_fn is not None and not callable(output_fn):
            raise TypeError("output_fn must be a callable mapping the model output to logits.")
        self.loss, self.output_fn, self.amp = loss, output_fn, amp
        self.device_type = device.type
        self.fx: FeatureExtractor | None = None
        if loss.needs_features:
            if isinstance(model, FeatureExtractor):
                self.fx = model
            else:
                try:
                    self.fx = FeatureExtractor(model)
                except ValueError as err:
                    raise ValueError(
                        f"The loss {loss!r} needs features: pass a FeatureExtractor(model, "
                        f"layers=[...]) as the model. ({err})"
                    ) from err
            self.net: nn.Module = self.fx.model
        else:
            # A FeatureExtractor passed with a logits-only loss: skip the hooks.
            self.net = model.model if isinstance(model, FeatureExtractor) else model
        self.module: nn.Module = self.fx if self.fx is not None else self.net
        self._checked = False
        self.on_first_logits: Callable[[int], None] | None = None

    def start(self, check: Callable[[int], None] | None = None) -> None:
        """Begin a new batch (or chunk): run ``check(K)`` and the loss's value checks again on
        its first forward."""
        self.on_first_logits = check
        self._checked = False

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.amp)

    def _to_logits(self, out: Any) -> torch.Tensor:
        if self.output_fn is not None:
            out = self.output_fn(out)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"The model returned a {type(out).__name__}, not a logits tensor; pass "
                "output_fn, e.g. output_fn=lambda out: out[0] or out['logits']."
            )
        return out

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        """Logits ``(N, K)`` (fp32) and the feature dict (empty without a feature loss)."""
        with self._autocast():
            if self.fx is not None:
                out, feats = self.fx(x)
            else:
                out, feats = self.net(x), {}
        logits = self._to_logits(out)
        if not self._checked:
            if logits.ndim != 2 or logits.shape[0] != x.shape[0] or logits.shape[1] < 2:
                raise ValueError(
                    f"The model must return logits of shape ({x.shape[0]}, K) with K >= 2, got "
                    f"{tuple(logits.shape)}; use output_fn to select them."
                )
        if self.amp is not None:
            logits = logits.float()
            feats = {k: v.float() for k, v in feats.items()}
        return logits, feats

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss ``(N,)`` (fp32) and logits ``(N, K)``."""
        logits, feats = self.logits_and_features(x)
        if not self._checked:  # value checks with a host sync: once per attack, not per step
            if self.on_first_logits is not None:
                self.on_first_logits(logits.shape[1])
            self.loss.check(logits, y, feats)
        value = self.loss(logits, y, feats)
        if not self._checked:
            if not isinstance(value, torch.Tensor) or value.shape != (x.shape[0],):
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
                raise ValueError(
                    f"{self.loss!r} must return one value per sample, shape ({x.shape[0]},), "
                    f"got {shape}; do not reduce over the batch inside a Loss."
                )
            self._checked = True
        return value.float(), logits
