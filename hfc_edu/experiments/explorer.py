"""One image, a range of budgets: what an attack changes and what each detector says.

:func:`explore_eps` runs attacks of one detector-test image of a
:class:`~hfc_edu.experiments.detection.DetectionRun` at every ε of a grid and records the
adversarial image, the classifier's probabilities and each of the run's fitted detectors' score
as a *clean percentile*: the fraction of the run's clean and noisy test images that score lower.
A percentile above 0.95 means the detector flags the image at a 5 % false-positive rate.
:func:`hfc_edu.plots.eps_explorer_figure` draws one or several budgets;
:func:`hfc_edu.plots.eps_slider` puts a slider on it (ipywidgets, in Jupyter or Colab).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from hfc_edu.attacks import AttackResult
from hfc_edu.checks import check_eps_list
from hfc_edu.detectors import FeatureSet
from hfc_edu.experiments.detection import DetectionRun
from hfc_edu.experiments.detection.results import seeded_scores

#: ``attack(x, y_true, target, eps) -> AttackResult`` for images ``(N, C, ...)``.
AttackFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], AttackResult]


@dataclass
class EpsExplorer:
    """What :func:`explore_eps` measured (see the module docstring).

    Attributes:
        x: ``(C, H, W)`` or ``(C, D, H, W)`` the clean image; ``y``, ``target``: its class and the
            attack's target.
        eps: the budgets, in pixel units.
        x_adv: ``{attack: (len(eps), C, ...)}`` adversarial images.
        prob: ``{attack: (len(eps), K)}`` the classifier's probabilities.
        percentile: ``{attack: DataFrame eps × detector}`` clean percentiles of the scores.
        class_names: the dataset's class names.
    """

    x: torch.Tensor
    y: int
    target: int
    eps: list[float]
    x_adv: dict[str, torch.Tensor] = field(repr=False)
    prob: dict[str, torch.Tensor] = field(repr=False)
    percentile: dict[str, pd.DataFrame] = field(repr=False)
    class_names: list[str] = field(default_factory=list)

    def flagged(self, fpr: float = 0.05) -> pd.DataFrame:
        """``(attack, eps) × detector`` booleans: flagged at false-positive rate ``fpr``."""
        return pd.concat({a: p > 1 - fpr for a, p in self.percentile.items()})


def explore_eps(
    run: DetectionRun,
    attacks: Mapping[str, AttackFn],
    eps_grid: Sequence[float],
    index: int = 0,
    class_names: Sequence[str] | None = None,
) -> EpsExplorer:
    """Attack detector-test image ``index`` of ``run`` with each of ``attacks`` at every ε of
    ``eps_grid`` (ε = 0 is the clean image) and score the results with the run's detectors."""
    eps = check_eps_list(eps_grid, "eps_grid")
    if not attacks:
        raise ValueError("attacks is empty: pass {label: attack(x, y, target, eps)}.")
    m = len(run.test_clean)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < m:
        raise ValueError(
            f"index must be an int in [0, {m}) (a detector-test image), got {index!r}."
        )
    x = run.test_clean[index : index + 1]
    y, t = run.test_labels[index : index + 1], run.test_targets[index : index + 1]
    x_adv, prob, pct = {}, {}, {}
    for label, attack in attacks.items():
        imgs = [x[0] if e == 0 else attack(x, y, t, e).x_adv.detach().cpu()[0] for e in eps]
        xa = torch.stack(imgs)
        fs = FeatureSet.from_images(run.extractor, xa, run.batch_size)
        x_adv[label], prob[label] = xa, fs.logits.softmax(1)
        cols = {}
        for d, det in run.detectors.items():
            neg = np.sort(run.scores[d][0])
            s = seeded_scores(det, fs, run.seed + 1)
            cols[d] = np.searchsorted(neg, s, side="left") / len(neg)
        pct[label] = pd.DataFrame(cols, index=pd.Index(eps, name="eps"))
    names = list(class_names) if class_names is not None else []
    return EpsExplorer(x[0], int(y), int(t), eps, x_adv, prob, pct, names)


__all__ = ["AttackFn", "EpsExplorer", "explore_eps"]
