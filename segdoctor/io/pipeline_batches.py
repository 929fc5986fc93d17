"""Adapters from whatever a data pipeline is to numpy batches: the object kinds ``check-pipeline`` accepts
(``tf.data.Dataset``, ``PyDataset``/``Sequence``, iterators and generators, ``(X, Y)`` arrays) and the forms a
batch takes (tuples, dicts, channels-first, flattened targets). TensorFlow is never imported: tensors are
recognised by their type names and converted with their own ``.numpy()``. Anything that is not image batches is a
``PipelineError`` with one line."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdoctor.errors import PipelineError

ACCEPTED = ("expected a tf.data.Dataset of (x, y) or (x, y, sample_weight) batches, a keras.utils.PyDataset or "
            "Sequence, a generator or iterator of such batches (e.g. zip(image_flow, mask_flow)), or (X, Y) arrays")
#: (X, Y) arrays are cut into batches of this size
ARRAY_BATCH = 16
IMAGE_KEYS = ("image", "images", "img", "imgs", "x", "input", "inputs", "input_1", "pixel_values", "inputs_1")
MASK_KEYS = ("mask", "masks", "segmentation_mask", "segmentation", "label", "labels", "y", "target", "targets",
             "seg", "annotation", "annotations", "gt", "ground_truth")
WEIGHT_KEYS = ("sample_weight", "sample_weights", "weight", "weights")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "").strip()[:300]


# ---------------------------------------------------------------------------------------------- object adapters


def _type_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def is_tf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("tensorflow") and hasattr(obj, "element_spec") and hasattr(obj, "take")


def _is_array(obj: Any) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, (str, bytes))


def _is_sequence(obj: Any) -> bool:
    if isinstance(obj, (str, bytes, dict, tuple)) or _is_array(obj):
        return False
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__")


def describe_object(obj: Any) -> str:
    """A short human name for the kind of object, for the report."""
    if is_tf_dataset(obj):
        return "tf.data.Dataset"
    names = [c.__name__ for c in type(obj).__mro__]
    if "NumpyArrayIterator" in names or "DirectoryIterator" in names or "DataFrameIterator" in names:
        return f"ImageDataGenerator flow ({type(obj).__name__})"
    if "PyDataset" in names:
        return f"keras.utils.PyDataset ({type(obj).__name__})"
    if isinstance(obj, zip):
        return "zip of iterators"
    if inspect.isgenerator(obj):
        return "generator"
    if isinstance(obj, (tuple, list)) and obj and all(_is_array(a) for a in obj):
        return "(X, Y) arrays"
    if _is_sequence(obj):
        return f"sequence ({type(obj).__name__})"
    return f"iterator ({type(obj).__name__})"


def _array_batches(arrays: tuple, batch: int) -> Iterator[tuple]:
    n = len(arrays[0])
    for start in range(0, n, batch):
        yield tuple(a[start: start + batch] for a in arrays)


def _sequence_batches(obj: Any) -> Iterator[Any]:
    n: int | None
    try:
        n = getattr(obj, "num_batches", None)
        if n is None:
            n = len(obj)
    except Exception:  # an infinite PyDataset has no length: read until it stops
        n = None
    i = 0
    while n is None or i < n:
        try:
            item = obj[i]
        except (IndexError, StopIteration):
            return
        yield item
        i += 1


def open_batches(obj: Any, label: str) -> tuple[str, Iterator[Any]]:
    """(kind, iterator of raw batches) for any accepted object; a PipelineError for anything else."""
    if obj is None:
        raise PipelineError(f"{label}: the function returned None; {ACCEPTED}.")
    if isinstance(obj, (str, bytes)):
        raise PipelineError(f"{label}: the function returned a string ({str(obj)[:60]!r}); {ACCEPTED}.")
    if isinstance(obj, dict):
        raise PipelineError(f"{label}: the function returned a dict with keys {sorted(map(str, obj))[:6]}; {ACCEPTED}.")
    kind = describe_object(obj)
    if is_tf_dataset(obj):
        return kind, iter(obj)
    if _is_array(obj):
        raise PipelineError(f"{label}: the function returned one array of shape {tuple(obj.shape)} (images only?); "
                            f"{ACCEPTED}.")
    if isinstance(obj, (tuple, list)) and obj and all(_is_array(a) for a in obj):
        if len(obj) == 1:
            raise PipelineError(f"{label}: the function returned images only (one array of shape {tuple(obj[0].shape)}); "
                                f"{ACCEPTED}.")
        if len(obj) > 3:
            raise PipelineError(f"{label}: the function returned {len(obj)} arrays; {ACCEPTED}.")
        arrays = tuple(_to_numpy(a, label, what) for a, what in zip(obj, ("X", "Y", "sample weights")))
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise PipelineError(f"{label}: the arrays hold different numbers of samples ({', '.join(str(len(a)) for a in arrays)}); "
                                "expected X and Y of the same length.")
        return kind, _array_batches(arrays, ARRAY_BATCH)
    if _is_sequence(obj) and ({"PyDataset", "Sequence"} & {c.__name__ for c in type(obj).__mro__}
                              or not hasattr(obj, "__next__")):
        return kind, _sequence_batches(obj)  # as model.fit reads a PyDataset: by index
    if hasattr(obj, "__next__"):
        return kind, obj
    if hasattr(obj, "__iter__"):
        try:
            return kind, iter(obj)
        except Exception as exc:
            raise PipelineError(f"{label}: iter() on the returned {_type_name(obj)} failed ({_first_line(exc)}); {ACCEPTED}.") from None
    raise PipelineError(f"{label}: the function returned a {_type_name(obj)}; {ACCEPTED}.")


# ---------------------------------------------------------------------------------------------- batch normalisation


@dataclass
class Batch:
    """One batch as numpy: images ``x`` (B, H, W[, C]), targets ``y`` (B, ...) and optional sample weights."""

    index: int
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray | None = None
    notes: tuple[str, ...] = ()


def _to_numpy(value: Any, label: str, what: str) -> np.ndarray:
    tname = type(value).__name__
    if "Ragged" in tname:
        raise PipelineError(f"{label}: {what} is a ragged tensor (samples of different shapes); expected dense batches "
                            "(resize or pad every sample to one size before batching).")
    if "Sparse" in tname:
        raise PipelineError(f"{label}: {what} is a sparse tensor; expected dense batches (tf.sparse.to_dense).")
    if not isinstance(value, np.ndarray):
        if hasattr(value, "numpy") and callable(value.numpy):
            try:
                value = value.numpy()
            except Exception as exc:
                raise PipelineError(f"{label}: {what} could not be converted to an array ({_first_line(exc)}).") from None
        elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensors
            value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except ValueError:
        raise PipelineError(f"{label}: {what} holds samples of different shapes (ragged); expected samples resized to "
                            "one size in each batch.") from None
    if arr.dtype == object:
        shapes = sorted({tuple(np.shape(v)) for v in np.ravel(arr)[:16]}, key=str)[:3]
        raise PipelineError(f"{label}: {what} holds samples of different shapes ({', '.join(map(str, shapes))}): ragged; "
                            "expected one size per batch.")
    if arr.dtype.kind in "USV":
        raise PipelineError(f"{label}: {what} is a batch of {'strings' if arr.dtype.kind in 'US' else 'bytes'} "
                            f"(dtype {arr.dtype}), not decoded pixels; expected numeric image and mask arrays.")
    if arr.dtype.kind not in "biuf":
        raise PipelineError(f"{label}: {what} has dtype {arr.dtype}; expected numeric image and mask arrays.")
    return arr


def _pick(d: dict, keys: tuple[str, ...]) -> Any:
    lower = {str(k).lower(): k for k in d}
    for k in keys:
        if k in lower:
            return d[lower[k]]
    return None


def _several(value: Any, batch_size: int | None) -> bool:
    """A list of whole batches (a multi-input or multi-output model: ``(x, [y_main, y_aux])``), not a list of samples:
    inputs are batches of images (4-D); targets each hold one row per image of the batch."""
    if not isinstance(value, (list, tuple)) or not value or len(value) > 8:
        return False
    shapes = [tuple(getattr(v, "shape", ())) for v in value]
    if not all(shapes):
        return False
    if batch_size is None:
        return all(len(sh) >= 4 for sh in shapes)
    return len(value) != batch_size and all(sh[0] == batch_size for sh in shapes)


def _single(value: Any, label: str, what: str, notes: list[str], batch_size: int | None = None) -> Any:
    """A dict (or list) of model inputs/outputs: the one entry, or the first image-like one (noted)."""
    if _several(value, batch_size):
        if len(value) > 1:
            notes.append(f"{what} is a list of {len(value)} arrays (several model inputs or outputs); the first was analysed")
        return value[0]
    if not isinstance(value, dict):
        return value
    if not value:
        raise PipelineError(f"{label}: {what} is an empty dict; expected arrays.")
    if len(value) == 1:
        return next(iter(value.values()))
    keys = sorted(map(str, value))
    for k in value:
        if len(getattr(value[k], "shape", ())) >= 3:
            notes.append(f"{what} is a dict with {len(value)} entries ({', '.join(map(repr, keys[:6]))}); "
                         f"the entry {str(k)!r} was analysed")
            return value[k]
    raise PipelineError(f"{label}: {what} is a dict of {len(value)} entries ({', '.join(map(repr, keys[:6]))}) and "
                        "none is an image batch; expected one (B, H, W, C) array.")


def normalise_batch(raw: Any, index: int, label: str) -> Batch:
    """Turn whatever one batch is into numpy ``(x, y, w)``; PipelineError (one line) when it is not image batches."""
    notes: list[str] = []
    if raw is None:
        raise PipelineError(f"{label}: batch {index} is None; {ACCEPTED}.")
    if isinstance(raw, dict):
        x, y, w = _pick(raw, IMAGE_KEYS), _pick(raw, MASK_KEYS), _pick(raw, WEIGHT_KEYS)
        if x is None or y is None:
            keys = ", ".join(repr(str(k)) for k in list(raw)[:8])
            raise PipelineError(f"{label}: batch {index} is a dict with keys {keys}; expected (x, y) or a dict with an "
                                "image key ('image', 'x', ...) and a mask key ('mask', 'label', 'y', ...).")
        parts: tuple = (x, y) if w is None else (x, y, w)
    elif isinstance(raw, (tuple, list)):
        parts = tuple(raw)
    else:
        shape = getattr(raw, "shape", None)
        found = f"one array of shape {tuple(shape)}" if shape is not None else f"a {_type_name(raw)}"
        raise PipelineError(f"{label}: batch {index} is {found}: images only, no masks; expected (x, y) or "
                            "(x, y, sample_weight) batches (model.fit needs targets too).")
    if len(parts) == 1:
        raise PipelineError(f"{label}: batch {index} holds images only (a 1-tuple); expected (x, y) or (x, y, sample_weight).")
    if len(parts) not in (2, 3):
        raise PipelineError(f"{label}: batch {index} is a tuple of {len(parts)} elements; expected (x, y) or (x, y, sample_weight).")
    x = _to_numpy(_single(parts[0], label, "x", notes), label, "x (the images)")
    if parts[1] is None:
        raise PipelineError(f"{label}: batch {index} has no targets (y is None); expected (x, y) batches with masks.")
    y = _to_numpy(_single(parts[1], label, "y", notes, len(x)), label, "y (the targets)")
    w = None
    if len(parts) == 3 and parts[2] is not None:
        w = _to_numpy(_single(parts[2], label, "sample_weight", notes, len(x)), label, "the sample weights")
    x, y, w = _check_shapes(x, y, w, index, label, notes)
    return Batch(index, x, y, w, tuple(notes))


def _check_shapes(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, index: int, label: str,
                  notes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if x.ndim < 3:
        raise PipelineError(f"{label}: batch {index} images have shape {x.shape}; expected (batch, height, width[, channels]).")
    if x.ndim > 4:
        raise PipelineError(f"{label}: batch {index} images have shape {x.shape} (volumes or sequences); expected 2-D images "
                            "(batch, height, width[, channels]).")
    if x.ndim == 3 and x.shape[-1] in (1, 3, 4) and y.ndim in (2, 3) and y.shape[:2] == x.shape[:2] and x.shape[0] > 4:
        # (H, W, C) image with an (H, W[, 1]) mask: single samples where batches were expected
        raise PipelineError(f"{label}: the pipeline yields single samples (image {x.shape}, mask {y.shape}), not batches; "
                            "expected batches as model.fit takes them (add .batch(8) to the tf.data pipeline).")
    if y.ndim < 2:
        raise PipelineError(f"{label}: batch {index} targets have shape {y.shape}: one value per sample (classification "
                            "labels?); expected masks (batch, height, width[, channels]).")
    if len(y) != len(x):
        raise PipelineError(f"{label}: batch {index} holds {len(x)} images but {len(y)} targets; expected one mask per image.")
    if w is not None and len(w) != len(x):
        raise PipelineError(f"{label}: batch {index} holds {len(x)} images but {len(w)} sample weights; expected one per image.")
    if len(x) == 0:
        raise PipelineError(f"{label}: batch {index} is empty; expected batches of at least one sample.")
    if x.ndim == 4 and x.shape[1] in (1, 3, 4) and x.shape[3] not in (1, 3, 4) and x.shape[2] > 4:
        x = np.moveaxis(x, 1, -1)
        notes.append("images are channels-first (B, C, H, W): analysed as (B, H, W, C)")
        if y.ndim == 4 and y.shape[1] not in (x.shape[1],) and y.shape[2:] == x.shape[1:3]:
            y = np.moveaxis(y, 1, -1)
    if y.ndim == 2 or (y.ndim == 3 and y.shape[1] != x.shape[1] and y.shape[1] == x.shape[1] * x.shape[2]):
        # flattened targets (B, H*W[, C]) of a Reshape head: back to the image's grid
        h, w_ = x.shape[1], x.shape[2]
        if y.shape[1] != h * w_:
            raise PipelineError(f"{label}: batch {index} targets have shape {y.shape} and images {x.shape}; expected masks "
                                "(batch, height, width[, channels]).")
        y = y.reshape((len(y), h, w_) + y.shape[2:])
        notes.append("targets are flattened (B, H*W[, C]); analysed on the image grid")
    return x, y, w
