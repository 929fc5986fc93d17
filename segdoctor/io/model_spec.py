"""What the model checks need to know about a loaded Keras model: shapes, head, loss, optimizer, weights.

Built once from a ``LoadedModel``; the checks read this record instead of poking at Keras objects.
Only attribute access on already-imported Keras objects happens here, no Keras import at module level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: layers that pass values through without changing what the last activation produced
_TRANSPARENT = {
    "Reshape", "Permute", "Flatten", "Dropout", "SpatialDropout2D", "GaussianDropout", "Cropping2D", "ZeroPadding2D",
    "UpSampling2D", "Resizing", "Identity", "ActivityRegularization", "InputLayer",
}
_ACTIVATION_LAYERS = {"Activation", "Softmax", "ReLU", "LeakyReLU", "ELU", "PReLU"}
_INPUT_SCALING = {"Rescaling", "Normalization"}
_DOWNSAMPLING = {"MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D"}
_MERGE = {"Concatenate", "Add", "Average", "Multiply"}

_LOSS_FAMILIES = {
    "binarycrossentropy": "binary_ce",
    "binaryfocalcrossentropy": "binary_ce",
    "bce": "binary_ce",
    "categoricalcrossentropy": "categorical_ce",
    "categoricalfocalcrossentropy": "categorical_ce",
    "sparsecategoricalcrossentropy": "sparse_ce",
    "dice": "dice",
    "tversky": "dice",
}


@dataclass(frozen=True)
class LossSpec:
    name: str
    family: str  # binary_ce | categorical_ce | sparse_ce | dice | other | custom
    from_logits: bool | None
    custom: bool

    @property
    def expects_probabilities(self) -> bool:
        """Cross-entropy without from_logits, and the built-in Dice/Tversky losses (which have no logits option)."""
        return (self.family in ("binary_ce", "categorical_ce", "sparse_ce") and not self.from_logits) or self.family == "dice"


@dataclass(frozen=True)
class WeightProblem:
    layer: str
    weight: str
    size: int
    n_nan: int
    n_inf: int
    all_zero: bool


@dataclass(frozen=True)
class OutputInfo:
    """One output of a model: the key its loss is given under (a dict output's key, else the output's name), the
    layer that makes it, its position in ``model.outputs`` (and in what ``predict`` returns for list outputs)."""

    key: str
    layer: str
    index: int
    shape: tuple


@dataclass
class ModelSpec:
    name: str
    input_shape: tuple
    output_shape: tuple
    head_activation: str  # sigmoid | softmax | linear | relu | ... | unknown
    head_layer: str
    activation_axis_size: int | None  # size of the axis the final softmax normalises over
    input_scaling: str | None  # e.g. "Rescaling(scale=0.00392, offset=0)"
    loss: LossSpec | None
    metric_names: tuple[str, ...]
    optimizer: str | None
    learning_rate: float | None
    lr_schedule: str | None
    n_params: int
    n_layers: int
    n_downsampling: int
    n_merges: int
    n_transposed: int
    weight_problems: list[WeightProblem] = field(default_factory=list)
    #: the output the checks analyse, and every output's key (one entry for a single-output model)
    output_key: str = ""
    output_index: int = 0
    output_keys: tuple[str, ...] = ()
    output_reason: str = ""

    @property
    def out_channels(self) -> int | None:
        c = self.output_shape[-1] if self.output_shape else None
        return int(c) if isinstance(c, (int, np.integer)) else None

    @property
    def in_channels(self) -> int | None:
        c = self.input_shape[-1] if self.input_shape else None
        return int(c) if isinstance(c, (int, np.integer)) else None

    @property
    def input_size(self) -> tuple[int, int] | None:
        if len(self.input_shape) == 4 and all(isinstance(v, (int, np.integer)) for v in self.input_shape[1:3]):
            return int(self.input_shape[1]), int(self.input_shape[2])
        return None

    @property
    def output_size(self) -> tuple[int, int] | None:
        if len(self.output_shape) == 4 and all(isinstance(v, (int, np.integer)) for v in self.output_shape[1:3]):
            return int(self.output_shape[1]), int(self.output_shape[2])
        return None

    @property
    def is_spatial(self) -> bool:
        return len(self.output_shape) == 4


def _shape(x: Any) -> tuple:
    if isinstance(x, list):
        x = x[0]
    return tuple(None if v is None else int(v) for v in x)


def _inbound_layers(layer: Any) -> list[Any]:
    out = []
    for node in getattr(layer, "_inbound_nodes", [])[:1]:
        for t in getattr(node, "input_tensors", []):
            hist = getattr(t, "_keras_history", None)
            if hist is not None:
                out.append(hist[0])
    return out


def _activation_name(fn: Any) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return str(name).lower()


def model_outputs(model: Any) -> list[OutputInfo]:
    """The model's outputs in the order the user declared them, each with the key Keras pairs its loss with.

    Dict outputs (``Model(x, {"seg": a, "aux": b})``) are flattened by key order in ``model.outputs`` while the
    compiled loss is a dict under the same keys: the keys come from the functional config's ``output_layers``.
    List outputs pair with a list of losses by position, or with a dict of losses by output name."""
    outputs = list(getattr(model, "outputs", None) or [])
    names = list(getattr(model, "output_names", None) or [])
    history = []
    for t in outputs:
        h = getattr(t, "_keras_history", None)
        history.append((getattr(h[0], "name", ""), int(h[2])) if h is not None else ("", 0))
    keys = [names[i] if i < len(names) else history[i][0] or str(i) for i in range(len(outputs))]
    try:
        declared = model.get_config().get("output_layers")
    except Exception:
        declared = None
    order = list(range(len(outputs)))
    if isinstance(declared, dict):
        order = []
        for key, ref in declared.items():
            layer = ref[0] if isinstance(ref, (list, tuple)) and ref else None
            tensor = int(ref[2]) if isinstance(ref, (list, tuple)) and len(ref) > 2 else 0
            i = next((i for i, h in enumerate(history) if h == (layer, tensor) and i not in order), None)
            if i is not None:
                keys[i] = str(key)
                order.append(i)
        order += [i for i in range(len(outputs)) if i not in order]
    out = []
    for i in order:
        try:
            shape = _shape(outputs[i].shape)
        except Exception:
            shape = ()
        out.append(OutputInfo(key=keys[i], layer=history[i][0], index=i, shape=shape))
    return out


def choose_output(outputs: list[OutputInfo]) -> tuple[OutputInfo | None, str]:
    """The output the checks analyse, and why: the first (as declared) that is a segmentation map (N, H, W, C)."""
    if not outputs:
        return None, ""
    if len(outputs) == 1:
        return outputs[0], "the only output"
    for o in outputs:
        if len(o.shape) == 4:
            first = o is outputs[0]
            return o, "the first output" + ("" if first else ", in the declared order,") + " that is a segmentation map (N, H, W, C)"
    return outputs[0], "the first output (none is a segmentation map)"


def find_head_activation(model: Any, output_index: int = 0) -> tuple[str, str, int | None]:
    """(activation, layer name, size of the axis it acts on) of one of the model's outputs (the first by default)."""
    outputs = getattr(model, "outputs", None) or []
    if not outputs:
        return "unknown", "", None
    layer = outputs[min(output_index, len(outputs) - 1)]._keras_history[0]
    for _ in range(50):  # a head is a few layers deep; the bound guards against odd graphs
        cls = type(layer).__name__
        axis_size = None
        try:
            out_shape = _shape(layer.output.shape)
        except Exception:
            out_shape = ()
        if cls in _ACTIVATION_LAYERS:
            if cls == "Softmax":
                axis = getattr(layer, "axis", -1)
                axis = axis if isinstance(axis, int) else -1
                axis_size = out_shape[axis] if out_shape else None
                return "softmax", layer.name, axis_size
            if cls == "Activation":
                act = _activation_name(layer.activation)
                return act, layer.name, (out_shape[-1] if out_shape else None)
            return cls.lower(), layer.name, None
        fn = getattr(layer, "activation", None)
        if fn is not None and callable(fn):
            return _activation_name(fn), layer.name, (out_shape[-1] if out_shape else None)
        if cls in _TRANSPARENT:
            parents = _inbound_layers(layer)
            if len(parents) != 1:
                break
            layer = parents[0]
            continue
        break
    return "unknown", getattr(layer, "name", ""), None


