"""The task registry: a toy task registered from arrays is loaded by name and trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfc_edu.config import get_profile
from hfc_edu.data import TASKS, ImageDataset, TaskInfo, load_task, register_task
from hfc_edu.models import get_classifier
from hfc_edu.models.pretrained import BOOK_MODELS, default_train_config


def _toy_arrays(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 grey images (N, size, size): class 1 is brighter."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 128, (n, size, size)) + 127 * y[:, None, None]
    return x.astype(np.uint8), y


def load_toy(size: int, download: bool) -> ImageDataset:
    """The whole 'dataset file' of a toy task: a loader ``(size, download) -> ImageDataset``."""
    return ImageDataset.from_arrays(
        f"toy_{size}",
        ("dark", "bright"),
        train=_toy_arrays(48, size, 0),
        val=_toy_arrays(16, size, 1),
        test=_toy_arrays(16, size, 2),
        source="generated in tests/test_tasks.py",
    )


@pytest.fixture
def toy_task():
    info = register_task(
        TaskInfo("toy", load_toy, sizes=(12, 16), default_size=16, description="toy task",
                 source="tests", licence="CC0", train_overrides={"epochs": 1, "batch_size": 16})
    )  # fmt: skip
    yield info
    TASKS.unregister("toy")


def test_toy_task_is_loaded_by_name_and_trained_with_its_overrides(toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path))
    ds = load_task("toy")
    assert ds.name == "toy_16" and ds.task == "toy" and ds.x_train.shape == (48, 1, 16, 16)
    assert load_task("toy", 12).image_size == 12
    with pytest.raises(ValueError, match=r"Task 'toy' exists at sizes \[12, 16\] px, not 28"):
        load_task("toy", 28)

    tm = get_classifier("toy", progress=False)
    assert len(tm.history) == 1  # the task's epochs=1, not the profile's 8
    assert tm.test["accuracy"] > 0.9 and not tm.from_cache
    cached = torch.load(tm.path, weights_only=True)["train_config"]
    assert (cached["epochs"], cached["batch_size"]) == (1, 16)
    # the dataset loaded by name carries its task: the same overrides, the same checkpoint
    again = get_classifier(load_task("toy"), progress=False)
    assert again.from_cache and again.path == tm.path
    # the overrides are part of the cache key: without them, another (uncached) checkpoint
    with pytest.raises(FileNotFoundError, match="toy_16_compact_resnet_") as err:
        get_classifier(ds.replace(task=""), train=False)
    assert tm.path not in str(err.value)


def test_bad_task_entries_are_clear_errors(toy_task):
    with pytest.raises(ValueError, match="already registered"):
        register_task(toy_task)
    with pytest.raises(ValueError, match="default_size 32 must be one of the sizes"):
        TaskInfo("t", load_toy, sizes=(16,), default_size=32, description="")
    with pytest.raises(TypeError, match="load must be callable"):
        TaskInfo("t", "load_toy", sizes=(16,), default_size=16, description="")
    bad = TaskInfo("toy", load_toy, (16,), 16, "toy", train_overrides={"epoch": 1})
    register_task(bad, replace=True)
    with pytest.raises(ValueError, match=r"override\(s\) \['epoch'\] that are not TrainConfig"):
        default_train_config(get_profile(), 0, "toy")
    register_task(TaskInfo("toy", lambda size, download: "x", (16,), 16, "toy"), replace=True)
    with pytest.raises(TypeError, match="returned str, not an ImageDataset"):
        load_task("toy")


def test_registry_holds_the_book_tasks_and_every_medmnist_flag():
    from hfc_edu.data.medmnist import MEDMNIST

    for name in ("chest_xray", "fundus", "dermoscopy", "cifar10", "cifar100_subset", "adrenal3d"):
        info = TASKS.get(name)
        assert info.description and info.source and info.licence
        assert info.default_size in info.sizes
    assert set(MEDMNIST) <= set(TASKS.names())
    assert TASKS.get("chest_xray").default_size == 128 and TASKS.get("fundus").default_size == 28
    assert {m["task"] for m in BOOK_MODELS} <= set(TASKS.names())


def test_cli_data_lists_every_registered_task(toy_task, tmp_path, monkeypatch, capsys):
    from hfc_edu.cli import main

    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    assert main(["data", "--verbose"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith(" " * 8)}
    assert list(lines) == TASKS.names()
    assert "28 64 [128] 224" in lines["chest_xray"] and "12 [16]" in lines["toy"]
    assert "licence: CC0" in out and "training overrides: {'epochs': 1, 'batch_size': 16}" in out
    assert main(["data", "--load"]) == 0  # nothing in this data root, no download: all listed
    out = capsys.readouterr().out
    assert "toy              ImageDataset('toy_16'" in out and "fundus           unavailable" in out
