"""A seeded training loop with class-weighted loss and validation-based model selection."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from hfc_edu.data.dataset import ImageDataset
from hfc_edu.modes import eval_mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier` (part of the checkpoint cache key)."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    flip: bool = True  # random flips along the last spatial axis
    augment: bool = True  # random affine (scale, shift, rotation) and intensity jitter
    augment_strength: float = (
        2.0  # scales the affine and intensity ranges (2.0: scale ±20%, shift ±16%, ±20°, gain ±30%)
    )
    class_weighted: bool = True  # inverse-frequency class weights in the loss
    label_smoothing: float = 0.0
    select: str = "auc"  # validation criterion for model selection: "auc" or "loss"
    seed: int = 0
    adv_eps: float = 0.0  # > 0: PGD adversarial training (Madry et al. 2018) at this L∞ budget
    adv_steps: int = 3  # PGD steps per batch when adv_eps > 0 (step 2.5·ε/steps, random start)

    def __post_init__(self) -> None:
        if not (isinstance(self.adv_eps, int | float) and 0.0 <= self.adv_eps < 1.0):
            raise ValueError(
                f"TrainConfig.adv_eps must be an L∞ budget in [0, 1) pixel units (e.g. 4/256), "
                f"got {self.adv_eps!r}."
            )
        if (
            isinstance(self.adv_steps, bool)
            or not isinstance(self.adv_steps, int)
            or (self.adv_steps < 1)
        ):
            raise ValueError(f"TrainConfig.adv_steps must be an int >= 1, got {self.adv_steps!r}.")

    @property
    def adversarial(self) -> bool:
        """Whether training runs on PGD adversarial examples (``adv_eps > 0``)."""
        return self.adv_eps > 0

    def key(self) -> dict:
        """The configuration as a dict, for cache keys and the shipped-weights manifest; the
        adversarial-training fields appear only when it is on, so the keys of standard training
        are those of earlier versions."""
        d = asdict(self)
        if not self.adversarial:
            del d["adv_eps"], d["adv_steps"]
        return d

    @property
    def suffix(self) -> str:
        """File-name suffix of a shipped model: ``""``, or ``"_pgd4"`` for ``adv_eps = 4/256``."""
        return f"_pgd{self.adv_eps * 256:g}" if self.adversarial else ""


@dataclass
class TrainResult:
    """What training produced: the selected epoch, per-epoch history and test metrics."""

    best_epoch: int
    history: list[dict] = field(default_factory=list)
    test: dict = field(default_factory=dict)
    seconds: float = 0.0


def augment_batch(
    x: torch.Tensor,
    gen: torch.Generator,
    flip: bool = True,
    affine: bool = True,
    strength: float = 1.0,
) -> torch.Tensor:
    """Random flips, affine jitter (scale 0.9-1.1, shift 8%, rotation 10 deg, 2D) and intensity
    jitter (gain 0.85-1.15, bias 0.05); ``strength`` scales every range.

    ``x``: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` in [0, 1]; the result stays in [0, 1].
    """
    n, nd = len(x), x.ndim - 2
    view = (-1,) + (1,) * (x.ndim - 1)
    if flip:
        f = torch.rand(n, generator=gen) < 0.5
        x = torch.where(f.view(view), x.flip(-1), x)
    if not affine:
        return x
    if nd == 2:
        ang = (torch.rand(n, generator=gen) - 0.5) * (2 * np.pi / 18) * strength
        sc = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2 * strength
        sh = (torch.rand(n, 2, generator=gen) - 0.5) * 0.16 * strength
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang) / sc, -torch.sin(ang) / sc
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang) / sc, torch.cos(ang) / sc
        theta[:, :, 2] = sh
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.3 * strength
    bias = (torch.rand(n, generator=gen) - 0.5) * 0.1 * strength
    return (x * gain.view(view) + bias.view(view)).clamp_(0, 1)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits ``(N, K)`` on CPU for images ``(N, C, ...)``, in eval mode (modes restored)."""
    dev = next(model.parameters()).device
    with eval_mode(model):
        out = [
            model(x[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)
        ]
    return torch.cat(out)


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Accuracy, balanced accuracy, AUC (binary; macro one-vs-rest if multi-class) and loss."""
    prob = logits.softmax(1).numpy()
    yn = y.numpy()
    pred = prob.argmax(1)
    recalls = [np.mean(pred[yn == c] == c) for c in np.unique(yn)]
    k = prob.shape[1]
    if len(np.unique(yn)) < 2:
        auc = float("nan")
    elif k == 2:
        auc = roc_auc_score(yn, prob[:, 1])
    else:
        auc = roc_auc_score(yn, prob, multi_class="ovr", average="macro", labels=np.arange(k))
    return {
        "accuracy": float(np.mean(pred == yn)),
        "balanced_accuracy": float(np.mean(recalls)),
        "auc": float(auc),
        "loss": float(F.cross_entropy(logits, y).item()),
    }


def adversarial_batch(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    """Untargeted PGD examples of a training batch ``(N, C, ...)`` at ``cfg.adv_eps``
    (``cfg.adv_steps`` steps of 2.5·ε/steps, random start from ``gen``), made in eval mode with
    the library's PGD (the model's modes are restored for the training step)."""
    from hfc_edu.attacks import ATTACKS  # the attacks import the model zoo: import late

    start = (torch.rand(x.shape, generator=gen) * 2 - 1).mul_(cfg.adv_eps).to(x.device)
    res = ATTACKS.get("PGD").run(
        model, x, y, eps=cfg.adv_eps, targeted=False, steps=cfg.adv_steps,
        alpha=2.5 * cfg.adv_eps / cfg.adv_steps, delta0=start,
    )  # fmt: skip
    return res.x_adv.detach()


def train_classifier(
    model: nn.Module,
    data: ImageDataset,
    config: TrainConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data.train``; keep the epoch with the best validation AUC; test it.

    With ``config.adv_eps > 0`` every batch is replaced by its PGD adversarial examples
    (:func:`adversarial_batch`; Madry et al. 2018); selection and test metrics stay clean.

    Deterministic on CPU for a given seed (shuffling and flips use their own generator).
    The model is left on ``device`` in eval mode with the selected weights.
    """
    cfg = config or TrainConfig()
    if cfg.select not in ("auc", "loss"):
        raise ValueError(f"TrainConfig.select must be 'auc' or 'loss', got {cfg.select!r}.")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = data.x_train, data.y_train
    counts = torch.bincount(y, minlength=data.num_classes).float()
    if (counts == 0).any():
        raise ValueError(
            f"{data.name}: class(es) {torch.nonzero(counts == 0).flatten().tolist()} have no training images."
        )
    weight = (counts.sum() / (len(counts) * counts)).to(dev) if cfg.class_weighted else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2
    )
    best_auc, best_state, best_epoch = -1.0, None, -1
    history: list[dict] = []
    start = time.perf_counter()
    bar = tqdm(
        total=cfg.epochs * steps_per_epoch,
        desc=f"train {data.name}",
        disable=not progress,
        leave=False,
    )
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            xb = augment_batch(
                xb, gen, flip=cfg.flip, affine=cfg.augment, strength=cfg.augment_strength
            )
            xb, yb = xb.to(dev), yb.to(dev)
            if cfg.adversarial:
                xb = adversarial_batch(model, xb, yb, cfg, gen)
            loss = F.cross_entropy(
                model(xb), yb, weight=weight, label_smoothing=cfg.label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            bar.update(1)
        val = classification_metrics(predict_logits(model, data.x_val), data.y_val)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / len(x),
                **{f"val_{k}": v for k, v in val.items()},
            }
        )
        bar.set_postfix(val_auc=f"{val['auc']:.3f}", val_acc=f"{val['accuracy']:.3f}")
        if cfg.select == "loss":
            score = -val["loss"]
        else:
            score = val["auc"] if not np.isnan(val["auc"]) else val["accuracy"]
        if score > best_auc:
            best_auc, best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    test = classification_metrics(predict_logits(model, data.x_test), data.y_test)
    return TrainResult(
        best_epoch=best_epoch, history=history, test=test, seconds=time.perf_counter() - start
    )
