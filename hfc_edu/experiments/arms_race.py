"""Chapter 10's arms race: defenders refit on the attack, attackers answer the refitted detectors.

The papers fit detectors on a conventional attack and show that HFC slips past them. A defender
who knows about HFC fits them on HFC examples instead; an attacker who knows the fitted
detectors adds their scores to the loss (:func:`~hfc_edu.hfc.evasion_term`); and so on. Every
defence here is the detection protocol of chapter 5
(:func:`~hfc_edu.experiments.detection.run_detection`) fitted on the latest attack:

* round 0: the detectors are fitted on ``opening`` (PGD, the papers); the attacker answers with
  the hiding attack (``hiding_term``, e.g. the book's HFC);
* round k ≥ 1: the detectors are fitted on the attacker's last answer; the attacker answers with
  ``hiding_term`` plus one evasion term per detector that still works
  (:func:`evasion_loss`), and its examples of the round's detector-test images are scored.

:func:`arms_race` runs the rounds and returns an :class:`ArmsRace` (its :meth:`ArmsRace.table`
is the chapter's table); :func:`feature_attack_info` turns any feature-space attack into an
:class:`~hfc_edu.attacks.AttackInfo` that ``run_detection`` can fit detectors on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import ATTACKS, AttackInfo, AttackResult
from hfc_edu.attacks.losses import FlooredLoss, Loss
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.detectors import SVM, Detector
from hfc_edu.experiments.bypass import NEAR_CHANCE, bypass_table
from hfc_edu.experiments.detection import DetectionReport, DetectionRun, run_detection
from hfc_edu.hfc import SVMTerm, exact_term, feature_attack, surrogate_term
from hfc_edu.hfc.schedule import hfc_schedule
from hfc_edu.metrics import roc_auc


def _run_feature_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    targeted: bool,
    y_true: torch.Tensor | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    term: Loss,
    base: str,
) -> AttackResult:
    if not targeted:
        raise ValueError("A feature-space attack is targeted: its term pulls toward the target.")
    alpha, steps = hfc_schedule(eps, None, steps)
    return feature_attack(
        model, x, y, eps, term, base=base, alpha=alpha, steps=steps, y_true=y_true,
        generator=generator,
    )  # fmt: skip


def feature_attack_info(name: str, term: Loss, base: str = "PGD") -> AttackInfo:
    """``base`` attack + ``term`` (``HFCLoss(gmms, lam, floor=...)``, plus evasion terms) as an
    :class:`~hfc_edu.attacks.AttackInfo` named ``name``, for
    :func:`~hfc_edu.experiments.detection.run_detection`. Targeted only; the step size follows
    the HFC schedule for the ``steps`` passed (``α = 2ε / steps``; 40 steps: ``α = ε/20``)."""
    if not isinstance(term, Loss) or not term.needs_features:
        raise TypeError("term must be a feature Loss (needs_features=True), e.g. HFCLoss(gmms).")
    info = ATTACKS.get(base)
    fn = functools.partial(_run_feature_attack, term=term, base=base)
    return AttackInfo(name, fn, random=info.random, description=f"{base} + {term!r}")


def working_detectors(run: DetectionRun, high: float = NEAR_CHANCE[1]) -> list[str]:
    """Detectors of ``run`` with an AUC above ``high`` on its own test part (default: the top of
    the near-chance band): the defences the attacker has to answer."""
    return [d for d, (neg, pos) in run.scores.items() if roc_auc(neg, pos) > high]


def evasion_loss(
    run: DetectionRun, detectors: list[str] | None = None, floor: bool = False
) -> tuple[Loss | None, pd.Series]:
    """The sum of the evasion terms against ``detectors`` of ``run`` (default:
    :func:`working_detectors`) and, per detector, ``"exact"`` or ``"surrogate"``.

    ``floor=True`` stops each term at the median value it takes on the run's clean and noisy
    detector-training images (:class:`~hfc_edu.attacks.losses.FlooredLoss`): the attacker aims
    at a typical clean score instead of the lowest one (chapter 7's floor, applied to the
    detectors' scores).

    Detectors without a differentiable score share one surrogate: the run's own fitted
    :class:`~hfc_edu.detectors.SVM` when it has one, else :func:`~hfc_edu.hfc.surrogate_term`
    fitted on the run's detector-training data; each term is added once. ``(None, empty)`` when
    no detector works.
    """
    names = working_detectors(run) if detectors is None else list(detectors)
    unknown = [d for d in names if d not in run.detectors]
    if unknown:
        raise ValueError(
            f"Detector(s) {unknown} were not fitted in this run ({list(run.detectors)})."
        )
    own_svm = next(
        (
            d
            for d in run.detectors.values()
            if type(d) is SVM and d.get_params() == SVM().get_params()
        ),
        None,
    )
    shared: SVMTerm | None = None
    terms: list[Loss] = []
    kind: dict[str, str] = {}
    for name in names:
        det = run.detectors[name]
        term = None if det is own_svm else exact_term(det)
        if term is not None:
            terms.append(term)
            kind[name] = "exact"
            continue
        if shared is None:  # the run's own SVM, or a surrogate fitted like it
            shared = (
                SVMTerm(own_svm) if own_svm is not None
                else surrogate_term(run.train, run.train_is_adv)
            )  # fmt: skip
            terms.append(shared)
        kind[name] = "exact" if det is own_svm else "surrogate"
    if not terms:
        return None, pd.Series(kind, dtype=object)
    if floor:
        terms = [_floored(t, run) for t in terms]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total, pd.Series(kind, dtype=object)


@torch.no_grad()
def _floored(term: Loss, run: DetectionRun) -> FlooredLoss:
    """``term`` floored at its median over the run's clean and noisy detector-training images
    (each read under its predicted class)."""
    neg = run.train.subset(run.train_is_adv == 0)
    feats = {n: neg.feats[n] for n in term.layers}
    values = term(neg.logits, neg.pred, feats)
    return FlooredLoss(term, float(values.double().median()))


@dataclass
class ArmsRound:
    """One round: detectors fitted on ``report``'s attack, and the attacker's answer.

    Attributes:
        report: the detection experiment fitted on the round's attack.
        run: its :class:`~hfc_edu.experiments.detection.DetectionRun`.
        answer: the attacker's next attack (an AttackInfo, so the next round can fit on it).
        answer_result: the answer run on ``run``'s detector-test images.
        terms: per detector the answer evades, ``"exact"`` or ``"surrogate"`` (empty in round 0,
            whose answer is the hiding attack itself).
    """

    report: DetectionReport
    run: DetectionRun
    answer: AttackInfo
    answer_result: AttackResult
    terms: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    _scores: pd.DataFrame | None = field(default=None, init=False, repr=False)

    def scores(self) -> pd.DataFrame:
        """The long results table of the round's own attack and of the answer (the answer is
        scored once, on first use)."""
        if self._scores is None:
            answer = bypass_table(self.run, {self.answer.name: self.answer_result})
            self._scores = pd.concat([self.report.table, answer], ignore_index=True)
        return self._scores


@dataclass
class ArmsRace:
    """The rounds of :func:`arms_race`, in order."""

    rounds: list[ArmsRound]

    def table(self, metric: str = "auc") -> pd.DataFrame:
        """``(defence, attack) × detector`` table of ``metric`` (``"auc"``, ``"tpr95"`` =
        true-positive rate at 5 % false positives, ...), with each attack's ``success``.
        Defence ``Dk`` is round k's detectors, labelled with the attack they were fitted on."""
        parts = []
        for k, r in enumerate(self.rounds):
            t = r.scores()
            p = t.pivot(index="attack", columns="detector", values=metric)
            p = p.loc[pd.unique(t.attack), pd.unique(t.detector)]
            p["success"] = t.groupby("attack", sort=False).success_rate.first()
            defence = f"D{k}: fitted on {r.run.attack.split(':')[0]}"
            p.index = pd.MultiIndex.from_tuples(
                [(defence, a) for a in p.index], names=["defence", "attack"]
            )
            parts.append(p)
        return pd.concat(parts)


