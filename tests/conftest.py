"""Shared fixtures: a classifier trained on real 28 px chest X-rays (skipped without the data)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data_available() -> bool:
    """True when $HFC_EDU_DATA (or ../shared/data) holds the shared data files."""
    root = os.environ.get("HFC_EDU_DATA")
    if root is None and SHARED.is_dir():
        os.environ["HFC_EDU_DATA"] = str(SHARED)
        root = str(SHARED)
    return root is not None and (Path(root) / "medmnist" / "pneumoniamnist.npz").is_file()


@pytest.fixture(autouse=True)
def _seed_global_rngs():
    """Seed torch's global generator before every test (NumPy's global one is unused here).

    pytest-xdist hands tests to workers in an order that changes between runs; a test that draws
    from a global generator would otherwise see different numbers each run.
    """
    torch.manual_seed(0)


requires_data = pytest.mark.skipif(
    not real_data_available(),
    reason="real data not found: set HFC_EDU_DATA to a folder with medmnist/pneumoniamnist.npz",
)


@pytest.fixture(scope="session")
def trained_cxr28():
    """The book profile's compact ResNet on real 28 px PneumoniaMNIST (one of ``BOOK_MODELS``, so
    ``hfc-edu prepare`` has usually cached it already).

    Returns a namespace: model (eval, CPU), fx (FeatureExtractor, all ReLU layers), data,
    x_train, y_train, x_test, y_test, test (metrics dict).
    """
    if not real_data_available():
        pytest.skip("real data not found: set HFC_EDU_DATA (CI points it at ../shared/data)")
    from hfc_edu.features import FeatureExtractor
    from hfc_edu.models import get_classifier

    torch.manual_seed(0)
    tm = get_classifier("chest_xray", size=28, profile="book", progress=False)
    d = tm.data
    return SimpleNamespace(
        model=tm.model,
        fx=FeatureExtractor(tm.model),
        data=d,
        x_train=d.x_train,
        y_train=d.y_train,
        x_test=d.x_test,
        y_test=d.y_test,
        test=tm.test,
    )
