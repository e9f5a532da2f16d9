"""Saliency and Grad-CAM: shapes, ranges, and no side effects on the model."""

from __future__ import annotations

import pytest
import torch

from hfc_edu.explain import grad_cam, saliency
from hfc_edu.models import build_model


@pytest.mark.parametrize("dims", [2, 3])
def test_saliency_and_grad_cam(dims):
    torch.manual_seed(0)
    model = build_model("compact_resnet", 1, 2, spatial_dims=dims, image_size=16, dropout=0.3)
    model.train()
    x = torch.rand(3, 1, *([16] * dims))
    s = saliency(model, x)
    assert s.shape == (3,) + (16,) * dims and (s >= 0).all() and s.sum() > 0
    cam = grad_cam(model, x, "layer2.0.out")
    assert cam.shape == (3,) + (16,) * dims
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0 + 1e-6
    assert not cam.requires_grad
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
