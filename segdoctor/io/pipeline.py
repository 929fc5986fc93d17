"""Pull batches from the user's own loading code: the data *as the model sees it*.

The source of ``check-pipeline``. It loads what the user named (``FILE.py:FUNCTION`` or ``module:attr``),
calls only that function, with no arguments, and reads a bounded number of batches from what it returns:
a ``tf.data.Dataset``, a ``keras.utils.PyDataset``/``Sequence`` (``ImageDataGenerator`` flows are one),
any iterator or generator (``zip(image_flow, mask_flow)``), or ``(X, Y)`` arrays. Each batch becomes
numpy ``(x, y, w)``. TensorFlow is never imported here: tensors are recognised by their type names and
converted with their own ``.numpy()``.

The user's code runs in a worker thread under a time limit (a function that never returns, or a
dataset that never yields, cannot hang the run), with its prints captured (stdout stays segdoctor's),
with ``sys.exit`` caught, without writing ``__pycache__`` beside their files and with the working
folder restored afterwards. Everything that goes wrong is a ``PipelineError`` with one line: what was
named, what was found and what is accepted.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import logging
import math
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.errors import PipelineError

log = logging.getLogger(__name__)

ACCEPTED = ("expected a tf.data.Dataset of (x, y) or (x, y, sample_weight) batches, a keras.utils.PyDataset or "
            "Sequence, a generator or iterator of such batches (e.g. zip(image_flow, mask_flow)), or (X, Y) arrays")
#: the default number of batches covers at least this many samples
DEFAULT_SAMPLES = 64
#: (X, Y) arrays are cut into batches of this size
ARRAY_BATCH = 16
#: seconds allowed for loading the object and reading the batches (after it, the batches read so far are used)
DEFAULT_TIME_LIMIT = 120.0
#: batches of the train pipeline kept whole, for the model probes (everything else is reduced to statistics)
KEPT_BATCHES = 2
#: captured output lines kept for the report
KEPT_OUTPUT_LINES = 5

IMAGE_KEYS = ("image", "images", "img", "imgs", "x", "input", "inputs", "input_1", "pixel_values", "inputs_1")
MASK_KEYS = ("mask", "masks", "segmentation_mask", "segmentation", "label", "labels", "y", "target", "targets",
             "seg", "annotation", "annotations", "gt", "ground_truth")
WEIGHT_KEYS = ("sample_weight", "sample_weights", "weight", "weights")


# ---------------------------------------------------------------------------------------------- the user's spec


@dataclass(frozen=True)
class PipelineSpec:
    """What the user named: ``FILE.py:FUNCTION`` (``path`` set) or ``module:attr`` (``module`` set)."""

    text: str
    attr: str
    path: Path | None = None
    module: str | None = None


def parse_spec(text: str, flag: str = "PIPELINE") -> PipelineSpec:
    """``train.py:make_ds`` / ``pkg.data:train_ds``; a one-line PipelineError for anything else."""
    raw = str(text).strip()
    head, sep, attr = raw.rpartition(":")
    if not sep or not head or not attr:
        raise PipelineError(f"{flag} {raw!r}: expected FILE.py:FUNCTION (e.g. train.py:make_train_ds) or module:attr.")
    if not all(part.isidentifier() for part in attr.split(".")):
        raise PipelineError(f"{flag} {raw!r}: {attr!r} is not a Python name; expected FILE.py:FUNCTION or module:attr.")
    if head.endswith(".py") or os.sep in head or (os.altsep and os.altsep in head):
        return PipelineSpec(raw, attr, path=Path(head).expanduser())
    if all(part.isidentifier() for part in head.split(".")):
        return PipelineSpec(raw, attr, module=head)
    raise PipelineError(f"{flag} {raw!r}: {head!r} is neither a .py file nor a module name; expected FILE.py:FUNCTION or module:attr.")


def spec_file(text: str) -> str | None:
    """The .py file a spec names (for the CLI's list of inputs that reports must never overwrite)."""
    try:
        spec = parse_spec(text)
    except PipelineError:
        return None
    if spec.path is not None:
        return str(spec.path)
    found = importlib.util.find_spec(spec.module.split(".")[0]) if _safe_find(spec.module) else None
    origin = getattr(found, "origin", None) if found else None
    return origin if origin and origin.endswith(".py") else None


def _safe_find(module: str) -> bool:
    # find_spec of a dotted name imports its parents (runs their code): only the top level is looked up,
    # and only when it lies in the working folder (where the user's own modules live)
    top = module.split(".")[0]
    return (Path.cwd() / f"{top}.py").is_file() or (Path.cwd() / top / "__init__.py").is_file()


# ---------------------------------------------------------------------------------------------- user code sandbox


class CapturedOutput:
    """Captures what the user's code prints (Python-level and file descriptor 1) so that stdout stays ours."""

    def __init__(self) -> None:
        self.text = ""
        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._saved_fd: int | None = None
        self._tmp = None

    def __enter__(self) -> CapturedOutput:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        self._redirect.__enter__()
        try:
            self._tmp = tempfile.TemporaryFile(mode="w+b")
            self._saved_fd = os.dup(1)
            os.dup2(self._tmp.fileno(), 1)
        except OSError:  # no real stdout (embedded interpreter): the Python-level capture is enough
            self._saved_fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(None, None, None)
        captured = self._buffer.getvalue()
        if self._saved_fd is not None:
            os.dup2(self._saved_fd, 1)
            os.close(self._saved_fd)
            self._saved_fd = None
            try:
                self._tmp.seek(0)
                captured += self._tmp.read(1 << 20).decode("utf-8", "replace")
            except OSError:
                pass
        if self._tmp is not None:
            self._tmp.close()
        self.text = captured

    @property
    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def user_code_environment(folder: Path | None):
    """``folder`` first on sys.path, no bytecode written, the working folder restored afterwards."""
    saved_path = list(sys.path)
    saved_cwd = os.getcwd()
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__/ beside the user's files
    if folder is not None:
        sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path[:] = saved_path
        if os.getcwd() != saved_cwd:
            os.chdir(saved_cwd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "").strip()[:300]


def _describe_exit(exc: SystemExit) -> str:
    return f"called sys.exit({exc.code!r})"


_TF_IMPORT = re.compile(r"^\s*(?:import|from)\s+(tensorflow|keras)\b", re.MULTILINE)


def _preload_quietly(path: Path | None) -> None:
    """Import TensorFlow/Keras with their C++ start-up notices hidden, before a user module that imports them does
    (they are not the user's problem, and they would bury the summary). Only when the module's source imports them."""
    if path is None or "tensorflow" in sys.modules:
        return
    try:
        found = set(_TF_IMPORT.findall(path.read_text(encoding="utf-8", errors="replace")[:200_000]))
    except OSError:
        return
    if not found:
        return
    from segdoctor.io.model import _import_with_silent_stderr, import_keras

    try:
        if "keras" in found:
            import_keras()
        else:
            _import_with_silent_stderr("tensorflow")
    except Exception:  # the user's own import will report it
        pass


def import_spec(spec: PipelineSpec) -> Any:
    """Import the user's file or module and return the named attribute (runs the module's top-level code only)."""
    if spec.path is not None:
        path = spec.path
        if not path.is_file():
            raise PipelineError(f"{spec.text}: no such file {str(path)!r}; expected a Python file defining {spec.attr}().")
        if path.suffix != ".py":
            raise PipelineError(f"{spec.text}: {path.name!r} is not a .py file; expected FILE.py:FUNCTION.")
        _preload_quietly(path)
        name = f"segdoctor_pipeline_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{abs(hash(str(path.resolve()))) % 10**8}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise PipelineError(f"{spec.text}: Python cannot import this file; expected a plain module.")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except SystemExit as exc:
            sys.modules.pop(name, None)
            raise PipelineError(f"{spec.text}: importing {path.name} {_describe_exit(exc)}; expected a module that "
                                "imports cleanly (keep script code under `if __name__ == \"__main__\":`).") from None
        except Exception as exc:
            sys.modules.pop(name, None)
            raise PipelineError(f"{spec.text}: importing {path.name} failed with {type(exc).__name__}: {_first_line(exc)}.") from None
        where = path.name
    else:
        found = importlib.util.find_spec(spec.module.split(".")[0]) if _safe_find(spec.module) else None
        origin = getattr(found, "origin", None)
        _preload_quietly(Path(origin) if origin and origin.endswith(".py") and "." not in spec.module else None)
        try:
            module = importlib.import_module(spec.module)
        except SystemExit as exc:
            raise PipelineError(f"{spec.text}: importing {spec.module} {_describe_exit(exc)}; expected a module that imports cleanly.") from None
        except ModuleNotFoundError as exc:
            raise PipelineError(f"{spec.text}: no module named {getattr(exc, 'name', spec.module)!r} (looked in the working "
                                "folder and the installed packages); expected FILE.py:FUNCTION or module:attr.") from None
        except Exception as exc:
            raise PipelineError(f"{spec.text}: importing {spec.module} failed with {type(exc).__name__}: {_first_line(exc)}.") from None
        where = spec.module
    obj: Any = module
    for part in spec.attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                           and getattr(v, "__module__", None) == module.__name__)[:8]
            listing = f"; it defines {', '.join(names)}" if names else ""
            raise PipelineError(f"{spec.text}: {where} has no attribute {spec.attr!r}{listing}.")
        obj = getattr(obj, part)
    return obj


