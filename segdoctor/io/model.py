"""Load a Keras model file safely, and the user's custom objects, with one-line errors a user can act on.

Keras is imported inside the functions only: ``segdoctor --help`` and ``check-data`` never pay for it.
The compile configuration is read straight from the file (``config.json`` in a ``.keras`` zip, the
``training_config`` attribute of a legacy ``.h5``) so the loss and optimizer can be checked even when
Keras cannot rebuild the custom objects they reference.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdoctor.errors import ModelLoadError, UsageError

log = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: the largest config.json / metadata.json read from a .keras file (a 1,000-layer model's config is a few MB)
MAX_CONFIG_BYTES = 64 << 20
#: an archive entry that inflates to more than this many times its stored size, and past ZIP_BOMB_FLOOR bytes, is a
#: decompression bomb: Keras stores its entries uncompressed (about 1:1), and DEFLATE tops out near 1032:1
ZIP_BOMB_RATIO = 100
ZIP_BOMB_FLOOR = 64 << 20

#: modules whose serialized objects Keras resolves by itself
_KERAS_MODULE = re.compile(r"^(keras|tensorflow|tf_keras)(\.|$)")


@dataclass
class LoadedModel:
    """A loaded model and what segdoctor learned while loading it."""

    model: Any
    path: Path
    format: str  # "keras" or "h5"
    compile_config: dict[str, Any] | None
    compiled: bool
    missing_objects: tuple[str, ...] = ()
    custom_objects: dict[str, Any] = field(default_factory=dict)
    unsafe: bool = False
    notes: list[str] = field(default_factory=list)
    keras_version: str | None = None  # the Keras version that saved the file, when recorded


#: show TensorFlow's own C++ log lines (``segdoctor -v`` sets it): useful to debug a GPU setup, noise otherwise
show_native_logs = False


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported (it is not the user's problem)."""
    if not show_native_logs:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_keras():
    """Import Keras on demand, quietly."""
    quiet_tensorflow()
    if "keras" not in sys.modules:
        _import_with_silent_stderr("keras")
    import keras

    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # absl ships with TensorFlow; other backends do not need it
        pass
    return keras


def _start_tensorflow() -> None:
    """List TensorFlow's devices once, if it is loaded: the CUDA probe (and its log lines) happens here."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    try:
        tf.config.list_physical_devices()
    except Exception:  # a broken device setup shows up, with its message, when the model runs
        pass


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (when installed) as ``import_keras`` does: for readers that use it indirectly."""
    quiet_tensorflow()
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow") is not None:
        _import_with_silent_stderr("tensorflow")


def _import_with_silent_stderr(name: str) -> None:
    """Import a module, and start TensorFlow's runtime, while file descriptor 2 points to /dev/null.

    TensorFlow's C++ runtime writes start-up notices to stderr before any Python setting can silence
    them: oneDNN and CUDA stubs at import (absl logs before its initialisation ignore
    TF_CPP_MIN_LOG_LEVEL), and "failed call to cuInit" when the devices are first listed, which is at the
    first operation (loading the model), long after the import, and shows whenever the user's own
    TF_CPP_MIN_LOG_LEVEL lets errors through (1 or 2, as in hosted notebooks). Listing the devices here
    moves that probe inside the silent window. None of it is the user's problem; Python errors still
    propagate. ``segdoctor -v`` leaves stderr alone.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a real file (captured): nothing to hide
        fd = None
    if fd is None or show_native_logs:
        importlib.import_module(name)
        _start_tensorflow()
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        importlib.import_module(name)
        _start_tensorflow()
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def _split_spec(spec: str | Path) -> tuple[str, str | None]:
    """``losses.py:make_loss`` -> (``losses.py``, ``make_loss``); ``losses.py`` -> (``losses.py``, None)."""
    text = str(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head.endswith(".py") and tail.isidentifier():
        return head, tail
    return text, None


def custom_objects_file(spec: str | Path) -> str:
    """The file part of a ``--custom-objects`` value: ``losses.py`` or ``losses.py:make_loss``."""
    return _split_spec(spec)[0]


#: name words of a loss or metric factory (``make_dice_loss``, ``get_iou_metric``, ``tversky_fn``, ``FocalLoss``)
FACTORY_WORDS = ("loss", "metric", "dice", "iou", "jaccard", "tversky", "focal", "crossentropy", "bce", "lovasz", "fscore", "fbeta")
#: words that name an action, never a factory: a function holding one is never called unless the user names it
ACTION_WORDS = frozenset({
    "main", "train", "training", "run", "runner", "cleanup", "clean", "setup", "teardown", "init", "fit", "install",
    "download", "upload", "fetch", "send", "delete", "remove", "rm", "unlink", "write", "save", "export", "dump",
    "plot", "show", "print", "log", "exec", "execute", "eval", "shell", "system", "test", "evaluate", "predict",
    "start", "stop", "kill", "launch", "deploy", "callback", "cli", "app",
})


def _name_words(name: str) -> list[str]:
    """``makeDiceLoss2`` -> [make, dice, loss, 2]; ``dice_coef_fn`` -> [dice, coef, fn]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", name))
    return [w for w in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if w]


