"""check-model on the real ISBI 2012 membrane data (../shared/realdata; skipped when absent)."""

from __future__ import annotations

import pytest

from tests.conftest import realdata_path
from tests.model_helpers import intensity_model

pytestmark = pytest.mark.realdata


def test_constant_membrane_model_reproduces_the_accuracy_078_reports(tmp_path):
    """zhixuhao/unet#148 and friends: a collapsed U-Net outputs one grey level; accuracy equals the
    78% white share of the labels. The masks are {0, 255} (SD101) and 512x512 against a 256x256 model."""
    from segdoctor.commands.model import check_model

    data = realdata_path("membrane_isbi2012", "train")
    model = intensity_model(tmp_path / "constant.keras", w=0.0, b=1.3, rescale=True, size=256)  # sigmoid(1.3) = 0.786
    report = check_model(model, data=data, sample=6)
    found = {f.code: f for f in report.findings}
    assert "SD505" in found and "SD101" in found
    assert "SD101" in found["SD505"].related
    assert found["SD505"].evidence["output_is_class_prior"] is True  # 0.786 against 78% white pixels
    section = next(s for s in report.sections if s.title == "Predictions on the data")
    facts = dict(section.facts)
    assert facts["pixel accuracy"] == pytest.approx(0.78, abs=0.03)
    assert "resized from e.g. 512x512 to the model's input 256x256" in section.text
    # the foreground (white cell interior) is the majority here: Dice is high, so no accuracy trap and no collapse
    assert "SD503" not in found and "SD502" not in found
