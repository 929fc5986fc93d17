"""Loading model files: safe mode, custom objects, one-line errors, and no TensorFlow for --help."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from segdoctor.errors import ModelLoadError, UsageError
from tests.model_helpers import intensity_model, keras

REPO = Path(__file__).resolve().parent.parent

LOSSES = '''
from keras import ops

def region_dice(y_true, y_pred, smooth=1e-6):
    inter = ops.sum(y_true * y_pred, axis=(1, 2))
    denom = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
    return ops.mean((2.0 * inter + smooth) / (denom + smooth))

def region_dice_loss(y_true, y_pred):
    return 1.0 - region_dice(y_true, y_pred)
'''


def _custom_model(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "losses.py"
    src.write_text(LOSSES)
    from segdoctor.io.model import load_custom_objects

    objs = load_custom_objects([src])
    k = keras()
    inputs = k.Input((16, 16, 1))
    model = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile(optimizer="adam", loss=objs["region_dice_loss"], metrics=[objs["region_dice"]])
    path = tmp_path / "custom.keras"
    model.save(path)
    return path, src


def test_help_and_check_data_do_not_import_tensorflow():
    code = ("import sys, contextlib, io\nimport segdoctor.cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        segdoctor.cli.main(['--help'])\n    except SystemExit:\n        pass\n"
            "    try:\n        segdoctor.cli.main(['check-model', '--help'])\n    except SystemExit:\n        pass\n"
            "    segdoctor.cli.main(['check-data', 'sample_data/models/data', '--report', 'none', '-q', '--jobs', '1'])\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_missing_file(tmp_path):
    from segdoctor.io.model import load_model

    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "nope.keras")


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"not a model at all", "not a Keras model"),
    (b"PK\x03\x04garbage", "corrupt zip"),
])
def test_corrupt_files(tmp_path, content, message):
    from segdoctor.io.model import load_model

    p = tmp_path / "bad.keras"
    p.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as exc:
        load_model(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


def test_zip_without_config_and_weights_only_h5(tmp_path):
    from segdoctor.io.model import load_model

    z = tmp_path / "other.keras"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelLoadError, match="without config.json"):
        load_model(z)
    k = keras()
    inputs = k.Input((8, 8, 1))
    m = k.Model(inputs, k.layers.Conv2D(1, 1)(inputs))
    w = tmp_path / "w.weights.h5"
    m.save_weights(w)
    with pytest.raises(ModelLoadError, match="weights only"):
        load_model(w)


def test_lambda_layer_refused_in_safe_mode_and_loaded_with_unsafe(tmp_path):
    from segdoctor.io.model import load_model

    k = keras()
    inputs = k.Input((8, 8, 1))
    m = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(k.layers.Lambda(lambda t: t * 2.0)(inputs)))
    p = tmp_path / "lambda.keras"
    m.save(p)
    with pytest.raises(ModelLoadError, match="--unsafe") as exc:
        load_model(p)
    assert "Lambda" in str(exc.value)
    loaded = load_model(p, unsafe=True)
    assert loaded.unsafe and any("safe_mode=False" in n for n in loaded.notes)


def test_legacy_h5_loads(tmp_path):
    from segdoctor.io.model import load_model
    from segdoctor.io.model_spec import describe_model

    k = keras()
    inputs = k.Input((8, 8, 1))
    m = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    m.compile(optimizer=k.optimizers.Adam(1e-3), loss="binary_crossentropy")
    p = tmp_path / "legacy.h5"
    m.save(p)
    loaded = load_model(p)
    spec = describe_model(loaded)
    assert loaded.format == "h5" and spec.head_activation == "sigmoid" and spec.loss.family == "binary_ce"


def test_unknown_custom_objects_load_uncompiled_and_sd406_names_them(tmp_path):
    from segdoctor.commands.model import check_model

    path, src = _custom_model(tmp_path)
    report = check_model(path)
    sd406 = [f for f in report.findings if f.code == "SD406"]
    assert len(sd406) == 1
    assert "region_dice_loss" in sd406[0].title and "region_dice" in sd406[0].evidence["missing"]
    assert "--custom-objects" in sd406[0].fix
    fixed = check_model(path, custom_objects=[src])
    assert not [f for f in fixed.findings if f.code == "SD406"]
    sd407 = {c.code: c.status for c in fixed.checks}["SD407"]
    assert sd407 == "passed"  # the probes ran on a correct per-image Dice and found nothing


def test_custom_objects_file_errors(tmp_path):
    from segdoctor.io.model import load_custom_objects

    with pytest.raises(UsageError, match="no such file"):
        load_custom_objects([tmp_path / "missing.py"])
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UsageError, match="boom"):
        load_custom_objects([bad])


def test_model_spec_reads_head_loss_and_optimizer(tmp_path):
    from segdoctor.io.model import load_model
    from segdoctor.io.model_spec import describe_model

    k = keras()
    p = intensity_model(tmp_path / "m.keras", w=1.0, b=0.0, rescale=True, optimizer=k.optimizers.SGD(0.05),
                        loss=k.losses.BinaryCrossentropy(from_logits=True))
    spec = describe_model(load_model(p))
    assert spec.head_activation == "sigmoid" and spec.head_layer == "head"
    assert spec.loss.from_logits is True and spec.optimizer == "SGD"
    assert spec.learning_rate == pytest.approx(0.05)
    assert spec.input_scaling.startswith("Rescaling") and spec.input_size == (32, 32)
    assert not spec.weight_problems and np.isfinite(spec.n_params)


def test_custom_layer_needs_its_module(tmp_path):
    from segdoctor.io.model import load_custom_objects, load_model

    src = tmp_path / "layers_def.py"
    src.write_text(
        "import keras\n"
        "class Doubler(keras.layers.Layer):\n"
        "    def call(self, x):\n"
        "        return x * 2.0\n")
    Doubler = load_custom_objects([src])["Doubler"]
    k = keras()
    inputs = k.Input((8, 8, 1))
    model = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid")(Doubler()(inputs)))
    model.save(tmp_path / "layer.keras")
    with pytest.raises(ModelLoadError, match="Doubler.*--custom-objects"):
        load_model(tmp_path / "layer.keras")
    loaded = load_model(tmp_path / "layer.keras", custom_objects=load_custom_objects([src]))
    assert any(type(layer).__name__ == "Doubler" for layer in loaded.model.layers)
    assert loaded.compiled is False  # it was saved without compile()
