"""The cache helper: atomic writes, one corrupt-file error, stable keys and fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfc_edu import cache
from hfc_edu.cache import CorruptCacheError


def test_cache_root_and_dir_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert cache.cache_dir("gmm") == tmp_path / "c" / "gmm" and (tmp_path / "c" / "gmm").is_dir()


def test_writes_are_atomic_and_round_trip(tmp_path):
    arrays = {"a": np.arange(3.0), "b": np.array("text")}
    cache.write_npz(tmp_path / "x.npz", arrays)
    back = cache.read_npz(tmp_path / "x.npz", "thing", "rebuild=True")
    assert np.array_equal(back["a"], arrays["a"]) and str(back["b"]) == "text"
    cache.write_torch(tmp_path / "x.pt", {"w": torch.ones(2), "n": 3})
    assert cache.read_torch(tmp_path / "x.pt", "thing", "rebuild=True")["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.pt"]  # no temporaries

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        cache.write_torch(tmp_path / "x.pt", {"bad": Unsaveable()})
    # a failed write leaves the old file intact and no temporary behind
    assert cache.read_torch(tmp_path / "x.pt", "thing", "rebuild=True")["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz", "x.pt"]


@pytest.mark.parametrize("reader", [cache.read_npz, cache.read_torch])
def test_unreadable_files_raise_one_error_with_one_message(tmp_path, reader):
    path = tmp_path / "broken"
    path.write_bytes(b"not a cache file")
    with pytest.raises(CorruptCacheError) as err:
        reader(path, "widgets", "rebuild=True")
    msg = str(err.value)
    assert msg.startswith(f"The cached widgets {path} is corrupt or unreadable: ")
    assert msg.endswith("Delete the file, or pass rebuild=True to rebuild it.")
    assert isinstance(err.value, ValueError)


def test_torch_reads_refuse_pickled_code(tmp_path):
    torch.save({"obj": object()}, tmp_path / "code.pt")
    with pytest.raises(CorruptCacheError, match="code.pt is corrupt or unreadable"):
        cache.read_torch(tmp_path / "code.pt", "checkpoint", "retrain=True")


def test_keys_and_fingerprints():
    assert cache.settings_key({"b": 1, "a": [1, 2]}) == cache.settings_key({"a": [1, 2], "b": 1})
    assert cache.settings_key({"a": 1}) != cache.settings_key({"a": 2})
    assert cache.settings_key(("x", 1)) == cache.settings_key(["x", 1])  # JSON: tuple = list
    t = torch.arange(6.0)
    assert cache.tensor_fingerprint(t) == cache.tensor_fingerprint(t.clone())
    assert cache.tensor_fingerprint(t) != cache.tensor_fingerprint(t.double())
    assert cache.tensor_fingerprint(t) != cache.tensor_fingerprint(t.view(2, 3))
    net = torch.nn.Linear(2, 2)
    fp = cache.model_fingerprint(net)
    with torch.no_grad():
        net.bias.add_(1e-3)
    assert cache.model_fingerprint(net) != fp and len(fp) == 16
