"""``frozen_eval``: eval mode and frozen parameters for the duration of an attack."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and set ``requires_grad=False`` on every parameter.

    On exit (also after an exception) each module's own ``training`` flag and each
    parameter's ``requires_grad`` flag are restored exactly, so mixed states (e.g. dropout
    switched on for Monte-Carlo passes) survive. Gradients with respect to the input still
    flow; no weight gradient is computed and ``.grad`` is never touched.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)
