"""Adversarial attacks: tensor in, result out; 2D and 3D images in [0, 1]; device from ``x``.

Every attack function returns one :class:`AttackResult`::

    from hfc_edu.attacks import pgd, sweep, targets
    res = pgd(model, x, targets.other_class(y), eps=1/256, targeted=True, y_true=y)
    res.x_adv, res.success, res.linf, res.l2
    results = sweep("PGD", model, x, y, eps=[1/256, 2/256])   # one AttackResult per ε

:data:`ATTACKS` is the one list of ε-bounded attacks (``"FGSM"``, ``"BIM"``, ``"PGD"``,
``"MIM"``, ``"CW-Linf"``) that experiments, the command line and HFC use; adding an attack is
one file and one :func:`register_attack` line. Losses (``"ce"``, ``"cw"`` or a :class:`Loss`,
e.g. ``CrossEntropy(True) + hfc_term``) are minimised; feature losses get the features of the
same forward pass. ``batch_size`` chunks any attack (memory, not results).
"""

from hfc_edu.attacks import targets
from hfc_edu.attacks.cw_l2 import cw_l2
from hfc_edu.attacks.gradient import bim, cw_linf, fgsm, gradient_attack, mim, pgd
from hfc_edu.attacks.losses import CrossEntropy, CWMargin, Loss, classification_loss
from hfc_edu.attacks.registry import ATTACKS, AttackInfo, register_attack
from hfc_edu.attacks.result import AttackResult, is_success
from hfc_edu.attacks.sweep import sweep
from hfc_edu.attacks.targets import least_likely, other_class, random_target
from hfc_edu.modes import frozen_eval

__all__ = [
    "ATTACKS",
    "AttackInfo",
    "AttackResult",
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
    "is_success",
    "least_likely",
    "mim",
    "other_class",
    "pgd",
    "random_target",
    "register_attack",
    "sweep",
    "targets",
]
