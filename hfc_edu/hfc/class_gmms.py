"""Class-conditional GMMs of hierarchical features: one mixture per (class, layer), cached on disk.

HFC models the distribution of the global-average-pooled (GAP) output of every constrained
ReLU layer, for the clean training images of each class, with a Gaussian mixture
(the official code: ``BayesianGaussianMixture(n_components=K, n_init=2, max_iter=1000)``, full
covariance, on the training images of one class). :func:`fit_class_gmms` does that with
scikit-learn and returns a :class:`ClassConditionalGMMs`, a torch module whose per-layer
:class:`~hfc_edu.hfc.gmm.TorchGMM` stacks the classes along a leading dimension.

The official code passed the training images through the training augmentation before
fitting; pass augmented copies in ``x`` to reproduce that.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hfc_edu.cache import (
    CorruptCacheError,
    cache_dir,
    model_fingerprint,
    read_npz,
    settings_key,
    tensor_fingerprint,
    write_npz,
)
from hfc_edu.features import FeatureExtractor
from hfc_edu.hfc.gmm import TorchGMM, fit_sklearn_gmm
from hfc_edu.hfc.torch_em import fit_torch_gmm

log = logging.getLogger(__name__)

#: The official code skips layers with more than 512 channels.
DEFAULT_MAX_CHANNELS = 512
_FORMAT = 1


class ClassConditionalGMMs(nn.Module):
    """GMMs for every (class, layer): ``self.layer(name)`` is a :class:`TorchGMM` with batch
    shape ``(num_classes,)``, i.e. means ``(C, K, D_l)``.

    Attributes:
        layer_names: constrained layers, shallow to deep.
        channels: ``name -> D_l``.
        num_classes, n_components: ``C`` and ``K``.
        fingerprint: :func:`~hfc_edu.cache.model_fingerprint` of the model whose features
            were fitted (checked by :meth:`check_model`).
        settings: the fitting settings (estimator, K, seed, data fingerprint, ...).
    """

    def __init__(
        self,
        layers: Mapping[str, TorchGMM],
        fingerprint: str,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("ClassConditionalGMMs needs at least one layer.")
        shapes = {name: g.means.shape for name, g in layers.items()}
        bad = {n: tuple(s) for n, s in shapes.items() if len(s) != 3}
        if bad:
            raise ValueError(f"Each layer's TorchGMM must have means (C, K, D); got {bad}.")
        ck = {tuple(s[:2]) for s in shapes.values()}
        if len(ck) != 1:
            raise ValueError(f"All layers need the same (num_classes, K); got {sorted(ck)}.")
        self.layer_names: list[str] = list(layers)
        self.gmms = nn.ModuleList(layers.values())
        self.channels: dict[str, int] = {n: int(s[2]) for n, s in shapes.items()}
        self.num_classes, self.n_components = (int(v) for v in next(iter(ck)))
        self.fingerprint = str(fingerprint)
        self.settings: dict[str, object] = dict(settings or {})
        self._packed: dict[tuple[str, torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}
        self._verified: tuple | None = None  # state of the last model that passed check_model

    def extra_repr(self) -> str:
        return (
            f"layers={len(self.layer_names)}, num_classes={self.num_classes}, "
            f"n_components={self.n_components}, fingerprint={self.fingerprint!r}"
        )

    # -- access ---------------------------------------------------------------------------
    def layer(self, name: str) -> TorchGMM:
        """The class-stacked mixture of layer ``name`` (means ``(C, K, D)``)."""
        try:
            return self.gmms[self.layer_names.index(name)]
        except ValueError:
            raise ValueError(
                f"No GMMs for layer {name!r}; these GMMs cover {self.layer_names}."
            ) from None

    def packed(
        self, name: str, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer ``name``'s means ``(C, K, D)``, ``U`` ``(C, K, D, D)`` and ``log π + log|U|``
        ``(C, K)`` converted to ``device``/``dtype``, cached (the attack-time copies)."""
        key = (name, torch.device(device), dtype)
        if key not in self._packed:
            g = self.layer(name)
            self._packed[key] = (
                g.means.to(device, dtype),
                g.precisions_cholesky.to(device, dtype),
                (g.log_weights + g.log_det).to(device, dtype),
            )
        return self._packed[key]

    def _apply(self, fn, recurse=True):  # .to()/.float() invalidate the converted copies
        self._packed = {}
        return super()._apply(fn, recurse)

    # -- compatibility checks -------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless ``model`` (or a FeatureExtractor's model) has the weights
        these GMMs were fitted for.

        The weights are hashed (:func:`model_fingerprint`); a model whose tensors (storage and
        in-place version counters) are unchanged since it last passed is not hashed again
        (the same object, held through a weak reference).
        """
        net = model.model if isinstance(model, FeatureExtractor) else model
        state = tuple((k, t.data_ptr(), t._version) for k, t in net.state_dict().items())
        if self._verified is not None and self._verified[0]() is net and self._verified[1] == state:
            return
        fp = model_fingerprint(net)
        if fp != self.fingerprint:
            raise ValueError(
                f"These GMMs were fitted on the features of another model (fingerprint "
                f"{self.fingerprint}, this model: {fp}). Refit them for this model with "
                "hfc_edu.hfc.fit_class_gmms(model, x_train, y_train)."
            )
        self._verified = (weakref.ref(net), state)

    def check_layers(
        self, layers: Sequence[str], channels: Mapping[str, int] | None = None
    ) -> None:
        """Raise ``ValueError`` if a layer has no GMM or a different channel count."""
        missing = [n for n in layers if n not in self.channels]
        if missing:
            raise ValueError(
                f"No GMMs for layer(s) {missing}; these GMMs were fitted for {self.layer_names}. "
                "Refit with those layers or constrain only fitted layers."
            )
        if channels is not None:
            wrong = {
                n: (channels[n], self.channels[n])
                for n in layers
                if n in channels and channels[n] != self.channels[n]
            }
            if wrong:
                raise ValueError(
                    f"Channel counts differ (features, GMMs): {wrong}; the GMMs belong to another model."
                )

    # -- (de)serialisation ----------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain float64 arrays plus a JSON header (loadable with ``allow_pickle=False``)."""
        meta = dict(
            format=_FORMAT,
            layer_names=self.layer_names,
            fingerprint=self.fingerprint,
            settings=self.settings,
        )
        out: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta))}
        for i, g in enumerate(self.gmms):
            out[f"means_{i}"] = g.means.detach().cpu().double().numpy()
            out[f"precisions_cholesky_{i}"] = g.precisions_cholesky.detach().cpu().double().numpy()
            out[f"log_weights_{i}"] = g.log_weights.detach().cpu().double().numpy()
            out[f"variational_log_weights_{i}"] = (
                g.variational_log_weights.detach().cpu().double().numpy()
            )
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> ClassConditionalGMMs:
        """Inverse of :meth:`to_arrays`; a ``ValueError`` names what is missing or wrong."""
        try:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unknown format {meta.get('format')!r}")
            layers = {
                name: TorchGMM(
                    torch.from_numpy(np.asarray(arrays[f"means_{i}"], dtype=np.float64)),
                    torch.from_numpy(
                        np.asarray(arrays[f"precisions_cholesky_{i}"], dtype=np.float64)
                    ),
                    torch.from_numpy(np.asarray(arrays[f"log_weights_{i}"], dtype=np.float64)),
                    torch.from_numpy(
                        np.asarray(arrays[f"variational_log_weights_{i}"], dtype=np.float64)
                    ),
                )
                for i, name in enumerate(meta["layer_names"])
            }
            return cls(layers, meta["fingerprint"], meta["settings"])
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"not a valid GMM file ({type(err).__name__}: {err})") from err

    def save(self, path: str | Path) -> None:
        """Atomic ``.npz`` write (:func:`hfc_edu.cache.write_npz`)."""
        write_npz(Path(path), self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> ClassConditionalGMMs:
        """Read a file written by :meth:`save`; :class:`~hfc_edu.cache.CorruptCacheError` if it
        cannot be read or holds no GMMs."""
        arrays = read_npz(path, "GMMs", "refit=True")
        try:
            return cls.from_arrays(arrays)
        except ValueError as err:
            raise CorruptCacheError.for_file(path, "GMMs", str(err), "refit=True") from err


# -- fitting ------------------------------------------------------------------------------
def fit_gmms_on_features(
    features: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    num_classes: int,
    fingerprint: str,
    *,
    n_components: int = 2,
    bayesian: bool = True,
    covariance_type: str = "full",
    n_init: int = 2,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    random_state: int | None = 0,
    backend: str = "sklearn",
    device: torch.device | str | None = None,
    blas_threads: int | None = 1,
    extra_settings: Mapping[str, object] | None = None,
) -> ClassConditionalGMMs:
    """Fit one scikit-learn mixture per (class, layer) on given features ``name -> (N, D)``.

    ``y (N,)`` holds class indices in ``[0, num_classes)``; every class needs at least
    ``max(n_components, 2)`` samples. ``blas_threads`` caps BLAS threads during the fit (the
    EM steps multiply small matrices; multi-threaded OpenBLAS made them up to 100x slower on a
    busy 2-core machine); None leaves the BLAS default.

    ``backend="torch"`` fits by EM in torch on ``device`` (:func:`~hfc_edu.hfc.fit_torch_gmm`,
    scikit-learn's ``GaussianMixture`` algorithm; needs ``bayesian=False``): for the paper
    profile's 64 components, where scikit-learn's CPU fit takes hours.
    """
    if backend not in ("sklearn", "torch"):
        raise ValueError(f"backend must be 'sklearn' or 'torch', got {backend!r}.")
    if backend == "torch" and bayesian:
        raise ValueError(
            "backend='torch' fits GaussianMixture by EM; the variational BayesianGaussianMixture "
            "is scikit-learn's only: pass bayesian=False, or backend='sklearn'."
        )
    from threadpoolctl import threadpool_limits

    y = torch.as_tensor(y).cpu().long()
    if y.ndim != 1:
        raise ValueError(f"y must be (N,), got shape {tuple(y.shape)}.")
    for name, f in features.items():
        if f.ndim != 2 or f.shape[0] != y.shape[0]:
            raise ValueError(
                f"Features of layer {name!r} must be (N, D) with N = len(y) = {len(y)}, got "
                f"{tuple(f.shape)}; pass GAP features (FeatureExtractor(pool='gap'))."
            )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"y must hold class indices in [0, {num_classes}), got {y.min()}..{y.max()}."
        )
    counts = torch.bincount(y, minlength=num_classes).tolist()
    need = max(n_components, 2)
    few = {c: n for c, n in enumerate(counts) if n < need}
    if few:
        raise ValueError(
            f"Too few samples to fit {n_components}-component GMMs for class(es) {few} "
            f"(class: samples; each needs >= {need}). Use fewer components or more training images."
        )
    settings: dict[str, object] = dict(
        estimator="BayesianGaussianMixture" if bayesian else "GaussianMixture",
        n_components=n_components,
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        reg_covar=reg_covar,
        tol=tol,
        random_state=random_state,
        samples_per_class=counts,
    )
    if backend != "sklearn":
        settings["backend"] = backend
    settings.update(extra_settings or {})
    est_kw = dict(
        backend=backend,
        device=device,
        bayesian=bayesian,
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        reg_covar=reg_covar,
        tol=tol,
        random_state=random_state,
    )
    t0 = time.perf_counter()
    limits = threadpool_limits(limits=blas_threads, user_api="blas") if blas_threads else None
    try:
        layers = _fit_all(features, y, num_classes, n_components, est_kw)
    finally:
        if limits is not None:
            limits.restore_original_limits()
    settings["fit_seconds"] = round(time.perf_counter() - t0, 3)
    log.info("Fitted %d x %d GMMs in %.1f s.", len(layers), num_classes, settings["fit_seconds"])
    return ClassConditionalGMMs(layers, fingerprint, settings)


