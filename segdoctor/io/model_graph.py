"""The saved architecture as a tree of layers: classes, activations, ``trainable`` flags as written, call arguments.

Read straight from the file (``config.json`` of a ``.keras`` zip, ``model_config`` of a legacy ``.h5``) rather
than from the loaded model, because rebuilding a nested model resets flags: a frozen backbone whose
BatchNormalization layers were made trainable again loads with its own flag applied to every inner layer
on some versions. Nested models (a Keras Application inside a Functional model, a Sequential block) are
walked. Nothing here imports Keras; BatchNormalization statistics are read from the loaded model by path.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODEL_CLASSES = {"Functional", "Model", "Sequential"}
#: layers with weights whose ``trainable`` flag says whether a block is frozen
WEIGHTED = {"Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Conv3DTranspose", "Dense"}
#: layers that pass the values of the layer before through unchanged in range (for tracing an activation back)
TRANSPARENT = {
    "Reshape", "Permute", "Flatten", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "Cropping2D", "UpSampling2D", "Resizing", "Identity", "ActivityRegularization",
    "RepeatVector", "Masking",
}
BOUNDED = {"softmax", "sigmoid", "hard_sigmoid"}


@dataclass
class LayerNode:
    """One layer of the saved architecture (or a nested model, with its own ``layers``)."""

    name: str
    class_name: str
    config: dict[str, Any]
    path: tuple[str, ...]  # names of the enclosing models below the top one, then this layer's name
    own_trainable: bool
    inputs: list[str] = field(default_factory=list)  # producer layer names in the same model
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerNode] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # output layer names (nested models)
    parent: LayerNode | None = None

    @property
    def is_model(self) -> bool:
        return bool(self.layers) or self.class_name in MODEL_CLASSES

    @property
    def ancestors(self) -> list[LayerNode]:
        out, p = [], self.parent
        while p is not None:
            out.append(p)
            p = p.parent
        return out

    @property
    def effective_trainable(self) -> bool:
        """Trainable and inside no frozen model: its weights change in fit()."""
        return self.own_trainable and all(a.own_trainable for a in self.ancestors)

    @property
    def training_false(self) -> bool:
        """Called with ``training=False``, itself or through an enclosing model's call."""
        return self.call_kwargs.get("training") is False or any(a.call_kwargs.get("training") is False for a in self.ancestors)

    def activation(self) -> str | None:
        return activation_name(self.config.get("activation"))

    def sibling(self, name: str) -> LayerNode | None:
        scope = self.parent.layers if self.parent is not None else []
        return next((n for n in scope if n.name == name), None)


@dataclass
class ModelGraph:
    root: LayerNode
    keras_version: str | None

    @property
    def keras_major(self) -> int | None:
        try:
            return int(str(self.keras_version).split(".")[0])
        except (TypeError, ValueError):
            return None

    def walk(self) -> Iterator[LayerNode]:
        """Every layer, nested ones included (depth first), not the top model itself."""
        stack = list(reversed(self.root.layers))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.layers))

    def nested_models(self) -> list[LayerNode]:
        return [n for n in self.walk() if n.is_model]

    def batchnorm_layers(self) -> list[LayerNode]:
        return [n for n in self.walk() if n.class_name in ("BatchNormalization", "SyncBatchNormalization")]


def activation_name(raw: Any) -> str | None:
    """'softmax' from ``"softmax"`` or a serialized function ``{"class_name": "function", "config": "softmax"}``."""
    if isinstance(raw, str):
        return raw.lower()
    if isinstance(raw, dict):
        value = raw.get("config") if raw.get("class_name") == "function" else raw.get("registered_name") or raw.get("class_name")
        return str(value).lower() if isinstance(value, str) else None
    return None


