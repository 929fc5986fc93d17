"""Prediction checks SD501-SD508 on hand-set intensity models over generated datasets (no training needed)."""

from __future__ import annotations

import numpy as np
import pytest

from segdoctor.findings import Severity
from tests.model_helpers import intensity_model, make_dataset, three_class_model

# sigmoid(w * x + b) on x = intensity / 255: bright objects at 0.78, background at 0.2
HEALTHY = dict(w=20.0, b=-10.0)  # objects ~0.997, background ~0.002
UNDERCONFIDENT = dict(w=5.0, b=-6.0)  # objects ~0.10, background ~0.007: ranked right, nothing above 0.5
CONSTANT = dict(w=0.0, b=-4.0)  # 0.018 everywhere
OVERSEGMENTING = dict(w=20.0, b=-1.0)  # background ~0.95


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), n=12)


def _run(tmp_path, data, weights, **kwargs):
    from segdoctor.commands.model import check_model

    model = intensity_model(tmp_path / "m.keras", rescale=True, **weights)
    return check_model(model, data=data, **kwargs)


def _predictions_section(report):
    return next(s for s in report.sections if s.title == "Predictions on the data")


def _found(report):
    return {f.code: f for f in report.findings}


def test_healthy_model_passes_every_prediction_check(tmp_path, data):
    report = _run(tmp_path, data, HEALTHY)
    assert not [f for f in report.findings if f.code.startswith("SD5")]
    statuses = {c.code: c.status for c in report.checks}
    assert all(statuses[f"SD50{i}"] == "passed" for i in range(1, 9))
    assert report.facts["mean_dice"] > 0.9
    section = _predictions_section(report)
    assert {f.kind for f in section.figures} == {"histogram", "lines", "arrays"}


def test_underconfident_model_blank_collapse_trap_and_threshold(tmp_path, data):
    found = _found(_run(tmp_path, data, UNDERCONFIDENT))
    assert found["SD501"].severity == Severity.ERROR
    assert found["SD501"].evidence["blank_images"] == 12 and len(found["SD501"].files) == 12
    assert "SD502" in found and "SD503" in found
    sd504 = found["SD504"]
    assert sd504.evidence["dice_at_best_threshold"] > 0.9 and sd504.evidence["dice_rank_based"] > 0.9
    assert sd504.evidence["best_threshold"] < 0.27
    assert "SD505" not in found  # the output still follows the input


def test_constant_output(tmp_path, data):
    found = _found(_run(tmp_path, data, CONSTANT))
    assert found["SD505"].severity == Severity.ERROR
    assert found["SD505"].evidence["across_image_std"] < 1e-3
    assert "SD504" not in found  # nothing is ranked: a threshold cannot help
    saturated = _found(_run(tmp_path, data, dict(w=0.0, b=3.0)))["SD505"]  # 0.95 everywhere: a dead, saturated network
    assert saturated.evidence["output_is_class_prior"] is False and "learning rate" in saturated.fix


def test_over_segmentation(tmp_path, data):
    found = _found(_run(tmp_path, data, OVERSEGMENTING))
    f = found["SD508"]
    assert f.evidence["predicted_foreground_share"] > 0.9 and f.evidence["dice_at_best_threshold"] > 0.9


def test_input_scale_mismatch_only_when_preprocess_is_fixed(tmp_path, data):
    from segdoctor.commands.model import check_model

    # trained on /255 inputs without a Rescaling layer; the user feeds raw values
    model = intensity_model(tmp_path / "m.keras", rescale=False, **HEALTHY)
    found = _found(check_model(model, data=data, preprocess="none"))
    f = found["SD507"]
    assert f.evidence["best"] == "unit" and f.evidence["dice_best"] > f.evidence["dice_chosen"] + 0.5
    right = check_model(model, data=data, preprocess="unit")
    assert "SD507" not in _found(right)
    auto = check_model(model, data=data)
    assert auto.facts["preprocess"] == "unit" and auto.facts["mean_dice"] > 0.9


def test_auto_preprocess_trusts_a_rescaling_layer(tmp_path, data):
    report = _run(tmp_path, data, HEALTHY)
    assert report.facts["preprocess"] == "none"
    assert "Rescaling" in _predictions_section(report).text


