"""What :func:`~hfc_edu.experiments.detection.run_detection` returns.

* :class:`DetectionReport`: the results table of all (attack, ε, detector), every run, and what
  could not be evaluated (:class:`Skipped`);
* :class:`DetectionRun`: one (attack, ε): index splits, features, fitted detectors and test
  scores; :meth:`DetectionRun.evaluate` scores *new* adversarial examples of the same test images
  with the detectors kept fixed (how chapters on HFC compare attacks);
* :class:`NewAttackScores`: what :meth:`DetectionRun.evaluate` returns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfc_edu.detectors.base import Detector, FeatureSet
from hfc_edu.features import FeatureExtractor
from hfc_edu.metrics import RESULT_COLUMNS, class_matched_auc, result_row, results_table
from hfc_edu.protocol import DetectionSplits

#: Numeric columns of the results table that :meth:`DetectionReport.pivot` accepts.
METRICS = [c for c in RESULT_COLUMNS if c not in ("dataset", "attack", "detector")]


log = logging.getLogger(__name__)


def seeded_scores(detector: Detector, features: FeatureSet, seed: int) -> np.ndarray:
    """``(N,)`` float64 scores with torch's global RNG seeded (BU's dropout masks), so that a
    detector's scores do not depend on what ran before it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return np.asarray(detector.score(features), dtype=np.float64)


@dataclass(frozen=True)
class Skipped:
    """Something :func:`~hfc_edu.experiments.detection.run_detection` could not evaluate.

    Attributes:
        attack, eps: the run (None for a detector that failed before any run).
        detector: the detector (None when the whole run was skipped).
        reason: why, in words.
    """

    attack: str | None
    eps: float | None
    detector: str | None
    reason: str


class NothingToScore(ValueError):
    """:meth:`DetectionRun.evaluate` got adversarial examples of which none succeeded."""


@dataclass
class NewAttackScores:
    """Detector scores of new adversarial examples against the test negatives of a run.

    Attributes:
        table: one row per detector (the columns of :data:`~hfc_edu.metrics.RESULT_COLUMNS`).
        scores: ``{detector: (negative scores, positive scores)}`` for :func:`~hfc_edu.plots.roc_plot`.
        success: ``(n_test,)`` bool, which new examples fooled the classifier (only those are scored).
    """

    table: pd.DataFrame
    scores: dict[str, tuple[np.ndarray, np.ndarray]]
    success: torch.Tensor


@dataclass
class DetectionRun:
    """Everything about one (attack, ε): splits, features, fitted detectors and test scores.

    Attributes:
        dataset, attack, eps: the labels of its rows; ``eps`` in pixel units.
        splits: :class:`~hfc_edu.protocol.DetectionSplits`, positions into the ``n`` attacked
            images :attr:`x` of the detector-training and detector-test parts.
        train, train_is_adv: detector-training features of ``cat(clean, noisy, successful adv)``
            (:meth:`~hfc_edu.protocol.DetectionSplit.gather`) and their labels.
        test, test_is_adv: the same for the detector-test part.
        detectors: ``{name: detector}`` fitted for this run (higher score = more adversarial).
        scores: ``{name: (negative scores, positive scores)}`` on the test part.
        success: ``(n,)`` bool, attack success on all ``n`` attacked images.
        x_adv: ``(n, ...)`` the adversarial examples of all ``n`` images (successful or not).
        target: ``(n,)`` their target classes.
        x, y: the ``n`` attacked clean images and their labels (shared by all runs).
    """

    dataset: str
    attack: str
    eps: float
    splits: DetectionSplits
    train: FeatureSet
    train_is_adv: torch.Tensor
    test: FeatureSet
    test_is_adv: torch.Tensor
    detectors: dict[str, Detector]
    scores: dict[str, tuple[np.ndarray, np.ndarray]]
    success: torch.Tensor
    x_adv: torch.Tensor = field(repr=False)
    target: torch.Tensor = field(repr=False)
    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    model: nn.Module = field(repr=False)
    extractor: FeatureExtractor = field(repr=False)
    seed: int = 0
    batch_size: int = 128

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def test_clean(self) -> torch.Tensor:
        """``(m, ...)`` clean images of the detector-test part (attack these with a new method)."""
        return self.x[self.splits.test.index]

    @property
    def test_labels(self) -> torch.Tensor:
        """``(m,)`` true labels of :attr:`test_clean`."""
        return self.y[self.splits.test.index]

    @property
    def test_targets(self) -> torch.Tensor:
        """``(m,)`` attack targets of :attr:`test_clean` (the same as the run's attack)."""
        return self.target[self.splits.test.index]

    def negatives(self) -> FeatureSet:
        """Features of the test part's clean and noisy images (the negatives), in that order."""
        return self.test.subset(torch.arange(self.splits.test.n_neg))

    def evaluate(
        self,
        x_adv: torch.Tensor,
        success: torch.Tensor | None = None,
        name: str = "new",
        detectors: Sequence[str] | None = None,
    ) -> NewAttackScores:
        """Score new adversarial examples of :attr:`test_clean` with the detectors fitted here.

        Args:
            x_adv: ``(m, ...)`` adversarial images aligned with :attr:`test_clean` (e.g. HFC).
            success: ``(m,)`` bool; default: the classifier predicts :attr:`test_targets`.
            name: the ``attack`` label of the rows.
            detectors: a subset of :attr:`detectors` (default: all).

        Negatives are the same clean and noisy test images as in :attr:`scores`; only successful
        new examples are scored. No detector is refitted. Besides the columns of the results
        table, each row has ``auc_matched`` (:func:`~hfc_edu.metrics.class_matched_auc`: each
        positive against the negatives of the class it is classified as; NaN, with a warning, when
        the detector-test part holds no negative of such a class) and ``auc_gap`` (``|auc − 0.5|``).
        """
        clean = self.test_clean
        m = len(clean)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != clean.shape:
            got = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
            raise ValueError(
                f"x_adv must be aligned with the {m} test images, shape {tuple(clean.shape)}; "
                f"got {got}."
            )
        names = list(self.detectors) if detectors is None else list(detectors)
        missing = [d for d in names if d not in self.detectors]
        if missing:
            raise ValueError(
                f"Detector(s) {missing} were not fitted in this run ({list(self.detectors)})."
            )
        adv_fs = FeatureSet.from_images(self.extractor, x_adv.detach().cpu(), self.batch_size)
        if success is None:
            success = adv_fs.pred == self.test_targets
        success = torch.as_tensor(success).bool().cpu().reshape(-1)
        if len(success) != m:
            raise ValueError(f"success has {len(success)} entries for {m} test images.")
        if not success.any():
            raise NothingToScore(
                f"None of the {m} new adversarial examples succeeded: nothing to score."
            )
        pos_fs = adv_fs.subset(success)
        rate = float(success.float().mean())
        neg_classes = torch.cat([self.test_labels, self.test_labels])  # clean, then noisy
        pos_classes = adv_fs.pred[success]
        unmatched = sorted(set(pos_classes.tolist()) - set(neg_classes.tolist()))
        if unmatched:  # a small detector-test part can miss a class: no matched AUC, no crash
            log.warning(
                "%s: class-matched AUC left out (NaN): the detector-test part has no clean image "
                "of class(es) %s that the new examples are classified as.", name, unmatched,
            )  # fmt: skip
        rows, scores = [], {}
        for d in names:
            neg = self.scores[d][0]
            pos = seeded_scores(self.detectors[d], pos_fs, self.seed + 1)
            scores[d] = (neg, pos)
            row = result_row(
                neg, pos, dataset=self.dataset, attack=name, eps=self.eps, detector=d,
                success_rate=rate, seed=self.seed,
            )  # fmt: skip
            row["auc_matched"] = (
                float("nan") if unmatched else class_matched_auc(neg, neg_classes, pos, pos_classes)
            )
            row["auc_gap"] = abs(row["auc"] - 0.5)
            rows.append(row)
        return NewAttackScores(results_table(rows), scores, success)


