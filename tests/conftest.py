"""Shared fixtures: a classifier trained on real 28 px chest X-rays (skipped without the data)."""

from __future__ import annotations

import os
import re
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


def pytest_itemcollected(item) -> None:
    """Every test that uses ``trained_cxr28`` is slow: on a cold checkpoint cache the fixture
    trains a model (about 4 min per process), so ``-m "not slow"`` must leave those tests out."""
    if "trained_cxr28" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.slow)


def slow_tests_deselected(config: pytest.Config) -> bool:
    """True when the run's ``-m`` expression leaves out slow tests (``-m "not slow"``)."""
    return re.search(r"\bnot\s+slow\b", config.getoption("markexpr", "") or "") is not None


def load_trained_cxr28(train: bool = True) -> SimpleNamespace:
    """The namespace ``trained_cxr28`` returns; with ``train=False`` a test skip instead of
    training when the model is not in the checkpoint cache."""
    from hfc_edu.data import DataNotFoundError
    from hfc_edu.features import FeatureExtractor
    from hfc_edu.models import get_classifier

    torch.manual_seed(0)
    try:
        tm = get_classifier("chest_xray", size=28, profile="book", progress=False, train=train)
    except DataNotFoundError:
        raise
    except FileNotFoundError:
        pytest.skip(
            "the book's 28 px chest X-ray model is not in the checkpoint cache and slow tests are "
            "deselected (training it takes about 4 min): run the slow tests to train it"
        )
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


@pytest.fixture(scope="session")
def trained_cxr28(request):
    """The book profile's compact ResNet on real 28 px PneumoniaMNIST (one of ``BOOK_MODELS``, so
    shipped with the package).

    Returns a namespace: model (eval, CPU), fx (FeatureExtractor, all ReLU layers), data,
    x_train, y_train, x_test, y_test, test (metrics dict). Tests that name the fixture are marked
    slow (:func:`pytest_itemcollected`); tests that request it at run time
    (``request.getfixturevalue``) get a skip instead of a 4-minute training when the model is
    not cached and the run deselects slow tests.
    """
    if not real_data_available():
        pytest.skip("real data not found: set HFC_EDU_DATA (CI points it at ../shared/data)")
    return load_trained_cxr28(train=not slow_tests_deselected(request.config))