def _input_scaling(model: Any) -> str | None:
    """A Rescaling/Normalization layer within the first few layers means the model scales its own input."""
    for layer in list(getattr(model, "layers", []))[:4]:
        cls = type(layer).__name__
        if cls in _INPUT_SCALING:
            if cls == "Rescaling":
                return f"Rescaling(scale={getattr(layer, 'scale', '?')}, offset={getattr(layer, 'offset', '?')})"
            return "Normalization"
    return None


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace(" ", "")


def parse_loss(compile_config: dict[str, Any] | None, keras: Any, output: OutputInfo | None = None) -> LossSpec | None:
    """The compiled loss of ``output`` (a dict of losses pairs by the output's key or layer name, a list by the
    output's position); the first loss when no output is given."""
    if not compile_config:
        return None
    raw = compile_config.get("loss")
    if isinstance(raw, dict) and "class_name" not in raw and raw:  # one loss per output
        if output is None:
            raw = next(iter(raw.values()))
        else:
            raw = raw.get(output.key, raw.get(output.layer))  # None: this output trains without a loss
    if isinstance(raw, list) and raw:
        raw = raw[output.index] if output is not None and output.index < len(raw) else raw[0]
    if raw is None:
        return None
    from_logits: bool | None = None
    if isinstance(raw, str):
        name, module = raw, None
    elif isinstance(raw, dict):
        module = raw.get("module")
        cfg = raw.get("config")
        if raw.get("class_name") == "function":
            name = str(cfg)
        else:
            name = str(raw.get("registered_name") or raw.get("class_name"))
            if isinstance(cfg, dict):
                from_logits = cfg.get("from_logits")
    else:
        return None
    family = _LOSS_FAMILIES.get(_norm(name.split(">")[-1]))
    custom = False
    if family is None:
        builtin = module is not None and str(module).startswith("keras")
        if not builtin and isinstance(raw, str):
            try:
                keras.losses.get(raw)
                builtin = True
            except Exception:
                builtin = False
        custom = not builtin
        family = "other" if builtin else "custom"
    if family in ("binary_ce", "categorical_ce", "sparse_ce") and from_logits is None:
        from_logits = False  # string and function forms of the built-in losses take probabilities
    return LossSpec(name=name, family=family, from_logits=from_logits, custom=custom)


