"""Thin attack classes: a stored configuration around the functional core.

::

    atk = PGD(model, eps=1/256, steps=10)
    x_adv = atk(x, y)                   # tensor only (no extra evaluation pass)
    res = atk.run(x, y)                 # AttackResult (success, norms, loss, logits)
    res = atk.run(x, y, eps=[1/256, 2/256, 4/256])   # keyword overrides, e.g. an ε sweep

There are no global mode setters: targeted attacks take ``targeted=True`` and the targets as
``y`` (see :mod:`hfc_edu.attacks.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hfc_edu.attacks._forward import Amp, OutputFn
from hfc_edu.attacks.cw_l2 import cw_l2
from hfc_edu.attacks.gradient import Eps, Result, gradient_attack
from hfc_edu.attacks.losses import Loss
from hfc_edu.checks import PerSample


class Attack:
    """Base class: ``model`` plus keyword configuration; subclasses set ``_run``."""

    def __init__(self, model: nn.Module, **config: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        self.model = model
        self.config = config

    def _run(self, x: torch.Tensor, y: torch.Tensor, return_result: bool, **kw: Any):
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, y: torch.Tensor, **overrides: Any):
        """Adversarial images, shaped like ``x`` (a list for an ε list)."""
        return self._run(x, y, False, **{**self.config, **overrides})

    def run(self, x: torch.Tensor, y: torch.Tensor, **overrides: Any) -> Result:
        """:class:`~hfc_edu.attacks.result.AttackResult` (a list for an ε list)."""
        return self._run(x, y, True, **{**self.config, **overrides})

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if v is not None)
        return f"{type(self).__name__}({items})"


class _Gradient(Attack):
    def _run(self, x, y, return_result, **kw):
        return gradient_attack(self.model, x, y, return_result=return_result, **kw)


class PGD(_Gradient):
    """Projected gradient descent, L∞ or L2; see :func:`~hfc_edu.attacks.gradient.pgd`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: Eps,
        alpha: PerSample | Sequence[float] | None = None,
        steps: int = 10,
        norm: str = "linf",
        targeted: bool = False,
        loss: str | Loss = "ce",
        kappa: float = 0.0,
        random_start: str | bool | None = "symmetric",
        early_stop: int | None = None,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
        generator: torch.Generator | None = None,
        sweep_batch: int | str | None = "auto",
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, norm=norm, targeted=targeted, loss=loss,
            kappa=kappa, random_start=random_start, early_stop=early_stop, amp=amp,
            output_fn=output_fn, generator=generator, sweep_batch=sweep_batch,
        )  # fmt: skip


class BIM(_Gradient):
    """Basic iterative method (I-FGSM); see :func:`~hfc_edu.attacks.gradient.bim`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: Eps,
        alpha: PerSample | Sequence[float] | None = None,
        steps: int = 10,
        targeted: bool = False,
        loss: str | Loss = "ce",
        kappa: float = 0.0,
        early_stop: int | None = None,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
        sweep_batch: int | str | None = "auto",
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted, loss=loss,
            kappa=kappa, random_start=None, early_stop=early_stop, amp=amp, output_fn=output_fn,
            sweep_batch=sweep_batch,
        )  # fmt: skip


class FGSM(_Gradient):
    """Fast gradient sign method; see :func:`~hfc_edu.attacks.gradient.fgsm`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: Eps,
        targeted: bool = False,
        loss: str | Loss = "ce",
        kappa: float = 0.0,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
        sweep_batch: int | str | None = "auto",
    ) -> None:
        super().__init__(
            model, eps=eps, steps=1, alpha_factor=1.0, norm="linf", targeted=targeted, loss=loss,
            kappa=kappa, random_start=None, amp=amp, output_fn=output_fn, sweep_batch=sweep_batch,
        )  # fmt: skip


class MIM(_Gradient):
    """Momentum iterative FGSM; see :func:`~hfc_edu.attacks.gradient.mim`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: Eps,
        alpha: PerSample | Sequence[float] | None = None,
        steps: int = 10,
        decay: float = 0.5,
        targeted: bool = False,
        loss: str | Loss = "ce",
        kappa: float = 0.0,
        early_stop: int | None = None,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
        sweep_batch: int | str | None = "auto",
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, momentum=decay, norm="linf",
            targeted=targeted, loss=loss, kappa=kappa, random_start=None, early_stop=early_stop,
            amp=amp, output_fn=output_fn, sweep_batch=sweep_batch,
        )  # fmt: skip


class CWLinf(_Gradient):
    """The papers' CW-L∞: sign steps on the CW margin; see :func:`~hfc_edu.attacks.gradient.cw_linf`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        eps: Eps,
        alpha: PerSample | Sequence[float] | None = None,
        steps: int = 10,
        kappa: float = 100.0,
        targeted: bool = False,
        random_start: str | bool | None = None,
        early_stop: int | None = None,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
        generator: torch.Generator | None = None,
        sweep_batch: int | str | None = "auto",
    ) -> None:
        super().__init__(
            model, eps=eps, alpha=alpha, steps=steps, norm="linf", targeted=targeted, loss="cw",
            kappa=kappa, random_start=random_start, early_stop=early_stop, amp=amp,
            output_fn=output_fn, generator=generator, sweep_batch=sweep_batch,
        )  # fmt: skip


class CWL2(Attack):
    """Carlini–Wagner L2 optimisation attack; see :func:`~hfc_edu.attacks.cw_l2.cw_l2`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        targeted: bool = False,
        kappa: float = 0.0,
        c: float = 0.1,
        steps: int = 100,
        search_steps: int = 5,
        lr: float = 0.01,
        loss: str | Loss = "cw",
        abort_early: bool = True,
        amp: Amp = None,
        output_fn: OutputFn | None = None,
    ) -> None:
        super().__init__(
            model, targeted=targeted, kappa=kappa, c=c, steps=steps, search_steps=search_steps,
            lr=lr, loss=loss, abort_early=abort_early, amp=amp, output_fn=output_fn,
        )  # fmt: skip

    def _run(self, x, y, return_result, **kw):
        return cw_l2(self.model, x, y, return_result=return_result, **kw)


__all__ = ["BIM", "CWL2", "FGSM", "MIM", "PGD", "Attack", "CWLinf"]