def _is_data_object(obj: Any) -> bool:
    """Objects that are the data themselves (never called): datasets, sequences, iterators, arrays."""
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return False
    return (hasattr(obj, "__iter__") or hasattr(obj, "__getitem__") or hasattr(obj, "__next__")
            or hasattr(obj, "shape") or hasattr(obj, "element_spec"))


def call_named(obj: Any, label: str) -> Any:
    """Call the named function (or class) with no arguments; an object that is the data is returned as it is."""
    if not callable(obj) or _is_data_object(obj):
        return obj
    try:
        sig = inspect.signature(obj)
        required = [p.name for p in sig.parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        required = []
    if required:
        raise PipelineError(f"{label}: the function needs arguments ({', '.join(required)}); expected a function that "
                            "takes none (wrap it: def make_train_ds(): return build(...)).")
    try:
        return obj()
    except SystemExit as exc:
        raise PipelineError(f"{label}: the function {_describe_exit(exc)}; expected it to return the dataset.") from None
    except PipelineError:
        raise
    except Exception as exc:
        raise PipelineError(f"{label}: the function raised {type(exc).__name__}: {_first_line(exc)}.") from None


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


def _single(value: Any, label: str, what: str, notes: list[str]) -> Any:
    """A dict of model inputs/outputs by name: the one entry, or the first image-like one (noted)."""
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
    y = _to_numpy(_single(parts[1], label, "y", notes), label, "y (the targets)")
    w = None
    if len(parts) == 3 and parts[2] is not None:
        w = _to_numpy(_single(parts[2], label, "sample_weight", notes), label, "the sample weights")
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


# ---------------------------------------------------------------------------------------------- reading batches


class _Abandoned(BaseException):
    """Raised inside a worker thread whose pipeline ran past the time limit."""


def _abandon(worker: threading.Thread) -> None:
    """Stop a worker stuck in the user's Python code (an endless loop) from burning a core for the rest of the
    process: an asynchronous exception lands at its next bytecode. A thread blocked inside C stays blocked,
    idle; it is a daemon thread, so it never holds up the exit."""
    import ctypes

    ident = worker.ident
    if ident is None:
        return
    with contextlib.suppress(Exception):
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(_Abandoned))