def _fit_all(
    features: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    num_classes: int,
    n_components: int,
    est_kw: Mapping[str, object],
) -> dict[str, TorchGMM]:
    """One stacked TorchGMM per layer (classes along dim 0)."""
    layers: dict[str, TorchGMM] = {}
    est_kw = dict(est_kw)
    backend, device = est_kw.pop("backend"), est_kw.pop("device")
    for name, f in features.items():
        f64 = f.detach().cpu().double()
        per_class = []
        for c in range(num_classes):
            if backend == "torch":
                per_class.append(_fit_torch(f64[y == c], n_components, device, name, c, est_kw))
                continue
            est = fit_sklearn_gmm(f64[y == c], n_components, **est_kw)
            if not est.converged_:
                log.warning(
                    "GMM of class %d at layer %s did not converge in %d EM steps.",
                    c,
                    name,
                    est_kw["max_iter"],
                )
            per_class.append(TorchGMM.from_sklearn(est))
        layers[name] = TorchGMM.stack(per_class)
    return layers


def _fit_torch(
    f: torch.Tensor,
    n_components: int,
    device: torch.device | str | None,
    layer: str,
    cls: int,
    est_kw: Mapping[str, object],
) -> TorchGMM:
    """Best of ``n_init`` torch EM fits (seeds ``random_state + i``), moved to CPU."""
    best: tuple[TorchGMM, dict] | None = None
    seed = int(est_kw["random_state"] or 0)
    for i in range(int(est_kw["n_init"])):
        gmm, info = fit_torch_gmm(
            f, n_components, max_iter=int(est_kw["max_iter"]), tol=float(est_kw["tol"]),
            reg_covar=float(est_kw["reg_covar"]), random_state=seed + i, device=device,
        )  # fmt: skip
        if best is None or info["lower_bound"] > best[1]["lower_bound"]:
            best = (gmm, info)
    assert best is not None
    if not best[1]["converged"]:
        log.warning(
            "GMM of class %d at layer %s did not converge in %d EM steps.",
            cls, layer, est_kw["max_iter"],
        )  # fmt: skip
    return best[0].cpu()


