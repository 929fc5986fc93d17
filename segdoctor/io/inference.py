"""Run a Keras model over image/mask pairs batch by batch and reduce each prediction to per-image records.

Reading, input scaling, resizing to the model's input size and the conversion of outputs to
probabilities live here; the metrics are in ``segdoctor.stats.segmentation_metrics``. Only one batch of
images and probability maps is in memory at a time.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdoctor.errors import SegDoctorError
from segdoctor.io.readers import UnreadableFile, read_file
from segdoctor.stats.segmentation_metrics import BinaryAccumulator, MultiClassAccumulator

log = logging.getLogger(__name__)

PREPROCESS_MODES = ("auto", "none", "unit", "symmetric", "standardize")
CANDIDATE_MODES = ("none", "unit", "symmetric", "standardize")

#: thumbnails in the worst-cases grid are at most this many pixels on a side
THUMB = 96


def type_max(image: np.ndarray) -> float:
    """The value that means 'white' for this array: 255 for 8-bit, 65535 for 16-bit, 1 for floats in [0, 1]."""
    a = np.asarray(image)
    if a.dtype == np.uint8 or a.dtype == np.int8:
        return 255.0
    if a.dtype.kind in "ui":
        return float(np.iinfo(a.dtype).max)
    hi = float(np.nanmax(a)) if a.size else 1.0
    return 1.0 if hi <= 1.0 else 255.0


def scale_image(image: np.ndarray, mode: str) -> np.ndarray:
    """Apply one input scaling: none (raw values), unit ([0, 1]), symmetric ([-1, 1]) or standardize (per image)."""
    a = np.asarray(image, dtype=np.float32)
    if mode == "none":
        return a
    if mode == "unit":
        return a / type_max(image)
    if mode == "symmetric":
        return a / type_max(image) * 2.0 - 1.0
    if mode == "standardize":
        return (a - a.mean()) / max(float(a.std()), 1e-6)
    raise ValueError(f"unknown preprocessing {mode!r}; expected one of {', '.join(CANDIDATE_MODES)}")


def fit_channels(image: np.ndarray, channels: int | None) -> np.ndarray:
    """Give the image the channel count the model expects (gray <-> RGB, alpha dropped)."""
    a = image if image.ndim == 3 else image[..., None]
    if channels is None or a.shape[-1] == channels:
        return a
    if a.shape[-1] == 4 and channels == 3:
        return a[..., :3]
    if a.shape[-1] == 1:
        return np.repeat(a, channels, axis=-1)
    if channels == 1:
        return a[..., :3].mean(axis=-1, keepdims=True).astype(a.dtype)
    return a[..., :channels]


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (H, W, C) float image."""
    from skimage.transform import resize

    return resize(image, (*size, image.shape[-1]), order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)


def resize_labels(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map: never invents label values."""
    h, w = mask.shape[:2]
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(np.int64)
    return mask[rows][:, cols]


#: label value for pixels that count for nothing (void/ignore)
IGNORE = -1


def mask_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids from a stored mask; void pixels become ``IGNORE``.

    Binary masks of any encoding (0/1, 0/255, RGB) become 0/1; in a binary mask that has other
    foreground values, 255 is the usual void label (VOC borders) and is ignored, as the loss would
    with ``ignore_class=255``. Multi-class ids at or above ``num_classes`` are ignored too.
    """
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., :3].max(axis=-1) if num_classes <= 2 else m[..., 0]
    values = np.unique(m)
    if num_classes <= 2:
        labels = (m > 0).astype(np.int64)
        if 255 in values and np.any((values != 0) & (values != 255)):
            labels[m == 255] = IGNORE
        return labels
    if values.size <= 2 and values.max() == 255:  # {0,255} binary stored for a multi-class head
        return (m > 0).astype(np.int64)
    labels = m.astype(np.int64)
    labels[(labels < 0) | (labels >= num_classes)] = IGNORE
    return labels


