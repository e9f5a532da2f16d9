"""Adding a detector or an attack is one class or function plus one registry line.

A toy detector (distance to the predicted class's centroid, fitted on clean training features)
and a toy attack (FGSM from a random sign start) are registered and run through the detection
pipeline by name, next to the built-in ones; nothing in the pipeline changes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfc_edu.attacks import ATTACKS, AttackInfo, fgsm, register_attack
from hfc_edu.attacks.result import AttackResult
from hfc_edu.detectors import (
    DETECTORS,
    Detector,
    DetectorInfo,
    FeatureSet,
    ScoreLR,
    default_detectors,
    register_detector,
)
from hfc_edu.detectors.base import as_feature_set
from hfc_edu.experiments.detection import run_detection
from tests.test_experiments_detection import EPS, TINY, tiny  # noqa: F401 (fixture)


# ----------------------------------------------------------------- the toy detector (one file)
class Centroid(Detector):
    """Distance of the penultimate feature to the centroid of its predicted class."""

    fit_on = "clean"  # fitted once on clean training features and class labels

    def fit(self, data, y):
        data = as_feature_set(data)
        z = self._fit_layout(data, [data.layers[-1]])[data.layers[-1]]
        self.centroids_ = torch.stack([z[y == c].mean(0) for c in range(int(y.max()) + 1)])
        return self

    def score(self, data) -> np.ndarray:
        data = as_feature_set(data)
        z = next(iter(self._score_layout(data).values()))
        return (z - self.centroids_[data.pred]).norm(dim=1).double().numpy()


# ------------------------------------------------------------------- the toy attack (one file)
def sign_start_fgsm(model, x, y, *, eps, targeted=False, y_true=None, generator=None):
    """FGSM of ε/2 from a random sign start of ε/2 (total L∞ ≤ ε)."""
    noise = torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1
    start = (x + eps / 2 * noise).clamp(0, 1)
    res = fgsm(model, start, y, eps=eps / 2, targeted=targeted, y_true=y_true)
    return AttackResult(
        res.x_adv, res.success, (res.x_adv - x).flatten(1).abs().amax(1),
        (res.x_adv - x).flatten(1).norm(dim=1), res.loss, res.logits, res.eps, 1,
    )  # fmt: skip


@pytest.fixture
def registered():
    """One registry line each (undone after the test)."""
    register_detector(DetectorInfo("Centroid", lambda ctx: Centroid(), default=False))
    register_detector(DetectorInfo("Centroid+LR", lambda ctx: ScoreLR(Centroid()), default=False))
    register_attack(AttackInfo("SignStartFGSM", sign_start_fgsm, iterative=False, random=True))
    yield
    DETECTORS.unregister("Centroid")
    DETECTORS.unregister("Centroid+LR")
    ATTACKS.unregister("SignStartFGSM")


def test_a_registered_toy_detector_and_attack_run_through_the_pipeline(tiny, registered):  # noqa: F811
    model, data = tiny
    assert "Centroid" not in default_detectors()  # default=False: only when asked for
    rep = run_detection(
        model, data, ["SignStartFGSM", "PGD"], eps=EPS,
        detectors=["KD", "Centroid", "Centroid+LR"], profile=TINY, batch_size=32,
    )  # fmt: skip
    assert rep.skipped == []
    assert list(rep.table["attack"].unique()) == ["SignStartFGSM", "PGD"]
    assert list(rep.table["detector"].unique()) == ["KD", "Centroid", "Centroid+LR"]
    assert rep.table["auc"].between(0, 1).all()
    # the two stages came from the detector's own fit_on: the centroids were fitted once on
    # clean training features (two classes, 64 channels) and shared by both attacks
    shared = rep.detectors["Centroid"]
    assert shared.centroids_.shape == (2, 64)
    runs = [rep.run("SignStartFGSM"), rep.run("PGD")]
    assert all(r.detectors["Centroid"] is shared for r in runs)
    assert runs[0].detectors["Centroid+LR"].detectors is runs[1].detectors["Centroid+LR"].detectors
    # the toy attack stayed in its budget; the pipeline seeded its random start
    x_adv = runs[0].x_adv
    assert (x_adv - rep.x).abs().max() <= EPS + 1e-6 and not torch.equal(x_adv, rep.x)
    # scores come from the detector: distance to the predicted class's centroid
    te = runs[1].test
    expected = (te.feats[te.layers[-1]] - shared.centroids_[te.pred]).norm(dim=1).double()
    neg, pos = runs[1].scores["Centroid"]
    np.testing.assert_allclose(np.r_[neg, pos], expected.numpy(), rtol=1e-12)


def test_registering_twice_or_a_wrong_entry_is_an_error(registered):
    with pytest.raises(ValueError, match="already registered"):
        register_detector(DetectorInfo("Centroid", lambda ctx: Centroid()))
    with pytest.raises(TypeError, match="DetectorInfo"):
        register_detector(Centroid)
    with pytest.raises(ValueError, match="Unknown detector 'Nope'; known detectors"):
        DETECTORS.get("Nope")
    assert isinstance(
        Centroid().fit(FeatureSet({"z": torch.randn(6, 3)}), torch.arange(6) % 2), Centroid
    )
