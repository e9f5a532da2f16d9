"""The attack registry: every ε-bounded attack the experiments, the command line and HFC know.

An entry is an :class:`AttackInfo`: the attack function plus what it takes. Experiments call
every attack the same way, without inspecting signatures::

    info = ATTACKS.get("PGD")
    res = info.run(model, x, target, eps=1 / 256, targeted=True, y_true=y, steps=10,
                   generator=g)            # an AttackResult

``steps`` reaches iterative attacks only and ``generator`` attacks with a random start only
(the protocol's knobs; :attr:`AttackInfo.iterative`, :attr:`AttackInfo.random` say which);
any other keyword must be one of :attr:`AttackInfo.options`, else ``run`` raises and names the
attacks that do take it. :meth:`AttackInfo.with_options` fixes options under a new name
(``ATTACKS.get("PGD").with_options("PGD-L2", norm="l2")``).

Adding an attack is one file (its function, ``fn(model, x, y, *, eps, targeted, y_true, ...)
-> AttackResult``) and one line here (or a ``register_attack`` call in that file)::

    register_attack(AttackInfo("MyAttack", my_attack, iterative=False, options=("loss",)))

It is then usable by :func:`~hfc_edu.attacks.sweep.sweep`,
:func:`~hfc_edu.experiments.robustness.accuracy_vs_eps`, the detection pipeline and, with
``hfc_base=True``, as a base of :func:`~hfc_edu.hfc.feature_attack` / :func:`~hfc_edu.hfc.hfc_attack`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hfc_edu.attacks.gradient import bim, cw_linf, fgsm, mim, pgd
from hfc_edu.attacks.result import AttackResult
from hfc_edu.registry import Registry

#: Options every built-in attack takes (see :func:`~hfc_edu.attacks.gradient.gradient_attack`).
COMMON_OPTIONS = ("loss", "kappa", "amp", "output_fn", "batch_size")
#: ... and every built-in iterative one.
ITERATIVE_OPTIONS = (*COMMON_OPTIONS, "alpha", "early_stop")


@dataclass(frozen=True)
class AttackInfo:
    """How to call one attack.

    Attributes:
        name: the registry name (``"PGD"``), used in every table.
        fn: ``fn(model, x, y, *, eps, targeted, y_true, **kw) -> AttackResult``.
        iterative: takes ``steps``.
        random: has a random start and takes ``generator``.
        options: the other keywords ``fn`` takes (e.g. ``("alpha", "kappa")``).
        loss: the classification loss it minimises by default (``"ce"`` or ``"cw"``).
        hfc_base: feature-space terms (HFC, the adaptive baselines) compose with it: it is
            iterative and L∞, and takes ``loss=`` (the full loss to minimise) and ``alpha=``.
        per_sample_eps: ``fn`` takes ``eps`` as an ``(N,)`` tensor, one budget per image
            (:func:`~hfc_edu.attacks.sweep.sweep` then runs several ε in one stacked pass).
        description: one line for listings.
    """

    name: str
    fn: Callable[..., AttackResult]
    iterative: bool = True
    random: bool = False
    options: tuple[str, ...] = ()
    loss: str = "ce"
    hfc_base: bool = False
    per_sample_eps: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"AttackInfo {self.name!r}: fn must be callable.")
        if self.loss not in ("ce", "cw"):
            raise ValueError(f"AttackInfo {self.name!r}: loss must be 'ce' or 'cw'.")
        if self.hfc_base and not (self.iterative and {"loss", "alpha"} <= set(self.options)):
            raise ValueError(
                f"AttackInfo {self.name!r}: an hfc_base attack must be iterative and take the "
                "options 'loss' and 'alpha'."
            )

    def check_options(self, options: dict) -> None:
        """Raise ``ValueError`` for keywords this attack does not take, naming who takes them."""
        unknown = sorted(set(options) - set(self.options))
        if not unknown:
            return
        knobs = [o for o in unknown if o in ("steps", "generator", "eps", "targeted", "y_true")]
        if knobs:
            raise ValueError(
                f"{knobs} are arguments of run() (and of sweep and the experiments), not options "
                f"of {self.name}."
            )
        users = {o: [n for n, a in ATTACKS.items() if o in a.options] for o in unknown}
        used = "; ".join(
            f"{o!r}: {', '.join(u) or 'no registered attack'}" for o, u in users.items()
        )
        raise ValueError(
            f"{self.name} takes no option(s) {unknown} (attacks that take them: {used}); "
            f"{self.name}'s options are {list(self.options) or 'none'}."
        )

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        eps: float | torch.Tensor,
        targeted: bool = False,
        y_true: torch.Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        **options,
    ) -> AttackResult:
        """Run the attack; ``steps``/``generator`` reach it only where it uses them.

        A generator also reaches an attack whose random start is switched on by an option
        (``random_start=...``, e.g. for CW-L∞).
        """
        self.check_options(options)
        kw = dict(options)
        if self.iterative and steps is not None:
            kw["steps"] = steps
        if generator is not None and (self.random or options.get("random_start")):
            kw["generator"] = generator
        return self.fn(model, x, y, eps=eps, targeted=targeted, y_true=y_true, **kw)

    def with_options(self, name: str | None = None, **options) -> AttackInfo:
        """This attack with ``options`` fixed (validated), e.g. for a table row of its own::

        ATTACKS.get("CW-Linf").with_options("CW-Linf κ=10", kappa=10.0)
        """
        self.check_options(options)
        return dataclasses.replace(
            self, name=name or self.name, fn=functools.partial(self.fn, **options)
        )


ATTACKS: Registry[AttackInfo] = Registry("attack")


def register_attack(info: AttackInfo, *, replace: bool = False) -> AttackInfo:
    """Register ``info`` under ``info.name`` (one line per attack)."""
    if not isinstance(info, AttackInfo):
        raise TypeError(f"register_attack takes an AttackInfo, got {type(info).__name__}.")
    return ATTACKS.register(info.name, info, replace=replace)


register_attack(
    AttackInfo("FGSM", fgsm, iterative=False, options=COMMON_OPTIONS, per_sample_eps=True,
               description="one signed step of ε (Goodfellow et al. 2015)")
)  # fmt: skip
register_attack(
    AttackInfo("BIM", bim, options=ITERATIVE_OPTIONS, hfc_base=True, per_sample_eps=True,
               description="iterative FGSM, T steps of 2ε/T (Kurakin et al. 2017)")
)  # fmt: skip
register_attack(
    AttackInfo("PGD", pgd, random=True, hfc_base=True, per_sample_eps=True,
               options=(*ITERATIVE_OPTIONS, "norm", "random_start", "delta0"),
               description="BIM from a random start in the ε-ball (Madry et al. 2018)")
)  # fmt: skip
register_attack(
    AttackInfo("MIM", mim, options=(*ITERATIVE_OPTIONS, "decay", "rms_floor"), hfc_base=True,
               per_sample_eps=True,
               description="BIM with momentum on RMS-normalised gradients (Dong et al. 2018)")
)  # fmt: skip
register_attack(
    AttackInfo("CW-Linf", cw_linf, loss="cw", hfc_base=True, per_sample_eps=True,
               options=(*ITERATIVE_OPTIONS, "random_start", "delta0"),
               description="BIM on the Carlini–Wagner margin, κ = 100 (the papers' CW-L∞)")
)  # fmt: skip

__all__ = ["ATTACKS", "COMMON_OPTIONS", "ITERATIVE_OPTIONS", "AttackInfo", "register_attack"]
