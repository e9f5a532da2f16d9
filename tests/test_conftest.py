"""The shared fixtures: a trained model never makes ``-m "not slow"`` slow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_trained_cxr28, requires_data


def test_tests_using_trained_cxr28_are_deselected_by_not_slow(tmp_path):
    """Collect a test that uses the fixture with ``-m "not slow"`` (in a separate pytest run
    with this directory's conftest): it must be deselected."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (tmp_path / "test_sample.py").write_text(
        "def test_needs_model(trained_cxr28):\n    pass\n\n\ndef test_plain():\n    pass\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["-p", "no:xdist", "-p", "no:nbval", "-m", "not slow", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "::test_plain" in out.stdout
    assert "::test_needs_model" not in out.stdout
    assert "1 deselected" in out.stdout


@requires_data
def test_trained_cxr28_never_trains_on_a_cold_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_CACHE", str(tmp_path))  # an empty checkpoint cache

    def no_training(*args, **kwargs):
        raise AssertionError("trained a model")

    monkeypatch.setattr("hfc_edu.models.pretrained.train_classifier", no_training)
    assert load_trained_cxr28(train=False).model is not None  # the shipped model
    monkeypatch.setattr("hfc_edu.models.shipped.read_manifest", lambda *a, **k: [])
    with pytest.raises(pytest.skip.Exception, match="not in the checkpoint cache"):
        load_trained_cxr28(train=False)  # nothing shipped either: a skip, not a training
