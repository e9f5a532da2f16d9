"""Data loaders: real files (skipped without them), checksum failure, offline error, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfc_edu.data import ChecksumError, DataNotFoundError, load_medmnist, load_task
from hfc_edu.data import download as dl
from hfc_edu.data.dataset import to_tensor_images, to_tensor_labels
from tests.conftest import requires_data


@requires_data
@pytest.mark.parametrize(
    ("task", "size", "shape", "classes"),
    [
        ("chest_xray", 28, (1, 28, 28), 2),
        ("chest_xray", 128, (1, 128, 128), 2),
        ("fundus", 28, (3, 28, 28), 2),
        ("dermoscopy", None, (3, 128, 128), 2),
        ("cifar10", None, (3, 32, 32), 10),
        ("adrenal3d", 28, (1, 28, 28, 28), 2),
    ],
)
def test_real_tasks_shapes_and_ranges(task, size, shape, classes):
    d = load_task(task, size)
    assert d.num_classes == classes
    for s in ("train", "val", "test"):
        x, y = d.split(s)
        assert tuple(x.shape[1:]) == shape
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert float(x.max()) > 0.5  # real images, not an empty array
        assert set(y.unique().tolist()) <= set(range(classes))


@requires_data
def test_chest_xray_official_test_split_sizes():
    d = load_task("chest_xray", 128)
    assert len(d.y_test) == 624
    assert torch.bincount(d.y_test).tolist() == [234, 390]


@requires_data
def test_fundus_binarisation_rule():
    grades = load_medmnist("retinamnist", 28)
    fundus = load_task("fundus", 28)
    assert torch.equal(fundus.y_train, (grades.y_train > 0).long())
    assert fundus.class_names == ("no DR", "DR")
    assert fundus.notes  # the rule is stated


@requires_data
def test_dermoscopy_split_is_stratified_and_seeded():
    a, b = load_task("dermoscopy"), load_task("dermoscopy")
    assert torch.equal(a.y_test, b.y_test)
    total = len(a.y_train) + len(a.y_val) + len(a.y_test)
    assert total == 557
    frac = [float(s.float().mean()) for s in (a.y_train, a.y_val, a.y_test)]
    assert max(frac) - min(frac) < 0.05


def test_offline_error_names_file_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _raise(OSError("Network is unreachable")))
    with pytest.raises(DataNotFoundError) as err:
        load_medmnist("breastmnist", 28)
    msg = str(err.value)
    assert "breastmnist.npz" in msg and "zenodo.org" in msg and str(tmp_path) in msg


def test_checksum_failure_is_an_error_and_file_not_kept(tmp_path, monkeypatch):
    from monai.apps.utils import HashCheckError

    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(
        dl, "download_url", _raise(HashCheckError("md5 hash check of downloaded file failed"))
    )
    with pytest.raises(ChecksumError, match="official MD5"):
        load_medmnist("nodulemnist3d", 64)
    assert not (tmp_path / "medmnist" / "nodulemnist3d_64.npz").exists()


def test_real_checksum_check_on_a_corrupt_download(tmp_path, monkeypatch):
    """MONAI's downloader itself refuses a file with the wrong MD5 (local file URL, no network)."""
    src = tmp_path / "src.npz"
    src.write_bytes(b"not the official file")
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    with pytest.raises(ChecksumError):
        dl.fetch("x.npz", src.as_uri(), "0" * 32)
    assert not (tmp_path / "root" / "medmnist" / "x.npz").exists()


def test_local_file_in_medmnist_layout_is_used_without_download(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{s}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 2, (n, 1))
    (tmp_path / "medmnist").mkdir()
    np.savez(tmp_path / "medmnist" / "breastmnist.npz", **arrays)
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _raise(AssertionError("must not download")))
    d = load_medmnist("breastmnist", 28)
    assert d.x_train.shape == (6, 1, 28, 28)
    assert torch.allclose(d.x_test[0, 0], torch.from_numpy(arrays["test_images"][0]).float() / 255)


def test_unknown_flag_and_size():
    with pytest.raises(ValueError, match="Known flags"):
        load_medmnist("nosuchmnist")
    with pytest.raises(ValueError, match="published at sizes"):
        load_medmnist("adrenalmnist3d", 128)
    with pytest.raises(ValueError, match="Unknown task"):
        load_task("imagenet")


def test_tensor_conversion_layouts():
    assert to_tensor_images(np.zeros((2, 5, 5, 3), np.uint8), 2).shape == (2, 3, 5, 5)
    assert to_tensor_images(np.zeros((2, 5, 5), np.uint8), 2).shape == (2, 1, 5, 5)
    assert to_tensor_images(np.full((2, 4, 5, 5), 255, np.uint8), 3).max() == 1.0
    assert to_tensor_images(np.zeros((2, 4, 5, 5), np.uint8), 3).shape == (2, 1, 4, 5, 5)
    assert to_tensor_labels(np.array([[1], [0]])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="uint8"):
        to_tensor_images(np.zeros((2, 5, 5), np.float32), 2)
    with pytest.raises(ValueError, match="single-label"):
        to_tensor_labels(np.zeros((2, 3)))


def _raise(exc):
    def f(*args, **kwargs):
        raise exc

    return f
