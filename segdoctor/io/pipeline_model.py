"""The pipeline's batches against the model that will train on them (``check-pipeline --model``).

Runs the model on the first batches the pipeline yielded (kept whole for this) and measures what the
SD303/SD307 checks judge: the model's input and output shapes against the batches, its compiled loss on
a prediction equal to the targets (it must be the smallest loss any prediction gets: a target the loss
misreads is not), and its Dice under the usual input scalings. Keras is imported here only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: samples the model runs on (per input scaling)
PROBE_SAMPLES = 8
#: the loss at the perfect prediction may exceed another prediction's by this much (float noise) before it counts
LOSS_TOLERANCE = 1e-3
#: input scalings tried (name, applies when, transform)
SCALINGS = ("as is", "x / 255", "x * 255", "2x - 1", "(x + 1) / 2")


@dataclass
class ModelProbe:
    """What running the model on the pipeline's batches showed."""

    name: str
    spec: Any  # segdoctor.io.model_spec.ModelSpec
    compiled: bool
    notes: list[str] = field(default_factory=list)
    batch_x_shape: tuple = ()
    batch_x_dtype: str = ""
    batch_y_shape: tuple = ()
    predict_error: str | None = None
    output_batch_shape: tuple = ()
    loss_values: dict[str, float] = field(default_factory=dict)  # perfect, blend, prior, model
    loss_error: str | None = None
    perfect: str = ""  # how the perfect prediction was built
    scaling_dice: dict[str, float] = field(default_factory=dict)
    scaling_loss: dict[str, float] = field(default_factory=dict)  # the compiled loss under each input scaling
    input_rescaling: float | None = None  # the scale of a Rescaling layer at the model's input
    input_dtype: str = ""
    optimizer_steps: int | None = None  # optimizer.iterations: 0 for a model compiled but never trained

    @property
    def out_channels(self) -> int:
        return self.spec.out_channels or 1


def _live_loaded(model: Any) -> Any:
    from segdoctor.io.model import LoadedModel

    config = None
    try:
        config = model.get_compile_config() if getattr(model, "compiled", False) else None
    except Exception:  # a model compiled with objects that cannot be serialised: the loss is still callable
        config = None
    return LoadedModel(model=model, path=Path(str(getattr(model, "name", "model"))), format="live",
                       compile_config=config, compiled=bool(getattr(model, "compiled", False)))


def load_probe_model(model: Any, *, custom_objects: tuple = (), unsafe: bool = False) -> tuple[Any, Any]:
    """(LoadedModel, ModelSpec) for a model file (loaded in safe mode) or a live Keras model."""
    from segdoctor.io.model import import_keras, load_custom_objects, load_model
    from segdoctor.io.model_spec import describe_model

    if isinstance(model, (str, Path)):
        objects = load_custom_objects(list(custom_objects))
        loaded = load_model(model, custom_objects=objects, unsafe=unsafe)
    else:
        import_keras()
        loaded = _live_loaded(model)
    return loaded, describe_model(loaded)


def _rescaling_scale(model: Any) -> float | None:
    for layer in list(getattr(model, "layers", []))[:4]:
        if type(layer).__name__ == "Rescaling":
            try:
                return float(np.asarray(layer.scale).reshape(-1)[0])
            except Exception:
                return None
    return None


def _to_logits(p: np.ndarray, channels: int) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    if channels == 1:
        return np.log(q / (1 - q)).astype(np.float32)
    return np.log(q).astype(np.float32)


def perfect_prediction(y: np.ndarray, channels: int) -> tuple[np.ndarray | None, str]:
    """The model output that agrees with the targets ``y`` exactly (probabilities), and how it was made; None
    with a reason when the targets cannot be laid over the output (their shapes disagree)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 5 and y.shape[3] == 1:
        y = y[..., 0, :]
    if y.ndim == 3:
        y = y[..., None]
    if y.ndim != 4:
        return None, f"targets of shape {y.shape[1:]} cannot be laid over an image output"
    c = y.shape[-1]
    y = np.nan_to_num(y)
    if channels == 1:
        if c != 1:
            return None, f"targets have {c} channels, the output 1"
        return np.clip(y, 0, 1).astype(np.float32), "the targets clipped to [0, 1]"
    if c == 1:
        ids = np.clip(np.rint(y[..., 0]), 0, channels - 1).astype(np.int64)
        return np.eye(channels, dtype=np.float32)[ids], f"one-hot of the target ids (depth {channels})"
    if c != channels:
        return None, f"targets have {c} channels, the output {channels}"
    s = y.sum(axis=-1, keepdims=True)
    p = np.where(s > 0, y / np.where(s > 0, s, 1), 1.0 / channels)
    return p.astype(np.float32), "the one-hot targets (zero rows as uniform rows)"


def _scaled(x: np.ndarray, name: str) -> np.ndarray | None:
    x = np.asarray(x, dtype=np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    if name == "as is":
        return x
    if name == "x / 255":
        return x / 255.0 if hi > 1.5 else None
    if name == "x * 255":
        return x * 255.0 if hi <= 1.0 + 1e-6 else None
    if name == "2x - 1":
        return x * 2.0 - 1.0 if lo >= 0 and hi <= 1.0 + 1e-6 else None
    if name == "(x + 1) / 2":
        return (x + 1.0) / 2.0 if lo < 0 and lo >= -1.0 - 1e-6 and hi <= 1.0 + 1e-6 else None
    return None


def _foreground(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 5:
        y = y[..., 0, :]
    if y.ndim == 4 and y.shape[-1] > 1:
        return np.argmax(y, axis=-1) != 0
    y = y[..., 0] if y.ndim == 4 else y
    return np.nan_to_num(y.astype(np.float64)) > 0


def _predicted_foreground(p: np.ndarray, logits: bool) -> np.ndarray:
    if p.ndim == 4 and p.shape[-1] > 1:
        return np.argmax(p, axis=-1) != 0
    p = p[..., 0] if p.ndim == 4 else p
    return p > (0.0 if logits else 0.5)


def _dice(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean per-sample Dice over samples whose target has foreground (NaN without any)."""
    scores = []
    for p, t in zip(pred, true):
        if t.shape != p.shape or not t.any():
            continue
        scores.append(2 * np.logical_and(p, t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores)) if scores else float("nan")


