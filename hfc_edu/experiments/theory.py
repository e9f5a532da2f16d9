"""Chapter 3 experiments: attacks on a binary classifier push features along a fixed direction.

For a zoo :class:`~hfc_edu.models.Classifier` with penultimate feature ``z`` and linear head
``l = W z + b``, the gradient of the cross-entropy with respect to ``z`` is
``Σ_c (p_c − 1[c=t]) w_c``; with two classes this is ``−p_{1−t} (w_t − w_{1−t})``, a fixed
direction times a scalar. The functions here measure that on trained models:

* :func:`feature_gradient`: ``∂L/∂z`` (``(N, D)``) for the attack's own loss;
* :func:`pgd_trajectory`: an L∞ PGD run (the library's random start and sign step,
  :func:`~hfc_edu.attacks.gradient.linf_step`) that records, at every iterate, ``z``,
  ``∂L/∂z``, the gradient with respect to every ReLU map, and the first-order prediction of
  the feature move;
* :func:`cosines_across_iterations`, :func:`cosines_across_inputs`, :func:`projection_table`,
  :func:`layer_gradient_table`: the tables the chapter plots;
* :func:`mahalanobis_by_layer`, :func:`mahalanobis_summary`: how far adversarial features lie
  from the clean class Gaussians, layer by layer (the :class:`~hfc_edu.detectors.MAHA` fit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from hfc_edu.attacks.gradient import linf_step, random_start_point
from hfc_edu.attacks.losses import Loss, classification_loss
from hfc_edu.attacks.result import is_success
from hfc_edu.checks import (
    batch_view,
    check_batch_size,
    check_eps,
    check_images,
    check_labels,
    check_scalar,
    check_steps,
)
from hfc_edu.detectors import MAHA
from hfc_edu.features import FeatureExtractor
from hfc_edu.models.zoo import Classifier
from hfc_edu.modes import frozen_eval

log = logging.getLogger(__name__)

__all__ = [
    "Trajectory",
    "cosines_across_inputs",
    "cosine_table",
    "cosines_across_iterations",
    "direction_spread",
    "feature_gradient",
    "head_direction",
    "layer_gradient_table",
    "mahalanobis_by_layer",
    "mahalanobis_summary",
    "pgd_trajectory",
    "projection_table",
    "split_forward",
    "step_increments",
]


def _check_classifier(model) -> Classifier:
    if not isinstance(model, Classifier):
        raise TypeError(
            "These experiments need an hfc_edu Classifier (penultimate feature -> dropout -> "
            f"linear head), got {type(model).__name__}; build one with hfc_edu.models.build_model."
        )
    return model


def split_forward(model: Classifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (N, C, ...) -> (z (N, D), logits (N, K))``: the same computation as ``model(x)``,
    with the penultimate feature ``z`` (the head's input) exposed so gradients can reach it."""
    _check_classifier(model)
    z = model.embed(x)
    return z, model.head(z)


def head_direction(model: Classifier, y_from: torch.Tensor, y_to: torch.Tensor) -> torch.Tensor:
    """``(N, D)``: ``w_{to} − w_{from}`` from the linear head's rows, one per sample.

    For a binary model attacked from class ``y`` towards ``t = 1 − y`` this is the fixed
    direction ``v`` along which every step moves ``z`` (to first order).
    """
    _check_classifier(model)
    w = model.fc.weight.detach()
    k = w.shape[0]
    for name, t in (("y_from", y_from), ("y_to", y_to)):
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.is_floating_point():
            raise TypeError(f"{name} must be a 1-D integer tensor of class indices, shape (N,).")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ValueError(f"{name} holds class indices outside [0, {k}).")
    if y_from.shape != y_to.shape:
        raise ValueError(
            f"y_from {tuple(y_from.shape)} and y_to {tuple(y_to.shape)} differ in shape."
        )
    return w[y_to.long()] - w[y_from.long()]


