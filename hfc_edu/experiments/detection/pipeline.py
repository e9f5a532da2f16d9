"""The detection experiment, orchestrated: attack, split, fit in two stages, score.

The attacks come from :data:`hfc_edu.attacks.ATTACKS`, the detectors from
:data:`hfc_edu.detectors.DETECTORS`, the size knobs from the active profile; this module only
wires them together (see :mod:`hfc_edu.experiments.detection` for the protocol).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hfc_edu.attacks import ATTACKS, AttackInfo, targets
from hfc_edu.checks import check_eps_list
from hfc_edu.config import Profile, get_profile
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.detectors import DETECTORS, Detector, DetectorContext, FeatureSet, default_detectors
from hfc_edu.experiments.detection.results import (
    DetectionReport,
    DetectionRun,
    Skipped,
    seeded_scores,
)
from hfc_edu.features import FeatureExtractor
from hfc_edu.metrics import result_row, results_table
from hfc_edu.protocol import correct_mask, correct_subset, make_noisy, split_detection_set

log = logging.getLogger(__name__)

#: The attacks of the papers' detection tables (:data:`hfc_edu.attacks.ATTACKS` names).
DEFAULT_ATTACKS: tuple[str, ...] = ("FGSM", "BIM", "PGD", "CW-Linf")

AttackSpec = str | AttackInfo
DetectorSpec = str | Detector


# ----------------------------------------------------------------------------------- checks
def _check_count(name: str, value: int | str | None, default: int | None) -> int | None:
    """``None`` -> the profile's ``default``; ``"all"`` -> None (all); else an int >= 2."""
    if value is None:
        return default
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(
            f"{name} must be an int >= 2, 'all', or None (the profile's), got {value!r}."
        )
    return value


def _attacks(attacks: AttackSpec | Sequence[AttackSpec]) -> dict[str, AttackInfo]:
    """Registry names or :class:`~hfc_edu.attacks.AttackInfo` s -> ``{name: info}``."""
    items = [attacks] if isinstance(attacks, str | AttackInfo) else list(attacks)
    if not items:
        raise ValueError(f"No attacks given; choose from {ATTACKS.names()}.")
    out: dict[str, AttackInfo] = {}
    for a in items:
        if isinstance(a, str):
            info = ATTACKS.get(a)
        elif isinstance(a, AttackInfo):
            info = a
        else:
            raise TypeError(
                f"An attack is a name in {ATTACKS.names()} or an AttackInfo, got {type(a).__name__}."
            )
        if info.name in out:
            raise ValueError(f"Attack {info.name!r} is given twice.")
        out[info.name] = info
    return out


def _detectors(
    detectors: Sequence[str] | Mapping[str, DetectorSpec] | str | None, ctx: DetectorContext
) -> dict[str, Detector]:
    """Registry names, or ``{label: name or Detector}`` -> ``{label: Detector}`` (built)."""
    if detectors is None:
        detectors = default_detectors()
    if isinstance(detectors, Detector):
        raise TypeError(
            f"detectors takes names or a dict {{label: detector}}; got a bare "
            f"{type(detectors).__name__}: pass {{'my label': detector}}."
        )
    if isinstance(detectors, str):
        detectors = [detectors]
    if isinstance(detectors, Mapping):
        items = list(detectors.items())
    else:
        names = list(detectors)
        if len(set(names)) != len(names):
            raise ValueError(f"Repeated detector names in {names}.")
        items = [(name, name) for name in names]
    if not items:
        raise ValueError(f"No detectors given; choose from {DETECTORS.names()}.")
    out: dict[str, Detector] = {}
    for label, spec in items:
        if isinstance(spec, str):
            out[str(label)] = DETECTORS.get(spec).build(ctx)
        elif isinstance(spec, Detector):
            out[str(label)] = spec
        else:
            raise TypeError(
                f"Detector {label!r} must be a name in {DETECTORS.names()} or a Detector "
                f"instance, got {type(spec).__name__}."
            )
    return out


# ------------------------------------------------------------------------------ the steps
def _attacked_images(
    model: nn.Module, data: ImageDataset, n: int | None, order: str, seed: int, batch_size: int
) -> torch.Tensor:
    """Positions of the ``n`` correctly classified test images to attack (see ``order``)."""
    if order == "random":  # a seeded random draw, in random order (= a random 70/30 split)
        index = correct_subset(
            model, data.x_test, data.y_test, n, seed=seed, ordered=False, batch_size=batch_size
        )
    else:  # the official code: the first n in test-set order
        index = correct_mask(model, data.x_test, data.y_test, batch_size).nonzero().flatten()[:n]
    if len(index) < 4:
        raise ValueError(
            f"Only {len(index)} test image(s) are classified correctly; the detection set needs more."
        )
    return index