def _metric_names(compile_config: dict[str, Any] | None) -> tuple[str, ...]:
    if not compile_config:
        return ()
    out: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict) and "class_name" in x:
            cfg = x.get("config")
            out.append(str(cfg if x.get("class_name") == "function" else (cfg or {}).get("name", x["class_name"]) if isinstance(cfg, dict) else x["class_name"]))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(compile_config.get("metrics"))
    return tuple(out)


def _optimizer(compile_config: dict[str, Any] | None, model: Any) -> tuple[str | None, float | None, str | None]:
    opt = (compile_config or {}).get("optimizer")
    name: str | None = None
    cfg: dict[str, Any] = {}
    if isinstance(opt, str):
        name = opt
    elif isinstance(opt, dict):
        name = opt.get("class_name")
        cfg = opt.get("config") or {}
    lr = cfg.get("learning_rate", cfg.get("lr"))
    schedule = None
    if isinstance(lr, dict):  # a LearningRateSchedule: its starting value is what the first steps use
        schedule = str(lr.get("class_name"))
        inner = lr.get("config") or {}
        lr = inner.get("initial_learning_rate", inner.get("learning_rate"))
    if lr is None and getattr(model, "optimizer", None) is not None:
        try:
            lr = float(np.asarray(model.optimizer.learning_rate))
        except Exception:
            lr = None
    if isinstance(opt, str) and lr is None:
        lr = None  # a string optimizer was compiled with its default; the saved file has no number to check
    try:
        lr = float(lr) if lr is not None else None
    except (TypeError, ValueError):
        lr = None
    return name, lr, schedule


def weight_problems(model: Any) -> list[WeightProblem]:
    """NaN/Inf anywhere, and kernels (ndim >= 2) that are entirely zero."""
    out = []
    for layer in model.layers:
        for w in layer.weights:
            a = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            if a.dtype.kind != "f" or a.size == 0:
                continue
            n_nan = int(np.isnan(a).sum())
            n_inf = int(np.isinf(a).sum())
            all_zero = a.ndim >= 2 and a.size > 1 and not n_nan and not n_inf and not np.any(a)
            if n_nan or n_inf or all_zero:
                out.append(WeightProblem(layer.name, w.path if hasattr(w, "path") else w.name, int(a.size), n_nan, n_inf, bool(all_zero)))
    return out


def describe_model(loaded: Any) -> ModelSpec:
    """Summarise ``loaded.model`` (a ``LoadedModel``) for the checks."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    model = loaded.model
    outputs = model_outputs(model)
    chosen, reason = choose_output(outputs)
    index = chosen.index if chosen is not None else 0
    head, head_layer, axis_size = find_head_activation(model, index)
    counts = {"down": 0, "merge": 0, "transposed": 0}
    for layer in _all_layers(model):
        cls = type(layer).__name__
        strides = getattr(layer, "strides", None)
        if cls in _DOWNSAMPLING or (cls.startswith("Conv") and "Transpose" not in cls and strides and max(strides) > 1):
            counts["down"] += 1
        if cls in _MERGE:
            counts["merge"] += 1
        if "Transpose" in cls or cls == "UpSampling2D":
            counts["transposed"] += 1
    opt_name, lr, schedule = _optimizer(loaded.compile_config, model)
    return ModelSpec(
        name=model.name,
        input_shape=_shape(model.inputs[0].shape),
        output_shape=_shape(model.outputs[index].shape),
        head_activation=head,
        head_layer=head_layer,
        activation_axis_size=axis_size,
        input_scaling=_input_scaling(model),
        loss=parse_loss(loaded.compile_config, keras, chosen if len(outputs) > 1 else None),
        metric_names=_metric_names(loaded.compile_config),
        optimizer=opt_name,
        learning_rate=lr if lr is None or math.isfinite(lr) else lr,
        lr_schedule=schedule,
        n_params=int(model.count_params()),
        n_layers=len(model.layers),
        n_downsampling=counts["down"],
        n_merges=counts["merge"],
        n_transposed=counts["transposed"],
        weight_problems=weight_problems(model),
        output_key=chosen.key if chosen is not None else "",
        output_index=index,
        output_keys=tuple(o.key for o in outputs),
        output_reason=reason,
    )


def _all_layers(model: Any) -> list[Any]:
    """Layers including those of nested models (a pretrained encoder inside the U-Net)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer is not model:
            out.extend(_all_layers(layer))
        else:
            out.append(layer)
    return out
