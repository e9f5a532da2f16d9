"""What the model attends to: input-gradient saliency and Grad-CAM, 2D and 3D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfc_edu.features import FeatureExtractor
from hfc_edu.modes import frozen_eval


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """``|d logit_target / d x|`` summed over channels (Simonyan et al. 2014): ``(N, H, W)`` or
    ``(N, D, H, W)``.

    ``target`` defaults to the predicted class.
    """
    with frozen_eval(model):
        xi = x.detach().clone().requires_grad_(True)
        logits = model(xi)
        t = logits.argmax(1) if target is None else target
        (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), xi)
        return g.abs().sum(1)


def grad_cam(
    model: nn.Module, x: torch.Tensor, layer: str, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. ICCV 2017) at feature layer ``layer`` (a FeatureExtractor
    name), upsampled to the input size.

    Returns ``(N, H, W)`` or ``(N, D, H, W)`` in [0, 1] per image.
    """
    fx = FeatureExtractor(model, layers=[layer], pool=None)
    with frozen_eval(model):
        logits, feats = fx(x.detach().requires_grad_(True))
        a = feats[layer]
        t = logits.argmax(1) if target is None else target
        (g,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), a)
        w = g.mean(dim=tuple(range(2, g.ndim)), keepdim=True)
        cam = F.relu((w * a).sum(1, keepdim=True))
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
        flat = cam.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        return ((flat - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None]).view_as(cam).detach()