def _histories(obj: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(producer name, call kwargs) for every tensor reference in a Keras 3 node's args."""
    if isinstance(obj, dict):
        hist = (obj.get("config") or {}).get("keras_history") if obj.get("class_name") == "__keras_tensor__" else None
        if isinstance(hist, list) and hist:
            yield str(hist[0]), {}
            return
        for v in obj.values():
            yield from _histories(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _histories(v)


def _parse_inbound(raw: Any) -> tuple[list[str], dict[str, Any]]:
    """Producer names and call kwargs of a layer, from Keras 3 (``[{"args", "kwargs"}]``) or Keras 2
    (``[[["name", 0, 0, {kwargs}], ...]]``) inbound nodes. Kwargs of several calls are merged (first wins)."""
    names: list[str] = []
    kwargs: dict[str, Any] = {}
    for node in raw or []:
        if isinstance(node, dict):  # Keras 3
            for name, _ in _histories(node.get("args")):
                names.append(name)
            for k, v in (node.get("kwargs") or {}).items():
                if not isinstance(v, (dict, list)):
                    kwargs.setdefault(k, v)
        elif isinstance(node, list):  # Keras 2: a list of [name, node_index, tensor_index, kwargs]
            for ref in node:
                if isinstance(ref, list) and ref and isinstance(ref[0], str):
                    names.append(ref[0])
                    if len(ref) > 3 and isinstance(ref[3], dict):
                        for k, v in ref[3].items():
                            if not isinstance(v, (dict, list)):
                                kwargs.setdefault(k, v)
    return names, kwargs


def _output_names(raw: Any) -> list[str]:
    out: list[str] = []
    if isinstance(raw, list):
        if raw and isinstance(raw[0], str):
            return [raw[0]]
        for item in raw:
            out.extend(_output_names(item))
    elif isinstance(raw, dict):
        out.extend(name for name, _ in _histories(raw))
    return out


def _build(entry: dict[str, Any], path: tuple[str, ...] | None, parent: LayerNode | None) -> LayerNode:
    """A node and its nested layers; ``path`` None marks the top model (its layers' paths start below it)."""
    cls = str(entry.get("class_name", "?"))
    cfg = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    name = str(cfg.get("name") or entry.get("name") or cls)
    inputs, kwargs = _parse_inbound(entry.get("inbound_nodes"))
    node = LayerNode(name=name, class_name=cls, config=cfg, path=() if path is None else (*path, name),
                     own_trainable=bool(cfg.get("trainable", True)), inputs=inputs, call_kwargs=kwargs, parent=parent)
    sub = cfg.get("layers")
    if isinstance(sub, list):
        node.layers = [_build(e, node.path, node) for e in sub if isinstance(e, dict)]
        if cls == "Sequential" or not any(n.inputs for n in node.layers):
            # a Sequential block: each layer takes the one before it
            for prev, cur in zip(node.layers, node.layers[1:]):
                cur.inputs = cur.inputs or [prev.name]
            node.outputs = [node.layers[-1].name] if node.layers else []
        else:
            node.outputs = _output_names(cfg.get("output_layers"))
    return node


def read_architecture(path: str | Path) -> dict[str, Any] | None:
    """The model's serialized architecture from a ``.keras`` zip or a legacy ``.h5`` file, or None."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(path) as zf:
                return json.loads(zf.read("config.json"))
        if head.startswith(b"\x89HDF\r\n\x1a\n"):
            import h5py

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except Exception as exc:  # the loader reports a broken file; the graph checks simply skip
        log.info("could not read the architecture of %s: %s", path, exc)
    return None


def graph_from_config(config: dict[str, Any], keras_version: str | None = None) -> ModelGraph:
    root = _build(config, None, None)
    return ModelGraph(root=root, keras_version=keras_version)


def read_model_graph(loaded: Any) -> ModelGraph | None:
    """The graph of a ``LoadedModel``: from its file, or from the in-memory model's own config."""
    config = None
    if getattr(loaded, "format", None) == "memory":
        model = loaded.model
        try:
            config = {"class_name": type(model).__name__, "config": model.get_config()}
        except Exception:
            return None
        from segdoctor.io.model import import_keras

        version = import_keras().__version__
    else:
        config = read_architecture(loaded.path)
        version = getattr(loaded, "keras_version", None)
    if not isinstance(config, dict):
        return None
    return graph_from_config(config, version)


def layer_object(model: Any, node: LayerNode) -> Any | None:
    """The loaded Keras layer at ``node.path`` (nested models navigated by name), or None."""
    current = model
    for name in node.path:
        try:
            current = current.get_layer(name)
        except Exception:
            return None
    return current


def batchnorm_weights(model: Any, node: LayerNode) -> dict[str, np.ndarray]:
    """``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` of a BatchNormalization layer (those it has)."""
    layer = layer_object(model, node)
    out: dict[str, np.ndarray] = {}
    if layer is None:
        return out
    for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
        v = getattr(layer, attr, None)
        if v is not None:
            try:
                out[attr] = np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)
            except Exception:
                continue
    return out