def arms_race(
    model: nn.Module,
    data: ImageDataset,
    eps: float,
    detectors: Callable[[], Mapping[str, str | Detector]],
    hiding_term: Loss,
    *,
    rounds: int = 3,
    opening: str = "PGD",
    hiding_name: str = "A1: PGD + HFC",
    n: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    floor: bool = False,
) -> ArmsRace:
    """Alternate defences and attacks for ``rounds`` rounds (see the module docstring).

    Args:
        model, data: the classifier and its dataset.
        eps: the L∞ budget of every attack.
        detectors: returns a fresh ``{label: registry name or Detector}`` each round (detectors
            are fitted anew on every round's attack).
        hiding_term: the attacker's feature term (``HFCLoss(gmms, lam=..., floor=...)``), kept
            in every answer.
        rounds: defences, the first (``D0``) fitted on ``opening``, a registered attack.
        hiding_name: the label of the hiding attack (``A1``); answer ``Ak`` (k ≥ 2) evades
            ``D(k−1)``.
        n: images attacked per round (None: the profile's).
        seed: seeds each round's draws (the same images every round).
        steps: the hiding attacks' iterations (default: the HFC schedule's, 40).
        floor: floor the evasion terms at typical clean values (:func:`evasion_loss`).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}.")
    if not callable(detectors):
        raise TypeError("detectors must be a function returning a fresh {label: detector} dict.")
    _, steps = hfc_schedule(eps, None, steps)
    attack: str | AttackInfo = opening
    out: list[ArmsRound] = []
    for k in range(rounds):
        kw = {} if k == 0 else {"steps": steps}
        report = run_detection(
            model, data, [attack], eps=eps, detectors=detectors(), n=n, seed=seed, **kw
        )
        run = report.run(attack if isinstance(attack, str) else attack.name)
        if k == 0:
            answer, terms = feature_attack_info(hiding_name, hiding_term), pd.Series(dtype=object)
        else:
            evasion, terms = evasion_loss(run, floor=floor)
            term = hiding_term if evasion is None else hiding_term + evasion
            answer = feature_attack_info(f"A{k + 1}: A1 + evasion of D{k}", term)
        result = answer.run(
            model, run.test_clean, run.test_targets, eps=eps, targeted=True,
            y_true=run.test_labels, steps=steps, generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        out.append(ArmsRound(report, run, answer, result, terms))
        attack = answer
    return ArmsRace(out)


__all__ = [
    "ArmsRace",
    "ArmsRound",
    "arms_race",
    "evasion_loss",
    "feature_attack_info",
    "working_detectors",
]
