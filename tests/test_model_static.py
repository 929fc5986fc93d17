"""Static model checks SD401-SD408: one failing and one passing model each, built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segdoctor.findings import Severity
from tests.model_helpers import intensity_model, keras


def _check(path: Path, **kwargs):
    from segdoctor.commands.model import check_model

    return check_model(path, **kwargs)


def _codes(report, prefix="SD4"):
    return {f.code: f for f in report.findings if f.code.startswith(prefix)}


def _save(tmp_path: Path, name: str, inputs, outputs, **compile_kwargs) -> Path:
    k = keras()
    model = k.Model(inputs, outputs)
    if compile_kwargs:
        model.compile(**compile_kwargs)
    p = tmp_path / f"{name}.keras"
    model.save(p)
    return p


def _features(k, size=16, channels=1):
    inputs = k.Input((size, size, channels))
    return inputs, k.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)


def test_sd401_softmax_on_one_channel_after_reshape(tmp_path):
    # buggy snippet 5: Conv2D(1, linear) -> Reshape((H*W, 1)) -> Activation('softmax')
    k = keras()
    inputs, x = _features(k)
    x = k.layers.Conv2D(1, 1, activation="linear")(x)
    x = k.layers.Reshape((16 * 16, 1))(x)
    out = k.layers.Activation("softmax")(x)
    p = _save(tmp_path, "s5", inputs, out, optimizer=k.optimizers.Adam(1e-5), loss="categorical_crossentropy")
    found = _codes(_check(p))
    assert "SD401" in found and found["SD401"].severity == Severity.ERROR
    assert "SD402" not in found  # one defect, one finding


def test_sd401_passes_on_sigmoid_head(tmp_path):
    p = intensity_model(tmp_path / "ok.keras", w=1, b=0)
    report = _check(p)
    assert not _codes(report)
    assert {c.code: c.status for c in report.checks}["SD401"] == "passed"


def test_sd402_sigmoid_multichannel_with_sparse_categorical(tmp_path):
    # buggy snippet 1 (keras-io Oxford Pets before the fix)
    k = keras()
    inputs, x = _features(k)
    out = k.layers.Conv2D(3, 3, activation="sigmoid", padding="same")(x)
    p = _save(tmp_path, "s1", inputs, out, optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    f = _codes(_check(p))["SD402"]
    assert "Sigmoid on 3 channels" in f.title and 'Conv2D(3, 1, activation="softmax")' in f.snippet


@pytest.mark.parametrize("activation, loss_name", [("softmax", "CategoricalCrossentropy"), ("sigmoid", "BinaryCrossentropy")])
def test_sd402_from_logits_after_probabilities(tmp_path, activation, loss_name):
    # buggy snippets 3 and 4; a Reshape after the activation hides the logits from Keras 3 as well
    k = keras()
    channels = 2 if activation == "softmax" else 1
    inputs, x = _features(k)
    x = k.layers.Conv2D(channels, 1, activation=activation)(x)
    out = k.layers.Reshape((16 * 16, channels))(x)
    loss = getattr(k.losses, loss_name)(from_logits=True)
    f = _codes(_check(_save(tmp_path, "logits", inputs, out, optimizer="adam", loss=loss)))["SD402"]
    assert f.severity == Severity.ERROR and "from_logits=False" in f.snippet


def test_sd402_from_logits_directly_on_the_activation_is_a_warning_under_keras3(tmp_path):
    k = keras()
    p = intensity_model(tmp_path / "m.keras", w=1, b=0, loss=k.losses.BinaryCrossentropy(from_logits=True))
    f = _codes(_check(p))["SD402"]
    assert f.severity == Severity.WARNING and "Keras 3" in f.title


def test_sd402_linear_head_with_probability_loss_and_single_channel_categorical(tmp_path):
    p = intensity_model(tmp_path / "lin.keras", w=1, b=0, activation="linear", loss="binary_crossentropy")
    f = _codes(_check(p))["SD402"]
    assert "from_logits=True" in f.snippet
    p2 = intensity_model(tmp_path / "cce.keras", w=1, b=0, loss="categorical_crossentropy")
    assert "identically 0" in _codes(_check(p2))["SD402"].title


def test_sd402_softmax_with_binary_ce_on_many_channels(tmp_path):
    k = keras()
    inputs, x = _features(k)
    out = k.layers.Conv2D(4, 1, activation="softmax")(x)
    f = _codes(_check(_save(tmp_path, "sm", inputs, out, optimizer="adam", loss="binary_crossentropy")))["SD402"]
    assert "SparseCategoricalCrossentropy" in f.snippet


def test_sd402_passes_for_logits_with_from_logits(tmp_path):
    k = keras()
    p = intensity_model(tmp_path / "m.keras", w=1, b=0, activation="linear", loss=k.losses.BinaryCrossentropy(from_logits=True))
    assert "SD402" not in _codes(_check(p))


def test_sd403_output_smaller_than_input(tmp_path):
    k = keras()
    inputs, x = _features(k)
    x = k.layers.MaxPooling2D()(x)
    out = k.layers.Conv2D(1, 1, activation="sigmoid")(x)
    f = _codes(_check(_save(tmp_path, "small", inputs, out, optimizer="adam", loss="binary_crossentropy")))["SD403"]
    assert "8x8 differs from input 16x16" in f.title


def test_sd403_channels_vs_classes_in_data(tmp_path):
    from tests.model_helpers import make_dataset

    data = make_dataset(tmp_path / "data", n=4, multiclass=True)
    p = intensity_model(tmp_path / "m.keras", w=20, b=-10, rescale=True)
    report = _check(p, data=data)
    f = _codes(report)["SD403"]
    assert "One output channel but 3 classes" in f.title and "Conv2D(3, 1" in f.snippet
    binary = make_dataset(tmp_path / "bin", n=4)
    assert "SD403" not in _codes(_check(p, data=binary))


def test_sd404_learning_rate(tmp_path):
    k = keras()
    high = intensity_model(tmp_path / "hi.keras", w=1, b=0, optimizer=k.optimizers.Adam(0.5))
    f = _codes(_check(high))["SD404"]
    assert "0.5 is above" in f.title and "learning_rate=0.001" in f.snippet
    ok = intensity_model(tmp_path / "ok.keras", w=1, b=0, optimizer=k.optimizers.SGD(0.01))
    assert "SD404" not in _codes(_check(ok))


def test_sd405_nan_and_zero_weights(tmp_path):
    p = intensity_model(tmp_path / "nan.keras", w=float("nan"), b=0)
    f = _codes(_check(p))["SD405"]
    assert f.evidence["nan_values"] == 1 and "head" in f.evidence["layers"]
    k = keras()
    inputs, x = _features(k)
    model = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(x))
    conv = model.layers[1]
    conv.set_weights([np.zeros_like(w) for w in conv.get_weights()])  # a dead 3x3 layer
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(tmp_path / "zero.keras")
    assert _codes(_check(tmp_path / "zero.keras"))["SD405"].evidence["zero_kernels"] == 1
    assert "SD405" not in _codes(_check(intensity_model(tmp_path / "ok.keras", w=1.0, b=0)))


def test_sd408_encoder_decoder_without_skips_and_unet_with_skips(tmp_path):
    k = keras()
    inputs, x = _features(k)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.Conv2D(4, 3, padding="same")(x)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.UpSampling2D(4)(x)
    out = k.layers.Conv2D(1, 1, activation="sigmoid")(x)
    f = _codes(_check(_save(tmp_path, "noskip", inputs, out, optimizer="adam", loss="binary_crossentropy")))["SD408"]
    assert f.severity == Severity.INFO
    inputs, x0 = _features(k)
    x = k.layers.MaxPooling2D()(x0)
    x = k.layers.MaxPooling2D()(x)
    x = k.layers.UpSampling2D(4)(x)
    x = k.layers.Concatenate()([x, x0])
    out = k.layers.Conv2D(1, 1, activation="sigmoid")(x)
    assert "SD408" not in _codes(_check(_save(tmp_path, "skip", inputs, out, optimizer="adam", loss="binary_crossentropy")))


def test_sd402_builtin_dice_loss_on_a_linear_head(tmp_path):
    k = keras()
    p = intensity_model(tmp_path / "lin.keras", w=1, b=0, activation="linear", loss=k.losses.Dice())
    assert 'activation="sigmoid"' in _codes(_check(p))["SD402"].snippet
    ok = intensity_model(tmp_path / "sig.keras", w=1, b=0, loss=k.losses.Dice())
    assert "SD402" not in _codes(_check(ok))