def _named_like(name: str, keywords: tuple[str, ...]) -> bool:
    words = _name_words(name)
    if any(w in ACTION_WORDS for w in words):
        return False
    return any(w == k or w.startswith(k) or w.endswith(k) for w in words for k in keywords)


def is_factory_name(name: str) -> bool:
    """A name that says "loss/metric factory": one of its words is (or starts or ends with) a word of
    ``FACTORY_WORDS`` and none is an action word of ``ACTION_WORDS``. ``previous`` holds no word ``iou``."""
    return _named_like(name, FACTORY_WORDS)


#: (y_true, y_pred) functions of a --custom-objects file that SD407 probes are named with one of these words
PROBE_WORDS = (*FACTORY_WORDS, "f1", "score", "coef", "overlap", "similarity")


def _callable_without_arguments(fn: Any) -> bool:
    """A plain function (not a generator or coroutine) whose every parameter has a default or is *args/**kwargs."""
    if not inspect.isfunction(fn) or inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn) \
            or inspect.isasyncgenfunction(fn):
        return False
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


def is_auto_factory(name: str, fn: Any) -> bool:
    """Whether segdoctor may call ``fn()`` without being told to: its name says loss/metric factory
    (``is_factory_name``), it takes no required argument, and it is not itself a (y_true, y_pred) function.
    Everything else in a ``--custom-objects`` file is only registered, never called."""
    return is_factory_name(name) and _callable_without_arguments(fn) and not _looks_like_loss_or_metric(fn)


def load_custom_objects(paths: list[str | Path] | tuple[str | Path, ...]) -> dict[str, Any]:
    """Import each user module by path and collect the functions and classes it defines.

    A module may also define a ``custom_objects`` dict, which is merged as is (for objects
    registered under other names). Importing runs the module's top level: only files the user named.
    No function is called, except loss/metric factories: the one the user names
    (``losses.py:make_loss``), and functions whose name and signature make them one
    (``is_auto_factory``: ``make_dice_loss(smooth=1.0)``, never ``main()`` or ``train()``). A factory's
    product is registered under the factory's name and under its own ``__name__`` (the name Keras
    saved in the model's compile configuration).
    """
    found: dict[str, Any] = {}
    wanted: dict[str, list[str]] = {}  # file -> factories the user named, in order
    raw_of: dict[str, str] = {}
    for raw in paths:
        file, name = _split_spec(raw)
        wanted.setdefault(file, [])
        raw_of.setdefault(file, str(raw))
        if name is not None and name not in wanted[file]:
            wanted[file].append(name)
    for file, named in wanted.items():
        module_objects = _import_module_objects(file, raw_of[file])
        for name in named:
            if name not in module_objects:
                raise UsageError(f"--custom-objects {file}:{name}: {file} defines no function {name!r}; "
                                 f"expected the name of a loss or metric factory defined in that file.")
            obj = module_objects[name]
            if inspect.isclass(obj):
                continue  # a Loss/Metric/Layer class is registered as it is: Keras builds it from its config
            if not callable(obj):
                raise UsageError(f"--custom-objects {file}:{name}: {name!r} is a {type(obj).__name__}, not a function; "
                                 f"expected a loss or metric factory.")
            product = _call_factory(obj, name, file, named_by_user=True)
            _register_product(module_objects, name, product)
        for name, obj in list(module_objects.items()):
            if name not in named and is_auto_factory(name, obj):
                product = _call_factory(obj, name, file, named_by_user=False)
                if product is not None:
                    _register_product(module_objects, name, product)
        found.update(module_objects)
        log.info("loaded %d custom object(s) from %s", len(module_objects), file)
    return found


