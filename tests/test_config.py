"""setup(): the active profile, the seed override, the device."""

from __future__ import annotations

import pytest

import hfc_edu
from hfc_edu import config
from hfc_edu.config import get_profile


@pytest.fixture(autouse=True)
def _no_active_profile(monkeypatch):
    monkeypatch.delenv("HFC_EDU_PROFILE", raising=False)
    monkeypatch.delenv("HFC_EDU_SEED", raising=False)
    monkeypatch.setattr(config, "_active", None)


def test_setup_makes_its_profile_the_active_one():
    assert get_profile().name == "book"
    hfc_edu.setup(profile="paper")
    assert get_profile().name == "paper"  # pipelines read their defaults from it
    assert get_profile("book").name == "book"  # an explicit name still wins
    hfc_edu.setup()
    assert get_profile().name == "book"


def test_environment_profile(monkeypatch):
    monkeypatch.setenv("HFC_EDU_PROFILE", "paper")
    assert hfc_edu.setup().profile.name == "paper"


def test_unknown_profile():
    with pytest.raises(ValueError, match="Unknown profile 'papers'"):
        hfc_edu.setup(profile="papers")


def test_seed_override_for_variation_runs(monkeypatch, caplog):
    monkeypatch.setenv("HFC_EDU_SEED", "3")
    assert hfc_edu.setup(seed=0).seed == 3
    assert "replaced by $HFC_EDU_SEED=3" in caplog.text
    monkeypatch.setenv("HFC_EDU_SEED", "x")
    with pytest.raises(ValueError, match="must be an integer"):
        hfc_edu.setup()
