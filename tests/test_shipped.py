"""The book's classifiers ship with the package: verified loads, clear errors, data differences."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

from hfc_edu.models import get_classifier
from hfc_edu.models import shipped as sh
from hfc_edu.models.pretrained import BOOK_MODELS
from tests.conftest import requires_data

MAX_TOTAL_MB = 20


def test_manifest_lists_every_book_model_and_stays_small():
    models = sh.read_manifest()
    assert models, "no shipped models: run scripts/ship_weights.py"
    shipped = {(m.task, m.size, m.arch) for m in models}
    for spec in BOOK_MODELS:
        hits = [s for s in shipped if s[0] == spec["task"] and s[1] == spec.get("size", s[1])]
        hits = [s for s in hits if s[2] == spec.get("arch", "compact_resnet")]
        assert hits, f"{spec} is not shipped"
    total = sum(m.path.stat().st_size for m in models) / 1e6
    assert total <= MAX_TOTAL_MB, f"shipped weights take {total:.1f} MB"
    for m in models:
        assert sh.sha256sum(m.path) == m.sha256, m.file


@requires_data
def test_get_classifier_loads_the_shipped_model():
    tm = get_classifier("fundus")
    entry = sh.find_shipped("fundus", 28, "compact_resnet", 0.3, _tcfg("fundus").key())
    assert tm.source == "shipped" and tm.path == str(entry.path)
    assert tm.test == entry.test and tm.history == entry.history
    state = torch.load(entry.path, weights_only=True)
    assert all(torch.equal(v, tm.model.state_dict()[k]) for k, v in state.items())
    assert not tm.model.training


def _tcfg(task):
    from hfc_edu.config import get_profile
    from hfc_edu.models.pretrained import default_train_config

    return default_train_config(get_profile("book"), 0, task)


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """The shipped weights and manifest in a temporary folder (safe to damage)."""
    folder = tmp_path / "weights"
    shutil.copytree(sh.WEIGHTS_DIR, folder)
    monkeypatch.setattr(sh, "WEIGHTS_DIR", folder)
    monkeypatch.setattr(sh, "MANIFEST", folder / "manifest.json")
    monkeypatch.setattr(sh, "read_manifest", lambda path=folder / "manifest.json": _read(path))
    return folder


def _read(path):
    import json

    return [sh.ShippedModel(**row) for row in json.loads(path.read_text())["models"]]


@requires_data
def test_damaged_weight_file_is_a_clear_error_never_a_retrain(weights_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path / "cache"))
    entry = next(m for m in sh.read_manifest() if m.task == "fundus")
    with open(weights_copy / entry.file, "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02")
    with pytest.raises(sh.ShippedWeightsError, match="fails its checksum") as err:
        get_classifier("fundus")
    assert entry.file in str(err.value)
    (weights_copy / entry.file).unlink()
    with pytest.raises(sh.ShippedWeightsError, match="is missing"):
        get_classifier("fundus")
    assert not (tmp_path / "cache" / "checkpoints").exists()  # nothing was trained


@requires_data
def test_weights_of_another_architecture_are_a_clear_error(weights_copy):
    fundus = next(m for m in sh.read_manifest() if m.task == "fundus")
    narrow = next(m for m in sh.read_manifest() if m.arch == "compact_resnet_narrow")
    shutil.copy(weights_copy / narrow.file, weights_copy / fundus.file)
    import json

    rows = json.loads((weights_copy / "manifest.json").read_text())
    for row in rows["models"]:
        if row["file"] == fundus.file:
            row["sha256"] = narrow.sha256
    (weights_copy / "manifest.json").write_text(json.dumps(rows))
    with pytest.raises(sh.ShippedWeightsError, match="does not fit the architecture") as err:
        get_classifier("fundus")
    assert fundus.file in str(err.value)


@requires_data
def test_other_data_copy_is_said_once_and_measured_again(caplog):
    from hfc_edu.data import load_task

    data = load_task("fundus")
    x_test = data.x_test.clone()
    x_test[:, :, :2] = 0.0  # another copy of the images: another fingerprint
    other = data.replace(x_test=x_test)
    with caplog.at_level(logging.WARNING):
        a = get_classifier(other)
        b = get_classifier(other)
    assert a.source == "shipped"
    assert caplog.text.count("trained on another copy of the data") == 1
    assert a.test == b.test != get_classifier("fundus").test  # measured on the data loaded


@requires_data
def test_retrain_ignores_shipped_weights(tmp_path, monkeypatch):
    from hfc_edu.models import TrainConfig

    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path))
    tm = get_classifier("fundus", train_config=TrainConfig(epochs=1, batch_size=128), retrain=True)
    assert tm.source == "trained"


#: How far a fundus model trained from scratch (book profile) may land from the shipped one.
#: Measured on an AVX2 machine, seeds 0-2 x {native kernels, baseline SSE kernels
#: (hfc_edu.machine.other_kernels)}: accuracy 0.775-0.820, balanced accuracy 0.771-0.810, AUC
#: 0.800-0.836 (shipped: seed 0, native: 0.775 / 0.771 / 0.800, reproduced exactly); the
#: largest distance from the shipped metrics was 0.045 (accuracy), 0.039 (balanced), 0.036
#: (AUC). Another machine (AVX-512) gave 0.802-0.812 / AUC 0.831-0.838 with seed 0.
RETRAIN_TOLERANCE = {"accuracy": 0.08, "balanced_accuracy": 0.08, "auc": 0.06}


@requires_data
@pytest.mark.slow
def test_training_from_scratch_lands_near_the_shipped_model(tmp_path, monkeypatch):
    """Training stays tested: the shipped fundus model's recipe, retrained here (about 1-2 min),
    reaches the shipped test metrics within the variation measured across seeds and kernels."""
    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path))
    shipped = get_classifier("fundus", size=28, progress=False)
    assert shipped.source == "shipped"
    trained = get_classifier("fundus", size=28, retrain=True, progress=False)
    assert trained.source == "trained"
    assert trained.model.config == shipped.model.config
    for metric, tol in RETRAIN_TOLERANCE.items():
        got, ref = trained.test[metric], shipped.test[metric]
        assert abs(got - ref) <= tol, (
            f"retrained fundus {metric} {got:.3f}, shipped {ref:.3f}: more than {tol} apart"
        )
