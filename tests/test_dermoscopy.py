"""The dermoscopy task: ISIC 2017 from the data root, DermaMNIST download otherwise, clear errors."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hfc_edu.data import DataNotFoundError, load_dermoscopy, load_task
from hfc_edu.data import download as dl
from hfc_edu.data.medmnist import get_flag
from tests.conftest import real_data_available

real_data_available()  # sets $HFC_EDU_DATA to ../shared/data where that folder exists


def _isic2017_path() -> Path | None:
    root = os.environ.get("HFC_EDU_DATA")
    p = Path(root) / "isic2017" / "isic2017_melanoma_128.npz" if root else None
    return p if p is not None and p.is_file() else None


requires_isic2017 = pytest.mark.skipif(
    _isic2017_path() is None,
    reason="ISIC 2017 file not found: set HFC_EDU_DATA to a folder with "
    "isic2017/isic2017_melanoma_128.npz (CI points it at ../shared/data)",
)


@requires_isic2017
def test_isic2017_file_official_splits_counts_and_notes(monkeypatch, caplog):
    monkeypatch.setattr(dl, "_warned", set())  # the warning is once per process
    monkeypatch.setattr(dl, "download_url", _raise(AssertionError("must not download")))
    with caplog.at_level(logging.WARNING):
        d = load_dermoscopy()
        load_task("dermoscopy")
    assert d.name == "dermoscopy_128"
    assert d.class_names == ("benign", "melanoma")
    sizes = {"train": (2000, 374), "val": (150, 30), "test": (600, 117)}
    for s, (n, n_mel) in sizes.items():
        x, y = d.split(s)
        assert x.shape == (n, 3, 128, 128) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert y.dtype == torch.int64 and int(y.sum()) == n_mel and set(y.tolist()) == {0, 1}
    notes = " ".join(d.notes)
    assert "ISIC 2017" in notes and "official splits" in notes and "pixel-identical" in notes
    assert "256 px" in notes and "squashed" in notes and "Not an official file" in notes
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    said = [m for m in said if "isic2017_melanoma_128.npz" in m]
    assert len(said) == 1  # once, not again on the second load
    assert "256 px" in said[0] and "squashed" in said[0] and "Not an official file" in said[0]


def test_other_local_isic2017_file_is_used_and_flagged(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = _medmnist_arrays(rng, {"train": 6, "val": 4, "test": 4}, labels=(0, 1))
    (tmp_path / "isic2017").mkdir()
    np.savez(tmp_path / "isic2017" / "isic2017_melanoma_128.npz", **arrays)
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _raise(AssertionError("must not download")))
    d = load_dermoscopy(download=False)
    assert d.class_names == ("benign", "melanoma")
    assert torch.equal(d.y_val, torch.from_numpy(arrays["val_labels"][:, 0].astype(np.int64)))
    assert any("not the project's shared rebuild" in n for n in d.notes)


def test_dermamnist_download_is_mapped_to_melanoma_vs_rest(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    arrays = _medmnist_arrays(rng, {"train": 14, "val": 7, "test": 7}, labels=range(7))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    info = get_flag("dermamnist")
    # fetch() checks the official MD5 itself (tests/test_data.py): here the fake payload's.
    monkeypatch.setitem(info.md5, 128, hashlib.md5(payload).hexdigest())
    calls = []

    def fake_download(url, filepath, hash_val=None, hash_type="md5", **kwargs):
        calls.append((url, Path(filepath)))
        Path(filepath).write_bytes(payload)

    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", fake_download)
    d = load_dermoscopy()
    assert len(calls) == 1
    url, _ = calls[0]
    assert "dermamnist_128.npz" in url and "zenodo.org" in url
    assert (tmp_path / "medmnist" / "dermamnist_128.npz").is_file()
    assert info.labels[4] == "melanoma"
    for s in ("train", "val", "test"):
        x, y = d.split(s)
        assert x.shape[1:] == (3, 128, 128)
        expected = torch.from_numpy((arrays[f"{s}_labels"][:, 0] == 4).astype(np.int64))
        assert torch.equal(y, expected)
    assert d.name == "dermoscopy_128" and d.class_names == ("not melanoma", "melanoma")
    notes = " ".join(d.notes)
    assert "DermaMNIST" in notes and "HAM10000" in notes and "CC BY-NC 4.0" in notes
    assert "NOT the ISIC 2017 task" in notes and "class 4" in notes


def test_offline_without_either_source_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_DATA", str(tmp_path))
    monkeypatch.setattr(dl, "download_url", _raise(OSError("Network is unreachable")))
    for download in (False, True):
        with pytest.raises(DataNotFoundError) as err:
            load_dermoscopy(download=download)
        msg = str(err.value)
        assert str(tmp_path / "isic2017" / "isic2017_melanoma_128.npz") in msg
        assert "DermaMNIST" in msg and "dermamnist_128.npz" in msg
    assert "Network is unreachable" in msg


def test_dermoscopy_exists_at_128_px_only():
    with pytest.raises(ValueError, match="128 px only"):
        load_dermoscopy(size=64)
    with pytest.raises(ValueError, match=r"sizes \[128\] px, not 224"):
        load_task("dermoscopy", 224)


def _medmnist_arrays(rng, sizes: dict[str, int], labels) -> dict[str, np.ndarray]:
    labels = np.asarray(list(labels), dtype=np.uint8)
    out = {}
    for s, n in sizes.items():
        out[f"{s}_images"] = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
        out[f"{s}_labels"] = np.resize(labels, n).reshape(n, 1)
    return out


def _raise(exc):
    def f(*args, **kwargs):
        raise exc

    return f
