"""Readers for training logs: Keras History JSON, CSVLogger CSV, TensorBoard folders, the callback's JSON."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from segdoctor.errors import HistoryError
from segdoctor.io.history import CALLBACK_FORMAT, history_from_mapping, read_history

from conftest import REPO


def test_json_with_nan_and_infinity_tokens(tmp_path):
    p = tmp_path / "h.json"
    # what json.dump writes for float("nan") / float("inf")
    json.dump({"loss": [0.5, float("nan"), float("inf")], "val_loss": [0.6, 0.5, -float("inf")]}, p.open("w"))
    assert "NaN" in p.read_text() and "Infinity" in p.read_text()
    h = read_history(p)
    assert h.format == "keras-json"
    assert h.n_epochs == 3 and list(h.epochs) == [1, 2, 3]
    assert math.isnan(h.columns["loss"][1]) and h.columns["loss"][2] == math.inf
    assert h.columns["val_loss"][2] == -math.inf
    assert not h.is_missing("loss").any()


def test_json_null_is_missing_not_nan(tmp_path):
    p = tmp_path / "h.json"
    p.write_text('{"loss": [0.5, 0.4], "val_iou": [0.1, null]}')
    h = read_history(p)
    assert math.isnan(h.columns["val_iou"][1])
    assert list(h.is_missing("val_iou")) == [False, True]


def test_json_records_and_wrapped_history(tmp_path):
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]))
    h = read_history(records)
    assert list(h.columns) == ["loss"] and list(h.epochs) == [1, 2]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"history": {"loss": [1.0, 0.9]}, "params": {"epochs": 5}}))
    assert list(read_history(wrapped).columns["loss"]) == [1.0, 0.9]


def test_csv_any_column_order_and_epoch_column_shift(tmp_path):
    p = tmp_path / "log.csv"
    # CSVLogger writes a 0-based epoch column, in alphabetical key order
    p.write_text("val_loss,epoch,loss,lr\n0.9,0,1.0,0.001\n0.8,1,0.7,0.001\n0.85,2,0.6,0.0001\n")
    h = read_history(p)
    assert h.format == "csv"
    assert list(h.epochs) == [1, 2, 3]
    assert set(h.columns) == {"val_loss", "loss", "lr"}
    np.testing.assert_allclose(h.columns["loss"], [1.0, 0.7, 0.6])


def test_csv_without_epoch_column_with_empty_and_na_cells(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("loss;val_loss\n0.5;\n0.4;NA\n0.3;nan\n")
    h = read_history(p)
    assert list(h.epochs) == [1, 2, 3]
    assert list(h.is_missing("val_loss")) == [True, True, False]
    assert np.isnan(h.columns["val_loss"]).all()


def test_csv_one_based_epoch_column_is_kept(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("epoch,loss\n1,0.5\n2,0.4\n")
    assert list(read_history(p).epochs) == [1, 2]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.csv", "", "empty"),
        ("blank.json", "   \n", "empty"),
        ("header_only.csv", "epoch,loss,val_loss\n", "no epoch rows"),
        ("ragged.csv", "loss,val_loss\n0.5,0.6\n0.4\n", "line 3 has 1 fields but the header has 2"),
        ("text.csv", "loss,val_loss\n0.5,abc\n", "non-numeric value 'abc'"),
        ("numbers_only.csv", "0.5,0.6\n0.4,0.5\n", "first row holds numbers"),
        ("ragged.json", '{"loss": [1, 2, 3], "val_loss": [1, 2]}', "different lengths"),
        ("words.json", '{"loss": ["a", "b"]}', "non-numeric value 'a'"),
        ("scalar.json", '{"loss": 0.5}', "not a list"),
        ("broken.json", '{"loss": [1, 2', "not valid JSON"),
        ("empty_lists.json", '{"loss": []}', "no epochs"),
        ("all_null.json", '{"loss": [null, null]}', "every cell is empty"),
        ("list.json", "[1, 2, 3]", "not a list of per-epoch records"),
    ],
)
def test_unreadable_logs_raise_one_line_error_naming_path_and_formats(tmp_path, name, content, expected):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(HistoryError) as info:
        read_history(p)
    message = str(info.value)
    assert expected in message
    assert str(p) in message
    assert "\n" not in message


def test_missing_path_and_binary_file(tmp_path):
    with pytest.raises(HistoryError, match="no such file"):
        read_history(tmp_path / "nope.json")
    binary = tmp_path / "model.h5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(HistoryError, match="binary content"):
        read_history(binary)
    with pytest.raises(HistoryError, match="without TensorBoard event files"):
        read_history(tmp_path)


def test_history_from_mapping_rejects_booleans():
    with pytest.raises(HistoryError, match="boolean"):
        history_from_mapping({"loss": [True, False]})


def test_callback_json_roundtrip(tmp_path):
    p = tmp_path / "cb.json"
    p.write_text(json.dumps({"format": CALLBACK_FORMAT, "epochs": [1, 2], "history": {"loss": [1.0, float("nan")]},
                             "params": {"epochs": 10}}))
    h = read_history(p)
    assert h.format == "segdoctor-callback" and h.params["epochs"] == 10
    assert math.isnan(h.columns["loss"][1]) and not h.is_missing("loss")[1]


def test_json_and_csv_readers_do_not_import_tensorflow(tmp_path):
    p = tmp_path / "h.json"
    p.write_text('{"loss": [1.0, 0.5], "dice_coef": [0.1, 0.4]}')
    code = (
        "import sys\n"
        "from segdoctor.commands.history import check_history\n"
        f"check_history({str(p)!r})\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tensorboard', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.fixture(scope="module")
def keras_tensorboard_log(tmp_path_factory):
    """A TensorBoard log written by keras.callbacks.TensorBoard in a 3-epoch fit of a one-layer model."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorboard")
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((8, 4, 4, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    logdir = tmp_path_factory.mktemp("tensorboard") / "logs"
    fitted = model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0,
                       callbacks=[keras.callbacks.TensorBoard(str(logdir), write_graph=False)])
    return logdir, fitted.history


@pytest.mark.slow
def test_tensorboard_log_written_by_keras(keras_tensorboard_log):
    logdir, fitted_history = keras_tensorboard_log
    h = read_history(logdir)
    assert h.format == "tensorboard"
    assert list(h.epochs) == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(h.columns)
    np.testing.assert_allclose(h.columns["loss"], fitted_history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h.columns["val_loss"], fitted_history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(h.columns["learning_rate"], 1e-2, rtol=1e-5)
    # an event file given directly reads as its run
    event_file = next((logdir / "validation").glob("events.out.tfevents*"))
    assert set(read_history(event_file).columns) == set(h.columns)
    assert set(read_history(logdir / "validation").columns) >= {"val_loss", "val_accuracy"}


@pytest.mark.slow
def test_tensorboard_log_read_with_tensorflow_alone(keras_tensorboard_log, monkeypatch):
    logdir, fitted_history = keras_tensorboard_log
    # as if the tensorboard package were not installed: TensorFlow's own summary iterator is used
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_file_loader", None)
    h = read_history(logdir)
    np.testing.assert_allclose(h.columns["val_loss"], fitted_history["val_loss"], rtol=1e-5)


def test_tensorboard_folder_with_several_runs_asks_for_one(tmp_path):
    for run in ("20240101", "20240102"):
        (tmp_path / run / "train").mkdir(parents=True)
        (tmp_path / run / "train" / "events.out.tfevents.1.host").write_bytes(b"")
    with pytest.raises(HistoryError, match="holds 2 TensorBoard runs"):
        read_history(tmp_path)