def fit_class_gmms(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    layers: str | Sequence[str] | None = None,
    max_channels: int | None = DEFAULT_MAX_CHANNELS,
    n_components: int = 2,
    bayesian: bool = True,
    covariance_type: str = "full",
    n_init: int = 2,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    tol: float = 1e-3,
    random_state: int | None = 0,
    backend: str = "sklearn",
    batch_size: int = 256,
    device: torch.device | str | None = None,
    blas_threads: int | None = 1,
    cache: bool | str | Path = True,
    refit: bool = False,
) -> ClassConditionalGMMs:
    """Fit (or load from the cache) GMMs on the GAP features of ``model`` for every (class, layer).

    Args:
        model: a zoo Classifier, or a :class:`~hfc_edu.features.FeatureExtractor` (its layers
            are used when ``layers`` is None).
        x: training images ``(N, C, H, W)`` or ``(N, C, D, H, W)`` in [0, 1] (augmented copies
            reproduce the official code's fitting on augmented images).
        y: their labels ``(N,)``.
        layers: feature names (default: every ReLU layer of the FeatureExtractor).
        max_channels: layers wider than this are skipped when ``layers`` is None, and refused
            when named explicitly (512 as in the official code; None keeps every layer).
        n_components, bayesian, covariance_type, n_init, max_iter, reg_covar, tol, random_state:
            the scikit-learn mixture (default: the official settings plus a seed).
        backend: ``"sklearn"`` (default) or ``"torch"`` (EM on ``device``, ``bayesian=False``;
            see :func:`fit_gmms_on_features`).
        batch_size, device: feature extraction (the model's device by default) and, with the
            torch backend, the fit.
        blas_threads: BLAS threads during the scikit-learn fit (see :func:`fit_gmms_on_features`).
        cache: True (``$HFC_EDU_CACHE/gmm``), a directory, or False (no disk cache).
        refit: fit again even if a cache file exists, and overwrite it.

    The cache key hashes the model's ``state_dict``, ``x``, ``y``, the layers and the settings;
    the file is written atomically and read with ``allow_pickle=False``. A corrupt cache file
    raises :class:`~hfc_edu.cache.CorruptCacheError` (a ``ValueError``) naming the file;
    nothing is silently refitted.
    """
    if isinstance(model, FeatureExtractor):
        net = model.model
        fx = model if layers is None else FeatureExtractor(net, layers=layers)
    elif isinstance(model, nn.Module):
        net = model
        fx = FeatureExtractor(net, layers=layers)  # raises for unknown layer names
    else:
        raise TypeError(
            f"model must be an nn.Module or FeatureExtractor, got {type(model).__name__}."
        )
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim not in (4, 5):
        raise ValueError(
            "x must be a float tensor of images (N, C, H, W) or (N, C, D, H, W) in [0, 1], got "
            f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}."
        )
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.shape != (x.shape[0],):
        raise ValueError(
            f"y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}."
        )
    explicit = layers is not None and not isinstance(layers, str)
    names = fx.layer_names
    fingerprint = model_fingerprint(net)
    est_settings = dict(
        n_components=n_components,
        bayesian=bayesian,
        covariance_type=covariance_type,
        n_init=n_init,
        max_iter=max_iter,
        reg_covar=reg_covar,
        tol=tol,
        random_state=random_state,
    )
    if backend != "sklearn":  # the book's cache keys stay as they were
        est_settings["backend"] = backend
    data_fp = tensor_fingerprint(x, y.long())
    key = settings_key([fingerprint, data_fp, names, max_channels, est_settings])
    path: Path | None = None
    if cache is not False:
        root = cache_dir("gmm") if cache is True else Path(cache)
        path = root / f"gmm_{key}.npz"
        if path.exists() and not refit:
            gmms = ClassConditionalGMMs.load(path)
            if gmms.settings.get("cache_key") != key or gmms.fingerprint != fingerprint:
                raise CorruptCacheError.for_file(
                    path, "GMMs", "it holds the GMMs of another key", "refit=True"
                )
            log.info("Loaded GMMs from %s.", path)
            return gmms

    t0 = time.perf_counter()
    logits, feats = fx.extract(x, batch_size=batch_size, device=device)
    extract_s = time.perf_counter() - t0
    channels = {n: int(f.shape[1]) for n, f in feats.items()}
    if max_channels is not None:
        wide = [n for n in names if channels[n] > max_channels]
        if explicit and wide:
            raise ValueError(
                f"Layer(s) {wide} have more than max_channels={max_channels} channels; leave them "
                "out or pass max_channels=None."
            )
        feats = {n: f for n, f in feats.items() if channels[n] <= max_channels}
        if not feats:
            raise ValueError(f"Every layer has more than max_channels={max_channels} channels.")
    gmms = fit_gmms_on_features(
        feats,
        y,
        int(logits.shape[1]),
        fingerprint,
        **est_settings,
        device=device if device is not None else next(net.parameters()).device,
        blas_threads=blas_threads,
        extra_settings=dict(
            data_fingerprint=data_fp,
            max_channels=max_channels,
            cache_key=key,
            extract_seconds=round(extract_s, 3),
        ),
    )
    if path is not None:
        gmms.save(path)
        log.info("Saved GMMs to %s.", path)
    return gmms


__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "ClassConditionalGMMs",
    "fit_class_gmms",
    "fit_gmms_on_features",
]
