"""Get a trained classifier for a task: from the checkpoint cache, or trained now and cached."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace

import torch

from hfc_edu.config import Profile, get_profile
from hfc_edu.data.dataset import ImageDataset
from hfc_edu.data.tasks import TASKS, load_task
from hfc_edu.models.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from hfc_edu.models.training import TrainConfig, TrainResult, train_classifier
from hfc_edu.models.zoo import Classifier, build_model, model_from_config

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    """A trained classifier with its data, test metrics and training history."""

    model: Classifier
    data: ImageDataset
    test: dict
    history: list
    best_epoch: int
    seconds: float
    from_cache: bool
    path: str

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
    progress: bool = True,
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
        retrain: train even if a checkpoint is cached, and overwrite it.
        train: ``False`` never trains: a checkpoint that is not cached is a
            ``FileNotFoundError`` (e.g. to check that ``hfc-edu prepare`` has run).

    The cache key covers the data (name and fingerprint), the model configuration and the
    training configuration (overrides included).
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
    tcfg = train_config or default_train_config(prof, seed, data)
    spec = (arch, data.in_channels, data.num_classes, data.spatial_dims, data.image_size)
    model = build_model(*spec, mean, std, dropout)  # for the cache key; rebuilt after seeding
    path = checkpoint_path(data, model.config, asdict(tcfg))
    dev = torch.device(device) if device is not None else torch.device("cpu")
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
            True,
            str(path),
        )
    if not train:
        raise FileNotFoundError(
            f"No cached checkpoint for {data.name} ({arch}) at {path}, and train=False. Run "
            "`hfc-edu prepare` for the book's models, or call with train=True."
        )
    torch.manual_seed(tcfg.seed)
    model = build_model(*spec, mean, std, dropout)
    result: TrainResult = train_classifier(model, data, tcfg, device=dev, progress=progress)
    save_checkpoint(
        path,
        {
            "model_config": model.config,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "train_config": asdict(tcfg),
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
        False,
        str(path),
    )


# The classifiers the book's chapters use, trained once per machine into the checkpoint cache
# (`hfc-edu prepare` trains them all; CI runs it before the notebooks). A chapter that needs a new
# (task, size, arch) adds it here; a new dataset alone does not (it is a task, data/tasks.py).
BOOK_MODELS: list[dict] = [
    {"task": "chest_xray", "size": 128},
    {"task": "chest_xray", "size": 28},
    {"task": "chest_xray", "size": 28, "arch": "compact_resnet_narrow"},
    {"task": "chest_xray", "size": 28, "arch": "compact_resnet_wide"},
    {"task": "fundus", "size": 28},
    {"task": "dermoscopy"},
    {"task": "cifar10"},
]


def _prepare_one(spec: dict) -> tuple[str, str, dict, bool, float]:
    torch.manual_seed(0)
    tm = get_classifier(profile="book", progress=False, **spec)
    return tm.data.name, tm.model.config["arch"], tm.test, tm.from_cache, tm.seconds


def prepare_book_models(jobs: int = 1) -> list[tuple[str, str, dict, bool, float]]:
    """Train (or load) every classifier in :data:`BOOK_MODELS` with the book profile on CPU.

    ``jobs > 1`` trains in that many spawned processes. Each process keeps the thread count it
    inherits (``OMP_NUM_THREADS``): CI and the notebook-execution script use one thread, which makes
    the cached weights, and so the stored notebook outputs, bit-for-bit reproducible.
    Returns ``(data name, arch, test metrics, from cache, seconds)`` per model.
    """
    if jobs <= 1:
        return [_prepare_one(spec) for spec in BOOK_MODELS]
    import multiprocessing as mp

    # Largest first, so the long trainings overlap.
    order = sorted(
        range(len(BOOK_MODELS)), key=lambda i: BOOK_MODELS[i].get("size", 0) or 0, reverse=True
    )
    with mp.get_context("spawn").Pool(jobs) as pool:
        results = pool.map(_prepare_one, [BOOK_MODELS[i] for i in order], chunksize=1)
    out: list = [None] * len(BOOK_MODELS)
    for i, r in zip(order, results, strict=True):
        out[i] = r
    return out
