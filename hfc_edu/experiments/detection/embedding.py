"""2D pictures of one layer's features: clean, noisy and adversarial images of a detection run."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hfc_edu.experiments.detection.results import DetectionRun


def representative_layers(layer_names: Sequence[str]) -> list[str]:
    """The shallowest, a middle and the deepest (penultimate) layer of ``layer_names``."""
    names = list(layer_names)
    if not names:
        raise ValueError("No layer names given.")
    picks = [names[0], names[(len(names) - 1) // 2], names[-1]]
    return list(dict.fromkeys(picks))


def feature_embedding(
    run: DetectionRun, layer: str, split: str = "test", method: str = "pca", seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """2D embedding ``(N, 2)`` of one layer's features of clean, noisy and adversarial images.

    ``method="pca"`` (deterministic; fitted on all three groups, standardised per channel) or
    ``"tsne"``. Returns the embedding and one group label per row (``"clean"``, ``"noisy"``,
    ``"adversarial"``) for :func:`~hfc_edu.plots.embedding_plot`.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
    fs, part = (run.train, run.splits.train) if split == "train" else (run.test, run.splits.test)
    if layer not in fs.feats:
        raise ValueError(f"Unknown layer {layer!r}; the features have {fs.layers}.")
    z = StandardScaler().fit_transform(fs.feats[layer].double().numpy())
    if method == "pca":
        emb = PCA(n_components=2, random_state=seed).fit_transform(z)
    else:
        emb = TSNE(n_components=2, init="pca", random_state=seed, perplexity=30).fit_transform(z)
    n_clean = len(part.index)
    groups = ["clean"] * n_clean + ["noisy"] * n_clean + ["adversarial"] * part.n_pos
    return emb, groups


__all__ = ["feature_embedding", "representative_layers"]
