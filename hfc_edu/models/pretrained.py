"""Get a trained classifier for a task: shipped with the package, from the checkpoint cache, or
trained now and cached.

:func:`get_classifier` looks in this order:

1. the **shipped** classifiers (:mod:`hfc_edu.models.shipped`): the book's models, trained once,
   verified by SHA-256 on load; the same weights on every machine;
2. the **checkpoint cache** (``$HFC_EDU_CACHE/checkpoints``), keyed by data, model and training;
3. **training** (a few seconds to minutes on a CPU for the book profile), then caching.

``retrain=True`` skips 1 and 2; ``train=False`` refuses 3.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace

import torch

from hfc_edu.config import Profile, get_profile
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.tasks import TASKS, load_task
from hfc_edu.models.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from hfc_edu.models.shipped import (
    ShippedModel,
    ShippedWeightsError,
    find_shipped,
    load_state,
    note_data_difference,
)
from hfc_edu.models.training import (
    TrainConfig,
    TrainResult,
    classification_metrics,
    predict_logits,
    train_classifier,
)
from hfc_edu.models.zoo import Classifier, build_model, model_from_config

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained classifier with its data, test metrics and training history.

    ``source`` says where the weights came from: ``"shipped"`` (with the package),
    ``"cache"`` (the checkpoint cache) or ``"trained"`` (just now); ``path`` is their file.
    """

    model: Classifier
    data: ImageDataset
    test: dict
    history: list
    best_epoch: int
    seconds: float
    source: str
    path: str

    @property
    def from_cache(self) -> bool:
        """Whether the weights were loaded (shipped or cached) rather than trained now."""
        return self.source != "trained"

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.3f}" for k, v in self.test.items())
        return f"TrainedModel({self.data.name}, {self.model.config['arch']}, test: {m})"


def default_train_config(
    profile: Profile, seed: int = 0, task: str | ImageDataset | None = None
) -> TrainConfig:
    """The profile's training configuration, with the task's training overrides
    (:attr:`~hfc_edu.data.TaskInfo.train_overrides`) applied when ``task`` is a registered task
    name or a dataset loaded by :func:`~hfc_edu.data.load_task`."""
    tcfg = TrainConfig(epochs=profile.epochs, batch_size=profile.batch_size, seed=seed)
    name = task.task if isinstance(task, ImageDataset) else task
    if not name or name not in TASKS:
        return tcfg
    overrides = dict(TASKS.get(name).train_overrides)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"Task {name!r} has training override(s) {unknown} that are not TrainConfig fields "
            f"({sorted(known)})."
        )
    return replace(tcfg, **overrides)


