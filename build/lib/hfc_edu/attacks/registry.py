"""The attack registry: every ε-bounded attack the experiments, the command line and HFC know.

An entry is an :class:`AttackInfo`: the attack function plus what it takes. Experiments call
every attack the same way, without inspecting signatures::

    info = ATTACKS.get("PGD")
    res = info.run(model, x, target, eps=1 / 256, targeted=True, y_true=y, steps=10,
                   generator=g)            # an AttackResult

``steps`` reaches iterative attacks only and ``generator`` attacks with a random start only
(the protocol's knobs; :attr:`AttackInfo.iterative`, :attr:`AttackInfo.random` say which);
any other keyword must be one of :attr:`AttackInfo.options`, else ``run`` raises.

Adding an attack is one file (its function, returning an
:class:`~hfc_edu.attacks.result.AttackResult`) and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hfc_edu.attacks.gradient import bim, cw_linf, fgsm, mim, pgd
from hfc_edu.attacks.result import AttackResult
from hfc_edu.registry import Registry


@dataclass(frozen=True)
class AttackInfo:
    """How to call one attack.

    Attributes:
        name: the registry name (``"PGD"``), used in every table.
        fn: ``fn(model, x, y, *, eps, targeted, y_true, **kw) -> AttackResult``.
        iterative: takes ``steps`` (and ``alpha``).
        random: has a random start and takes ``generator``.
        options: other keywords ``fn`` takes (e.g. ``("kappa",)``).
        loss: the classification loss it minimises (``"ce"`` or ``"cw"``).
        hfc_base: feature-space terms (HFC, the adaptive baselines) compose with it: ``fn``
            takes ``loss=`` and ``alpha=``.
        description: one line for listings.
    """

    name: str
    fn: Callable[..., AttackResult]
    iterative: bool = True
    random: bool = False
    options: tuple[str, ...] = ()
    loss: str = "ce"
    hfc_base: bool = False
    description: str = ""

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float,
        targeted: bool = False,
        y_true: torch.Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        **options,
    ) -> AttackResult:
        """Run the attack; ``steps``/``generator`` reach it only where it uses them."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"{self.name} takes no option(s) {unknown}; its options are "
                f"{list(self.options) or 'none'}."
            )
        kw = dict(options)
        if self.iterative and steps is not None:
            kw["steps"] = steps
        if self.random and generator is not None:
            kw["generator"] = generator
        return self.fn(model, x, y, eps=eps, targeted=targeted, y_true=y_true, **kw)


ATTACKS: Registry[AttackInfo] = Registry("attack")


def register_attack(info: AttackInfo) -> AttackInfo:
    """Register ``info`` under ``info.name`` (one line per attack)."""
    return ATTACKS.register(info.name, info)


register_attack(AttackInfo("FGSM", fgsm, iterative=False, description="one signed step of ε"))
register_attack(AttackInfo("BIM", bim, hfc_base=True, description="iterative FGSM, T steps"))
register_attack(
    AttackInfo("PGD", pgd, random=True, options=("random_start",), hfc_base=True,
               description="BIM from a random start in the ε-ball")
)  # fmt: skip
register_attack(
    AttackInfo("MIM", mim, options=("decay",), hfc_base=True,
               description="BIM with momentum on RMS-normalised gradients")
)  # fmt: skip
register_attack(
    AttackInfo("CW-Linf", cw_linf, options=("kappa",), loss="cw",
               description="BIM on the Carlini–Wagner margin (κ = 100)")
)  # fmt: skip

__all__ = ["ATTACKS", "AttackInfo", "register_attack"]
