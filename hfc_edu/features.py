"""Hierarchical features: the pooled output of every ReLU layer, from the logits' own forward pass.

Detectors (KD, LID, MAHA, ...) and HFC work on these features. A :class:`FeatureExtractor`
registers forward hooks for the duration of one forward pass, so the features come from the
same pass as the logits (no second forward) and the wrapped model keeps no hooks afterwards.

A model declares its own feature layers (``model.feature_layers()``, see
:class:`~hfc_edu.models.Classifier`); for the zoo's classifiers (MONAI ResNets) they are, in
order from shallow to deep:

* ``stem``: the ReLU after the first convolution;
* ``layerL.B.relu1`` (and ``relu2`` for bottleneck blocks): ReLUs inside residual block B of
  stage L;
* ``layerL.B.out``: the block output, after the residual addition and its ReLU.

The last block output, global-average pooled, is the penultimate feature that the linear head
reads (:attr:`FeatureExtractor.penultimate`). A model that declares no layers works too, with
``layers`` given as module names: ``FeatureExtractor(net, layers=["features.3", "features.7"])``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from hfc_edu.models.zoo import FeatureLayer
from hfc_edu.modes import eval_mode


def global_average_pool(t: torch.Tensor) -> torch.Tensor:
    """``(N, C, *spatial) -> (N, C)``: mean over the spatial dimensions, 2D and 3D alike."""
    return t.mean(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t


class FeatureExtractor(nn.Module):
    """Wraps a classifier; ``fx(x)`` returns ``(logits, features)`` from one forward pass.

    Args:
        model: a model that declares ``feature_layers()`` (the zoo's
            :class:`~hfc_edu.models.Classifier`, a list of
            :class:`~hfc_edu.models.zoo.FeatureLayer`), or any module together with ``layers``
            given as module names (names in ``model.named_modules()``; each module's output at
            its first call in the forward pass is the feature).
        layers: ``None`` or ``"relu"`` for every declared layer, ``"blocks"`` for the declared
            layers that are not inside a block (the stem and the block outputs), or a list of
            feature names (declaring models) or module names (other models).
        pool: ``"gap"`` returns ``(N, C)`` per layer; ``None`` returns the raw maps
            ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

    Returns from ``forward``: logits ``(N, K)`` and an ordered ``dict`` name -> tensor, shallow to
    deep in the order of ``layers``.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Sequence[str] | None = None,
        pool: str | None = "gap",
    ) -> None:
        super().__init__()
        if pool not in ("gap", None):
            raise ValueError(f"pool must be 'gap' or None, got {pool!r}.")
        self.model = model
        self.pool = pool
        declared = getattr(model, "feature_layers", None)
        chosen = (
            _choose_declared(declared(), layers)
            if callable(declared)
            else _choose_modules(model, layers)
        )
        if not chosen:
            raise ValueError("No layers selected.")
        self._layers: list[FeatureLayer] = chosen
        modules = dict(model.named_modules())
        absent = [f.name for f in chosen if f.module not in modules]
        if absent:
            raise ValueError(
                f"{type(model).__name__}.feature_layers() declares {absent} at modules it does "
                "not have; fix the declaration (FeatureLayer.module is a name in named_modules())."
            )
        self._modules_by_name = {f.module: modules[f.module] for f in chosen}
        self._names_by_call: dict[str, dict[int, str]] = {}
        for f in chosen:
            self._names_by_call.setdefault(f.module, {})[f.call] = f.name
        self._channels: dict[str, int] | None = (
            {f.name: f.channels for f in chosen} if callable(declared) else None
        )

    @property
    def layer_names(self) -> list[str]:
        """Feature names, shallow to deep."""
        return [f.name for f in self._layers]

    @property
    def penultimate(self) -> str:
        """Name of the deepest chosen layer (for zoo models with default layers: the head's input)."""
        return self._layers[-1].name

    @property
    def channels(self) -> dict[str, int]:
        """Channel count per layer (for models that do not declare ``feature_layers()``: known
        after the first forward pass)."""
        if self._channels is None:
            raise RuntimeError(
                f"{type(self.model).__name__} declares no feature layers: channel counts are "
                "known after the first forward pass."
            )
        return dict(self._channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats: dict[str, torch.Tensor] = {}
        calls: dict[str, int] = {}
        handles = []

        def make_hook(mod_name: str):
            names = self._names_by_call[mod_name]

            def hook(_module, _inputs, output):
                k = calls.get(mod_name, 0)
                calls[mod_name] = k + 1
                if k in names:
                    feats[names[k]] = global_average_pool(output) if self.pool == "gap" else output

            return hook

        try:
            for mod_name, module in self._modules_by_name.items():
                handles.append(module.register_forward_hook(make_hook(mod_name)))
            logits = self.model(x)
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in self.layer_names if n not in feats]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no output in the forward pass.")
        ordered = OrderedDict((n, feats[n]) for n in self.layer_names)
        if self._channels is None:
            self._channels = {n: int(t.shape[1]) for n, t in ordered.items()}
        return logits, ordered

    @torch.inference_mode()
    def extract(
        self, x: torch.Tensor, batch_size: int = 256, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and features for a whole tensor in mini-batches, on CPU, without gradients."""
        dev = device or next(self.model.parameters()).device
        logits, feats = [], {n: [] for n in self.layer_names}
        with eval_mode(self.model):
            for i in range(0, len(x), batch_size):
                lo, fe = self(x[i : i + batch_size].to(dev))
                logits.append(lo.float().cpu())
                for n, t in fe.items():
                    feats[n].append(t.float().cpu())
        return torch.cat(logits), {n: torch.cat(v) for n, v in feats.items()}


def _choose_declared(
    available: Sequence[FeatureLayer], layers: str | Sequence[str] | None
) -> list[FeatureLayer]:
    """The declared layers that ``layers`` selects, in the order asked for."""
    if layers is None or layers == "relu":
        return list(available)
    if layers == "blocks":
        return [f for f in available if not f.inner]
    if isinstance(layers, str):
        raise ValueError(
            f"layers must be None, 'relu', 'blocks' or a list of names, got {layers!r}."
        )
    by_name = {f.name: f for f in available}
    unknown = [n for n in layers if n not in by_name]
    if unknown:
        raise ValueError(f"Unknown layer name(s) {unknown}. Available layers: {list(by_name)}.")
    return [by_name[n] for n in layers]


def _choose_modules(model: nn.Module, layers: str | Sequence[str] | None) -> list[FeatureLayer]:
    """Features at the outputs of the modules named in ``layers`` (a model without
    ``feature_layers()``); channels are filled in after the first forward pass."""
    modules = dict(model.named_modules())
    if layers is None or isinstance(layers, str):
        relus = [n for n, m in modules.items() if isinstance(m, nn.ReLU | nn.ReLU6 | nn.GELU)]
        raise ValueError(
            f"{type(model).__name__} does not declare feature_layers(): pass `layers` as a list "
            f"of module names, e.g. {relus[:4] or list(modules)[1:5]}."
        )
    unknown = [n for n in layers if n not in modules or n == ""]
    if unknown:
        raise ValueError(
            f"Unknown module name(s) {unknown} in {type(model).__name__}; its modules: "
            f"{list(modules)[1:]}."
        )
    return [FeatureLayer(n, n, 0, 0) for n in layers]
