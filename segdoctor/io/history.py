"""Read a training log into one table of per-epoch numbers, whatever wrote it.

Accepted: a Keras ``History.history`` dict saved with ``json.dump`` (``NaN``/``Infinity`` tokens
included), a ``CSVLogger`` CSV, a TensorBoard log directory (``train/`` and ``validation/`` event
files) and the JSON written by ``segdoctor.keras_callback.SegDoctorCallback``. TensorFlow or
TensorBoard are imported only when a TensorBoard directory is read.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.errors import HistoryError

ACCEPTED_FORMATS = (
    "a Keras History.history JSON ({\"loss\": [...], \"val_loss\": [...]}), "
    "a CSVLogger CSV (a header row, then one numeric row per epoch), "
    "a TensorBoard log folder (train/ and validation/ event files) "
    "or the JSON written by segdoctor's SegDoctorCallback"
)

#: the ``format`` key of the JSON that SegDoctorCallback writes
CALLBACK_FORMAT = "segdoctor.history/1"

#: cells that mean "no value this epoch" rather than a numeric NaN (CSVLogger writes "NA")
_MISSING_TOKENS = frozenset({"", "na", "n/a", "null", "none", "-"})


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare columns explicitly
class History:
    """Per-epoch values of every logged quantity.

    ``columns`` maps the logged name (``loss``, ``val_dice_coef``...) to a float array, all of the
    same length; ``missing`` marks cells that held no value (an empty CSV cell, a JSON ``null``),
    which read as NaN in ``columns`` but are not NaN losses. ``epochs`` are 1-based epoch numbers
    as Keras prints them ("Epoch 1/5"); a 0-based CSVLogger ``epoch`` column is shifted by one.
    """

    columns: dict[str, np.ndarray]
    epochs: np.ndarray
    source: str = ""
    format: str = ""
    missing: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_epochs(self) -> int:
        return int(len(self.epochs))

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def is_missing(self, name: str) -> np.ndarray:
        """Cells of ``name`` that held no value at all (as opposed to a logged NaN)."""
        return self.missing.get(name, np.zeros(self.n_epochs, dtype=bool))


def history_from_mapping(
    values: Mapping[str, Any],
    *,
    source: str = "",
    format: str = "mapping",
    epochs: Any = None,
    params: Mapping[str, Any] | None = None,
) -> History:
    """Build a History from ``{name: [value per epoch]}`` (what ``model.fit(...).history`` holds)."""
    where = source or "the history"
    if not isinstance(values, Mapping):
        raise HistoryError(f"{where}: found {type(values).__name__}, not a mapping of names to lists. Expected {ACCEPTED_FORMATS}.")
    columns: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    for name, raw in values.items():
        columns[str(name)], missing[str(name)] = _column_numbers(raw, name, where)
    return _history_from_columns(columns, missing, where, source=source, format=format, epochs=epochs, params=params)


#: cell types that convert to float exactly as the per-cell loop converts them (bool is refused there)
_PLAIN_TYPES = frozenset({float, int})


def _column_numbers(raw: Any, name: str, where: str, first_epoch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing) of one column's cells: numbers, numeric strings, or empty cells (None, "", "NA" ...).

    Columns of plain numbers, or of strings that all parse, convert in one pass (``map(float)`` in C); any
    other column goes cell by cell, which also finds the cell to name in the error. ``first_epoch`` is the
    epoch of the first cell (for error messages on a column read in chunks).
    """
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf" and raw.ndim == 1:
        return raw.astype(float), np.zeros(raw.size, dtype=bool)
    seq = raw if isinstance(raw, list) else list(raw) if isinstance(raw, (tuple, np.ndarray)) else [raw]
    types = set(map(type, seq))
    if types <= _PLAIN_TYPES or types == {str}:
        try:
            return np.fromiter(map(float, seq), dtype=float, count=len(seq)), np.zeros(len(seq), dtype=bool)
        except (TypeError, ValueError, OverflowError):
            pass  # an empty or non-numeric cell: the loop below finds it
    arr = np.empty(len(seq), dtype=float)
    miss = np.zeros(len(seq), dtype=bool)
    for i, v in enumerate(seq):
        if isinstance(v, str):
            v = v.strip()
        if v is None or (isinstance(v, str) and v.lower() in _MISSING_TOKENS):
            arr[i], miss[i] = math.nan, True
            continue
        if isinstance(v, bool):
            raise HistoryError(f"{where}: column {name!r} holds a boolean at epoch {i + first_epoch}. Expected numbers per epoch; accepted: {ACCEPTED_FORMATS}.")
        try:
            arr[i] = float(v)
        except (TypeError, ValueError):
            raise HistoryError(
                f"{where}: column {name!r} holds the non-numeric value {str(v)[:40]!r} at epoch {i + first_epoch}. "
                f"Expected numbers per epoch; accepted: {ACCEPTED_FORMATS}."
            ) from None
    return arr, miss