@dataclass
class PullResult:
    """How the reading went (the batches themselves were handed to ``on_batch`` one at a time)."""

    label: str
    kind: str = ""
    batches: int = 0
    samples: int = 0
    planned: int = 0
    ended_early: bool = False  # the pipeline ran out before `planned` batches
    timed_out: bool = False  # the time limit stopped the reading
    pipeline_seconds: float = 0.0  # time spent waiting for the user's code
    analysis_seconds: float = 0.0  # time spent in on_batch
    printed: list[str] = field(default_factory=list)
    printed_count: int = 0
    notes: list[str] = field(default_factory=list)
    kept: list[Batch] = field(default_factory=list)  # the first KEPT_BATCHES batches, whole


def planned_batches(batches: int | None, batch_size: int) -> int:
    """``--batches`` or enough batches to cover DEFAULT_SAMPLES samples."""
    if batches is not None:
        return batches
    return max(1, math.ceil(DEFAULT_SAMPLES / max(batch_size, 1)))


def pull_batches(source: Any, *, label: str, batches: int | None, on_batch: Callable[[Batch], None],
                 time_limit: float = DEFAULT_TIME_LIMIT, progress: Callable[[int, int, str], None] | None = None,
                 keep: int = 0) -> PullResult:
    """Load ``source`` (a spec string or the object itself), read batches from it and give each to ``on_batch``.

    The user's code (import, call, iteration) runs in a worker thread that stays at most two batches ahead,
    so memory holds a couple of batches whatever their number; analysis overlaps with the pipeline's work.
    """
    if batches is not None and batches < 1:
        raise PipelineError(f"--batches {batches}: expected a positive number of batches.")
    if not time_limit or time_limit <= 0:
        raise PipelineError(f"--time-limit {time_limit}: expected a positive number of seconds.")
    spec = parse_spec(source) if isinstance(source, str) else None
    folder = spec.path.expanduser().resolve().parent if spec is not None and spec.path is not None and spec.path.is_file() else (
        Path.cwd() if spec is not None else None)
    result = PullResult(label=label)
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    state = {"loaded": False, "batch": 0}

    def guarded() -> None:
        try:
            work()
        except _Abandoned:
            pass

    def work() -> None:
        try:
            obj = import_spec(spec) if spec is not None else source
            if spec is not None:
                obj = call_named(obj, label)
            kind, iterator = open_batches(obj, label)
            state["loaded"] = True
            if not put(("kind", kind)):
                return
            planned = batches
            i = 0
            while planned is None or i < planned:
                state["batch"] = i
                try:
                    raw = next(iterator)
                except StopIteration:
                    break
                batch = normalise_batch(raw, i, label)
                if planned is None:
                    planned = planned_batches(None, len(batch.x))
                    put(("planned", planned))
                if not put(("batch", batch)):
                    return
                i += 1
            put(("end", i))
        except PipelineError as exc:
            put(("error", exc))
        except SystemExit as exc:
            put(("error", PipelineError(f"{label}: the pipeline {_describe_exit(exc)} while yielding batches; "
                                        "expected it to yield (x, y) batches.")))
        except MemoryError:
            put(("error", PipelineError(f"{label}: the pipeline ran out of memory while yielding a batch.")))
        except _Abandoned:
            return
        except BaseException as exc:  # the user's code failing while it yields a batch is an input error
            where = f"at batch {state['batch']}" if state["loaded"] else "while loading"
            put(("error", PipelineError(f"{label}: the pipeline raised {type(exc).__name__} {where}: {_first_line(exc)}.")))

    from segdoctor.io.model import quiet_tensorflow

    quiet_tensorflow()  # environment only: TensorFlow's C++ start-up notices, if the user's code imports it
    capture = CapturedOutput()
    start = time.perf_counter()
    deadline = start + time_limit
    error: PipelineError | None = None
    with user_code_environment(folder), capture:
        worker = threading.Thread(target=guarded, name="segdoctor-pipeline", daemon=True)
        worker.start()
        try:
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    result.timed_out = True
                    break
                wait_start = time.perf_counter()
                try:
                    kind, payload = q.get(timeout=min(remaining, 0.25))
                except queue.Empty:
                    result.pipeline_seconds += time.perf_counter() - wait_start
                    continue
                result.pipeline_seconds += time.perf_counter() - wait_start
                if kind == "kind":
                    result.kind = payload
                    if batches is not None:
                        result.planned = batches
                elif kind == "planned":
                    result.planned = payload
                elif kind == "batch":
                    t0 = time.perf_counter()
                    result.notes.extend(n for n in payload.notes if n not in result.notes)
                    if len(result.kept) < keep:
                        result.kept.append(payload)
                    on_batch(payload)
                    result.analysis_seconds += time.perf_counter() - t0
                    result.batches += 1
                    result.samples += len(payload.x)
                    if progress:
                        progress(result.batches, max(result.planned, result.batches), label)
                elif kind == "end":
                    result.ended_early = result.planned > 0 and payload < result.planned
                    break
                elif kind == "error":
                    error = payload
                    break
        finally:
            stop.set()
            if result.timed_out or error is None and not result.batches:
                # the worker is stuck in the user's code (or the reading was interrupted): stop it if it is looping
                worker.join(timeout=0.5)
                if worker.is_alive():
                    _abandon(worker)
            else:
                worker.join(timeout=5.0)  # it has finished, or will at its next put (closing a tf.data iterator)
    result.printed = capture.lines[-KEPT_OUTPUT_LINES:]
    result.printed_count = len(capture.lines)
    if capture.lines:
        log.info("%s printed %d line(s) while loading batches", label, len(capture.lines))
    if error is not None:
        raise error
    if result.batches == 0:
        if result.timed_out:
            what = "returned no dataset" if not result.kind else "yielded no batch"
            raise PipelineError(f"{label}: {what} within the time limit of {time_limit:g} s (a function or dataset that "
                                "never ends?); expected batches to arrive (raise --time-limit for slow pipelines).")
        raise PipelineError(f"{label}: the {result.kind or 'pipeline'} yielded no batches; expected at least one (x, y) batch.")
    if result.timed_out:
        result.notes.append(f"the time limit ({time_limit:g} s) stopped the reading after {result.batches} of "
                            f"{result.planned or '?'} batches")
    if result.ended_early:
        result.notes.append(f"the pipeline ended after {result.batches} batches ({result.samples} samples)")
    return result
