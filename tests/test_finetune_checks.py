"""Fine-tuning checks: SD409 frozen-batchnorm, SD410 double-activation, SD509 train-inference-gap.

Real Keras fine-tuning builds: a MobileNetV2 (weights=None, 32x32, alpha 0.35) encoder with BatchNormalization
statistics estimated on other images, frozen or fine-tuned the classic wrong way and the documented way,
trained a few steps on bright discs; double activations built both ways; the clean variants stay quiet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segdoctor.findings import Severity
from tests.lr_helpers import disc_arrays, file_state, finetune_model, keras, noisy_discs, small_unet

pytestmark = pytest.mark.slow


def _check(path, **kwargs):
    from segdoctor.commands.model import check_model

    return check_model(path, **kwargs)


def _found(report, code):
    return [f for f in report.findings if f.code == code]


def _status(report, code):
    return {c.code: c for c in report.checks}[code]


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    return noisy_discs(tmp_path_factory.mktemp("discs"), n=32, contrast=130, noise=12, boundary_noise=0.0, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, discs):
    """The classic mistake and the documented recipe, each trained 40 steps and saved."""
    root = tmp_path_factory.mktemp("finetuned")
    x, y = disc_arrays(discs)
    out = {}
    for mode in ("mistake", "recipe"):
        model = finetune_model(mode)
        model.fit(x, y, epochs=10, batch_size=8, verbose=0)
        out[mode] = root / f"{mode}.keras"
        model.save(out[mode])
    return out


def _saved(tmp_path: Path, mode: str, discs: Path) -> Path:
    x, y = disc_arrays(discs)
    model = finetune_model(mode)
    model.fit(x[:8], y[:8], epochs=1, batch_size=4, verbose=0)
    path = tmp_path / f"{mode}.keras"
    model.save(path)
    return path


# ----------------------------------------------------------------------------- SD409 and SD509 on MobileNetV2


def test_frozen_backbone_with_trainable_batchnorm_fires_sd409_and_sd509(trained, discs):
    before = file_state(trained["mistake"])
    report = _check(trained["mistake"], data=discs, preprocess="unit", select=["SD409", "SD509"])
    [sd409] = _found(report, "SD409")
    assert sd409.severity == Severity.WARNING and "frozen backbone ('encoder')" in sd409.title
    assert sd409.evidence["updating_layers"] == sd409.evidence["batchnorm_layers"] == 4
    [sd509] = _found(report, "SD509")
    ev = sd509.evidence
    assert sd509.severity == Severity.ERROR and ev["dice_training_mode"] >= ev["dice_inference_mode"] + 0.2
    assert ev["statistics_restored"] is True and "SD409" in sd509.related
    assert "training=True" in sd509.snippet and "trainable = False" in sd509.snippet
    assert file_state(trained["mistake"]) == before


def test_documented_recipe_stays_quiet(trained, discs):
    report = _check(trained["recipe"], data=discs, preprocess="unit", select=["SD409", "SD509"])
    assert not report.findings
    assert _status(report, "SD409").status == "passed" and _status(report, "SD509").status == "passed"
    assert report.facts["mean_dice"] > 0.7  # the frozen pretrained statistics serve the data: a working model


def test_mode_gap_restores_the_copy_and_leaves_the_model_alone(trained, discs):
    from segdoctor.commands.model import discover_pairs
    from segdoctor.io.mode_gap import measure_mode_gap
    from segdoctor.io.model import load_model
    from segdoctor.io.model_spec import describe_model

    loaded = load_model(trained["mistake"])
    before = [w.copy() for w in loaded.model.get_weights()]
    pairs, _ = discover_pairs(discs)
    gap = measure_mode_gap(loaded, describe_model(loaded), pairs, preprocess="unit")
    assert gap.restored and gap.batchnorm_layers == 4 and gap.images == 32
    assert all(np.array_equal(a, b) for a, b in zip(before, loaded.model.get_weights()))


def test_recompute_recipe_closes_the_gap(trained, discs, tmp_path):
    import tensorflow as tf

    k = keras()
    [sd509] = _found(_check(trained["mistake"], data=discs, preprocess="unit", select=["SD509"]), "SD509")
    model = k.saving.load_model(trained["mistake"])
    x, y = disc_arrays(discs)
    namespace = {"keras": k, "model": model, "train_dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(15)}
    exec(sd509.snippet.replace('model.save("model_bn_recomputed.keras")', ""), namespace)  # noqa: S102 - the generated fix
    fixed = tmp_path / "fixed.keras"
    model.save(fixed)
    report = _check(fixed, data=discs, preprocess="unit", select=["SD509", "SD409"])
    assert not _found(report, "SD509") and not _found(report, "SD409")
    assert report.facts["mean_dice"] >= sd509.evidence["dice_training_mode"] - 0.1


def test_keras3_overrides_training_false_in_an_unfrozen_backbone(tmp_path, discs):
    k = keras()
    # what the check claims, measured on the installed Keras: fit() updates statistics behind a training=False call
    model = finetune_model("training-false")
    norm = next(layer for layer in model.get_layer("encoder").layers if isinstance(layer, k.layers.BatchNormalization))
    before = norm.moving_mean.numpy().copy()
    x, y = disc_arrays(discs)
    model.fit(x[:8], y[:8], epochs=1, batch_size=4, verbose=0)
    assert not np.array_equal(before, norm.moving_mean.numpy())
    model.save(tmp_path / "training_false.keras")
    report = _check(tmp_path / "training_false.keras", select=["SD409"])
    [f] = _found(report, "SD409")
    assert f.severity == Severity.WARNING and "training=False" in f.title and "updates their statistics" in f.title


def test_unfrozen_backbone_in_training_mode_is_info_only(tmp_path, discs):
    report = _check(_saved(tmp_path, "unfrozen", discs), select=["SD409"])
    [f] = _found(report, "SD409")
    assert f.severity == Severity.INFO and "'encoder'" in f.title and f.evidence["updating_layers"] == 4


def test_unfrozen_backbone_with_frozen_batchnorm_stays_quiet(tmp_path, discs):
    report = _check(_saved(tmp_path, "finetune-recipe", discs), select=["SD409", "SD410"])
    assert not report.findings and _status(report, "SD409").status == "passed"


def test_freeze_recipe_snippet_runs_on_the_user_model(trained, discs):
    k = keras()
    [f] = _found(_check(trained["mistake"], select=["SD409"]), "SD409")
    model = k.saving.load_model(trained["mistake"])
    exec(f.snippet, {"keras": k, "model": model})  # noqa: S102 - the generated fix
    encoder = model.get_layer("encoder")
    norms = [layer for layer in encoder.layers if isinstance(layer, k.layers.BatchNormalization)]
    assert encoder.trainable and norms and not any(layer.trainable for layer in norms)
    x, y = disc_arrays(discs)
    stats = [layer.moving_mean.numpy().copy() for layer in norms]
    model.fit(x[:8], y[:8], epochs=1, batch_size=4, verbose=0)  # fine-tuning no longer touches the statistics
    assert all(np.array_equal(s, layer.moving_mean.numpy()) for s, layer in zip(stats, norms))


def test_flat_model_frozen_convolution_before_trainable_batchnorm(tmp_path):
    k = keras()
    inputs = k.Input((16, 16, 1))
    conv = k.layers.Conv2D(4, 3, padding="same", name="pretrained_conv")
    x = k.layers.BatchNormalization(name="bn")(conv(inputs))
    outputs = k.layers.Conv2D(1, 1, activation="sigmoid")(k.layers.Activation("relu")(x))
    model = k.Model(inputs, outputs)
    conv.trainable = False
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(tmp_path / "flat.keras")
    [f] = _found(_check(tmp_path / "flat.keras", select=["SD409"]), "SD409")
    assert f.evidence["layers"] == "bn" and "part of the model" in f.title
    # the same model trained from scratch (everything trainable), and a plain U-Net with BN: no finding
    conv.trainable = True
    model.save(tmp_path / "scratch.keras")
    unet = small_unet()
    unet.compile(optimizer="adam", loss="binary_crossentropy")
    unet.save(tmp_path / "unet.keras")
    for name in ("scratch.keras", "unet.keras"):
        assert not _check(tmp_path / name, select=["SD409"]).findings


def test_statistics_never_updated_in_a_custom_loop(tmp_path):
    import tensorflow as tf

    k = keras()
    model = small_unet()
    optimizer = k.optimizers.Adam(1e-2)
    x = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 1)).astype(np.float32)
    y = (x > 128).astype(np.float32)
    for _ in range(3):  # model(x) without training=True: BN runs in inference mode, gamma/beta still get gradients
        with tf.GradientTape() as tape:
            loss = k.losses.binary_crossentropy(y, model(x))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    model.save(tmp_path / "loop.keras")
    [f] = _found(_check(tmp_path / "loop.keras", select=["SD409"]), "SD409")
    assert "initial statistics" in f.title and f.evidence["stale_layers"] == 10
    # the recipe's statistics pass fixes it
    namespace = {"keras": k, "model": model, "train_dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(4)}
    exec(f.snippet.replace('model.save("model_bn_recomputed.keras")', ""), namespace)  # noqa: S102
    model.save(tmp_path / "fixed.keras")
    assert not _check(tmp_path / "fixed.keras", select=["SD409"]).findings


def test_healthy_batchnorm_model_has_no_train_inference_gap(tmp_path, discs):
    k = keras()
    model = small_unet(channels=3, momentum=0.9)  # trained long enough for the moving statistics to settle
    model.compile(optimizer=k.optimizers.Adam(1e-2), loss="binary_crossentropy")
    x, y = disc_arrays(discs)
    model.fit(x * 255, y, epochs=15, batch_size=8, verbose=0)
    model.save(tmp_path / "healthy.keras")
    report = _check(tmp_path / "healthy.keras", data=discs, select=["SD409", "SD509"])
    assert not report.findings and _status(report, "SD509").status == "passed"
    assert report.facts["mean_dice"] > 0.7


def test_sd509_is_skipped_without_batchnorm(tmp_path, discs):
    from tests.model_helpers import intensity_model

    report = _check(intensity_model(tmp_path / "m.keras", w=20, b=-10, rescale=True), data=discs, select=["SD509"])
    assert _status(report, "SD509").status == "skipped" and "no BatchNormalization" in _status(report, "SD509").message


# ----------------------------------------------------------------------------- SD410


def _double(tmp_path, kind):
    k = keras()
    inputs = k.Input((16, 16, 1))
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    loss = "categorical_crossentropy"
    if kind == "argument":  # Conv2D(..., activation="softmax") then Activation("softmax")
        x = k.layers.Activation("softmax")(k.layers.Conv2D(2, 1, activation="softmax")(x))
    elif kind == "layer":  # a Softmax layer, a reshape, then Activation("softmax")
        x = k.layers.Softmax()(k.layers.Conv2D(2, 1)(x))
        x = k.layers.Activation("softmax")(k.layers.Reshape((16 * 16, 2))(x))
    elif kind == "nested":  # a sub-model that ends in a sigmoid, wrapped with another sigmoid
        inner = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(x), name="segmenter")
        inputs = k.Input((16, 16, 1))
        x = k.layers.Activation("sigmoid")(inner(inputs))
        loss = "binary_crossentropy"
    else:  # one softmax
        x = k.layers.Activation("softmax")(k.layers.Conv2D(2, 1)(x))
    model = k.Model(inputs, x)
    model.compile(optimizer="adam", loss=loss)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("kind, first, second, low, high", [
    ("argument", "softmax", "softmax", 0.269, 0.731),
    ("layer", "softmax", "softmax", 0.269, 0.731),
    ("nested", "sigmoid", "sigmoid", 0.5, 0.731),
])
def test_double_activation_both_ways(tmp_path, kind, first, second, low, high):
    report = _check(_double(tmp_path, kind), select=["SD410"])
    [f] = _found(report, "SD410")
    assert f.severity == Severity.ERROR
    assert (f.evidence["first_activation"], f.evidence["second_activation"]) == (first, second)
    assert (f.evidence["output_range_low"], f.evidence["output_range_high"]) == (pytest.approx(low, abs=1e-3), pytest.approx(high, abs=1e-3))
    if kind == "nested":
        assert f.evidence["first_layer"].startswith("segmenter/")
    assert "from_logits=False" in f.snippet


def test_single_activation_stays_quiet(tmp_path):
    report = _check(_double(tmp_path, "clean"), select=["SD410"])
    assert not report.findings and _status(report, "SD410").status == "passed"
