"""Data: real files (skipped without them), downloads and checksums, users' own arrays and files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.apps.utils import HashCheckError

from hfc_edu.data import (
    ChecksumError,
    DataNotFoundError,
    ImageDataset,
    load_medmnist,
    load_npz,
    load_task,
    to_tensor_images,
)
from hfc_edu.data import download as dl
from hfc_edu.data.dataset import stratified_split, to_tensor_labels
from tests.conftest import requires_data


@requires_data
@pytest.mark.parametrize(
    ("task", "size", "shape", "classes"),
    [
        ("chest_xray", 28, (1, 28, 28), 2),
        ("chest_xray", 128, (1, 128, 128), 2),
        ("fundus", 28, (3, 28, 28), 2),
        ("cifar10", None, (3, 32, 32), 10),
        ("adrenal3d", 28, (1, 28, 28, 28), 2),
    ],
)
def test_real_tasks_shapes_and_ranges(task, size, shape, classes):
    d = load_task(task, size)
    assert d.num_classes == classes and d.task == task
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


def test_offline_error_names_file_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _raise(OSError("Network is unreachable")))
    with pytest.raises(DataNotFoundError) as err:
        load_medmnist("breastmnist", 28)
    msg = str(err.value)
    assert "breastmnist.npz" in msg and "zenodo.org" in msg and str(tmp_path) in msg
    assert not any((tmp_path / "medmnist").iterdir())  # no partial file left


def _monai_download_url(payload: bytes, version: str):
    """MONAI's ``download_url`` as it behaves on a wrong hash: 1.4-1.5 move the file into place,
    then raise ``RuntimeError("md5 check of downloaded file failed ...")``; 1.6 checks first and
    raises ``HashCheckError("md5 hash check of downloaded file failed ...")``."""

    def download_url(url, filepath, hash_val=None, hash_type="md5", progress=True):
        bad = hash_val is not None and hashlib.new(hash_type, payload).hexdigest() != hash_val
        if version == "1.6" and bad:
            raise HashCheckError(f"{hash_type} hash check of downloaded file failed: {url=}")
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        Path(filepath).write_bytes(payload)
        if bad:
            raise RuntimeError(f"{hash_type} check of downloaded file failed: URL={url}.")

    return download_url


@pytest.mark.parametrize("monai_version", ["1.4", "1.6"])
def test_wrong_checksum_is_a_checksum_error_on_every_monai(tmp_path, monkeypatch, monai_version):
    """Defect: the checksum failure was told from a failed download by MONAI's wording."""
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _monai_download_url(b"tampered", monai_version))
    with pytest.raises(ChecksumError, match="official MD5"):
        load_medmnist("nodulemnist3d", 64)
    assert not any((tmp_path / "medmnist").iterdir())  # neither the file nor a partial one


def test_download_with_the_official_checksum_is_kept(tmp_path, monkeypatch):
    payload = b"the official bytes"
    md5 = hashlib.md5(payload).hexdigest()
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _monai_download_url(payload, "1.4"))
    path = dl.fetch("x.npz", "https://example.org/x.npz", md5)
    assert path == tmp_path / "medmnist" / "x.npz" and path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == ["x.npz"]


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
    with pytest.raises(ValueError, match=r"exists at sizes \[32\] px, not 64"):
        load_task("cifar10", 64)


def test_loaded_medmnist_is_cached_per_data_root(tmp_path, monkeypatch):
    """A changed $HFC_EDU_DATA must not return the arrays cached from another data root."""
    monkeypatch.setattr(dl, "download_url", _raise(AssertionError("must not download")))
    firsts = []
    for i, value in enumerate((0, 255)):
        root = tmp_path / f"root{i}"
        (root / "medmnist").mkdir(parents=True)
        np.savez(root / "medmnist" / "breastmnist.npz", **_layout(2, 1, 1, value=value))
        monkeypatch.setenv("HFC_EDU_DATA", str(root))
        firsts.append(float(load_medmnist("breastmnist", 28).x_train.max()))
    assert firsts == [0.0, 1.0]


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
    with pytest.raises(TypeError, match="integer class indices"):
        to_tensor_labels(np.array([0.0, 1.0]))
    # float tensors pass through (no copy for float32), 3D as well
    x = torch.rand(2, 1, 4, 5, 5)
    assert to_tensor_images(x, 3).data_ptr() == x.data_ptr()
    assert to_tensor_images(torch.rand(2, 3, 5, 5).double(), 2).dtype == torch.float32
    assert to_tensor_images(torch.full((2, 5, 5), 255, dtype=torch.uint8), 2).max() == 1.0


