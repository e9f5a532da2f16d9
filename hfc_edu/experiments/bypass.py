"""Chapter 7: do detectors fitted on a conventional attack see the same attack with HFC?

The detectors of a :class:`~hfc_edu.experiments.detection.DetectionRun` are kept fixed and score
new adversarial examples of the run's detector-test images (:meth:`DetectionRun.evaluate`).
This module adds the two references that make such a table readable:

* :func:`stand_ins`: for every detector-test image, a clean test image of its *target* class that
  was never attacked: what perfect hiding would look like. Its AUC is the floor no hiding attack
  can go below under the papers' protocol (the negatives are clean and noisy images of the
  *source* classes, so a detector that merely tells the classes apart scores above 0.5).
* :data:`NEAR_CHANCE`: the band of AUCs read as "fooled". An AUC far below 0.5 is not a fooled
  detector: the scores separate the two sets with the sign flipped, and a defender who flips it
  catches the attack.

:func:`bypass_table` scores several attacks at once and returns one long table (the results
table's columns plus ``auc_matched`` and ``auc_gap``); :func:`shift_along_attack` measures how far
each group of images sits along the conventional attack's mean feature direction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from hfc_edu.attacks import AttackResult
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.experiments.detection import DetectionReport, DetectionRun, NothingToScore
from hfc_edu.features import FeatureExtractor
from hfc_edu.protocol import correct_mask

log = logging.getLogger(__name__)

#: AUCs in this closed interval count as "near chance" (the detector is fooled).
NEAR_CHANCE: tuple[float, float] = (0.4, 0.6)

#: The row label of :func:`stand_ins` in :func:`bypass_table`.
STAND_IN = "clean target-class images"


def near_chance(auc: float | pd.Series) -> bool | pd.Series:
    """Whether an AUC lies in :data:`NEAR_CHANCE` (works element-wise on a Series)."""
    lo, hi = NEAR_CHANCE
    return (auc >= lo) & (auc <= hi)


def stand_ins(
    report: DetectionReport, run: DetectionRun, data: ImageDataset, seed: int = 0
) -> torch.Tensor:
    """``(m, ...)`` one clean test image of each detector-test image's target class.

    Drawn (seeded, with replacement) from the test images the classifier gets right and that
    were not among the ``n`` attacked by ``run_detection``, so no detector saw them.
    """
    if not isinstance(run, DetectionRun) or not isinstance(report, DetectionReport):
        raise TypeError("Pass the DetectionReport of run_detection and one of its runs.")
    free = correct_mask(run.model, data.x_test, data.y_test, run.batch_size).cpu()
    free[report.index.cpu()] = False
    targets = run.test_targets.cpu()
    out = torch.empty_like(run.test_clean)
    g = torch.Generator().manual_seed(seed)
    for c in targets.unique().tolist():
        pool = torch.nonzero(free & (data.y_test.cpu() == c)).flatten()
        if len(pool) == 0:
            raise ValueError(
                f"No correctly classified test image of class {c} is left outside the attacked "
                f"ones ({len(report.index)} attacked): attack fewer images (smaller n)."
            )
        rows = (targets == c).nonzero().flatten()
        out[rows] = data.x_test[pool[torch.randint(len(pool), (len(rows),), generator=g)]]
    return out


def bypass_table(
    run: DetectionRun,
    examples: Mapping[str, AttackResult | torch.Tensor],
    stand_in: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Score several attacks of :attr:`DetectionRun.test_clean` with the run's fixed detectors.

    Args:
        run: the run whose detectors (fitted on its conventional attack) are kept.
        examples: ``{label: AttackResult or (m, ...) x_adv}`` aligned with ``run.test_clean``.
        stand_in: optional :func:`stand_ins` images, scored as if they were successful attacks
            (row label :data:`STAND_IN`).

    Returns the long table of :meth:`DetectionRun.evaluate` for every label, in order; a label
    of which no example succeeded gets rows with ``success_rate`` 0 and NaN metrics (and a
    warning).
    """
    if not examples:
        raise ValueError("examples is empty: pass {label: AttackResult}.")
    tables = []
    if stand_in is not None:
        ok = torch.ones(len(stand_in), dtype=torch.bool)
        tables.append(run.evaluate(stand_in, success=ok, name=STAND_IN).table)
    for label, ex in examples.items():
        x_adv = ex.x_adv if isinstance(ex, AttackResult) else ex
        try:
            tables.append(run.evaluate(x_adv, name=label).table)
        except NothingToScore:  # a row that says so (success 0, no AUCs) instead of a crash
            log.warning("%s: no example succeeded; its row has success 0 and no AUCs.", label)
            tables.append(_empty_rows(run, label))
    return pd.concat(tables, ignore_index=True)


def _empty_rows(run: DetectionRun, label: str) -> pd.DataFrame:
    """One row per detector with ``success_rate`` 0 and NaN metrics (``pd.concat`` fills the
    other columns with NaN)."""
    return pd.DataFrame(
        [
            {"dataset": run.dataset, "attack": label, "eps": run.eps, "eps_256": run.eps * 256,
             "detector": d, "auc": np.nan, "success_rate": 0.0, "n_pos": 0}
            for d in run.detectors
        ]
    )  # fmt: skip


@torch.no_grad()
def shift_along_attack(
    model: torch.nn.Module,
    groups: Mapping[str, torch.Tensor],
    reference: str,
    attack: str,
    layer: str | None = None,
) -> pd.Series:
    """Median displacement of each image group along the attack's mean direction, in SDs.

    ``u`` is the unit vector from the mean ``layer`` feature (default: the penultimate) of the
    ``reference`` group to that of the ``attack`` group; each group's projections on ``u``,
    centred on the reference mean and divided by the reference's standard deviation along
    ``u``, are summarised by their median.

    Args:
        model: a zoo classifier.
        groups: ``{label: (N, C, H, W) or (N, C, D, H, W) images}`` (e.g. stand-ins, PGD, HFC).
        reference, attack: labels in ``groups``.
        layer: the feature layer (default: the model's last feature layer).
    """
    for label in (reference, attack):
        if label not in groups:
            raise ValueError(f"{label!r} is not one of the groups {list(groups)}.")
    fx = FeatureExtractor(model) if layer is None else FeatureExtractor(model, layers=[layer])
    name = fx.layer_names[-1]
    feats = {k: fx.extract(v)[1][name].double() for k, v in groups.items()}
    mu0 = feats[reference].mean(0)
    u = feats[attack].mean(0) - mu0
    if float(u.norm()) == 0.0:
        raise ValueError(f"{attack!r} and {reference!r} have the same mean feature: no direction.")
    u = u / u.norm()
    sd = ((feats[reference] - mu0) @ u).std()
    return pd.Series({k: float((((f - mu0) @ u) / sd).median()) for k, f in feats.items()})


__all__ = [
    "NEAR_CHANCE",
    "STAND_IN",
    "bypass_table",
    "near_chance",
    "shift_along_attack",
    "stand_ins",
]
