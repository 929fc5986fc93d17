"""SegDoctorCallback inside a real (tiny, CPU, sub-second) Keras fit."""

from __future__ import annotations

import logging

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segdoctor.io.history import read_history  # noqa: E402
from segdoctor.keras_callback import SegDoctorCallback  # noqa: E402

pytestmark = pytest.mark.slow


def dice_coef(y_true, y_pred):
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    intersection = keras.ops.sum(y_true * y_pred)
    return (2 * intersection + 1e-7) / (keras.ops.sum(y_true) + keras.ops.sum(y_pred) + 1e-7)


def tiny_model(bias: float, loss="binary_crossentropy", learning_rate=1e-6):
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", bias_initializer=keras.initializers.Constant(bias))(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=loss, metrics=["accuracy", dice_coef])
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1)).astype("float32")
    return x, (x > 0.97).astype("float32")  # 3% foreground


def test_callback_writes_readable_history_with_lr_and_warns_on_blank_predictions(tmp_path, caplog):
    x, y = data()
    path = tmp_path / "run" / "history.json"
    callback = SegDoctorCallback(path=path)
    with caplog.at_level(logging.WARNING, logger="segdoctor"):
        fitted = tiny_model(bias=-12.0).fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[callback])
    history = read_history(path)
    assert history.format == "segdoctor-callback"
    assert list(history.epochs) == [1, 2, 3]
    np.testing.assert_allclose(history.columns["loss"], fitted.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(history.columns["learning_rate"], 1e-6, rtol=1e-3)
    assert history.params["epochs"] == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "segdoctor"]
    collapse = [m for m in messages if "SD605" in m]
    assert len(collapse) == 1, messages  # warned once, as soon as it fired, not every epoch
    assert "blank predictions are likely" in collapse[0] and "check-data" in collapse[0]
    assert {f.code for f in callback.findings} >= {"SD605", "SD606"}


def test_callback_stops_training_on_an_error_when_asked(tmp_path):
    x, y = data()

    def nan_loss(y_true, y_pred):
        return keras.ops.mean(keras.ops.sqrt(-1.0 - y_pred))  # sqrt of a negative number: NaN

    model = tiny_model(bias=0.0, loss=nan_loss)
    callback = SegDoctorCallback(path=tmp_path / "h.json", stop_on_error=True, warn=False)
    fitted = model.fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    assert len(fitted.history["loss"]) == 1
    assert callback.stopped_by_segdoctor
    assert "SD601" in {f.code for f in callback.findings}
    assert read_history(tmp_path / "h.json").n_epochs == 1


def test_callback_keeps_training_without_stop_on_error(tmp_path):
    x, y = data()
    model = tiny_model(bias=-12.0)
    callback = SegDoctorCallback(path=tmp_path / "h.json", warn=False)
    fitted = model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    assert len(fitted.history["loss"]) == 3 and not callback.stopped_by_segdoctor


def test_importing_segdoctor_does_not_import_keras():
    import subprocess
    import sys

    from conftest import REPO

    code = "import sys, segdoctor; print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_callback_waits_for_a_persistent_collapse_before_stopping(tmp_path):
    x, y = data()
    callback = SegDoctorCallback(path=tmp_path / "h.json", stop_on_error=True, stop_after=2, warn=False)
    fitted = tiny_model(bias=-12.0).fit(x, y, epochs=6, verbose=0, callbacks=[callback])
    assert len(fitted.history["loss"]) == 2  # Dice ~0 at epochs 1 and 2: stopped after the second
    assert callback.stopped_by_segdoctor


def test_callback_names_the_root_cause_once_with_what_it_explains(tmp_path, caplog):
    # targets of 255 through BCE: the loss goes negative and Dice exceeds 1 (SD609), which explains the metric symptoms
    x, y = data()
    callback = SegDoctorCallback(path=tmp_path / "h.json")
    with caplog.at_level(logging.WARNING, logger="segdoctor"):
        tiny_model(bias=3.0, learning_rate=1e-2).fit(x, y * 255, epochs=4, verbose=0, callbacks=[callback])
    assert callback.diagnosis is not None and callback.diagnosis.causes
    root = callback.diagnosis.causes[0]
    assert root.code == "SD609" and root.explained_codes
    roots = [r.getMessage() for r in caplog.records if r.name == "segdoctor" and "root cause so far" in r.getMessage()]
    assert len(roots) == 1 and "(SD609)" in roots[0], roots
    assert all(code in roots[0] for code in root.explained_codes)
