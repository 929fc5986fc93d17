"""Training logs at scale: the fast readers give exactly what the cell-by-cell definition gives, long and
wide logs stay cheap (figures capped), and check-history imports neither scipy.stats nor matplotlib.

Timings are measured by benchmarks/bench_check_history.py, never asserted here.
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import segdoctor.io.history as history_io
from segdoctor.errors import HistoryError
from segdoctor.io.history import history_from_mapping, read_history

from conftest import REPO

_MISSING = {"", "na", "n/a", "null", "none", "-"}


def _reference_csv(text: str):
    """The CSV reader's plain definition: split lines, csv-parse all rows, convert cell by cell."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        delimiter = csv.Sniffer().sniff(lines[0], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    rows = list(csv.reader(lines, delimiter=delimiter))
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            return ("error", f"line {i} has {len(row)} fields")
    values = {name: [row[j].strip() for row in body] for j, name in enumerate(header)}
    epochs = None
    for key in list(values):
        if key.lower() == "epoch":
            cells = values.pop(key)
            try:
                epochs = [float(c) for c in cells]
            except ValueError:
                return ("error", f"column {key!r} holds the non-numeric value")
    columns, missing = {}, {}
    for name, seq in values.items():
        arr, miss = np.empty(len(seq)), np.zeros(len(seq), bool)
        for i, v in enumerate(seq):
            if v.lower() in _MISSING:
                arr[i], miss[i] = math.nan, True
                continue
            try:
                arr[i] = float(v)
            except ValueError:
                return ("error", f"column {name!r} holds the non-numeric value {v[:40]!r} at epoch {i + 1}")
        columns[name], missing[name] = arr, miss
    return ("ok", columns, missing, epochs)


cell = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", " ", "NA", "nan", "-", "null", "1_000", " 0.5 ", "1e400", "abc", '"0.25"']),
)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4), st.booleans(), st.data())
def test_csv_reader_matches_the_cell_by_cell_definition(tmp_path_factory, n_cols, with_epoch, data):
    n_rows = data.draw(st.integers(1, 12))
    names = [f"m{j}" for j in range(n_cols)]
    header = (["epoch"] if with_epoch else []) + ["loss", *names]
    rows = []
    for i in range(n_rows):
        row = ([str(i)] if with_epoch else []) + [data.draw(cell) for _ in range(n_cols + 1)]
        if data.draw(st.integers(0, 30)) == 0:
            row = row[:-1]  # a short row
        rows.append(",".join(row))
    text = "\n".join([",".join(header), *rows]) + "\n"
    path = tmp_path_factory.mktemp("csv") / "log.csv"
    path.write_text(text)
    expected = _reference_csv(text)
    for batch in (3, history_io._CSV_BATCH_ROWS):  # batch boundaries change nothing
        old = history_io._CSV_BATCH_ROWS
        history_io._CSV_BATCH_ROWS = batch
        try:
            if expected[0] == "error":
                with pytest.raises(HistoryError, match=re.escape(expected[1])):
                    read_history(path)
                continue
            try:
                h = read_history(path)
            except HistoryError as exc:  # every cell empty: the shared validation refuses it
                assert "every cell is empty" in str(exc) or "no epochs" in str(exc)
                continue
        finally:
            history_io._CSV_BATCH_ROWS = old
        _, columns, missing, epochs = expected
        assert list(h.columns) == list(columns)
        for name in columns:
            assert np.array_equal(h.columns[name], columns[name], equal_nan=True), name
            assert np.array_equal(h.missing[name], missing[name]), name


def test_csv_errors_keep_their_precedence_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(history_io, "_CSV_BATCH_ROWS", 2)
    p = tmp_path / "log.csv"
    # a bad value in the first batch, a short row in the third: the row count is reported, as a whole-file check would
    p.write_text("epoch,loss\n0,0.5\n1,abc\n2,0.4\n3,0.3\n4\n")
    with pytest.raises(HistoryError, match="line 6 has 1 fields"):
        read_history(p)
    # bad cells in two columns, the right one found first: the left one is named
    p.write_text("epoch,loss,acc\n0,0.5,0.1\n1,0.4,0.2\n2,0.3,x\n3,y,0.3\n")
    with pytest.raises(HistoryError, match=r"column 'loss' holds the non-numeric value 'y' at epoch 4"):
        read_history(p)