@pytest.mark.parametrize(
    ("images", "spatial_dims", "error", "match"),
    [
        (np.zeros((2, 4, 5, 5), np.uint8), 2, ValueError, "pass spatial_dims=3"),
        (np.zeros((2, 5, 5, 5, 3), np.uint8), 3, ValueError, r"expected \(N, D, H, W\)"),
        (np.zeros((2, 5, 5), np.int16), 2, TypeError, "uint8 .* or float in \\[0, 1\\]"),
        (torch.rand(2, 5, 5), 2, ValueError, r"x.unsqueeze\(1\)"),
        (torch.rand(2, 1, 4, 5, 5), 2, ValueError, "pass spatial_dims=3"),
        (torch.rand(2, 5, 5, 3), 2, ValueError, "channel-last"),
        (torch.rand(2, 1, 5, 5) * 255, 2, ValueError, r"in \[0, 1\], got values in \[.*, 2"),
        (torch.full((2, 1, 5, 5), float("nan")), 2, ValueError, "NaN"),
        ([[0, 1]], 2, TypeError, "numpy array or a torch tensor"),
        (np.zeros((2, 5, 5), np.uint8), 1, ValueError, "spatial_dims must be 2"),
    ],
)
def test_bad_images_are_clear_errors(images, spatial_dims, error, match):
    with pytest.raises(error, match=match):
        to_tensor_images(images, spatial_dims)


def _layout(*n: int, size: int = 6, value: int | None = None, rgb: bool = False) -> dict:
    """MedMNIST-layout arrays with ``n`` = (train, val, test) images, labels 0/1 alternating."""
    rng = np.random.default_rng(0)
    out = {}
    for s, k in zip(("train", "val", "test"), n, strict=True):
        shape = (k, size, size, 3) if rgb else (k, size, size)
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        out[f"{s}_images"] = x if value is None else np.full_like(x, value)
        out[f"{s}_labels"] = (np.arange(k) % 2).reshape(-1, 1)
    return out


def test_dataset_from_arrays_2d_3d_uint8_and_float():
    a = _layout(6, 2, 3, rgb=True)
    ds = ImageDataset.from_arrays(
        "mine",
        ("a", "b"),
        train=(a["train_images"], a["train_labels"]),
        val=(a["val_images"], a["val_labels"][:, 0]),
        test=(torch.from_numpy(a["test_images"]), torch.tensor([0, 1, 0])),
        source="my lab",
    )
    assert ds.x_train.shape == (6, 3, 6, 6) and ds.y_val.tolist() == [0, 1]
    assert ds.x_train.dtype == torch.float32 and ds.y_test.dtype == torch.int64
    assert torch.equal(ds.x_test[1, 2], torch.from_numpy(a["test_images"][1, ..., 2]) / 255)
    assert ds.source == "my lab" and ds.task == "" and ds.spatial_dims == 2
    vols = np.zeros((4, 5, 6, 6), np.uint8)
    ds3 = ImageDataset.from_arrays(
        "vol", ("a", "b", "c"), train=(vols, [0, 1, 2, 0]), val=(vols, [0] * 4),
        test=(vols, [2] * 4), spatial_dims=3,
    )  # fmt: skip
    assert ds3.x_val.shape == (4, 1, 5, 6, 6) and ds3.num_classes == 3
    x = torch.rand(4, 2, 6, 6)
    dsf = ImageDataset.from_arrays(
        "f", ("a", "b"), train=(x, [0, 1, 0, 1]), val=(x, [0, 1, 1, 1]), test=(x, [1, 0, 1, 0])
    )
    assert dsf.x_train.data_ptr() == x.data_ptr() and dsf.in_channels == 2