def _attack_targets(y: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    if num_classes == 2:
        return targets.other_class(y, 2)
    g = torch.Generator().manual_seed(seed)
    return targets.random_target(y, num_classes, generator=g)


def _subsample(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    if n is None or n >= n_total:
        return torch.arange(n_total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n].sort().values


def _attack(
    info: AttackInfo,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    eps: float,
    steps: int,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """``(n, ...)`` adversarial examples on CPU, targeted, one seeded generator per batch."""
    dev = next(model.parameters()).device
    parts = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(dev)
        res = info.run(
            model, xb, target[i : i + batch_size].to(dev), eps=eps, targeted=True,
            y_true=y[i : i + batch_size].to(dev), steps=steps,
            generator=torch.Generator(device=dev).manual_seed(seed + i),
        )  # fmt: skip
        if res.x_adv.shape != xb.shape:
            raise TypeError(
                f"Attack {info.name!r} returned x_adv of shape {tuple(res.x_adv.shape)} for "
                f"images of shape {tuple(xb.shape)}."
            )
        parts.append(res.x_adv.detach().cpu())
    return torch.cat(parts)


def _fit_clean_parts(
    detectors: dict[str, Detector],
    features: FeatureSet,
    y: torch.Tensor,
    seed: int,
    skipped: list[Skipped],
) -> dict[str, Detector]:
    """Stage 1: fit every unfitted clean part once (shared by all runs); drop what fails."""
    kept = {}
    for name, det in detectors.items():
        try:
            for part in det.clean_parts():
                if not part.is_fitted:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        part.fit(features, y)
        except ValueError as err:
            _skip(skipped, None, None, name, f"fitting on clean training features failed: {err}")
            continue
        kept[name] = det
    return kept


def _fit_per_attack(
    det: Detector, features: FeatureSet, is_adv: torch.Tensor, seed: int
) -> Detector:
    """Stage 2: a copy of an ``fit_on="is_adv"`` detector fitted on this run's training part
    (the copy shares the fitted clean parts); other detectors are used as they are."""
    if det.fit_on != "is_adv":
        return det
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return copy.copy(det).fit(features, is_adv)


def _skip(
    skipped: list[Skipped], attack: str | None, eps: float | None, detector: str | None, why: str
) -> None:
    where = " ".join(
        p for p in (attack, None if eps is None else f"at eps={eps:.4g}", detector) if p
    )
    log.warning("%s skipped: %s", where, why)
    skipped.append(Skipped(attack, eps, detector, why))


# ------------------------------------------------------------------------------ pipeline
def run_detection(
    model: nn.Module,
    data: ImageDataset,
    attacks: AttackSpec | Sequence[AttackSpec] = DEFAULT_ATTACKS,
    eps: float | Sequence[float] = 1 / 256,
    detectors: Sequence[str] | Mapping[str, DetectorSpec] | str | None = None,
    *,
    n: int | str | None = None,
    n_fit: int | str | None = None,
    steps: int | None = None,
    profile: str | Profile | None = None,
    dataset: str | None = None,
    layers: str | Sequence[str] | None = None,
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
            fit the detectors' clean parts.
        attacks: names in :data:`hfc_edu.attacks.ATTACKS` (``"FGSM"``, ``"BIM"``, ``"PGD"``,
            ``"MIM"``, ``"CW-Linf"``) or :class:`~hfc_edu.attacks.AttackInfo` s (e.g. one not
            registered).
        eps: L∞ budget(s) in pixel units (``1/256`` is the papers' main setting); one run per
            (attack, ε), with noisy negatives at the same ε.
        detectors: names in :data:`hfc_edu.detectors.DETECTORS` (default: its default set, the
            book's table: KD, BU, LID, MAHA, DFeat, QFeat, SVM, DNN), or a dict
            ``{label: name or Detector instance}`` for other knobs, e.g.
            ``{"KD": "KD", "KD-cv": KD(bandwidth="cv")}``.
        n: attack ``n`` correctly classified test images (None: the profile's ``n_attack``;
            ``"all"``: every one).
        n_fit: seeded random training images that fit the clean parts (KD, MAHA, LID; None: the
            profile's ``n_fit``; ``"all"``: every one).
        steps: iterations of the iterative attacks (None: the profile's ``attack_steps``).
        profile: a :class:`~hfc_edu.config.Profile` or its name (None: the active profile,
            :func:`~hfc_edu.config.get_profile`); it also sets the detectors' size knobs.
        dataset: the ``dataset`` label of the table (default ``data.name``).
        layers: the feature layers (see :class:`~hfc_edu.features.FeatureExtractor`; default:
            every ReLU output, the penultimate last).
        noise: ``"uniform"`` (x + U(−ε, ε)) or ``"sign"`` (x ± ε) noisy negatives.
        train_fraction: the detector-training fraction (0.7, the official code).
        order: ``"random"``: a seeded random draw of ``n`` correctly classified test images, split
            at random; ``"file"``: the first ``n`` in test-set order, split in order (the official
            code; biased when the test file is sorted by class).
        seed: seeds everything random (subsample, targets, random starts, noise, detectors,
            bootstrap intervals).
        batch_size: images per forward/attack batch.

    Returns:
        a :class:`~hfc_edu.experiments.detection.DetectionReport`. What cannot be evaluated (an
        attack that succeeds too rarely, a detector whose fit or scores fail on these data) is
        left out, logged as a warning and listed in ``report.skipped`` with the reason; bad
        arguments raise before any work.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if not isinstance(data, ImageDataset):
        raise TypeError(
            f"data must be an hfc_edu ImageDataset (hfc_edu.data.load_task), got {type(data).__name__}."
        )
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    eps_list = check_eps_list([eps] if isinstance(eps, int | float) else eps, positive=True)
    attack_infos = _attacks(attacks)
    if order not in ("random", "file"):
        raise ValueError(f"order must be 'random' or 'file', got {order!r}.")
    if noise not in ("uniform", "sign"):
        raise ValueError(f"noise must be 'uniform' or 'sign', got {noise!r}.")
    n = _check_count("n", n, prof.n_attack)
    n_fit = _check_count("n_fit", n_fit, prof.n_fit)
    steps = prof.attack_steps if steps is None else steps
    dataset = dataset or data.name
    fx = FeatureExtractor(model, layers=layers)
    dets = _detectors(detectors, DetectorContext(model, fx, prof, seed, batch_size))

    # 1. n correctly classified test images and their targets.
    index = _attacked_images(model, data, n, order, seed, batch_size)
    x, y = data.x_test[index], data.y_test[index]
    target = _attack_targets(y, data.num_classes, seed)
    log.info("%s: %d correctly classified test images attacked", dataset, len(x))

    # 2. Stage 1: the clean parts, on clean training features (one extraction, shared).
    skipped: list[Skipped] = []
    fit_idx = _subsample(len(data.x_train), n_fit, seed)
    fit_fs = FeatureSet.from_images(fx, data.x_train[fit_idx], batch_size, keep_images=False)
    fit_labels = data.y_train[fit_idx]
    dets = _fit_clean_parts(dets, fit_fs, fit_labels, seed, skipped)

    # 3. Clean features once; noisy features once per eps; adversarial once per (attack, eps).
    clean_fs = FeatureSet.from_images(fx, x, batch_size)
    runs: dict[tuple[str, float], DetectionRun] = {}
    rows: list[dict] = []
    for e in eps_list:
        x_noisy = make_noisy(x, e, kind=noise, generator=torch.Generator().manual_seed(seed))
        noisy_fs = FeatureSet.from_images(fx, x_noisy, batch_size)
        for a_name, info in attack_infos.items():
            x_adv = _attack(info, model, x, y, target, e, steps, seed, batch_size)
            adv_fs = FeatureSet.from_images(fx, x_adv, batch_size)
            success = adv_fs.pred == target
            splits = split_detection_set(success, train_fraction=train_fraction)
            if splits.train.n_pos < 2 or splits.test.n_pos < 1:
                _skip(
                    skipped, a_name, e, None,
                    f"too few successful attacks to train and test detectors ({int(success.sum())} "
                    f"of {len(x)}: {splits.train.n_pos} in the training part, "
                    f"{splits.test.n_pos} in the test part)",
                )  # fmt: skip
                continue
            tr_fs, tr_lab = splits.train.gather(clean_fs, noisy_fs, adv_fs)
            te_fs, te_lab = splits.test.gather(clean_fs, noisy_fs, adv_fs)
            is_pos = te_lab.numpy() == 1
            fitted, scores = {}, {}
            for d_name, det in dets.items():
                try:  # data-dependent failures (ValueError) skip one detector, not the run
                    fitted[d_name] = _fit_per_attack(det, tr_fs, tr_lab, seed)
                    s = seeded_scores(fitted[d_name], te_fs, seed + 1)
                except ValueError as err:
                    fitted.pop(d_name, None)
                    _skip(skipped, a_name, e, d_name, str(err))
                    continue
                scores[d_name] = (s[~is_pos], s[is_pos])
                rows.append(
                    result_row(
                        *scores[d_name], dataset=dataset, attack=a_name, eps=e, detector=d_name,
                        success_rate=float(success.float().mean()), seed=seed,
                    )
                )  # fmt: skip
            runs[(a_name, e)] = DetectionRun(
                dataset, a_name, e, splits, tr_fs, tr_lab, te_fs, te_lab, fitted, scores,
                success, x_adv, target, x, y, model, fx, seed, batch_size,
            )  # fmt: skip
    if skipped:
        log.warning(
            "%s: %d item(s) could not be evaluated; see report.skipped.", dataset, len(skipped)
        )
    return DetectionReport(
        dataset, results_table(rows), runs, skipped, dets, x, y, index, clean_fs, fit_fs, fit_labels
    )


__all__ = ["DEFAULT_ATTACKS", "run_detection"]
