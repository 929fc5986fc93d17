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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdoctor.errors import PipelineError
from segdoctor.io.pipeline_batches import Batch, _first_line, normalise_batch, open_batches

log = logging.getLogger(__name__)

#: the default number of batches covers at least this many samples
DEFAULT_SAMPLES = 64
#: seconds allowed for loading the object and reading the batches (after it, the batches read so far are used)
DEFAULT_TIME_LIMIT = 120.0
#: batches of the train pipeline kept whole, for the model probes (everything else is reduced to statistics)
KEPT_BATCHES = 2
#: captured output lines kept for the report
KEPT_OUTPUT_LINES = 5



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


def _describe_exit(exc: SystemExit) -> str:
    return f"called sys.exit({exc.code!r})"


#: an import of TensorFlow or Keras, or of a package built on them, anywhere in an import list
#: ("import os, tensorflow as tf", "from keras import layers", "import segmentation_models as sm")
_TF_IMPORT = re.compile(
    r"^[ \t]*(?:import[ \t]+(?:[\w.]+(?:[ \t]+as[ \t]+\w+)?[ \t]*,[ \t]*)*|from[ \t]+)"
    r"(tensorflow|keras|tf_keras|tensorflow_datasets|tensorflow_addons|segmentation_models|keras_cv|keras_hub)\b",
    re.MULTILINE)


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
        if found & {"keras", "tf_keras", "segmentation_models", "keras_cv", "keras_hub"}:
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