def _history_from_columns(
    columns: dict[str, np.ndarray],
    missing: dict[str, np.ndarray],
    where: str,
    *,
    source: str,
    format: str,
    epochs: Any,
    params: Mapping[str, Any] | None,
) -> History:
    """A History from converted columns, after the checks every format shares (lengths, emptiness)."""
    if not columns:
        raise HistoryError(f"{where}: found no logged quantities. Expected {ACCEPTED_FORMATS}.")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {n}" for k, n in list(lengths.items())[:6])
        raise HistoryError(f"{where}: the columns have different lengths ({shown} values). Expected one value per epoch in every column.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise HistoryError(f"{where}: the log holds no epochs (every column is empty). Expected {ACCEPTED_FORMATS}.")
    if all(m.all() for m in missing.values()):
        raise HistoryError(f"{where}: every cell is empty. Expected numbers per epoch; accepted: {ACCEPTED_FORMATS}.")
    epoch_numbers = _epoch_numbers(epochs, n, where)
    return History(columns, epoch_numbers, source=source, format=format, missing=missing, params=dict(params or {}))


def _epoch_numbers(epochs: Any, n: int, where: str) -> np.ndarray:
    if epochs is None:
        return np.arange(1, n + 1)
    arr = np.asarray(epochs, dtype=float)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise HistoryError(f"{where}: the epoch column has {arr.size} usable values for {n} rows. Expected one epoch number per row.")
    arr = arr.astype(int)
    # CSVLogger and TensorBoard count from 0, Keras' progress bar from 1; show what the user saw.
    return arr + 1 if arr.min() == 0 else arr


#: the largest training log read (a CSVLogger line per epoch is about 100 bytes per 10 columns: 1 GiB is far beyond
#: any real log); a larger file, or a device such as /dev/zero that never ends, is refused before it is read
MAX_HISTORY_BYTES = 1 << 30


def read_history(path: str | Path) -> History:
    """Read a training log in any accepted format; raise ``HistoryError`` naming what was found."""
    p = Path(path).expanduser()
    if not p.exists():
        raise HistoryError(f"{p}: no such file or folder. Expected {ACCEPTED_FORMATS}.")
    if p.is_dir():
        return read_tensorboard_dir(p)
    raw = _read_bounded(p)
    if p.name.startswith("events.out.tfevents"):
        # one event file of a Keras log: read the whole run (train/ and validation/ beside it)
        return read_tensorboard_dir(p.parent.parent if p.parent.name in _RUN_PREFIX else p.parent)
    if not raw or raw.isspace():  # not raw.strip(): that copies the whole file
        raise HistoryError(f"{p}: the file is empty. Expected {ACCEPTED_FORMATS}.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HistoryError(f"{p}: found binary content, not text. Expected {ACCEPTED_FORMATS}.") from None
    del raw  # the text is what the readers parse: hold one copy of the file, not two
    stripped = text.lstrip()
    is_json = stripped[:1] in "{[" or p.suffix.lower() == ".json"
    try:
        return read_history_json(p, text) if is_json else read_history_csv(p, text)
    except csv.Error as exc:  # e.g. a field longer than the csv module's limit (131,072 characters)
        raise HistoryError(f"{p}: not a CSV table ({exc}). Expected {ACCEPTED_FORMATS}.") from None
    except RecursionError:  # JSON nested thousands of levels deep (Keras writes two)
        raise HistoryError(f"{p}: nested too deeply to be a training log. Expected {ACCEPTED_FORMATS}.") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits, which Python refuses to convert
        what = ("holds an integer of thousands of digits" if "integer string conversion" in str(exc)
                else f"cannot be read as a training log ({_first_line(exc)})")
        raise HistoryError(f"{p}: {what}. Expected {ACCEPTED_FORMATS}.") from None


def _read_bounded(p: Path) -> bytes:
    """The bytes of a regular file of at most MAX_HISTORY_BYTES. FIFOs, sockets and devices (/dev/zero, a pipe that
    never closes) are refused without blocking: the file is opened non-blocking and checked before any read."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise HistoryError(f"{p}: cannot be read ({exc.strerror or exc}). Expected {ACCEPTED_FORMATS}.") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise HistoryError(f"{p}: not a regular file (a pipe, socket or device). Expected {ACCEPTED_FORMATS}.")
        if st.st_size > MAX_HISTORY_BYTES:
            raise HistoryError(f"{p}: {st.st_size:,} bytes, above the {MAX_HISTORY_BYTES:,}-byte limit for a training log. "
                               f"Expected {ACCEPTED_FORMATS}.")
        try:
            raw = fh.read(MAX_HISTORY_BYTES + 1)
        except OSError as exc:
            raise HistoryError(f"{p}: cannot be read ({exc.strerror or exc}). Expected {ACCEPTED_FORMATS}.") from None
    if len(raw) > MAX_HISTORY_BYTES:  # the file grew while it was read
        raise HistoryError(f"{p}: more than {MAX_HISTORY_BYTES:,} bytes, above the limit for a training log. Expected {ACCEPTED_FORMATS}.")
    return raw


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def read_history_json(path: str | Path, text: str | None = None) -> History:
    """A Keras ``History.history`` JSON, a list of per-epoch records, or the callback's JSON."""
    p = Path(path)
    if text is None:
        text = p.read_text(encoding="utf-8-sig")
    try:
        # json accepts NaN/Infinity/-Infinity, which json.dump writes for non-finite floats.
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}). Expected {ACCEPTED_FORMATS}.") from None
    if isinstance(data, dict) and data.get("format") == CALLBACK_FORMAT:
        return history_from_mapping(
            data.get("history", {}), source=str(p), format="segdoctor-callback",
            epochs=data.get("epochs"), params=data.get("params") or {},
        )
    if isinstance(data, dict) and isinstance(data.get("history"), dict):
        # Some scripts save {"history": model.history.history, "params": ...}.
        data = data["history"]
    if isinstance(data, list):
        if not data or not all(isinstance(r, dict) for r in data):
            raise HistoryError(f"{p}: found a JSON list that is not a list of per-epoch records. Expected {ACCEPTED_FORMATS}.")
        names = list(dict.fromkeys(k for r in data for k in r))
        data = {k: [r.get(k) for r in data] for k in names}
    if not isinstance(data, dict):
        raise HistoryError(f"{p}: found a JSON {type(data).__name__}. Expected {ACCEPTED_FORMATS}.")
    epochs = None
    for key in ("epoch", "epochs"):
        if key in data and isinstance(data[key], list):
            epochs = data.pop(key)
    for name, value in data.items():
        if not isinstance(value, list):
            raise HistoryError(f"{p}: key {name!r} holds a {type(value).__name__}, not a list of per-epoch values. Expected {ACCEPTED_FORMATS}.")
    return history_from_mapping(data, source=str(p), format="keras-json", epochs=epochs)