def probe_model(model: Any, batches: list[Any], *, custom_objects: tuple = (), unsafe: bool = False) -> ModelProbe:
    """Load (or take) the model and run the probes on the kept batches (``segdoctor.io.pipeline.Batch``)."""
    from segdoctor.io.model import import_keras

    loaded, spec = load_probe_model(model, custom_objects=custom_objects, unsafe=unsafe)
    keras = import_keras()
    m = loaded.model
    probe = ModelProbe(name=str(getattr(m, "name", "model")), spec=spec,
                       compiled=getattr(m, "_compile_loss", None) is not None, notes=list(loaded.notes))
    probe.input_rescaling = _rescaling_scale(m)
    try:
        opt = getattr(m, "optimizer", None)
        # the step count is restored with the optimizer state of a saved file
        probe.optimizer_steps = None if opt is None else int(np.asarray(opt.iterations))
    except Exception:
        probe.optimizer_steps = None
    try:
        probe.input_dtype = str(getattr(m.inputs[0], "dtype", "") or "")
    except Exception:
        probe.input_dtype = ""
    if not batches:
        return probe
    x = np.concatenate([b.x for b in batches])[:PROBE_SAMPLES]
    y = np.concatenate([b.y for b in batches])[:PROBE_SAMPLES]
    probe.batch_x_shape, probe.batch_x_dtype, probe.batch_y_shape = tuple(x.shape), str(x.dtype), tuple(y.shape)
    xin = x[..., None] if x.ndim == 3 else x
    want = spec.input_shape
    if len(want) == 4 and any(w is not None and w != g for w, g in zip(want[1:], xin.shape[1:])):
        probe.predict_error = f"the model takes inputs of shape {tuple(want[1:])}, the batches hold {tuple(xin.shape[1:])}"
        return probe
    logits = bool(spec.loss is not None and spec.loss.from_logits) or spec.head_activation in ("linear", "none")
    try:
        y_pred = np.asarray(keras.ops.convert_to_numpy(m(xin.astype(np.float32), training=False)))
    except Exception as exc:
        probe.predict_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        return probe
    probe.output_batch_shape = tuple(y_pred.shape)
    # the Dice the model reaches under each input scaling (only meaningful for a trained model)
    true_fg = _foreground(y)
    predictions = {}
    for name in SCALINGS:
        xs = _scaled(xin, name)
        if xs is None:
            continue
        try:
            p = y_pred if name == "as is" else np.asarray(keras.ops.convert_to_numpy(m(xs, training=False)))
        except Exception:
            continue
        predictions[name] = p
        probe.scaling_dice[name] = _dice(_predicted_foreground(p, logits), true_fg)
    # the compiled loss at the perfect prediction against other predictions
    if not probe.compiled:
        probe.loss_error = "the model is not compiled (or its loss could not be restored): no loss to probe"
        return probe
    channels = int(y_pred.shape[-1]) if y_pred.ndim == 4 else 1
    perfect, how = perfect_prediction(y, channels)
    probe.perfect = how
    if perfect is None:
        probe.loss_error = how
        return probe
    if perfect.shape[:3] != y_pred.shape[:3]:
        probe.loss_error = f"the targets are {perfect.shape[1]}x{perfect.shape[2]}, the output {y_pred.shape[1]}x{y_pred.shape[2]}"
        return probe
    uniform = np.full_like(perfect, 0.5 if channels == 1 else 1.0 / channels)
    prior = np.broadcast_to(perfect.mean(axis=(0, 1, 2), keepdims=True), perfect.shape).astype(np.float32)
    candidates = {"perfect": perfect, "blend": (0.9 * perfect + 0.1 * uniform).astype(np.float32), "prior": prior}
    y_true = np.asarray(y)
    for name, p in candidates.items():
        q = _to_logits(p, channels) if logits else p
        try:
            value = float(keras.ops.convert_to_numpy(m.compute_loss(x=xin, y=y_true, y_pred=q)))
        except Exception as exc:
            probe.loss_error = (f"the compiled loss cannot read these targets: {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}")
            return probe
        probe.loss_values[name] = value
    for name, p in predictions.items():
        try:
            probe.scaling_loss[name] = float(keras.ops.convert_to_numpy(m.compute_loss(x=xin, y=y_true, y_pred=p)))
        except Exception:
            continue
    if "as is" in probe.scaling_loss:
        probe.loss_values["model"] = probe.scaling_loss["as is"]
    return probe


def loss_not_minimal(probe: ModelProbe) -> tuple[str, float] | None:
    """(the prediction that beats the perfect one, its loss) when the loss is not smallest at y_pred = y_true."""
    values = probe.loss_values
    best = values.get("perfect")
    if best is None or not math.isfinite(best):
        return None
    tol = LOSS_TOLERANCE + LOSS_TOLERANCE * abs(best)
    worse = [(k, v) for k, v in values.items() if k != "perfect" and math.isfinite(v) and v < best - tol]
    return min(worse, key=lambda kv: kv[1]) if worse else None