def to_probabilities(out: np.ndarray, activation: str, *, loss_takes_probabilities: bool = False) -> tuple[np.ndarray, str | None]:
    """Probabilities from raw outputs, read the way the training loss read them.

    A bounded head is kept. An unbounded head (linear, relu) trained with a loss that expects
    probabilities was clipped to [0, 1] by that loss, so it is clipped here too (SD402 reports the
    mismatch); otherwise its outputs are logits and get sigmoid (1 channel) or softmax.
    """
    a = np.asarray(out, dtype=np.float32)
    if activation in ("sigmoid", "softmax", "hard_sigmoid"):
        return a, None
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if activation in ("unknown",) and lo >= 0.0 and hi <= 1.0:
        return a, None
    if loss_takes_probabilities:
        return np.clip(a, 0.0, 1.0), "clipping to [0, 1] (as the compiled loss does)"
    if a.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-np.clip(a, -60, 60))), "applying a sigmoid to the logits"
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), "applying a softmax to the logits"


def foreground_probability(probs: np.ndarray) -> np.ndarray:
    """(N, H, W) probability of 'not background': the one channel, channel 1 of two, or 1 - p(class 0)."""
    c = probs.shape[-1]
    if c == 1:
        return probs[..., 0]
    if c == 2:
        return probs[..., 1]
    return 1.0 - probs[..., 0]