@dataclass
class DetectionReport:
    """The results of :func:`~hfc_edu.experiments.detection.run_detection`.

    Attributes:
        table: one row per evaluated (attack, ε, detector), columns
            :data:`~hfc_edu.metrics.RESULT_COLUMNS` (AUC with its bootstrap interval
            ``auc_low``/``auc_high``, TPR at 90 % and 95 % TNR, counts, attack success).
        runs: ``{(attack, eps): DetectionRun}``.
        skipped: what could not be evaluated, with reasons (:class:`Skipped`); empty when
            everything ran.
        detectors: ``{name: detector}`` as built, with the parts fitted on clean training
            features (KD, MAHA's class Gaussians, LID's reference) shared by every run.
        x, y, index: the ``n`` attacked clean images, their labels and positions in the test set.
        clean: their features (:class:`~hfc_edu.detectors.FeatureSet`).
        fit_features, fit_labels: features and labels of the training images that fitted the
            clean parts (refit a detector on them, e.g. ``KD("cv").fit(fit_features, fit_labels)``).
    """

    dataset: str
    table: pd.DataFrame
    runs: dict[tuple[str, float], DetectionRun]
    skipped: list[Skipped]
    detectors: dict[str, Detector]
    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)
    index: torch.Tensor = field(repr=False)
    clean: FeatureSet = field(repr=False)
    fit_features: FeatureSet = field(repr=False)
    fit_labels: torch.Tensor = field(repr=False)

    def run(self, attack: str, eps: float | None = None) -> DetectionRun:
        """The run of ``attack`` at ``eps`` (may be omitted when the attack ran at one ε only)."""
        keys = [k for k in self.runs if k[0] == attack]
        if not keys:
            skipped = [s.reason for s in self.skipped if s.attack == attack and s.detector is None]
            why = f" It was skipped: {skipped}." if skipped else ""
            raise KeyError(
                f"No run for attack {attack!r}; runs: {sorted({k[0] for k in self.runs})}.{why}"
            )
        if eps is None:
            if len(keys) > 1:
                raise KeyError(
                    f"Attack {attack!r} ran at several eps {[k[1] for k in keys]}; pass eps."
                )
            return self.runs[keys[0]]
        for k in keys:
            if math.isclose(k[1], eps, rel_tol=1e-9, abs_tol=1e-12):
                return self.runs[k]
        raise KeyError(
            f"Attack {attack!r} did not run at eps={eps}; it ran at {[k[1] for k in keys]}."
        )

    def pivot(self, metric: str = "auc", eps: float | None = None) -> pd.DataFrame:
        """``attack × detector`` table of ``metric`` (at ``eps``, or the single ε of the report)."""
        df = self.table
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; choose from {METRICS}.")
        if eps is None:
            if df["eps"].nunique() > 1:
                raise ValueError(
                    f"The table has several eps {sorted(df['eps'].unique())}; pass eps."
                )
        else:
            df = df[np.isclose(df["eps"], eps)]
        p = df.pivot(index="attack", columns="detector", values=metric)
        return p.loc[pd.unique(df["attack"]), pd.unique(df["detector"])]


__all__ = ["DetectionReport", "DetectionRun", "NewAttackScores", "Skipped", "seeded_scores"]