def test_dataset_from_arrays_errors():
    x = np.zeros((4, 6, 6), np.uint8)
    y = np.array([0, 1, 0, 1])
    ok = dict(train=(x, y), val=(x, y), test=(x, y))
    with pytest.raises(ValueError, match=r"mine/val: labels must be class indices in \[0, 2\)"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "val": (x, y + 1)})
    with pytest.raises(ValueError, match=r"mine/test: 4 images but labels of shape \(3,\)"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "test": (x, y[:3])})
    with pytest.raises(ValueError, match="splits' images differ in shape"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "test": (x[:, :5], y)})
    with pytest.raises(ValueError, match="mine/train: no images"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "train": (x[:0], y[:0])})
    with pytest.raises(TypeError, match=r"mine/train: Labels must be integer"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "train": (x, y * 1.0)})
    with pytest.raises(ValueError, match="mine/train: Float images must lie in"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "train": (x[:, None] + 2.0, y)})
    with pytest.raises(TypeError, match="train must be an \\(images, labels\\) pair"):
        ImageDataset.from_arrays("mine", ("a", "b"), **{**ok, "train": x})
    with pytest.raises(ValueError, match="at least two classes"):
        ImageDataset.from_arrays("mine", ("a",), **ok)
    with pytest.raises(ValueError, match="non-empty string"):
        ImageDataset.from_arrays("", ("a", "b"), **ok)


def test_load_npz_from_any_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path / "elsewhere"))  # not looked at
    path = tmp_path / "my data" / "scans.npz"
    path.parent.mkdir()
    np.savez(path, **_layout(6, 2, 4, rgb=True))
    ds = load_npz(path)
    assert ds.name == "scans" and ds.class_names == ("0", "1") and ds.source == str(path)
    assert ds.x_train.shape == (6, 3, 6, 6) and ds.y_test.tolist() == [0, 1, 0, 1]
    named = load_npz(str(path), name="mine", class_names=("healthy", "sick"))
    assert named.name == "mine" and named.class_names == ("healthy", "sick")
    np.savez(path, **_layout(6, 2, 4), class_names=np.array(["x", "y", "z"]))
    assert load_npz(path).class_names == ("x", "y", "z")
    vol = {k: (np.repeat(v[:, None], 3, 1) if k.endswith("images") else v) for k, v in
           _layout(4, 2, 2).items()}  # fmt: skip
    np.savez(path, **vol)
    assert load_npz(path, spatial_dims=3).x_val.shape == (2, 1, 3, 6, 6)
    bad = _layout(4, 2, 2)
    del bad["val_labels"]
    np.savez(path, **bad)
    with pytest.raises(ValueError, match=r"not in MedMNIST layout: missing \['val_labels'\]"):
        load_npz(path)
    with pytest.raises(FileNotFoundError, match="nope.npz is not a file"):
        load_npz(tmp_path / "nope.npz")


def test_stratified_split_and_replace():
    x = torch.arange(40.0).view(40, 1, 1, 1) / 40
    y = np.repeat([0, 1], [30, 10])
    parts = stratified_split(x, y, val=0.1, test=0.2, seed=0)
    assert [len(parts[f"y_{s}"]) for s in ("train", "val", "test")] == [28, 4, 8]
    assert parts["y_test"].sum() == 2 and parts["y_val"].sum() == 1
    seen = torch.cat([parts[f"x_{s}"].flatten() for s in ("train", "val", "test")])
    assert sorted(seen.tolist()) == x.flatten().tolist()  # a partition
    ds = ImageDataset("d", ("a", "b"), **parts, notes=["n"])
    view = ds.replace(name="view")
    view.notes.append("only the view's")
    assert ds.notes == ["n"] and view.x_train is ds.x_train and view.name == "view"


def _raise(exc):
    def f(*args, **kwargs):
        raise exc

    return f