#: CSV rows converted per batch: bounded temporaries however long the log
_CSV_BATCH_ROWS = 1 << 16


def _text_lines(text: str):
    """The non-blank lines of ``text`` (split at \\n, \\r\\n or \\r), one at a time: no list of a million strings."""
    import re

    for m in re.finditer(r"[^\r\n]+", text):
        line = m.group()
        if line.strip():
            yield line


def read_history_csv(path: str | Path, text: str | None = None) -> History:
    """A ``CSVLogger`` file: header row, one row per epoch, any column order, ``epoch`` optional.

    Rows are parsed in batches straight into float arrays, so a log of a million epochs takes about
    the memory of its numbers, not of a list of rows of strings.
    """
    p = Path(path)
    if text is None:
        text = p.read_text(encoding="utf-8-sig")
    lines = _text_lines(text)
    first = next(lines, None)
    if first is None:
        raise HistoryError(f"{p}: the file is empty. Expected {ACCEPTED_FORMATS}.")
    try:
        delimiter = csv.Sniffer().sniff(first, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    header = [h.strip() for h in next(csv.reader([first], delimiter=delimiter))]
    if len(header) < 1 or not any(header):
        raise HistoryError(f"{p}: found no header row. Expected {ACCEPTED_FORMATS}.")
    if all(_is_number(h) for h in header if h):
        raise HistoryError(f"{p}: the first row holds numbers, not column names. Expected a CSVLogger header such as 'epoch,loss,val_loss'.")
    if len(set(header)) != len(header):
        raise HistoryError(f"{p}: the header repeats a column name ({', '.join(header)}). Expected one column per logged quantity.")
    epoch_cols = [j for j, h in enumerate(header) if h.lower() == "epoch"]  # "epoch" and "Epoch": the last one counts
    parts: list[list[tuple[np.ndarray, np.ndarray | None]]] = [[] for _ in header]
    failed: dict[int, HistoryError] = {}  # column -> the first bad cell found in it
    rows_read = 0
    while True:
        batch = list(itertools.islice(lines, _CSV_BATCH_ROWS))
        if not batch:
            break
        # a line longer than the csv module's field limit goes to the csv path, which refuses it as before
        block = _numeric_block(batch, delimiter, len(header)) if max(map(len, batch)) <= csv.field_size_limit() else None
        if block is not None:  # the common case: every cell a number, parsed in C
            for j in range(len(header)):
                parts[j].append((block[:, j].copy(), None if j in epoch_cols else np.zeros(len(batch), dtype=bool)))
        else:
            rows = list(csv.reader(batch, delimiter=delimiter))
            for k, row in enumerate(rows):
                if len(row) != len(header):
                    raise HistoryError(f"{p}: line {rows_read + k + 2} has {len(row)} fields but the header has {len(header)}. "
                                       "Expected the same number of fields in every row.")
            cells = list(zip(*rows))
            for j, name in enumerate(header):
                if j in failed:
                    continue
                try:
                    if j in epoch_cols:
                        parts[j].append((_epoch_cells(cells[j], p, name, rows_read + 1), None))
                    else:
                        parts[j].append(_column_numbers(list(cells[j]), name, str(p), rows_read + 1))
                except HistoryError as exc:
                    failed[j] = exc
        rows_read += len(batch)
    if rows_read == 0:
        raise HistoryError(f"{p}: found a header ({', '.join(header[:6])}) but no epoch rows. Expected one row per epoch.")
    if failed:
        # the error a whole-file check finds first: row lengths (above), the epoch column, then left to right
        raise failed[min(failed, key=lambda j: (j not in epoch_cols, j))]
    epochs = None
    columns: dict[str, np.ndarray] = {}
    missing: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if j in epoch_cols:
            epochs = np.concatenate([a for a, _ in parts[j]])
        else:
            columns[name] = np.concatenate([a for a, _ in parts[j]])
            missing[name] = np.concatenate([m for _, m in parts[j]])
        parts[j] = []
    if not columns:
        raise HistoryError(f"{p}: holds only an epoch column. Expected logged quantities such as loss and val_loss.")
    return _history_from_columns(columns, missing, str(p), source=str(p), format="csv", epochs=epochs, params=None)


def _numeric_block(lines: list[str], delimiter: str, width: int) -> np.ndarray | None:
    """The rows as a float array when every cell is a plain number (numpy's C parser, which converts
    numbers as ``float()`` does); None when any row needs the careful path (empty cells, quotes, a wrong
    field count), which then names the offending cell."""
    try:
        block = np.loadtxt(lines, delimiter=delimiter, dtype=float, comments=None, ndmin=2)
    except (ValueError, TypeError, OverflowError):
        return None
    return block if block.shape == (len(lines), width) else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _epoch_cells(cells, p: Path, name: str, first_row: int = 1) -> np.ndarray:
    """The epoch column as floats; a cell that is not a number is an error naming its row."""
    try:
        return np.fromiter(map(float, cells), dtype=float, count=len(cells))
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty(len(cells))
    for i, c in enumerate(cells):
        try:
            out[i] = float(c)
        except ValueError:
            raise HistoryError(f"{p}: column {name!r} holds the non-numeric value {c.strip()[:40]!r} in row {i + first_row}. Expected epoch numbers.") from None
    return out


# --- TensorBoard ---------------------------------------------------------------------------------

#: sub-folder names Keras' TensorBoard callback uses, and the prefix their scalars get here
_RUN_PREFIX = {"train": "", "validation": "val_"}


def read_tensorboard_dir(path: str | Path) -> History:
    """Epoch scalars (``epoch_loss``, ``epoch_<metric>``, ``epoch_learning_rate``) of a Keras TensorBoard log."""
    p = Path(path)
    event_files = sorted(f for f in p.rglob("events.out.tfevents*") if f.is_file())
    if not event_files:
        raise HistoryError(f"{p}: a folder without TensorBoard event files (events.out.tfevents.*). Expected {ACCEPTED_FORMATS}.")
    # Keras writes <logdir>/train and <logdir>/validation; several such pairs are several runs.
    roots = sorted({str(f.parent.parent if f.parent.name in _RUN_PREFIX else f.parent) for f in event_files})
    if len(roots) > 1:
        shown = ", ".join(str(Path(r).relative_to(p)) if r != str(p) else "." for r in roots[:4])
        raise HistoryError(f"{p}: holds {len(roots)} TensorBoard runs ({shown}{', ...' if len(roots) > 4 else ''}). Expected one run: pass its folder.")
    by_step: dict[str, dict[int, float]] = {}
    for f in event_files:
        # files right in the given folder are a single run's (Keras writes train/ and validation/)
        run = f.parent.name if f.parent.name in _RUN_PREFIX or f.parent != p else "train"
        prefix = _RUN_PREFIX.get(run)
        if prefix is None:
            continue  # other runs (profiler, custom writers) are not per-epoch history
        for tag, step, value in _scalar_events(f):
            if not tag.startswith("epoch_"):
                continue  # batch-level and evaluation_*_vs_iterations scalars are not per-epoch
            name = tag[len("epoch_"):]
            if name == "learning_rate" and prefix:
                continue
            by_step.setdefault(prefix + name, {})[int(step)] = value  # a later write of a step wins
    if not by_step:
        raise HistoryError(f"{p}: TensorBoard event files hold no epoch_* scalars. Expected logs written by keras.callbacks.TensorBoard (train/ and validation/).")
    steps = sorted({s for col in by_step.values() for s in col})
    ordered = sorted(by_step, key=lambda k: (k.startswith("val_"), k))
    values = {k: [by_step[k].get(s) for s in steps] for k in ordered}
    return history_from_mapping(values, source=str(p), format="tensorboard", epochs=steps)


def _scalar_events(path: Path):
    """(tag, step, value) for every scalar in one event file, scalars stored as simple values or tensors."""
    from segdoctor.io.model import import_tensorflow_quietly

    import_tensorflow_quietly()  # tensorboard's reader imports TensorFlow when installed: keep its C++ chatter off the terminal
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError:  # TensorFlow ships the same reader
        try:
            import tensorflow as tf
        except ImportError:
            raise HistoryError(f"{path}: reading TensorBoard logs needs the tensorboard or tensorflow package; install one, or export the history as CSV.") from None
        events = tf.compat.v1.train.summary_iterator(str(path))
        make_ndarray = tf.make_ndarray
    else:
        events = EventFileLoader(str(path)).Load()
    try:
        for event in events:
            if not event.HasField("summary"):
                continue
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    yield v.tag, event.step, float(v.simple_value)
                elif v.HasField("tensor"):
                    arr = make_ndarray(v.tensor)
                    if arr.size == 1 and np.issubdtype(arr.dtype, np.number):
                        yield v.tag, event.step, float(arr.reshape(()))
    except Exception as exc:  # a truncated or foreign file
        raise HistoryError(f"{path}: cannot be read as a TensorBoard event file ({type(exc).__name__}: {exc}). Expected {ACCEPTED_FORMATS}.") from None