def _import_module_objects(file: str, raw: str) -> dict[str, Any]:
    path = Path(file).expanduser()
    if path.exists() and not path.is_file():
        raise UsageError(f"--custom-objects {raw}: not a regular file; expected a Python file (.py) defining the custom losses, metrics or layers.")
    if not path.is_file():
        raise UsageError(f"--custom-objects {raw}: no such file; expected a Python file (.py) defining the custom losses, metrics or layers.")
    if path.suffix != ".py":
        raise UsageError(f"--custom-objects {raw}: not a .py file; expected a Python module defining the custom objects.")
    module_name = f"segdoctor_custom_{re.sub(r'[^0-9a-zA-Z_]', '_', path.stem)}_{abs(hash(str(path.resolve()))) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--custom-objects {raw}: Python cannot import this file; expected a plain module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__/ in the user's folder: nothing is written beside their files
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a module that calls sys.exit() is an import failure too
        sys.modules.pop(module_name, None)
        raise UsageError(f"--custom-objects {raw}: importing it failed with {type(exc).__name__}: {_first_line(exc)}; "
                         "expected a Python module that imports cleanly.") from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
    found: dict[str, Any] = {}
    for name, obj in vars(module).items():
        if name.startswith("_"):
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", None) == module_name:
            found[name] = obj
    extra = getattr(module, "custom_objects", None)
    if isinstance(extra, dict):
        found.update({str(k): v for k, v in extra.items()})
    return found


def _call_factory(fn: Any, name: str, file: str, *, named_by_user: bool) -> Any:
    """``fn()`` for a loss/metric factory; a failure is a usage error when the user named it, else the
    factory is simply left as it is (registered, not unwrapped)."""
    try:
        product = fn()
    except (Exception, SystemExit) as exc:
        if named_by_user:
            raise UsageError(f"--custom-objects {file}:{name}: calling {name}() failed with {type(exc).__name__}: "
                             f"{_first_line(exc)}; expected a factory that returns a loss or metric when called "
                             "without arguments.") from None
        log.info("custom objects: %s() raised %s; kept as it is", name, type(exc).__name__)
        return None
    if not callable(product):
        if named_by_user:
            raise UsageError(f"--custom-objects {file}:{name}: {name}() returned a {type(product).__name__}; "
                             "expected a loss or metric (a function of y_true and y_pred).")
        return None
    if not named_by_user and not _looks_like_loss_or_metric(product):
        return None
    return product


def _register_product(objects: dict[str, Any], factory_name: str, product: Any) -> None:
    objects[factory_name] = product
    own = getattr(product, "__name__", None)
    if isinstance(own, str) and own.isidentifier() and own not in objects and not own.startswith("_"):
        objects[own] = product


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    return "other"