def test_csv_field_limit_still_applies(tmp_path):
    # the csv module refuses a field over 131,072 characters; the fast numeric parser would read it as a number
    p = tmp_path / "log.csv"
    p.write_text("loss,val_loss\n" + "1" * 140_000 + ",0.5\n0.4,0.5\n")
    with pytest.raises(csv.Error):
        history_io.read_history_csv(p)


def test_json_columns_convert_as_the_cell_by_cell_definition():
    values = {"loss": [1, 0.5, 2**60, -0.0], "acc": [0.1, None, "NA", " 0.3 "], "n": np.arange(4, dtype=np.int32),
              "b": np.array([True, False, True, False])}
    h = history_from_mapping(values)
    assert h.columns["loss"].tolist() == [1.0, 0.5, float(2**60), -0.0]
    assert np.array_equal(h.columns["acc"], [0.1, np.nan, np.nan, 0.3], equal_nan=True)
    assert h.missing["acc"].tolist() == [False, True, True, False]
    assert h.columns["n"].tolist() == [0.0, 1.0, 2.0, 3.0] and h.columns["b"].tolist() == [1.0, 0.0, 1.0, 0.0]
    with pytest.raises(HistoryError, match="boolean at epoch 2"):
        history_from_mapping({"loss": [0.5, True]})
    with pytest.raises(HistoryError, match="non-numeric value 'x' at epoch 3"):
        history_from_mapping({"loss": [0.5, 0.4, "x"]})


def test_history_command_imports_neither_scipy_stats_nor_matplotlib():
    code = ("import sys; import segdoctor.commands.history; "
            "bad = [m for m in ('scipy.stats', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _windows_one_by_one(y, level_series, a, b):
    from segdoctor.checks.history import OSCILLATION_WINDOW, LossOscillation

    flagged = np.zeros(b - a + 1, dtype=bool)
    for start in range(a, b - OSCILLATION_WINDOW + 2, OSCILLATION_WINDOW // 2):
        end = min(start + OSCILLATION_WINDOW - 1, b)
        st = LossOscillation._stats(y[start:end + 1], level_series[start:end + 1])
        if st is not None and st["oscillating"]:
            flagged[start - a:end - a + 1] = True
    return flagged


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(20, 400), st.sampled_from(["noise", "zigzag", "steps", "nan"]))
def test_oscillation_windows_judged_together_match_one_by_one(seed, n, kind):
    from segdoctor.checks.history import LossOscillation

    rng = np.random.default_rng(seed)
    k = np.arange(n)
    y = {"noise": 1 + rng.normal(0, 0.3, n), "zigzag": 1 + 0.5 * (-1.0) ** k * rng.uniform(0.2, 1.5, n),
         "steps": np.round(1 + rng.normal(0, 0.5, n), 0), "nan": 1 + 0.6 * (-1.0) ** k}[kind]
    if kind == "nan":
        y[rng.integers(0, n, 5)] = np.nan
    if kind == "steps":
        y[: n // 3] = 0.0  # a zero level: the range takes over
    level = y + rng.choice([0.0, 1.0])
    a, b = int(rng.integers(0, 5)), n - 1 - int(rng.integers(0, 5))
    assert np.array_equal(LossOscillation._window_flags(y, level, a, b), _windows_one_by_one(y, level, a, b))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(0, 6))
def test_loss_form_among_many_metrics_is_the_first_match(seed, n, n_metrics):
    from segdoctor.stats import curves

    rng = np.random.default_rng(seed)
    metric_pool = []
    for k in range(n_metrics):
        m = rng.uniform(0, 1, n)
        if rng.integers(0, 4) == 0:
            m[rng.integers(0, n)] = np.nan  # not finite where the loss is: compared on its own
        metric_pool.append((f"m{k}", m))
    loss = rng.uniform(-1, 2, n)
    if metric_pool and rng.integers(0, 2):
        target = metric_pool[int(rng.integers(0, len(metric_pool)))][1]
        loss = (-target if rng.integers(0, 2) else 1 - target) + rng.normal(0, 0.005, n)
    if rng.integers(0, 3) == 0:
        loss[rng.integers(0, n)] = np.nan
    expected = None
    for name, m in metric_pool:
        candidate = curves.loss_form(loss, m, metric_name=name)
        if candidate.metric is not None:
            expected = candidate
            break
    assert curves.loss_form_among(loss, metric_pool) == (expected or curves.loss_form(loss))
