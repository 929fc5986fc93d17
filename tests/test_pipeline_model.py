"""check-pipeline --model: the batches against the model's input, output and compiled loss (SD303, SD307)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_helpers import batches, blob_arrays, codes, finding
from segdoctor.cli import main
from segdoctor.commands.pipeline import check_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keras():
    from segdoctor.io.model import import_keras

    return import_keras()


@pytest.fixture(scope="module")
def blobs():
    x, y = blob_arrays(24, seed=8)
    return x.astype(np.float32) / 255, y


def head(keras, channels, activation, loss, *, size=(None, None), in_channels=3, rescale=None):
    inputs = keras.Input((*size, in_channels))
    x = keras.layers.Rescaling(rescale)(inputs) if rescale else inputs
    conv = keras.layers.Conv2D(channels, 1, activation=activation, name="head")
    model = keras.Model(inputs, conv(x), name="tiny")
    model.compile(optimizer="adam", loss=loss)
    return model, conv


def test_one_hot_targets_with_a_sparse_loss_and_sparse_targets_with_a_categorical_loss(keras, blobs):
    x, y = blobs
    sparse_model, _ = head(keras, 2, "softmax", keras.losses.SparseCategoricalCrossentropy())
    f = finding(check_pipeline((x, np.eye(2, dtype=np.float32)[y]), model=sparse_model), "SD303")
    assert "one-hot but the loss is" in f.title and "SparseCategoricalCrossentropy" in f.title
    report = check_pipeline((x, y), model=sparse_model)
    assert "SD303" not in codes(report) and "SD307" not in codes(report), [f.title for f in report.findings]
    assert report.context.model.loss_values["perfect"] < report.context.model.loss_values["blend"]
    categorical, _ = head(keras, 2, "softmax", keras.losses.CategoricalCrossentropy())
    f = finding(check_pipeline((x, y[..., None]), model=categorical), "SD303")
    assert "sparse ids" in f.title
    assert "SD303" not in codes(check_pipeline((x, np.eye(2, dtype=np.float32)[y]), model=categorical))


def test_0_255_targets_make_the_loss_negative_at_a_perfect_prediction(keras, blobs):
    x, y = blobs
    model, _ = head(keras, 1, "sigmoid", "binary_crossentropy")
    report = check_pipeline((x, (y * 255).astype(np.float32)[..., None]), model=model)
    f = finding(report, "SD303")
    assert "negative" in f.title and "SD101" in codes(report)
    assert "SD303" not in codes(check_pipeline((x, y[..., None].astype(np.float32)), model=model))


def test_a_loss_that_is_not_minimal_at_the_targets(keras, blobs):
    x, y = blobs
    from keras import ops

    def off_target(y_true, y_pred):  # minimal at y_pred = y_true / 2: a loss bug
        return ops.mean(ops.square(y_pred - 0.5 * ops.cast(y_true, y_pred.dtype)))

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs), name="bugged")
    model.compile(optimizer="adam", loss=off_target)
    f = finding(check_pipeline((x, y[..., None].astype(np.float32)), model=model), "SD303")
    assert "loss at a perfect prediction" in f.title


def test_input_size_channels_and_double_rescaling_are_sd307(keras, blobs):
    x, y = blobs
    fixed, _ = head(keras, 1, "sigmoid", "binary_crossentropy", size=(32, 32))
    assert "takes 32x32 inputs" in finding(check_pipeline((x, y), model=fixed), "SD307").title
    gray, _ = head(keras, 1, "sigmoid", "binary_crossentropy", in_channels=1)
    assert "1-channel inputs" in finding(check_pipeline((x, y), model=gray), "SD307").title
    rescaling, _ = head(keras, 1, "sigmoid", "binary_crossentropy", rescale=1 / 255)
    f = finding(check_pipeline((x, y), model=rescaling), "SD307")
    assert "scaled twice" in f.title
    assert "SD307" not in codes(check_pipeline((x * 255, y), model=rescaling))


def test_a_trained_model_scores_better_under_another_scaling(keras, blobs):
    x, y = blobs
    model, conv = head(keras, 1, "sigmoid", "binary_crossentropy")
    # a "trained" intensity model: foreground where the mean of the unit-scaled channels exceeds 0.45
    conv.set_weights([np.full((1, 1, 3, 1), 20 / 3, np.float32), np.full((1,), -9.0, np.float32)])
    # set by hand, never fitted: no evidence of the scaling it expects (as a model compiled and not yet trained)
    assert "SD307" not in codes(check_pipeline((x * 255, y), model=model))
    # one step at learning rate 0 marks it trained (optimizer.iterations 1) and keeps these exact weights
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="binary_crossentropy")
    model.fit(x[:2], y[:2, ..., None].astype(np.float32), epochs=1, batch_size=2, verbose=0)
    f = finding(check_pipeline((x * 255, y), model=model), "SD307")
    assert "x / 255" in f.title and f.severity.label == "warning"
    assert "SD307" not in codes(check_pipeline((x, y), model=model))


def test_model_file_through_the_cli(keras, blobs, tmp_path, capsys):
    from pipeline_helpers import write_module

    x, y = blobs
    model, _ = head(keras, 2, "softmax", keras.losses.SparseCategoricalCrossentropy())
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.eye(2, dtype=np.float32)[y])
    src = write_module(tmp_path, "p.py", "import numpy as np, pathlib\nH = pathlib.Path(__file__).parent\n"
                                         "def make():\n    return np.load(H / 'x.npy'), np.load(H / 'y.npy')\n")
    rc = main(["check-pipeline", f"{src}:make", "--model", str(path), "--report", "none", "-q"])
    assert rc == 1
    assert "SD303" in capsys.readouterr().out
    rc = main(["check-pipeline", f"{src}:make", "--model", str(path), "--report", str(path)])
    assert rc == 2  # the model is an input: never overwritten


def test_without_a_model_nothing_is_probed(blobs):
    x, y = blobs
    report = check_pipeline(batches(x, y), batches=2)
    assert report.context.model is None and "model" not in report.facts
    assert "SD307" in {c.code for c in report.checks if c.status == "passed"}


def test_a_model_trained_on_unit_inputs_fed_0_255_batches_is_sd307_an_untrained_one_is_not(keras, blobs):
    x, y = blobs
    model, _ = head(keras, 1, "sigmoid", "binary_crossentropy", size=(64, 64))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy")
    model.fit(x, y[..., None].astype(np.float32), epochs=60, batch_size=24, verbose=0)
    report = check_pipeline((x * 255, y[..., None].astype(np.float32)), model=model)
    f = finding(report, "SD307")
    assert "scaled as x / 255" in f.title and "another input scaling" in f.title
    assert "SD307" not in codes(check_pipeline((x, y[..., None].astype(np.float32)), model=model))
    # compiled, never fitted: a random head may threshold the blobs under some scaling by chance; that is no evidence
    fresh, _ = head(keras, 1, "sigmoid", "binary_crossentropy", size=(64, 64))
    assert check_pipeline((x * 255, y[..., None].astype(np.float32)), model=fresh).context.model.optimizer_steps == 0
    assert "another input scaling" not in " ".join(
        f.title for f in check_pipeline((x * 255, y[..., None].astype(np.float32)), model=fresh).findings)
