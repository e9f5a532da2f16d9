"""The papers' detection experiment as one reusable pipeline (Ma et al. 2021; Yao et al. 2021/2023).

:func:`run_detection` attacks the first ``n`` correctly classified test images, builds the
detection set with the protocol of :mod:`hfc_edu.protocol`, fits every detector and scores it::

    from hfc_edu.experiments.detection import run_detection
    report = run_detection(model, data, attacks=["FGSM", "BIM", "PGD", "CW"], eps=1 / 256, n=300)
    report.table                    # one row per (attack, eps, detector): auc, tpr90, tpr95, ...
    run = report.run("PGD")         # the fitted detectors, splits and features of one attack
    new = run.evaluate(x_adv_new)   # score NEW adversarial examples of run.test_clean (e.g. HFC)

Protocol (the papers' code, with its noise bug fixed; see :mod:`hfc_edu.protocol`):

1. keep the test images the classifier gets right and draw ``n`` of them (seeded; the official
   code takes them in file order, which is biased when a test file is sorted by class);
2. attack each one **targeted to another class** (the other class for binary tasks, where this is
   the same as untargeted; a seeded random other class otherwise) with the papers' schedule
   (T = 10 sign steps of 2ε/T; FGSM one step of ε; CW-L∞ = the same loop on the CW margin, κ = 100);
3. negatives = the clean images and **genuinely noisy** copies (uniform noise in the same ε-ball;
   the official code's "noise" images equal the clean ones); positives = the **successful**
   adversarial examples only;
4. 70 % of the images train the supervised detectors (LR heads, DFeat, QFeat, SVM,
   DNN), the last 30 % evaluate every detector;
5. the density detectors (KD, MAHA's class Gaussians, LID's reference batch) are fitted once on
   clean features of a seeded subsample of the classifier's **training** images and shared by all
   attacks; LID scores every query against the same reference batch of 100 (as the official
   code's detector training), so its scores do not depend on where a query sits in a batch.

Each image set goes through the classifier once: the clean, training and noisy features are
extracted once, and each attack costs one attack run plus one feature extraction.

Detector names (``detectors=``): ``"KD"`` (penultimate-layer kernel density, no regression),
``"BU"`` (MC-dropout uncertainty), ``"LID"``/``"MAHA"`` (per-layer scores + logistic regression),
``"KD+BU"``, ``"DFeat"``, ``"QFeat"``, ``"SVM"`` and ``"DNN"``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from hfc_edu.attacks import bim, cw_linf, fgsm, mim, pgd, targets
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.detectors import BU, DNN, KD, LID, MAHA, SVM, DFeat, FeatureSet, QFeat, ScoreLR
from hfc_edu.detectors.base import Detector
from hfc_edu.features import FeatureExtractor
from hfc_edu.metrics import detection_metrics
from hfc_edu.protocol import (
    DetectionData,
    DetectionSplit,
    correct_mask,
    make_noisy,
    split_detection_set,
)

log = logging.getLogger(__name__)

#: Every detector :func:`run_detection` knows, in the book's table order.
DETECTORS: tuple[str, ...] = ("KD", "BU", "LID", "MAHA", "DFeat", "QFeat", "SVM", "DNN")
KNOWN_DETECTORS: tuple[str, ...] = (*DETECTORS, "KD+BU")

#: Attacks known by name. Each is called as ``fn(model, x, target, eps=..., targeted=True,
#: y_true=y, steps=..., generator=...)`` (keywords the function does not take are dropped).
ATTACKS: dict[str, Callable] = {"FGSM": fgsm, "BIM": bim, "PGD": pgd, "MIM": mim, "CW": cw_linf}

#: Columns of :attr:`DetectionReport.table`, in order.
TABLE_COLUMNS = [
    "dataset",
    "attack",
    "eps",
    "eps_256",
    "detector",
    "auc",
    "tpr90",
    "tpr95",
    "n_pos",
    "n_neg",
    "success_rate",
]

AttackSpec = str | Callable


# ----------------------------------------------------------------------------------- checks
def _check_names(detectors: Sequence[str]) -> list[str]:
    if isinstance(detectors, str):
        detectors = [detectors]
    names = list(detectors)
    unknown = [d for d in names if d not in KNOWN_DETECTORS]
    if unknown:
        raise ValueError(f"Unknown detector(s) {unknown}; choose from {list(KNOWN_DETECTORS)}.")
    if not names:
        raise ValueError(f"No detectors given; choose from {list(KNOWN_DETECTORS)}.")
    if len(set(names)) != len(names):
        raise ValueError(f"Repeated detector names in {names}.")
    return names


def _check_eps(eps: float | Sequence[float]) -> list[float]:
    values = [eps] if isinstance(eps, int | float) else list(eps)
    if not values:
        raise ValueError("eps is empty; pass a float such as 1/256 or a list of floats.")
    out = []
    for e in values:
        if isinstance(e, bool) or not isinstance(e, int | float):
            raise TypeError(f"eps values must be floats in pixel units, got {e!r}.")
        if not math.isfinite(e) or not 0 < e <= 1:
            raise ValueError(
                f"eps must be in (0, 1] pixel units, got {e}; the papers' '1/256 units' are "
                "written eps=k/256 (e.g. 1/256, not 1)."
            )
        out.append(float(e))
    if len(set(out)) != len(out):
        raise ValueError(f"Repeated eps values: {out}.")
    return out


def _attacks(attacks: Sequence[AttackSpec] | Mapping[str, AttackSpec] | AttackSpec) -> dict:
    if isinstance(attacks, str) or callable(attacks):
        attacks = [attacks]
    items = attacks.items() if isinstance(attacks, Mapping) else [(None, a) for a in attacks]
    out: dict[str, Callable] = {}
    for name, a in items:
        if isinstance(a, str):
            if a not in ATTACKS:
                raise ValueError(
                    f"Unknown attack {a!r}; choose from {list(ATTACKS)} or pass a callable."
                )
            fn = ATTACKS[a]
            name = name or a
        elif callable(a):
            fn = a
            name = name or getattr(a, "__name__", type(a).__name__)
        else:
            raise TypeError(
                f"An attack must be a name in {list(ATTACKS)} or a callable, got {type(a).__name__}."
            )
        if str(name) in out:
            raise ValueError(f"Two attacks are named {name!r}; pass a dict with distinct names.")
        out[str(name)] = fn
    if not out:
        raise ValueError(f"No attacks given; choose from {list(ATTACKS)}.")
    return out


def _call_attack(fn: Callable, model: nn.Module, x: torch.Tensor, t: torch.Tensor, **kw):
    """``fn(model, x, t, **kw)`` with the keywords its signature accepts; returns ``x_adv``."""
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    res = fn(model, x, t, **{k: v for k, v in kw.items() if takes_any or k in params})
    x_adv = getattr(res, "x_adv", res)
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        raise TypeError(
            f"Attack {getattr(fn, '__name__', fn)!r} must return an AttackResult or a tensor shaped "
            f"like x {tuple(x.shape)}."
        )
    return x_adv.detach()


# --------------------------------------------------------------------------------- results
@dataclass
class NewAttackScores:
    """Detector scores of new adversarial examples against the test negatives of a run.

    Attributes:
        table: one row per detector (the columns of :attr:`DetectionReport.table`).
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
        attack, eps: the attack's name and L∞ budget (pixel units).
        data: the image splits (:class:`~hfc_edu.protocol.DetectionData`); ``data.test.clean`` are
            the images to attack with a new method, with ``test_targets`` as targets.
        train, train_is_adv: detector-training inputs ``cat(clean, noisy, successful adv)`` and labels.
        test, test_is_adv: the same for the detector-test split.
        detectors: ``{name: fitted detector}`` (higher score = more adversarial).
        scores: ``{name: (negative scores, positive scores)}`` on the test split.
        success: ``(n,)`` bool, attack success on all ``n`` attacked images.
        x_adv: ``(n, ...)`` the adversarial examples of all ``n`` images (successful or not).
    """

    dataset: str
    attack: str
    eps: float
    data: DetectionData
    train: FeatureSet
    train_is_adv: torch.Tensor
    test: FeatureSet
    test_is_adv: torch.Tensor
    detectors: dict[str, Detector]
    scores: dict[str, tuple[np.ndarray, np.ndarray]]
    success: torch.Tensor
    x_adv: torch.Tensor = field(repr=False)
    target: torch.Tensor = field(repr=False)
    model: nn.Module = field(repr=False)
    extractor: FeatureExtractor = field(repr=False)
    seed: int = 0
    batch_size: int = 128

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def test_clean(self) -> torch.Tensor:
        """``(m, ...)`` clean images of the detector-test split (attack these with a new method)."""
        return self.data.test.clean

    @property
    def test_labels(self) -> torch.Tensor:
        """``(m,)`` true labels of :attr:`test_clean`."""
        return self.data.test.y

    @property
    def test_targets(self) -> torch.Tensor:
        """``(m,)`` attack targets of :attr:`test_clean` (the same as the base attack's)."""
        return self.target[self.data.test.index]

    def negatives(self) -> FeatureSet:
        """Features of the test split's clean and noisy images (the negatives), in that order."""
        n_neg = int((self.test_is_adv == 0).sum())
        return self.test.subset(torch.arange(n_neg))

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
        new examples are scored. No detector is refitted.
        """
        m = len(self.test_clean)
        if not isinstance(x_adv, torch.Tensor) or x_adv.shape != self.test_clean.shape:
            raise ValueError(
                f"x_adv must be aligned with the {m} test images, shape {tuple(self.test_clean.shape)}; "
                f"got {tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__}."
            )
        names = list(self.detectors) if detectors is None else _check_names(detectors)
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
            raise ValueError(
                f"None of the {m} new adversarial examples succeeded: nothing to score."
            )
        pos_fs = adv_fs.subset(success)
        rows, scores = [], {}
        for d in names:
            neg = self.scores[d][0]
            pos = _score(self.detectors[d], pos_fs, self.seed + 1)
            scores[d] = (neg, pos)
            rows.append(
                _row(self.dataset, name, self.eps, d, neg, pos, float(success.float().mean()))
            )
        return NewAttackScores(_table(rows), scores, success)


@dataclass
class DetectionReport:
    """The results of :func:`run_detection`.

    Attributes:
        table: tidy results, one row per (attack, ε, detector), columns :data:`TABLE_COLUMNS`.
        runs: ``{(attack, eps): DetectionRun}``.
        density: the detectors fitted on the classifier's training features, shared by all runs
            (``"KD"``, ``"MAHA"``, ``"LID"``: the per-layer base detectors; ``"BU"``).
        x, y, index: the ``n`` attacked clean images, their labels and positions in the test set.
        clean: their features (:class:`~hfc_edu.detectors.FeatureSet`).
        fit_features, fit_labels: features and labels of the training images that fitted the
            density detectors (refit a detector on them, e.g. ``KD("cv").fit(fit_features, fit_labels)``).
    """

    dataset: str
    table: pd.DataFrame
    runs: dict[tuple[str, float], DetectionRun]
    density: dict[str, Detector]
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
            raise KeyError(
                f"No run for attack {attack!r}; runs: {sorted({k[0] for k in self.runs})}."
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
        if metric not in ("auc", "tpr90", "tpr95", "n_pos", "n_neg", "success_rate"):
            raise ValueError(f"Unknown metric {metric!r}; use 'auc', 'tpr90' or 'tpr95'.")
        if eps is None:
            if df["eps"].nunique() > 1:
                raise ValueError(
                    f"The table has several eps {sorted(df['eps'].unique())}; pass eps."
                )
        else:
            df = df[np.isclose(df["eps"], eps)]
        p = df.pivot(index="attack", columns="detector", values=metric)
        return p.loc[pd.unique(df["attack"]), pd.unique(df["detector"])]


# ------------------------------------------------------------------------------ internals
def _score(det: Detector, fs: FeatureSet, seed: int) -> np.ndarray:
    """Scores with the global RNG seeded (BU's dropout masks): independent of call order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return np.asarray(det.score(fs), dtype=np.float64)


def _row(dataset, attack, eps, det, neg, pos, success_rate) -> dict:
    row = {"dataset": dataset, "attack": attack, "eps": eps, "eps_256": eps * 256, "detector": det}
    row.update(detection_metrics(neg, pos))
    row["success_rate"] = success_rate
    return row


def _table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return df.astype({"n_pos": int, "n_neg": int})


def _subsample(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    if n is None or n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def _attack_targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    if num_classes == 2:
        return targets.other_class(y, 2)
    g = torch.Generator().manual_seed(seed)
    return targets.random_target(y, num_classes, generator=g)


def _fit_supervised(
    name: str,
    density: dict[str, Detector],
    fx: FeatureExtractor,
    train: FeatureSet,
    is_adv: torch.Tensor,
    opts: dict,
) -> Detector:
    if name == "KD":
        return density["KD"]  # unsupervised: the penultimate-layer density, no regression
    if name == "BU":
        return density["BU"]
    if name in ("LID", "MAHA"):
        det: Detector = ScoreLR(density[name], per_layer=True)
    elif name == "KD+BU":
        det = ScoreLR([density["KD"], density["BU"]], per_layer=False)
    elif name == "DFeat":
        det = DFeat(seed=opts["seed"])
    elif name == "QFeat":
        det = QFeat()
    elif name == "SVM":
        det = SVM()
    elif name == "DNN":
        det = DNN(
            fx,
            layers=opts["dnn_layers"],
            iters=opts["dnn_iters"],
            widths=opts["dnn_widths"],
            seed=opts["seed"],
        )
    else:  # pragma: no cover - names are checked up front
        raise ValueError(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        return det.fit(train, is_adv)


def _fit_density(
    names: list[str],
    model: nn.Module,
    train_fs: FeatureSet,
    y_train: torch.Tensor,
    opts: dict,
) -> dict[str, Detector]:
    need = set(names)
    if "KD+BU" in need:
        need |= {"KD", "BU"}
    out: dict[str, Detector] = {}
    if "KD" in need:
        out["KD"] = KD(bandwidth=opts["kd_bandwidth"], seed=opts["seed"]).fit(train_fs, y_train)
    if "MAHA" in need:
        out["MAHA"] = MAHA(
            layers="all",
            magnitude=opts["maha_magnitude"],
            extractor=opts["fx"] if opts["maha_magnitude"] > 0 else None,
        ).fit(train_fs, y_train)
    if "LID" in need:
        # One fixed reference batch of clean training features for every query, as the official
        # code's training-time scores (LID scores each chunk of `batch_size` queries against
        # its own random batch otherwise, and the clean, noisy and adversarial queries sit in
        # different chunks: a batch effect confounded with the label). The reference holds no
        # query (training vs test images), so nothing is skipped.
        ref = train_fs.subset(torch.arange(min(opts["lid_batch"], len(train_fs))))
        out["LID"] = LID(k=opts["lid_k"], batch_size=len(ref), seed=opts["seed"]).fit(ref)
    if "BU" in need:
        out["BU"] = BU(model, passes=opts["mc_passes"])
    return out


def _split_features(
    split: DetectionSplit, clean: FeatureSet, noisy: FeatureSet, adv: FeatureSet
) -> tuple[FeatureSet, torch.Tensor]:
    """Cached features of ``cat(clean, noisy, successful adv)`` of one split, and labels."""
    fs = FeatureSet.concat(
        [clean.subset(split.index), noisy.subset(split.index), adv.subset(split.adv_index)]
    )
    n_neg, n_pos = 2 * len(split.index), len(split.adv_index)
    is_adv = torch.cat([torch.zeros(n_neg, dtype=torch.long), torch.ones(n_pos, dtype=torch.long)])
    return fs, is_adv


# ------------------------------------------------------------------------------ pipeline
def run_detection(
    model: nn.Module,
    data: ImageDataset,
    attacks: Sequence[AttackSpec] | Mapping[str, AttackSpec] | AttackSpec = (
        "FGSM",
        "BIM",
        "PGD",
        "CW",
    ),
    eps: float | Sequence[float] = 1 / 256,
    detectors: Sequence[str] = DETECTORS,
    *,
    n: int | None = 300,
    n_fit: int | None = 2000,
    steps: int = 10,
    dataset: str | None = None,
    layers: str | Sequence[str] | None = None,
    kd_bandwidth: float | str = 1.0,
    maha_magnitude: float = 0.0,
    lid_k: int = 20,
    lid_batch: int = 100,
    mc_passes: int = 20,
    dnn_iters: int = 200,
    dnn_widths: tuple[int, int] = (96, 192),
    dnn_layers: str | Sequence[str] | None = None,
    noise: str = "uniform",
    train_fraction: float = 0.7,
    order: str = "random",
    seed: int = 0,
    batch_size: int = 128,
) -> DetectionReport:
    """Attack, split, fit and score: the detection experiment of the papers on one model.

    Args:
        model: the trained classifier (eval mode), inputs in [0, 1].
        data: its :class:`~hfc_edu.data.ImageDataset`; test images are attacked, training images
            fit the density detectors.
        attacks: names from :data:`ATTACKS` (``"FGSM"``, ``"BIM"``, ``"PGD"``, ``"MIM"``, ``"CW"``),
            callables ``fn(model, x, target, *, eps, targeted, y_true, steps, generator)`` returning
            an :class:`~hfc_edu.attacks.AttackResult`, or a dict ``{name: name or callable}``.
        eps: L∞ budget(s) in pixel units (``1/256`` is the papers' main setting); one run per
            (attack, ε), with noisy negatives at the same ε.
        detectors: names from :data:`KNOWN_DETECTORS`.
        n: attack the first ``n`` correctly classified test images (None: all of them).
        n_fit: seeded random training images that fit KD, MAHA and LID (None: all).
        steps: iterations of the iterative attacks (the papers: 10).
        dataset: the ``dataset`` label of the table (default ``data.name``).
        layers: the feature layers (see :class:`~hfc_edu.features.FeatureExtractor`; default:
            every ReLU output, the penultimate last).
        kd_bandwidth: KD bandwidth: 1.0 (the HFC code), a float, ``"median"`` or ``"cv"``.
        maha_magnitude: MAHA input pre-processing step (0 = none, as in the HFC code's evaluation;
            its training used 0.0005).
        lid_k, lid_batch: LID neighbours and the size of its one reference batch of clean
            training features (the first ``lid_batch`` of the ``n_fit`` subsample).
        mc_passes: BU Monte-Carlo dropout passes.
        dnn_iters, dnn_widths, dnn_layers: DNN detector training iterations, conv widths, layers.
        noise: ``"uniform"`` (x + U(−ε, ε)) or ``"sign"`` (x ± ε) noisy negatives.
        train_fraction: the detector-training fraction (0.7, the official code).
        order: ``"random"``: a seeded random draw of ``n`` correctly classified test images, split
            at random; ``"file"``: the first ``n`` in test-set order, split in order (the official
            code; biased when the test file is sorted by class).
        seed: seeds everything random (subsample, targets, random starts, noise, detectors).
        batch_size: images per forward/attack batch.

    Returns:
        a :class:`DetectionReport`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"data must be an hfc_edu ImageDataset (hfc_edu.data.load_task), got {type(data).__name__}."
        )
    names = _check_names(detectors)
    eps_list = _check_eps(eps)
    attack_fns = _attacks(attacks)
    if order not in ("random", "file"):
        raise ValueError(f"order must be 'random' or 'file', got {order!r}.")
    if noise not in ("uniform", "sign"):
        raise ValueError(f"noise must be 'uniform' or 'sign', got {noise!r}.")
    for label, v in (("n", n), ("n_fit", n_fit)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
            raise ValueError(f"{label} must be None or an int >= 2, got {v!r}.")
    dataset = dataset or data.name
    dev = next(model.parameters()).device
    model.eval()
    fx = FeatureExtractor(model, layers=layers)
    opts = dict(
        seed=seed, kd_bandwidth=kd_bandwidth, maha_magnitude=maha_magnitude, fx=fx, lid_k=lid_k,
        lid_batch=lid_batch, mc_passes=mc_passes, dnn_iters=dnn_iters,
        dnn_widths=tuple(dnn_widths), dnn_layers=dnn_layers,
    )  # fmt: skip

    # 1. The first n correctly classified test images.
    ok = correct_mask(model, data.x_test, data.y_test, batch_size)
    index = ok.nonzero().flatten()
    if order == "random":  # a seeded random draw, kept in random order (= a random 70/30 split)
        index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))]
    if n is not None:
        index = index[:n]
    if len(index) < 4:
        raise ValueError(
            f"Only {len(index)} test image(s) are classified correctly; the detection set needs more."
        )
    x, y = data.x_test[index], data.y_test[index]
    target = _attack_targets(y, data.num_classes, seed)
    log.info("%s: %d correctly classified test images attacked", dataset, len(x))

    # 2. Density detectors on clean training features (one extraction).
    fit_idx = _subsample(len(data.x_train), n_fit, seed)
    train_fs = FeatureSet.from_images(fx, data.x_train[fit_idx], batch_size, keep_images=False)
    density = _fit_density(names, model, train_fs, data.y_train[fit_idx], opts)

    # 3. Clean features once; noisy features once per eps; adversarial once per (attack, eps).
    clean_fs = FeatureSet.from_images(fx, x, batch_size)
    runs: dict[tuple[str, float], DetectionRun] = {}
    rows: list[dict] = []
    for e in eps_list:
        g = torch.Generator().manual_seed(seed)
        x_noisy = make_noisy(x, e, kind=noise, generator=g)
        noisy_fs = FeatureSet.from_images(fx, x_noisy, batch_size)
        for a_name, fn in attack_fns.items():
            parts = []
            for i in range(0, len(x), batch_size):
                gen = torch.Generator(device=dev).manual_seed(seed + i)
                parts.append(
                    _call_attack(
                        fn, model, x[i : i + batch_size].to(dev), target[i : i + batch_size].to(dev),
                        eps=e, targeted=True, y_true=y[i : i + batch_size].to(dev), steps=steps,
                        generator=gen,
                    ).cpu()
                )  # fmt: skip
            x_adv = torch.cat(parts)
            adv_fs = FeatureSet.from_images(fx, x_adv, batch_size)
            success = adv_fs.pred == target
            if not success.any():
                log.warning("%s at eps=%.4g: no attack succeeded; skipped.", a_name, e)
                continue
            split = split_detection_set(
                x, y, x_adv, success, x_noisy,
                train_fraction=train_fraction,
            )  # fmt: skip
            if len(split.train.adv_index) < 2 or len(split.test.adv_index) < 1:
                log.warning(
                    "%s at eps=%.4g: too few successful attacks (%d) to train and test; skipped.",
                    a_name, e, int(success.sum()),
                )  # fmt: skip
                continue
            tr_fs, tr_lab = _split_features(split.train, clean_fs, noisy_fs, adv_fs)
            te_fs, te_lab = _split_features(split.test, clean_fs, noisy_fs, adv_fs)
            fitted, scores = {}, {}
            lab = te_lab.numpy()
            for d in names:
                det = _fit_supervised(d, density, fx, tr_fs, tr_lab, opts)
                s = _score(det, te_fs, seed + 1)
                fitted[d], scores[d] = det, (s[lab == 0], s[lab == 1])
                rows.append(_row(dataset, a_name, e, d, *scores[d], float(success.float().mean())))
            runs[(a_name, e)] = DetectionRun(
                dataset, a_name, e, split, tr_fs, tr_lab, te_fs, te_lab, fitted, scores,
                success, x_adv, target, model, fx, seed, batch_size,
            )  # fmt: skip
    if not runs:
        raise RuntimeError("No attack succeeded often enough to evaluate any detector.")
    return DetectionReport(
        dataset, _table(rows), runs, density, x, y, index, clean_fs, train_fs, data.y_train[fit_idx]
    )


# -------------------------------------------------------------------------------- tables
def eps_label(eps: float) -> str:
    """``4/256``-style label of an ε in pixel units."""
    return f"{eps * 256:g}/256"


def metric_grid(table: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """``(attack ε) × detector`` grid of ``metric`` from one or more detection tables (row and
    column order as they first appear), e.g. for a heatmap."""
    if metric not in table.columns:
        raise ValueError(f"Unknown metric {metric!r}; the table has {list(table.columns)}.")
    df = table.assign(row=table["attack"] + " " + table["eps"].map(eps_label))
    grid = df.pivot(index="row", columns="detector", values=metric)
    return grid.loc[pd.unique(df["row"]), pd.unique(df["detector"])]


def overshoot_table(report: DetectionReport) -> pd.DataFrame:
    """How far each attack pushes the successful examples of the detector-test split.

    Columns: ``success_rate`` (all n images), ``target_confidence`` (median softmax probability
    of the target class) and ``feature_shift`` (median ‖z(x_adv) − z(x)‖ of the penultimate
    features ``z``, in units of the clean features' spread √tr Cov(z)).
    """
    rows = []
    spread = None
    for (attack, eps), run in report.runs.items():
        layer = run.test.layers[-1]
        z_clean_all = report.clean.feats[layer].double()
        if spread is None:
            spread = float(z_clean_all.var(0).sum().sqrt())
        pos = run.test.subset(run.test_is_adv == 1)
        z_adv = pos.feats[layer].double()
        z_src = report.clean.subset(run.data.test.adv_index).feats[layer].double()
        p_t = pos.logits.softmax(1)[torch.arange(len(pos)), run.target[run.data.test.adv_index]]
        rows.append(
            {
                "attack": attack,
                "eps": eps,
                "eps_256": eps * 256,
                "success_rate": run.success_rate,
                "target_confidence": float(p_t.median()),
                "feature_shift": float((z_adv - z_src).norm(dim=1).median()) / spread,
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- embeddings
def representative_layers(layer_names: Sequence[str]) -> list[str]:
    """The shallowest, a middle and the deepest (penultimate) layer of ``layer_names``."""
    names = list(layer_names)
    if not names:
        raise ValueError("No layer names given.")
    picks = [names[0], names[(len(names) - 1) // 2], names[-1]]
    return list(dict.fromkeys(picks))


def feature_embedding(
    run: DetectionRun, layer: str, split: str = "test", method: str = "pca", seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """2D embedding ``(N, 2)`` of one layer's features of clean, noisy and adversarial images.

    ``method="pca"`` (deterministic; fitted on all three groups, standardised per channel) or
    ``"tsne"``. Returns the embedding and one group label per row (``"clean"``, ``"noisy"``,
    ``"adversarial"``) for :func:`~hfc_edu.plots.embedding_plot`.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    fs, lab = (run.train, run.train_is_adv) if split == "train" else (run.test, run.test_is_adv)
    if layer not in fs.feats:
        raise ValueError(f"Unknown layer {layer!r}; the features have {fs.layers}.")
    z = StandardScaler().fit_transform(fs.feats[layer].double().numpy())
    if method == "pca":
        emb = PCA(n_components=2, random_state=seed).fit_transform(z)
    else:
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(z)
    n_clean = int((lab == 0).sum()) // 2
    groups = ["clean"] * n_clean + ["noisy"] * n_clean + ["adversarial"] * int((lab == 1).sum())
    return emb, groups


__all__ = [
    "ATTACKS",
    "DETECTORS",
    "KNOWN_DETECTORS",
    "TABLE_COLUMNS",
    "DetectionReport",
    "DetectionRun",
    "NewAttackScores",
    "eps_label",
    "feature_embedding",
    "metric_grid",
    "overshoot_table",
    "representative_layers",
    "run_detection",
]