def feature_gradient(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str | Loss = "ce",
    targeted: bool = False,
    kappa: float | None = None,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``∂L/∂z`` of the attack loss (the quantity attacks minimise) at ``x``.

    Args:
        model: a zoo Classifier.
        x: images in [0, 1], ``(N, C, H, W)`` or ``(N, C, D, H, W)``.
        y: ``(N,)`` true classes (untargeted) or targets (``targeted=True``).
        loss: ``"ce"``, ``"cw"`` (with confidence ``kappa``) or a logits-only
            :class:`~hfc_edu.attacks.losses.Loss`.
        batch_size: images per pass (memory, not results); None: one pass.

    Returns: ``z (N, D)``, ``∂L/∂z (N, D)`` and the softmax probabilities ``(N, K)``.
    """
    _check_classifier(model)
    check_images(x)
    y = check_labels(y, x)
    check_batch_size(batch_size)
    loss_fn = classification_loss(loss, targeted, kappa)
    if loss_fn.needs_features:
        raise ValueError(
            "feature_gradient takes a logits-only loss ('ce', 'cw', CrossEntropy, CWMargin)."
        )
    bs = len(x) if batch_size is None else batch_size
    zs, gs, ps = [], [], []
    with frozen_eval(model), torch.enable_grad():
        for s in range(0, len(x), bs):
            z = model.embed(x[s : s + bs].detach()).detach().requires_grad_(True)
            logits = model.head(z)
            (g,) = torch.autograd.grad(loss_fn(logits, y[s : s + bs], {}).sum(), z)
            zs.append(z.detach())
            gs.append(g.detach())
            ps.append(logits.detach().softmax(1))
    return torch.cat(zs), torch.cat(gs), torch.cat(ps)


@dataclass
class Trajectory:
    """What :func:`pgd_trajectory` recorded. Iterate ``s = 0`` is the start point ``x'_0``
    (the random start, or ``x``), ``s = T`` the final adversarial image.

    Attributes:
        z_clean, grad_clean: ``(N, D)`` penultimate feature and ``∂L/∂z`` at the clean ``x``;
            probs_clean: ``(N, K)`` softmax probabilities at ``x``.
        z, grad_z: ``(T+1, N, D)`` the same at every iterate.
        probs: ``(T+1, N, K)`` softmax probabilities at every iterate.
        direction: ``(N, D)`` unit vector ``u = −∂L/∂z(x) / ‖·‖``, the direction the attack
            starts pushing ``z`` in (for a binary head, ``±(w_t − w_{1−t})/‖·‖``).
        layer_cos: ``{layer: (T+1, N)}`` cosine between ``∂L/∂h_l`` (raw ReLU map) at each
            iterate and at ``x``.
        layer_flips: ``{layer: (T+1, N)}`` fraction of the ReLU units of layer ``l`` whose
            on/off state differs from ``x`` (0 = same linear region as the clean image).
        predicted, actual: ``(T, N)`` first-order prediction ``∇ₓ(uᵀz)ᵀ(x'_{s+1} − x'_s)`` and
            the actual move ``uᵀ(z_{s+1} − z_s)`` of each step along ``u`` (None if not asked).
        x_adv: ``(N, ...)`` final images; success: ``(N,)`` bool at ``x_adv``.
    """

    z_clean: torch.Tensor
    grad_clean: torch.Tensor
    probs_clean: torch.Tensor
    z: torch.Tensor
    grad_z: torch.Tensor
    probs: torch.Tensor
    direction: torch.Tensor
    x_adv: torch.Tensor
    success: torch.Tensor
    y: torch.Tensor
    targeted: bool
    layer_cos: dict[str, torch.Tensor] = field(default_factory=dict)
    layer_flips: dict[str, torch.Tensor] = field(default_factory=dict)
    predicted: torch.Tensor | None = None
    actual: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return self.z.shape[0] - 1

    @property
    def projections(self) -> torch.Tensor:
        """``(T+1, N)``: ``uᵀ(z(x'_s) − z(x))``, the feature displacement along ``u``."""
        return ((self.z - self.z_clean) * self.direction).sum(-1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``(N, ...)`` tensors in float64, in [−1, 1] (0 where a norm is 0)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    den = a.norm(dim=1) * b.norm(dim=1)
    c = torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))
    return c.clamp_(-1.0, 1.0)


class _Probe:
    """One forward at ``x``: z, ∂L/∂z, ∂L/∂h_l (raw maps), ReLU states, ∇ₓL and ∇ₓ(uᵀz)."""

    def __init__(self, model: Classifier, loss: Loss, layers: Sequence[str]) -> None:
        self.model, self.loss = model, loss
        self.fx = FeatureExtractor(model, layers=list(layers), pool=None) if layers else None

    def _forward(self, x: torch.Tensor):
        """z (on the logits' path), logits and the raw ReLU maps of one forward pass."""
        if self.fx is None:
            z, logits = split_forward(self.model, x)
            return z, logits, {}
        captured: list[torch.Tensor] = []
        # the head's input, as the forward pass computes it (so gradients reach it)
        handle = self.model.dropout.register_forward_pre_hook(
            lambda _m, inp: captured.append(inp[0])
        )
        try:
            logits, maps = self.fx(x)
        finally:
            handle.remove()
        return captured[0], logits, maps

    def __call__(self, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor | None):
        x = x.detach().requires_grad_(True)  # parameters are frozen: the graph starts at x
        z, logits, maps = self._forward(x)
        value = self.loss(logits, y, {}).float().sum()  # as the attacks compute it
        grads = torch.autograd.grad(value, [x, z, *maps.values()], retain_graph=u is not None)
        gx = None
        if u is not None:
            (gx,) = torch.autograd.grad((z * u).sum(), x)
        g_maps = dict(zip(maps, grads[2:], strict=True))
        states = {n: (t.detach() > 0) for n, t in maps.items()}
        probs = logits.detach().softmax(1)
        return z.detach(), grads[1].detach(), probs, g_maps, states, gx, grads[0].detach()


def pgd_trajectory(
    model: Classifier,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int = 10,
    alpha: float | None = None,
    loss: str | Loss = "ce",
    targeted: bool = False,
    kappa: float | None = None,
    random_start: str | None = "symmetric",
    generator: torch.Generator | None = None,
    layers: str | Sequence[str] | None = "relu",
    first_order: bool = True,
    batch_size: int = 256,
) -> Trajectory:
    """Run L∞ PGD and record the feature-space gradient at every iterate.

    The start and the steps are the library's (:func:`~hfc_edu.attacks.gradient.random_start_point`,
    :func:`~hfc_edu.attacks.gradient.linf_step` on the input gradient of the same forward pass
    that records the iterate), so ``x_adv`` equals ``pgd(model, x, y, eps=eps, steps=steps,
    alpha=alpha, ...)`` with the same start. Cost: about two forward/backward passes per step.

    Args:
        model: a zoo Classifier (eval mode is set for the run).
        x: ``(N, C, H, W)`` or ``(N, C, D, H, W)`` images in [0, 1].
        y: ``(N,)`` true classes (untargeted) or targets (``targeted=True``).
        eps: L∞ budget in pixel units (``2/256``); alpha: step, default ``2·eps/steps``.
        loss: ``"ce"`` or ``"cw"`` (margin with ``kappa``) or a logits-only Loss.
        random_start: ``"symmetric"`` (``U(−ε, ε)``), ``"official"`` or None.
        generator: for a reproducible random start.
        layers: ReLU layers whose map gradients are tracked (``"relu"`` = all, ``"blocks"``,
            a list of names, or None for none).
        first_order: also record the first-order prediction of each step's move along ``u``.
        batch_size: images per chunk (the record is concatenated).
    """
    _check_classifier(model)
    check_images(x)
    y = check_labels(y, x)
    eps = check_eps(eps, positive=True)
    check_steps(steps)
    alpha = 2.0 * eps / steps if alpha is None else check_scalar(alpha, "alpha", positive=True)
    loss_fn = classification_loss(loss, targeted, kappa)
    if loss_fn.needs_features:
        raise ValueError(
            "pgd_trajectory takes a logits-only loss ('ce', 'cw', CrossEntropy, CWMargin)."
        )
    if layers is None:
        names: list[str] = []
    elif isinstance(layers, str):
        names = FeatureExtractor(model, layers=layers).layer_names
    else:
        names = list(layers)
    if check_batch_size(batch_size) is None:
        raise ValueError("batch_size must be an int >= 1, got None.")
    if random_start not in ("symmetric", "official", None):
        raise ValueError(
            f"random_start must be 'symmetric', 'official' or None, got {random_start!r}."
        )
    probe = _Probe(model, loss_fn, names)
    step = dict(eps=eps, alpha=alpha, targeted=targeted)
    parts = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].detach(), y[i : i + batch_size]
        parts.append(
            _trajectory_batch(
                model, probe, xb, yb, steps, step, random_start, generator, first_order
            )
        )
    return _concat(parts)


def _trajectory_batch(
    model: Classifier,
    probe: _Probe,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    step: dict,
    random_start: str | None,
    generator: torch.Generator | None,
    first_order: bool,
) -> Trajectory:
    names = probe.fx.layer_names if probe.fx is not None else []
    # per-image (N, 1, ...) budget and step, as the attacks hold them
    eps_n = torch.full((len(x),), step["eps"], dtype=x.dtype, device=x.device)
    alpha_n = torch.full_like(eps_n, step["alpha"])
    eps_b, alpha_b = batch_view(eps_n, x.ndim), batch_view(alpha_n, x.ndim)
    with frozen_eval(model), torch.enable_grad():
        z0, g0, p0, gmaps0, states0, _, _ = probe(x, y, None)
        u = -g0 / g0.norm(dim=1, keepdim=True).clamp_min(1e-30)
        x_s = random_start_point(x, eps_b, "linf", random_start, generator)
        zs, gs, ps = [], [], []
        lcos: dict[str, list] = {n: [] for n in names}
        flips: dict[str, list] = {n: [] for n in names}
        pred, act = [], []
        gx_prev = x_prev = None  # ∇ₓ(uᵀz) and the image at the previous iterate
        for s in range(steps + 1):
            z, g, p, gm, st, gx, g_loss = probe(x_s, y, u if first_order else None)
            zs.append(z)
            gs.append(g)
            ps.append(p)
            for n in names:
                lcos[n].append(_cos(gm[n], gmaps0[n]))
                flips[n].append((st[n] != states0[n]).flatten(1).float().mean(1))
            if first_order and gx_prev is not None:
                act.append(((z - zs[-2]) * u).sum(1))
                pred.append((gx_prev * (x_s - x_prev)).flatten(1).sum(1))
            if s == steps:
                break
            gx_prev, x_prev = gx, x_s
            x_s = linf_step(x_s.clone(), g_loss, x, eps_b, alpha_b)  # one PGD step

    return Trajectory(
        z_clean=z0,
        grad_clean=g0,
        probs_clean=p0,
        z=torch.stack(zs),
        grad_z=torch.stack(gs),
        probs=torch.stack(ps),
        direction=u,
        x_adv=x_s.detach(),
        success=is_success(ps[-1], y, step["targeted"]),
        y=y,
        targeted=step["targeted"],
        layer_cos={n: torch.stack(v) for n, v in lcos.items()},
        layer_flips={n: torch.stack(v) for n, v in flips.items()},
        predicted=torch.stack(pred) if first_order else None,
        actual=torch.stack(act) if first_order else None,
    )


def _concat(parts: list[Trajectory]) -> Trajectory:
    """Join the per-chunk records along the image axis."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(attr: str, dim: int) -> torch.Tensor | None:
        if getattr(first, attr) is None:
            return None
        return torch.cat([getattr(p, attr) for p in parts], dim)

    per_image = ("z_clean", "grad_clean", "probs_clean", "direction", "x_adv", "success", "y")
    per_step = ("z", "grad_z", "probs", "predicted", "actual")
    return Trajectory(
        **{a: cat(a, 0) for a in per_image},
        **{a: cat(a, 1) for a in per_step},
        targeted=first.targeted,
        layer_cos={n: torch.cat([p.layer_cos[n] for p in parts], 1) for n in first.layer_cos},
        layer_flips={n: torch.cat([p.layer_flips[n] for p in parts], 1) for n in first.layer_flips},
    )


def cosines_across_iterations(traj: Trajectory) -> np.ndarray:
    """``(T+1, N)``: cosine between ``∂L/∂z`` at each iterate and at the clean image."""
    t, n, d = traj.grad_z.shape
    c = _cos(traj.grad_z.reshape(t * n, d), traj.grad_clean.repeat(t, 1))
    return c.reshape(t, n).numpy()


def cosines_across_inputs(
    grad: torch.Tensor, groups: torch.Tensor, max_pairs: int | None = 20000, seed: int = 0
) -> np.ndarray:
    """Cosines between ``grad[i]`` and ``grad[j]`` for every pair ``i < j`` with ``groups[i] == groups[j]``.

    ``grad``: ``(N, D)`` feature-space gradients; ``groups``: ``(N,)`` (e.g. the true class, or
    the pair (true, target) encoded as one integer). At most ``max_pairs`` pairs are kept
    (a seeded random subset) so the result stays small.
    """
    if grad.ndim != 2 or groups.shape != (grad.shape[0],):
        raise ValueError(
            f"grad must be (N, D) and groups (N,), got {tuple(grad.shape)} and {tuple(groups.shape)}."
        )
    g = grad.double()
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-300)
    gram = (g @ g.T).clamp_(-1.0, 1.0)
    same = groups[:, None] == groups[None, :]
    iu = torch.triu_indices(len(g), len(g), offset=1)
    mask = same[iu[0], iu[1]]
    vals = gram[iu[0], iu[1]][mask].numpy()
    if max_pairs is not None and len(vals) > max_pairs:
        vals = np.random.default_rng(seed).choice(vals, max_pairs, replace=False)
    return vals


def cosine_table(runs: Mapping[str, Trajectory]) -> pd.DataFrame:
    """Long table of feature-gradient cosines for several named trajectories.

    Columns: ``model``, ``comparison`` (``"across iterations"``: ``∂L/∂z`` at every iterate
    against the clean image, the same input; ``"across inputs"``: clean images of the same true
    class against each other) and ``cosine``.
    """
    frames = []
    for name, r in runs.items():
        it = cosines_across_iterations(r).ravel()
        inp = cosines_across_inputs(r.grad_clean, r.y)
        frames.append(
            pd.DataFrame({"model": name, "comparison": "across iterations", "cosine": it})
        )
        frames.append(pd.DataFrame({"model": name, "comparison": "across inputs", "cosine": inp}))
    return pd.concat(frames, ignore_index=True)


def direction_spread(z_ref: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(N,)``: standard deviation of the reference features ``z_ref (M, D)`` along each unit
    direction ``u[i] (N, D)``, ``sqrt(u_iᵀ Σ u_i)`` with ``Σ`` their covariance."""
    if z_ref.ndim != 2 or u.ndim != 2 or z_ref.shape[1] != u.shape[1]:
        raise ValueError(
            f"z_ref (M, D) and u (N, D) must share D, got {tuple(z_ref.shape)} and {tuple(u.shape)}."
        )
    zc = z_ref.double() - z_ref.double().mean(0)
    proj = zc @ u.double().T  # (M, N)
    return proj.std(0, unbiased=True).float()


def projection_table(traj: Trajectory, spread: torch.Tensor | None = None) -> pd.DataFrame:
    """Long table: one row per (iterate, image) with the displacement along ``u``.

    Columns: ``step`` (0 = start), ``image``, ``projection`` = ``uᵀ(z(x'_s) − z(x))`` and, with
    ``spread`` ``(N,)`` (from :func:`direction_spread`), ``projection_sd`` = projection / spread.
    """
    p = traj.projections  # (T+1, N)
    t, n = p.shape
    df = pd.DataFrame(
        {
            "step": np.repeat(np.arange(t), n),
            "image": np.tile(np.arange(n), t),
            "projection": p.reshape(-1).numpy(),
        }
    )
    if spread is not None:
        if spread.shape != (n,):
            raise ValueError(f"spread must have shape ({n},), got {tuple(spread.shape)}.")
        df["projection_sd"] = (p / spread).reshape(-1).numpy()
    return df


def step_increments(traj: Trajectory) -> pd.DataFrame:
    """Per step and image: the move along the fixed ``u`` (``actual``) and its first-order
    prediction ``∇ₓ(uᵀz)ᵀΔx`` (``predicted``). Needs ``first_order=True``."""
    if traj.actual is None or traj.predicted is None:
        raise ValueError(
            "This trajectory was recorded with first_order=False; rerun pgd_trajectory(first_order=True)."
        )
    t, n = traj.actual.shape
    return pd.DataFrame(
        {
            "step": np.repeat(np.arange(1, t + 1), n),
            "image": np.tile(np.arange(n), t),
            "actual": traj.actual.reshape(-1).numpy(),
            "predicted": traj.predicted.reshape(-1).numpy(),
        }
    )


def layer_gradient_table(traj: Trajectory) -> pd.DataFrame:
    """Per ReLU layer: median cosine between ``∂L/∂h_l`` at the final iterate and at ``x``, and
    the mean fraction of that layer's ReLU units that switched state (left the linear region)."""
    if not traj.layer_cos:
        raise ValueError("No layer was tracked; rerun pgd_trajectory with layers='relu'.")
    rows = []
    for depth, (name, c) in enumerate(traj.layer_cos.items()):
        rows.append(
            {
                "layer": name,
                "depth": depth,
                "cos_final_median": float(c[-1].median()),
                "cos_final_min": float(c[-1].min()),
                "relu_flipped": float(traj.layer_flips[name][-1].mean()),
            }
        )
    return pd.DataFrame(rows)


def mahalanobis_by_layer(
    fx: FeatureExtractor,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_clean: torch.Tensor,
    x_adv: torch.Tensor | Mapping[str, torch.Tensor],
    shrinkage: str | float | None = "ledoit_wolf",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Mahalanobis distance of clean and adversarial GAP features to the closest class mean.

    Fits :class:`~hfc_edu.detectors.MAHA` (class means + tied covariance per layer) on the
    features of ``x_train`` once, then scores ``x_clean`` and the adversarial images: one tensor
    (kind ``"adversarial"``) or a mapping ``{kind: images}``, each shaped like ``x_clean``.
    Returns a long table: ``layer``, ``depth``, ``kind`` (``"clean"`` or the adversarial kind),
    ``image``, ``distance`` = ``min_c sqrt((h − μ_c)ᵀ Σ⁻¹ (h − μ_c))`` and ``distance_rel`` =
    ``distance / sqrt(C_l)`` (about 1 for a Gaussian feature of dimension ``C_l``).
    """
    if not isinstance(fx, FeatureExtractor) or fx.pool != "gap":
        raise TypeError("fx must be a FeatureExtractor with pool='gap'.")
    check_images(x_clean, "x_clean")
    advs = dict(x_adv) if isinstance(x_adv, Mapping) else {"adversarial": x_adv}
    if not advs or "clean" in advs:
        raise ValueError(
            "x_adv must be a tensor or a non-empty mapping whose keys are not 'clean'."
        )
    for kind, xa in advs.items():
        check_images(xa, f"x_adv[{kind!r}]")
        if xa.shape != x_clean.shape:
            raise ValueError(
                f"x_adv[{kind!r}] {tuple(xa.shape)} must have the shape of x_clean "
                f"{tuple(x_clean.shape)}."
            )
    _, f_train = fx.extract(x_train, batch_size)
    maha = MAHA(shrinkage=shrinkage).fit(f_train, y_train)
    frames = []
    for kind, xs in {"clean": x_clean, **advs}.items():
        _, f = fx.extract(xs, batch_size)
        for depth, (name, t) in enumerate(maha.distances(f).items()):
            d = t.min(1).values.sqrt().float().numpy()
            frames.append(
                pd.DataFrame(
                    {
                        "layer": name,
                        "depth": depth,
                        "kind": kind,
                        "image": np.arange(len(d)),
                        "distance": d,
                        "distance_rel": d / np.sqrt(f[name].shape[1]),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def mahalanobis_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per layer and adversarial kind: median distance of the clean and the adversarial
    features, their ratio, and the AUC of the distance as a detector score (adversarial =
    positive). Index ``(layer, kind)`` in depth order."""
    missing = [c for c in ("layer", "depth", "kind", "distance") if c not in df.columns]
    if missing:
        raise ValueError(
            f"Columns {missing} are missing; pass the table from mahalanobis_by_layer."
        )
    kinds = [k for k in df.kind.unique() if k != "clean"]
    if not kinds or "clean" not in set(df.kind):
        raise ValueError("The table needs clean rows and at least one adversarial kind.")
    rows = []
    for (_depth, layer), g in df.groupby(["depth", "layer"], sort=True):
        clean = g.loc[g.kind == "clean", "distance"].to_numpy()
        for kind in kinds:
            adv = g.loc[g.kind == kind, "distance"].to_numpy()
            labels = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
            rows.append(
                {
                    "layer": layer,
                    "kind": kind,
                    "median_clean": float(np.median(clean)),
                    "median_adv": float(np.median(adv)),
                    "ratio": float(np.median(adv) / np.median(clean)),
                    "auc": float(roc_auc_score(labels, np.r_[clean, adv])),
                }
            )
    return pd.DataFrame(rows).set_index(["layer", "kind"])
