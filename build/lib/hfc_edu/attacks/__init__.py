"""Adversarial attacks: tensor in, tensor out; 2D and 3D images in [0, 1]; device from ``x``.

Functional core (each returns an :class:`AttackResult`)::

    from hfc_edu.attacks import pgd, targets
    res = pgd(model, x, targets.other_class(y), eps=1/256, targeted=True, y_true=y)
    res.x_adv, res.success, res.linf, res.l2

Classes store a configuration (``PGD(model, eps=...)``): ``atk(x, y) -> x_adv``,
``atk.run(x, y) -> AttackResult``. Losses (``"ce"``, ``"cw"`` or a :class:`Loss`, e.g.
``CrossEntropy(True) + hfc_term``) are minimised; feature losses get the features of the
same forward pass.
"""

from hfc_edu.attacks import targets
from hfc_edu.attacks.classes import BIM, CWL2, FGSM, MIM, PGD, Attack, CWLinf
from hfc_edu.attacks.cw_l2 import cw_l2
from hfc_edu.attacks.gradient import bim, cw_linf, fgsm, gradient_attack, mim, pgd
from hfc_edu.attacks.losses import CrossEntropy, CWMargin, Loss, classification_loss
from hfc_edu.attacks.registry import ATTACKS, AttackInfo, register_attack
from hfc_edu.attacks.result import AttackResult
from hfc_edu.attacks.targets import least_likely, other_class, random_target
from hfc_edu.modes import frozen_eval

__all__ = [
    "ATTACKS",
    "AttackInfo",
    "register_attack",
    "BIM",
    "CWL2",
    "FGSM",
    "MIM",
    "PGD",
    "Attack",
    "AttackResult",
    "CWLinf",
    "CWMargin",
    "CrossEntropy",
    "Loss",
    "bim",
    "classification_loss",
    "cw_l2",
    "cw_linf",
    "fgsm",
    "frozen_eval",
    "gradient_attack",
    "least_likely",
    "mim",
    "other_class",
    "pgd",
    "random_target",
    "targets",
]