def predict_fn(model: Any, *, key: str = "", index: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A callable running the model on one batch without the tf.data machinery of ``model.predict``; of several
    outputs it returns the one the checks analyse (``ModelSpec.output_key``/``output_index``)."""

    def run(batch: np.ndarray) -> np.ndarray:
        out = model.predict_on_batch(batch)
        if isinstance(out, (list, tuple)):
            out = out[index] if index < len(out) else out[0]
        elif isinstance(out, dict):
            out = out[key] if key in out else next(iter(out.values()))
        return np.asarray(out)

    return run


@dataclass
class WorstCase:
    dice: float
    name: str
    image: np.ndarray
    truth: np.ndarray
    prob: np.ndarray


@dataclass
class InferenceResult:
    binary: BinaryAccumulator
    multiclass: MultiClassAccumulator | None
    n_resized: int = 0
    resized_from: tuple[int, int] | None = None
    n_unreadable: int = 0
    unreadable: list[str] = field(default_factory=list)
    squashed_with: str | None = None
    output_resized: int = 0
    worst: list[WorstCase] = field(default_factory=list)
    input_std: float = float("nan")
    mask_values: set[int] = field(default_factory=set)  # raw values of single-channel masks (capped)
    mask_channels: int = 1
    n_padded: int = 0


def _thumb(a: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(a.shape[:2]) / THUMB)))
    return np.ascontiguousarray(a[::step, ::step])


def _load(pair: Any) -> tuple[str, np.ndarray, np.ndarray]:
    image = read_file(pair.image).array
    mask = read_file(pair.mask).array
    return str(pair.image), image, mask


def run_inference(
    model: Any,
    spec: Any,
    pairs: Sequence[Any],
    *,
    preprocess: str,
    threshold: float = 0.5,
    batch_size: int = 8,
    num_classes: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    keep_worst: int = 4,
    label: str = "predicting",
) -> InferenceResult:
    """Predict every pair (objects with ``.image`` and ``.mask`` paths) and accumulate per-image records."""
    out_c = spec.out_channels or 1
    k = num_classes or (2 if out_c <= 2 else out_c)
    result = InferenceResult(BinaryAccumulator(threshold=threshold), MultiClassAccumulator(out_c) if out_c > 2 else None)
    predict = predict_fn(model, key=getattr(spec, "output_key", ""), index=getattr(spec, "output_index", 0))
    takes_probabilities = bool(spec.loss is not None and spec.loss.expects_probabilities)
    size = spec.input_size
    worst_heap: list[tuple[float, int, WorstCase]] = []
    in_sum = in_sumsq = None
    in_count = 0
    total = len(pairs)
    done = 0
    batch: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, bool]] = []  # name, model input, labels, display image, padded
    multiple = 2 ** min(int(getattr(spec, "n_downsampling", 0) or 0), 6)

    def flush() -> None:
        nonlocal batch
        if not batch:
            return
        # a model with a free input size runs on consecutive images of equal size only
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(batch):
            groups.setdefault(item[1].shape, []).append(i)
        for shape, idx in groups.items():
            x = np.stack([batch[i][1] for i in idx])
            try:
                raw = predict(x)
            except Exception as exc:
                raise SegDoctorError(
                    f"{spec.name}: the model failed on an input batch of shape {x.shape} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                    "expected inputs it accepts; check --preprocess and the image size."
                ) from None
            probs, squashed = to_probabilities(raw, spec.head_activation, loss_takes_probabilities=takes_probabilities)
            result.squashed_with = result.squashed_with or squashed
            if probs.ndim == 3 and probs.shape[1] == x.shape[1] * x.shape[2]:  # a (N, H*W, C) head
                probs = probs.reshape(x.shape[0], x.shape[1], x.shape[2], probs.shape[-1])
            if probs.ndim != 4:
                raise SegDoctorError(f"{spec.name}: output of shape {probs.shape}; expected a (N, H, W, C) segmentation map.")
            for j, i in enumerate(idx):
                name, _, labels, display, was_padded = batch[i]
                p = probs[j]
                if was_padded:
                    p = p[: labels.shape[0], : labels.shape[1]]
                if p.shape[:2] != labels.shape:
                    p = resize_image(p, labels.shape)
                    result.output_resized += 1
                fg = np.clip(foreground_probability(p[None])[0], 0.0, 1.0)
                truth = labels > 0
                valid = labels != IGNORE
                result.binary.add(name, fg, truth, valid=None if valid.all() else valid)
                if result.multiclass is not None:
                    result.multiclass.add(np.argmax(p, axis=-1), labels)
                if truth.any() and keep_worst:
                    d = result.binary.last_dice()
                    wc = WorstCase(d, name, _thumb(display), _thumb(labels), _thumb(fg))
                    item = (-d, len(result.binary), wc)
                    if len(worst_heap) < keep_worst:
                        heapq.heappush(worst_heap, item)
                    elif item > worst_heap[0]:
                        heapq.heapreplace(worst_heap, item)
        batch = []

    for pair in pairs:
        try:
            name, image, mask = _load(pair)
        except (UnreadableFile, OSError) as exc:
            result.n_unreadable += 1
            result.unreadable.append(f"{pair.image}: {exc}")
            done += 1
            continue
        if mask.ndim == 2 and len(result.mask_values) < 1024:
            result.mask_values.update(int(v) for v in np.unique(mask) if float(v).is_integer())
        elif mask.ndim == 3:
            result.mask_channels = int(mask.shape[2])
        x = fit_channels(image, spec.in_channels)
        x = scale_image(x, preprocess)
        labels = mask_labels(mask, k)
        if size is not None and x.shape[:2] != size:
            result.n_resized += 1
            result.resized_from = result.resized_from or tuple(x.shape[:2])
            x = resize_image(x, size)
            labels = resize_labels(labels, size)
        elif labels.shape[:2] != x.shape[:2]:
            labels = resize_labels(labels, x.shape[:2])
        padded = False
        if size is None and multiple > 1 and (x.shape[0] % multiple or x.shape[1] % multiple):
            # a free-size encoder-decoder needs sides divisible by its total stride; pad, then crop the output
            pad_h, pad_w = -x.shape[0] % multiple, -x.shape[1] % multiple
            x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            result.n_padded += 1
            padded = True
        if in_sum is None:
            in_sum = np.zeros(x.shape, np.float64)
            in_sumsq = np.zeros(x.shape, np.float64)
        if x.shape == in_sum.shape:
            in_sum += x
            in_sumsq += x.astype(np.float64) ** 2
            in_count += 1
        batch.append((name, x, labels, image, padded))
        if len(batch) >= batch_size:
            flush()
        done += 1
        if progress:
            progress(done, total, label)
    flush()
    if in_count >= 2:
        mean = in_sum / in_count
        result.input_std = float(np.sqrt(np.maximum(in_sumsq / in_count - mean**2, 0)).mean())
    result.worst = [w for _, _, w in sorted(worst_heap, reverse=True)]
    return result


def evaluate_function(fn: Any, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Call a user's loss or metric on numpy tensors and reduce its output to one number, as Keras would."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    ops = keras.ops
    yt = ops.convert_to_tensor(y_true, dtype="float32")
    yp = ops.convert_to_tensor(y_pred, dtype="float32")
    if isinstance(fn, keras.metrics.Metric):
        fn.reset_state()
        fn.update_state(yt, yp)
        out = fn.result()
    else:
        out = fn(yt, yp)
    return float(np.mean(np.asarray(ops.convert_to_numpy(out), dtype=np.float64)))