def get_classifier(
    task: str | ImageDataset,
    arch: str | None = None,
    size: int | None = None,
    dropout: float | None = None,
    profile: str | Profile | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    retrain: bool = False,
    train: bool = True,
    shipped: bool = True,
    progress: bool = True,
    adv_eps: float | None = None,
) -> TrainedModel:
    """A classifier for ``task``, trained once and cached.

    Args:
        task: a registered task name (:data:`~hfc_edu.data.TASKS`) or an
            :class:`~hfc_edu.data.ImageDataset` (your own data, or one from ``load_task``).
        arch, dropout: default to the profile's (``compact_resnet`` with dropout 0.3 before the
            head in the book profile; BU's Monte-Carlo passes switch that dropout on).
        size: image size of a task given by name (default: the task's book size).
        train_config: the whole training configuration; default: the profile's, with the
            task's training overrides (:func:`default_train_config`).
        retrain: train even if shipped weights or a cached checkpoint exist (the result is
            cached, never written over the shipped weights).
        train: ``False`` never trains: no shipped or cached weights is a ``FileNotFoundError``.
        shipped: ``False`` ignores the shipped weights (``scripts/ship_weights.py`` uses it).
        adv_eps: PGD adversarial training at this L∞ budget (e.g. ``4/256``; the profile's
            training configuration otherwise, :attr:`TrainConfig.adv_eps
            <hfc_edu.models.TrainConfig.adv_eps>`); not together with ``train_config``.

    Shipped weights answer a request for a registered task when the image size, architecture,
    dropout and training configuration equal theirs; when the data loaded differ from the copy
    they were trained on (e.g. the official MedMNIST download against the offline copy behind
    the book), a warning says so once and the test metrics are measured again on the data
    loaded. A shipped file that fails its checksum or does not fit its architecture is a
    :class:`~hfc_edu.models.shipped.ShippedWeightsError`, never a silent retrain. The cache key
    covers the data (name and fingerprint), the model configuration and the training
    configuration (overrides included).
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    if isinstance(task, ImageDataset):
        if size is not None:
            raise ValueError(
                f"size={size} applies to a task name; the dataset {task.name!r} has its own size "
                f"({task.image_size} px)."
            )
        data = task
    else:
        data = load_task(task, size)
    if retrain and not train:
        raise ValueError("retrain=True and train=False contradict each other.")
    arch = arch or (prof.model if data.spatial_dims == 2 else prof.model_3d)
    dropout = prof.dropout if dropout is None else dropout
    mean, std = data.channel_stats()
    if adv_eps is not None and train_config is not None:
        raise ValueError(
            "Pass adv_eps or a whole train_config, not both: set adv_eps inside the TrainConfig."
        )
    tcfg = train_config or default_train_config(prof, seed, data)
    if adv_eps is not None:
        tcfg = replace(tcfg, adv_eps=adv_eps)
    spec = (arch, data.in_channels, data.num_classes, data.spatial_dims, data.image_size)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    entry = None
    if shipped and not retrain and data.task:
        entry = find_shipped(data.task, data.image_size, arch, dropout, tcfg.key())
    if entry is not None:
        return _load_shipped(entry, data, dev)
    model = build_model(*spec, mean, std, dropout)  # for the cache key; rebuilt after seeding
    path = checkpoint_path(data, model.config, tcfg.key())
    if path.exists() and not retrain:
        payload = load_checkpoint(path)
        model = model_from_config(payload["model_config"])
        model.load_state_dict(payload["state_dict"])
        model.to(dev).eval()
        return TrainedModel(
            model,
            data,
            payload["test"],
            payload["history"],
            payload["best_epoch"],
            payload["seconds"],
            "cache",
            str(path),
        )
    if not train:
        raise FileNotFoundError(
            f"No shipped weights and no cached checkpoint for {data.name} ({arch}) at {path}, "
            "and train=False: call with train=True to train it."
        )
    log.info("No shipped or cached weights for %s (%s): training.", data.name, arch)
    torch.manual_seed(tcfg.seed)
    model = build_model(*spec, mean, std, dropout)
    result: TrainResult = train_classifier(model, data, tcfg, device=dev, progress=progress)
    save_checkpoint(
        path,
        {
            "model_config": model.config,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "train_config": tcfg.key(),
            "test": result.test,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
        },
    )
    return TrainedModel(
        model,
        data,
        result.test,
        result.history,
        result.best_epoch,
        result.seconds,
        "trained",
        str(path),
    )


def _load_shipped(entry: ShippedModel, data: ImageDataset, device: torch.device) -> TrainedModel:
    """The shipped model of ``entry``, verified, on ``device`` in eval mode."""
    model = model_from_config(entry.model_config)
    state = load_state(entry)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ShippedWeightsError(
            f"Shipped weight file {entry.path} does not fit the architecture its manifest names "
            f"({entry.arch}): {str(err).splitlines()[0]} Reinstall hfc-edu, or pass retrain=True."
        ) from None
    model.to(device).eval()
    test = dict(entry.test)
    if note_data_difference(entry, data.name, data.fingerprint()):
        test = classification_metrics(predict_logits(model, data.x_test), data.y_test)
    return TrainedModel(
        model, data, test, entry.history, entry.best_epoch, entry.seconds, "shipped",
        str(entry.path),
    )  # fmt: skip


# The classifiers the book's chapters use, shipped with the package (scripts/ship_weights.py trains
# them and writes hfc_edu/weights/). A chapter that needs a new (task, size, arch) adds it here
# and ships it; a new dataset alone does not (it is a task, data/tasks.py).
BOOK_MODELS: list[dict] = [
    {"task": "chest_xray", "size": 128},
    {"task": "chest_xray", "size": 28},
    {"task": "chest_xray", "size": 28, "arch": "compact_resnet_narrow"},
    {"task": "chest_xray", "size": 28, "arch": "compact_resnet_wide"},
    {"task": "fundus", "size": 28},
    {"task": "dermoscopy"},
    {"task": "cifar10"},
    {"task": "adrenal3d", "size": 28},
    {"task": "chest_xray", "size": 28, "adv_eps": 4 / 256},
]