def test_resizing_to_the_model_input_is_reported(tmp_path):
    from segdoctor.commands.model import check_model

    big = make_dataset(tmp_path / "big", n=4, size=64)
    model = intensity_model(tmp_path / "m.keras", rescale=True, **HEALTHY)
    report = check_model(model, data=big)
    assert "resized from e.g. 64x64 to the model's input 32x32" in _predictions_section(report).text
    assert report.facts["mean_dice"] > 0.8


def test_class_never_predicted(tmp_path):
    from segdoctor.commands.model import check_model

    data = make_dataset(tmp_path / "mc", n=8, multiclass=True)
    missing = _found(check_model(three_class_model(tmp_path / "no2.keras", predict_class_2=False), data=data))
    f = missing["SD506"]
    assert f.evidence["never_predicted"] == [2] and "class_weights" in f.snippet
    ok = check_model(three_class_model(tmp_path / "all.keras", predict_class_2=True), data=data)
    assert "SD506" not in _found(ok)
    table = _predictions_section(ok).tables[0]
    assert [row[0] for row in table.rows] == [0, 1, 2] and min(row[4] for row in table.rows) > 0.8


def test_sample_and_threshold_options(tmp_path, data):
    report = _run(tmp_path, data, UNDERCONFIDENT, sample=5, threshold=0.05)
    assert report.facts["pairs_evaluated"] == 5 and report.facts["pairs_found"] == 12
    assert "SD501" not in _found(report)  # at 0.05 the under-confident model finds the objects


def test_logit_head_is_squashed_and_said_so(tmp_path, data):
    from segdoctor.commands.model import check_model
    from tests.model_helpers import keras

    k = keras()
    model = intensity_model(tmp_path / "logits.keras", rescale=True, activation="linear",
                            loss=k.losses.BinaryCrossentropy(from_logits=True), **HEALTHY)
    report = check_model(model, data=data)
    assert "applying a sigmoid to the logits" in _predictions_section(report).text
    assert report.facts["mean_dice"] > 0.9 and not [f for f in report.findings if f.code.startswith("SD5")]


def test_multiclass_report_serialises_to_json(tmp_path):
    import json

    from segdoctor.commands.model import check_model
    from segdoctor.report.json_writer import write_json

    data = make_dataset(tmp_path / "mc", n=4, multiclass=True)
    report = check_model(three_class_model(tmp_path / "no2.keras", predict_class_2=False), data=data)
    out = json.loads(write_json(report, tmp_path / "r.json").read_text())
    assert "SD506" in {f["code"] for f in out["findings"]}


def test_free_size_encoder_decoder_gets_padded_inputs(tmp_path):
    from segdoctor.commands.model import check_model
    from tests.model_helpers import keras

    k = keras()
    inputs = k.Input((None, None, 1))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    skip = k.layers.Conv2D(1, 1, name="pixel")(x)
    y = k.layers.MaxPooling2D()(skip)
    y = k.layers.MaxPooling2D()(y)
    y = k.layers.UpSampling2D(4)(y)
    z = k.layers.Concatenate()([skip, y])
    conv = k.layers.Conv2D(1, 1, activation="sigmoid", name="head")
    model = k.Model(inputs, conv(z))
    model.get_layer("pixel").set_weights([np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)])
    conv.set_weights([np.array([[[[20.0], [0.0]]]], np.float32), np.array([-10.0], np.float32)])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(tmp_path / "free.keras")
    data = make_dataset(tmp_path / "odd", n=4, size=30)  # 30 is not a multiple of 4
    report = check_model(tmp_path / "free.keras", data=data)
    assert "4 image(s) were padded" in _predictions_section(report).text
    assert report.facts["mean_dice"] > 0.9


def test_void_label_255_in_binary_masks_is_ignored(tmp_path):
    from PIL import Image
    from scipy.ndimage import binary_dilation

    from segdoctor.commands.model import check_model

    data = make_dataset(tmp_path / "void", n=4)
    for path in (data / "masks").glob("*.png"):
        m = np.array(Image.open(path))
        ring = binary_dilation(m > 0, iterations=2) & (m == 0)
        m[ring] = 255  # VOC-style void border around each object
        Image.fromarray(m).save(path)
    model = intensity_model(tmp_path / "m.keras", rescale=True, **HEALTHY)
    report = check_model(model, data=data)
    assert report.facts["mean_dice"] > 0.95  # the ring counts neither as object nor as background
