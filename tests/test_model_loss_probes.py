"""SD407: custom Dice/IoU functions probed with synthetic tensors, including the real buggy snippets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segdoctor.findings import Severity
from tests.conftest import realdata_path
from tests.model_helpers import keras

# Keras 2's backend functions the snippets use, mapped onto Keras 3 ops (keras.backend lost them)
K_SHIM = '''
from keras import ops as _ops

class K:
    sum = staticmethod(_ops.sum)
    abs = staticmethod(_ops.abs)
    square = staticmethod(_ops.square)
    mean = staticmethod(_ops.mean)
    flatten = staticmethod(lambda x: _ops.reshape(x, (-1,)))
'''


def snippet(number: int) -> str:
    """The python code block of snippet ``number`` in buggy_snippets.md, made importable under Keras 3."""
    text = realdata_path("buggy_snippets.md").read_text()
    section = re.search(rf"^## {number}\..*?(?=^## \d+\.|\Z)", text, re.S | re.M).group(0)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = "\n".join(line for line in code.splitlines() if "import backend as K" not in line)
    return K_SHIM + "\n" + code


def _model(tmp_path: Path, channels: int, name: str = "m") -> Path:
    k = keras()
    inputs = k.Input((32, 32, 1))
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    out = k.layers.Conv2D(channels, 1, activation="sigmoid" if channels == 1 else "softmax")(x)
    model = k.Model(inputs, out)
    model.compile(optimizer="adam", loss="binary_crossentropy" if channels == 1 else "categorical_crossentropy")
    p = tmp_path / f"{name}.keras"
    model.save(p)
    return p


def _sd407(tmp_path, code: str, channels: int):
    from segdoctor.commands.model import check_model

    src = tmp_path / f"losses_{channels}.py"
    src.write_text(code)
    report = check_model(_model(tmp_path, channels), custom_objects=[src], select=["SD407"])
    return {f.evidence["function"]: f for f in report.findings if f.code == "SD407"}


@pytest.mark.realdata
def test_snippet6_axis_minus_one_dice_on_four_classes(tmp_path):
    found = _sd407(tmp_path, snippet(6), channels=4)
    assert set(found) == {"dice_coef", "dice_coef_loss"}
    metric = found["dice_coef"]
    assert metric.severity == Severity.ERROR
    assert "background" in metric.title
    assert "last (channel) axis" in metric.evidence["behaves_like"]
    assert "axis=(1, 2)" in metric.snippet


@pytest.mark.realdata
def test_snippet6_on_one_channel_scores_a_perfect_prediction_near_zero(tmp_path):
    f = _sd407(tmp_path, snippet(6), channels=1)["dice_coef"]
    assert "perfect prediction scores Dice 0.0" in f.title


@pytest.mark.realdata
def test_snippet7_flattened_dice_with_background_channel(tmp_path):
    found = _sd407(tmp_path, snippet(7), channels=3)  # LiTS: background, liver, tumour
    f = found["dice_coef_fun_flatten"]
    assert f.severity == Severity.ERROR and "background" in f.title
    binary = _sd407(tmp_path, snippet(7), channels=1)["dice_coef_fun_flatten"]
    assert binary.severity == Severity.WARNING and "pools pixels over the batch" in binary.title


@pytest.mark.realdata
def test_snippet8_negative_dice_loss_is_not_a_defect(tmp_path):
    found = _sd407(tmp_path, snippet(8), channels=1)
    assert "dice_coef_loss" not in found  # -dice is a valid loss; its negative values are by design
    assert found["dice_coef"].severity == Severity.WARNING  # the batch-pooled metric misleads as a report


def test_compiled_custom_loss_with_wrong_axis_and_its_correction(tmp_path):
    from segdoctor.commands.model import check_model
    from segdoctor.io.model import load_custom_objects

    src = tmp_path / "losses.py"
    src.write_text(
        "from keras import ops\n"
        "def pixel_dice_loss(y_true, y_pred):\n"
        "    inter = ops.sum(y_true * y_pred, axis=-1)\n"
        "    return 1 - ops.mean(2 * inter / (ops.sum(y_true, axis=-1) + ops.sum(y_pred, axis=-1) + 1e-6))\n")
    objs = load_custom_objects([src])
    k = keras()
    inputs = k.Input((32, 32, 1))
    model = k.Model(inputs, k.layers.Conv2D(2, 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss=objs["pixel_dice_loss"])
    model.save(tmp_path / "m.keras")
    report = check_model(tmp_path / "m.keras", custom_objects=[src])
    f = next(f for f in report.findings if f.code == "SD407")
    assert f.evidence["role"] == "loss" and f.severity == Severity.ERROR
    # the corrected function passes the same probes
    fixed = tmp_path / "fixed.py"
    fixed.write_text(f.snippet)
    model.compile(optimizer="adam", loss=load_custom_objects([fixed])["pixel_dice_loss"])
    model.save(tmp_path / "fixed.keras")
    again = check_model(tmp_path / "fixed.keras", custom_objects=[fixed])
    assert not [x for x in again.findings if x.code == "SD407"]


@pytest.mark.parametrize("channels", [1, 2])
def test_smooth_term_and_missing_smooth(tmp_path, channels):
    code = (
        "from keras import ops\n"
        "def big_smooth_dice(y_true, y_pred, smooth=100.0):\n"
        "    inter = ops.sum(y_true * y_pred, axis=(1, 2))\n"
        "    d = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))\n"
        "    return ops.mean(((2 * inter + smooth) / (d + smooth))[..., -1])\n"
        "def bare_iou(y_true, y_pred):\n"
        "    inter = ops.sum(y_true * y_pred, axis=(1, 2))\n"
        "    union = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2)) - inter\n"
        "    return ops.mean((inter / union)[..., -1])\n")
    found = _sd407(tmp_path, code, channels)
    assert "smooth term dominates" in found["big_smooth_dice"].title
    assert "background" not in found["big_smooth_dice"].title
    assert "NaN" in found["bare_iou"].title


def test_unprobeable_function_is_reported_as_info(tmp_path):
    found = _sd407(tmp_path, "def broken_dice(y_true, y_pred):\n    raise ValueError('needs numpy input')\n", 1)
    assert found["broken_dice"].severity == Severity.INFO


def test_one_hot_metric_fed_integer_masks_by_a_sparse_loss(tmp_path):
    from segdoctor.commands.model import check_model

    src = tmp_path / "metrics.py"
    src.write_text(
        "from keras import ops\n"
        "def class_dice(y_true, y_pred, smooth=1e-6):\n"
        "    inter = ops.sum(y_true * y_pred, axis=(1, 2))\n"
        "    d = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))\n"
        "    dice = (2 * inter + smooth) / (d + smooth)\n"
        "    present = ops.cast(d[:, 1:] >= 0.5, dice.dtype)\n"
        "    n = ops.sum(present, -1)\n"
        "    return ops.mean(ops.where(n > 0, ops.sum(dice[:, 1:] * present, -1) / ops.maximum(n, 1.0), 1.0))\n")
    from segdoctor.io.model import load_custom_objects

    metric = load_custom_objects([src])["class_dice"]
    k = keras()
    inputs = k.Input((32, 32, 1))
    model = k.Model(inputs, k.layers.Conv2D(3, 1, activation="softmax")(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=[metric])
    model.save(tmp_path / "sparse.keras")
    report = check_model(tmp_path / "sparse.keras", custom_objects=[src], select=["SD407"])
    f = next(f for f in report.findings if f.code == "SD407")
    assert "integer masks" in f.title and "ops.one_hot" in f.snippet
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=[metric])
    model.save(tmp_path / "onehot.keras")
    assert not check_model(tmp_path / "onehot.keras", custom_objects=[src], select=["SD407"]).findings
