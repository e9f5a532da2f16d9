"""Module modes, one home: evaluation mode, frozen parameters and Monte-Carlo dropout.

Every context manager here records each module's own ``training`` flag (and each parameter's
``requires_grad``) on entry and restores them exactly on exit, also after an exception. Mixed
states survive a call: a model whose dropout was switched on for Monte-Carlo passes keeps it
switched on after an attack or a prediction, which ``was = model.training; ...;
model.train(was)`` would flatten.

* :func:`eval_mode`: every module in eval mode (predictions, feature extraction);
* :func:`frozen_eval`: eval mode and ``requires_grad=False`` on every parameter (attacks,
  saliency: input gradients only, no weight gradient is computed and ``.grad`` is untouched);
* :func:`mc_dropout`: eval mode except the dropout modules (Bayesian uncertainty).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from torch.nn.modules.dropout import _DropoutNd


def _restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every module of ``model`` in eval mode; each module's own flag restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        _restore_modes(modes)


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` on every parameter, both restored exactly on exit.

    Gradients with respect to the input still flow; no weight gradient is computed and
    ``.grad`` is never touched.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with eval_mode(model):
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            yield model
        finally:
            for p, requires_grad in flags:
                p.requires_grad_(requires_grad)


def dropout_modules(model: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``model`` with ``p > 0``."""
    return [m for m in model.modules() if isinstance(m, _DropoutNd) and m.p > 0]


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Eval mode everywhere except the dropout modules (yielded); every flag restored on exit."""
    drops = dropout_modules(model)
    if not drops:
        raise ValueError(
            f"{type(model).__name__} has no dropout module with p > 0, so Monte-Carlo dropout "
            "gives identical passes. Build the model with dropout > 0, e.g. "
            "build_model(..., dropout=0.3)."
        )
    with eval_mode(model):
        for m in drops:
            m.train()
        yield drops


__all__ = ["dropout_modules", "eval_mode", "frozen_eval", "mc_dropout"]