def check_zip_entries(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse a decompression bomb before any entry is read, by segdoctor or by Keras: the sizes each entry
    declares (``ZipInfo.file_size``) are checked against the bytes stored, entry by entry and in total, and the
    configuration entries segdoctor reads itself against MAX_CONFIG_BYTES. Raises ``ModelLoadError``."""
    size = max(path.stat().st_size, 1)
    total = 0
    for info in zf.infolist():
        total += info.file_size
        if info.filename in ("config.json", "metadata.json") and info.file_size > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path}: its {info.filename} declares {info.file_size:,} bytes, above the "
                                 f"{MAX_CONFIG_BYTES:,}-byte limit for a model configuration; expected a .keras file written by model.save().")
        if info.file_size > ZIP_BOMB_FLOOR and info.file_size > ZIP_BOMB_RATIO * max(info.compress_size, 1):
            raise ModelLoadError(f"{path}: the zip entry {info.filename!r} declares {info.file_size:,} bytes from "
                                 f"{info.compress_size:,} stored, a decompression bomb; expected a .keras file written by "
                                 "model.save() (Keras stores its entries uncompressed).")
    if total > ZIP_BOMB_FLOOR and total > ZIP_BOMB_RATIO * size:
        raise ModelLoadError(f"{path}: its {len(zf.infolist()):,} zip entries declare {total:,} bytes from a "
                             f"{size:,}-byte file, a decompression bomb; expected a .keras file written by model.save().")


def _read_entry(path: Path, zf: zipfile.ZipFile, name: str) -> bytes:
    check_zip_entries(path, zf)
    return zf.read(name)


def read_compile_config(path: Path) -> dict[str, Any] | None:
    """The compile configuration stored in the file, normalised to Keras 3 keys, or None."""
    kind = _sniff(path)
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                cfg = json.loads(_read_entry(path, zf, "config.json"))
            cc = cfg.get("compile_config")
            return cc if isinstance(cc, dict) and cc else None  # {} means saved without compile()
        if kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("training_config")
            if raw is None:
                return None
            tc = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            # legacy keys: optimizer_config {class_name, config}
            return {"loss": tc.get("loss"), "metrics": tc.get("metrics"), "optimizer": tc.get("optimizer_config")}
    except Exception as exc:  # a broken config is reported by the load itself
        log.info("could not read the compile config of %s: %s", path, exc)
    return None


def saved_keras_version(path: Path) -> str | None:
    """The Keras version recorded in the file (metadata.json of a .keras zip, the keras_version attribute of an .h5)."""
    try:
        if _sniff(path) == "zip":
            with zipfile.ZipFile(path) as zf:
                return str(json.loads(_read_entry(path, zf, "metadata.json")).get("keras_version") or "") or None
        if _sniff(path) == "hdf5":
            import h5py

            with h5py.File(path, "r") as fh:
                v = fh.attrs.get("keras_version")
            return (v.decode() if isinstance(v, bytes) else str(v)) if v is not None else None
    except Exception:
        return None
    return None


def _validate_file(path: Path) -> str:
    """Check the file before Keras sees it, so every failure has a one-line explanation."""
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file; expected a Keras model file (.keras, or legacy .h5).")
    if path.is_dir():
        hint = " It looks like a TensorFlow SavedModel; re-save it with model.save('model.keras')." if (path / "saved_model.pb").exists() else ""
        raise ModelLoadError(f"{path}: is a folder; expected a Keras model file (.keras, or legacy .h5).{hint}")
    if not path.is_file():  # a FIFO would block the first read forever; a device never ends
        raise ModelLoadError(f"{path}: not a regular file (a pipe, socket or device); expected a Keras model file (.keras, or legacy .h5).")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path}: the file is empty (0 bytes); expected a Keras model file (.keras zip or .h5).")
    kind = _sniff(path)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                check_zip_entries(path, zf)  # before Keras (or segdoctor) inflates any entry
        except (zipfile.BadZipFile, EOFError, ValueError, OverflowError, NotImplementedError, OSError):
            raise ModelLoadError(f"{path}: a truncated or corrupt zip archive ({size:,} bytes); expected a complete .keras file.") from None
        if "config.json" not in names:
            raise ModelLoadError(f"{path}: a zip archive without config.json ({len(names)} entries); expected a .keras file written by model.save().")
        return "keras"
    if kind == "hdf5":
        try:
            import h5py

            with h5py.File(path, "r") as fh:
                has_model = "model_config" in fh.attrs
        except Exception as exc:
            raise ModelLoadError(f"{path}: a corrupt HDF5 file ({exc}); expected a Keras .h5 model.") from None
        if not has_model:
            raise ModelLoadError(
                f"{path}: an HDF5 file with weights only (no model_config); expected a whole model: save it with model.save('model.keras')."
            )
        return "h5"
    with open(path, "rb") as fh:
        head = fh.read(16)
    raise ModelLoadError(f"{path}: not a Keras model ({size:,} bytes starting with {head[:8]!r}); expected a .keras zip file or a legacy .h5 file.")


def _function_names(obj: Any) -> list[str]:
    """Names of the non-Keras functions and classes a serialized compile config refers to."""
    out: list[str] = []
    if isinstance(obj, dict):
        module = obj.get("module")
        cls = obj.get("class_name")
        if cls == "function" and isinstance(obj.get("config"), str) and not (module and _KERAS_MODULE.match(module)):
            out.append(obj["config"])
        elif isinstance(cls, str) and module is not None and not _KERAS_MODULE.match(module) and cls != "function":
            out.append(str(obj.get("registered_name") or cls))
        elif isinstance(cls, str) and module is None and obj.get("registered_name"):
            out.append(str(obj["registered_name"]))
        for key, value in obj.items():
            if key not in ("module", "class_name", "registered_name") and isinstance(value, (dict, list)):
                out.extend(_function_names(value))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_function_names(v))
    elif isinstance(obj, str):
        out.append(obj)
    return out


def referenced_custom_names(compile_config: dict[str, Any] | None, keras: Any) -> list[str]:
    """Loss/metric names in the compile config that Keras cannot resolve by itself."""
    if not compile_config:
        return []
    names: list[str] = []
    for key in ("loss", "metrics", "weighted_metrics"):
        for name in _function_names(compile_config.get(key)):
            if name in names:
                continue
            if _resolvable_builtin(name, keras):
                continue
            names.append(name)
    return names


def _resolvable_builtin(name: str, keras: Any) -> bool:
    if name in ("accuracy", "acc", "crossentropy", "ce"):
        return True
    for getter in (keras.losses.get, keras.metrics.get):
        try:
            getter(name)
            return True
        except Exception:
            continue
    return keras.saving.get_registered_object(name) is not None


_MISSING_RE = re.compile(r"Could not (?:locate|interpret) (?:function|class|loss|metric)[^'\"]*['\"]([^'\"]+)['\"]")


def load_model(path: str | Path, *, custom_objects: dict[str, Any] | None = None, unsafe: bool = False) -> LoadedModel:
    """Load ``path`` with ``safe_mode=True`` (unless ``unsafe``), falling back to ``compile=False``.

    A model whose loss or metrics cannot be resolved still loads; their names are returned in
    ``missing_objects`` for SD406. Raises ``ModelLoadError`` with a one-line message otherwise.
    """
    path = Path(path).expanduser()
    fmt = _validate_file(path)
    keras = import_keras()
    objects = dict(custom_objects or {})
    compile_config = read_compile_config(path)
    notes: list[str] = []
    if unsafe:
        notes.append(
            f"--unsafe: {path.name} was loaded with safe_mode=False, so any Python code stored in it (Lambda layers) "
            "was deserialised and may have run. Use this only for files you trust."
        )
    kwargs: dict[str, Any] = {"custom_objects": objects, "safe_mode": not unsafe}
    try:
        model = _quiet_load(keras, path, compile=True, **kwargs)
        _require_built(model, path)
        missing = tuple(n for n in referenced_custom_names(compile_config, keras) if n not in objects)
        return LoadedModel(model, path, fmt, compile_config, compile_config is not None, missing, objects, unsafe, notes,
                           saved_keras_version(path))
    except ModelLoadError:
        raise
    except Exception as first:
        _raise_if_unsafe_refused(first, path)
        compile_error = first
    # The architecture may be fine and only the loss/metrics unresolvable: retry without compiling.
    try:
        model = _quiet_load(keras, path, compile=False, **kwargs)
    except Exception as exc:
        _raise_if_unsafe_refused(exc, path)
        raise ModelLoadError(_explain_failure(path, exc)) from None
    _require_built(model, path)
    missing = [n for n in referenced_custom_names(compile_config, keras) if n not in objects]
    m = _MISSING_RE.search(str(compile_error))
    if m and m.group(1) not in missing:
        missing.insert(0, m.group(1))
    if not missing:
        notes.append(f"the compile configuration could not be restored ({type(compile_error).__name__}: {_first_line(compile_error)}); loss checks use the stored configuration only.")
    log.info("loaded %s without its compile state: %s", path, _first_line(compile_error))
    return LoadedModel(model, path, fmt, compile_config, False, tuple(missing), objects, unsafe, notes, saved_keras_version(path))


def _require_built(model: Any, path: Path) -> None:
    """A model without inputs (a Sequential saved before it was built or called) has no shapes to check."""
    try:
        ok = bool(model.inputs) and bool(model.outputs)
    except Exception:  # Sequential.inputs raises AttributeError until the model is built
        ok = False
    if not ok:
        raise ModelLoadError(f"{path}: a {type(model).__name__} model saved before it was built (it has no input shape and no "
                             "weights); expected a built model: give the first layer an input shape (keras.Input(shape=...)) "
                             "or call the model on data before model.save().")


def _quiet_load(keras: Any, path: Path, **kwargs: Any) -> Any:
    """``keras.saving.load_model`` with its Python warnings (optimizer state, ...) sent to the log, not the terminal."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.saving.load_model(path, **kwargs)
    for w in caught:
        log.info("keras: %s", str(w.message).strip().splitlines()[0] if str(w.message).strip() else w.category.__name__)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _raise_if_unsafe_refused(exc: BaseException, path: Path) -> None:
    text = str(exc)
    if "safe_mode" in text or "arbitrary code execution" in text:
        what = "a Lambda layer holding Python code" if "Lambda" in text else "Python code (a lambda or bytecode)"
        raise ModelLoadError(
            f"{path}: contains {what}, which safe mode refuses to load because it could run arbitrary code; "
            "expected a model without stored Python code: if you trust this file, rerun with --unsafe "
            "(or replace the Lambda with a registered custom layer)."
        ) from None


def _explain_failure(path: Path, exc: BaseException) -> str:
    text = _first_line(exc)
    m = _MISSING_RE.search(str(exc)) or re.search(r"Unknown (?:layer|object)[^'\"]*['\"]([^'\"]+)['\"]", str(exc))
    if m:
        return (f"{path}: the architecture uses the custom object {m.group(1)!r}, which is not available; "
                f"pass the Python file that defines it with --custom-objects FILE.py.")
    return f"{path}: Keras could not load this model ({type(exc).__name__}: {text}); expected a model saved with model.save()."


def _looks_like_loss_or_metric(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) == 2 or (len(positional) >= 2 and positional[0].name in ("y_true", "y", "target", "gt", "true"))


def custom_functions(loaded: LoadedModel) -> dict[str, tuple[Any, str]]:
    """The custom losses and metrics to probe: ``name -> (callable, role)``.

    Taken from the compiled model (its loss), the names in the compile config resolved through the
    user's custom objects, and the (y_true, y_pred) functions and Loss/Metric classes the user's
    ``--custom-objects`` files define whose names say loss or metric. No function is called here:
    factories were unwrapped by ``load_custom_objects`` (only those the user named or whose name
    and signature make them one); the probes of SD407 then call what this returns.
    """
    keras = import_keras()
    out: dict[str, tuple[Any, str]] = {}
    seen: set[int] = set()

    def add(name: str, obj: Any, role: str) -> None:
        target = obj
        if inspect.isclass(obj):
            # a Loss/Metric subclass declares itself one: instantiate it with its defaults, as Keras would
            if issubclass(obj, (keras.losses.Loss, keras.metrics.Metric)) and not str(obj.__module__).startswith("keras"):
                try:
                    target = obj()
                except Exception:
                    return
            else:
                return
        elif not callable(obj) or not _looks_like_loss_or_metric(obj):
            return  # factories were unwrapped (or left alone) by load_custom_objects; nothing else is called here
        elif role == "custom object" and not _named_like(name, PROBE_WORDS):
            return  # a (y_true, y_pred) function from the file whose name says it is not a loss or metric
        if id(obj) in seen:
            return
        seen.add(id(obj))
        out[name] = (target, role)

    model_loss = getattr(loaded.model, "loss", None) if loaded.compiled else None
    if model_loss is not None and not isinstance(model_loss, (str, dict, list)):
        module = str(getattr(model_loss, "__module__", "") or type(model_loss).__module__)
        if not _KERAS_MODULE.match(module):
            add(getattr(model_loss, "__name__", type(model_loss).__name__), model_loss, "loss")
    cc = loaded.compile_config or {}
    for key, role in (("loss", "loss"), ("metrics", "metric"), ("weighted_metrics", "metric")):
        for name in _function_names(cc.get(key)):
            obj = loaded.custom_objects.get(name)
            if obj is None:
                obj = keras.saving.get_registered_object(name)
                if obj is not None and _KERAS_MODULE.match(str(getattr(obj, "__module__", ""))):
                    obj = None
            if obj is not None:
                add(name, obj, role)
    for name, obj in loaded.custom_objects.items():
        add(name, obj, "custom object")
    return out
