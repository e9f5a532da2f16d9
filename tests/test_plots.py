"""Plot helpers: shapes in, figures out, clear errors for the wrong input."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch

from hfc_edu.plots import volume_planes


def test_volume_planes_cuts_through_the_centre_of_mass():
    v = torch.zeros(1, 8, 10, 12)
    v[0, 2, 7, 3] = 1.0  # one voxel: the planes must pass through it
    fig = volume_planes({"mask": v, "δ": v * 0.01 - 0.005}, eps=0.01)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert titles == ["axial (D) 2", "coronal (H) 7", "sagittal (W) 3"]
    assert len(fig.axes) == 2 * 3 + 1  # two rows of planes and the δ row's colour bar
    plt.close(fig)


def test_volume_planes_refuses_2d_images():
    with pytest.raises(ValueError, match=r"volumes \(C, D, H, W\)"):
        volume_planes({"image": torch.rand(1, 28, 28)})
