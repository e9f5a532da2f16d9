"""Claim checks and the per-notebook comparison mode (root conftest)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hfc_edu.claims import ClaimError, check, check_true
from hfc_edu.machine import fingerprint_diff

ROOT = Path(__file__).resolve().parents[1]


def _root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_check_passes_and_returns_value():
    assert check("accuracy above chance", 0.8, low=0.5) == 0.8
    assert check("AUC near chance", 0.5, low=0.4, high=0.6) == 0.5


def test_check_failure_names_claim_value_and_range():
    with pytest.raises(ClaimError) as err:
        check("PGD fools most images", 0.3125, low=0.9)
    msg = str(err.value)
    assert "PGD fools most images" in msg and "0.3125" in msg and "[0.9, inf]" in msg


def test_check_rejects_nan_and_needs_a_bound():
    with pytest.raises(ClaimError):
        check("finite", float("nan"), low=0.0)
    with pytest.raises(ValueError, match="bound"):
        check("no bound", 1.0)


def test_check_true():
    check_true("ordering holds", True)
    with pytest.raises(ClaimError, match="BIM equals CW"):
        check_true("BIM equals CW", False, "3 pixels differ")


def test_measure_mode_logs_without_raising(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("HFC_EDU_CLAIMS_LOG", str(log))
    monkeypatch.setenv("HFC_EDU_CLAIMS_MODE", "measure")
    check("too low", 0.1, low=0.5)
    check_true("false", False)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["claim"] for r in rows] == ["too low", "false"]
    assert rows[0]["value"] == 0.1 and rows[0]["low"] == 0.5


def test_fingerprint_diff():
    a = {"torch": "2.13.0", "cpu_capability": "AVX2"}
    b = {"torch": "2.13.0", "cpu_capability": "AVX512"}
    assert fingerprint_diff(a, a) == {}
    assert fingerprint_diff(a, b) == {"cpu_capability": ("AVX2", "AVX512")}


@pytest.mark.parametrize(
    ("recorded", "setting", "strict", "reason"),
    [
        ({"cpu_capability": "AVX2"}, "auto", True, "strict"),
        ({"cpu_capability": "AVX512"}, "auto", False, "cpu_capability 'AVX512' stored vs 'AVX2'"),
        (None, "auto", False, "no machine fingerprint"),
        ({"cpu_capability": "AVX512"}, "strict", True, "forced"),
        ({"cpu_capability": "AVX2"}, "lax", False, "forced"),
    ],
)
def test_notebook_mode(tmp_path, monkeypatch, recorded, setting, strict, reason):
    meta = {"hfc_edu": {"machine": recorded}} if recorded else {}
    nb = tmp_path / "ch.ipynb"
    nb.write_text(json.dumps({"cells": [], "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))
    monkeypatch.setenv("HFC_EDU_NBVAL", setting)
    got, why = _root_conftest().notebook_mode(nb, {"cpu_capability": "AVX2"})
    assert got is strict and reason in why


def test_bad_mode_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("HFC_EDU_NBVAL", "exact")
    with pytest.raises(ValueError, match="HFC_EDU_NBVAL"):
        _root_conftest().notebook_mode(tmp_path / "x.ipynb", {})
