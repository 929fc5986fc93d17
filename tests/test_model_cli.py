"""check-model end to end through segdoctor.cli.main: exit codes, JSON contract, HTML, merged data/history reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from segdoctor import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_data" / "models"


def _main(tmp_path, *argv):
    out_json = tmp_path / "r.json"
    out_html = tmp_path / "r.html"
    rc = cli.main(["check-model", *map(str, argv), "--json", str(out_json), "--report", str(out_html), "-q"])
    return rc, (json.loads(out_json.read_text()) if out_json.exists() else None), out_html


def test_blank_sample_model_fails_with_json_and_html(tmp_path, capsys):
    rc, report, html = _main(tmp_path, SAMPLES / "blank_unet.keras", "--data", SAMPLES / "data")
    assert rc == 1
    assert report["schema"] == "segdoctor.report/1" and report["command"] == "check-model"
    codes = {f["code"] for f in report["findings"]}
    assert {"SD501", "SD502"} <= codes
    for f in report["findings"]:
        assert {"code", "name", "severity", "title", "evidence", "fix", "files"} <= f.keys()
    assert {c["code"] for c in report["checks"]} >= {f"SD40{i}" for i in range(1, 9)} | {f"SD50{i}" for i in range(1, 9)}
    text = html.read_text()
    assert "Worst images by Dice" in text and "blank prediction" in text and "data:image/png;base64," in text
    # the verdict speaks about a trained model, and names the root cause, not the worst symptom
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("The model predicts blank masks (SD501) because") and "(SD151)" in first_line
    assert [c["cause"] for c in report["diagnosis"]] == ["SD151"]


def test_healthy_sample_model_passes(tmp_path):
    rc, report, _ = _main(tmp_path, SAMPLES / "healthy_unet.keras", "--data", SAMPLES / "data")
    assert rc == 0 and report["summary"]["counts"]["error"] == 0
    assert report["summary"]["mean_dice"] > 0.8


def test_static_only_run_skips_prediction_checks(tmp_path):
    rc, report, _ = _main(tmp_path, SAMPLES / "healthy_unet.keras")
    assert rc == 0
    statuses = {c["code"]: c["status"] for c in report["checks"]}
    assert statuses["SD501"] == "skipped" and statuses["SD402"] == "passed"


@pytest.mark.parametrize("argv, message", [
    (["missing.keras"], "no such file"),
    ([str(SAMPLES / "healthy_unet.keras"), "--threshold", "1.5"], "--threshold"),
    ([str(SAMPLES / "healthy_unet.keras"), "--data", "no/such/dir"], "--data"),
    ([str(SAMPLES / "healthy_unet.keras"), "--custom-objects", "nope.py"], "--custom-objects"),
    ([str(SAMPLES / "healthy_unet.keras"), "--history", "no/such/log.csv"], "--history"),
])
def test_usage_and_input_errors_exit_2_with_one_line(tmp_path, capsys, argv, message):
    rc, report, _ = _main(tmp_path, *argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and report is None
    assert message in err and len(err.splitlines()) == 1


def test_unsafe_flag_warns_in_the_terminal_and_the_report(tmp_path, capsys):
    rc, report, html = _main(tmp_path, SAMPLES / "healthy_unet.keras", "--unsafe")
    assert any("safe_mode=False" in n for n in report["notes"])
    assert "safe_mode=False" in capsys.readouterr().err and "safe_mode=False" in html.read_text()


def test_history_without_the_history_module_is_a_usage_error(tmp_path, monkeypatch):
    import segdoctor.commands
    from segdoctor.commands.model import check_model
    from segdoctor.errors import UsageError

    monkeypatch.setitem(sys.modules, "segdoctor.commands.history", None)  # an import of it fails
    monkeypatch.delattr(segdoctor.commands, "history", raising=False)
    with pytest.raises(UsageError, match="segdoctor.commands.history"):
        check_model(SAMPLES / "healthy_unet.keras", history=tmp_path / "h.json")


def test_history_report_is_merged(tmp_path):
    log = tmp_path / "history.json"
    epochs = 20
    log.write_text(json.dumps({"loss": [0.7 - 0.01 * i for i in range(epochs)], "dice_coef": [0.0] * epochs,
                               "val_loss": [0.7 - 0.01 * i for i in range(epochs)], "val_dice_coef": [0.0] * epochs}))
    rc, report, html = _main(tmp_path, SAMPLES / "blank_unet.keras", "--data", SAMPLES / "data", "--history", log)
    codes = {f["code"] for f in report["findings"]}
    assert "SD605" in codes and "SD501" in codes and rc == 1
    assert "Training history" in html.read_text()


def test_data_findings_are_merged_and_linked(tmp_path):
    """With --data the dataset checks run too; a 0/255 mask encoding (SD101) is linked from the prediction findings."""
    from segdoctor.commands.model import check_model
    from tests.model_helpers import intensity_model, make_dataset

    data = make_dataset(tmp_path / "data", n=6, mask_scale=255)
    model = intensity_model(tmp_path / "m.keras", w=5.0, b=-6.0, rescale=True)  # under-confident: blank at 0.5
    report = check_model(model, data=data)
    codes = {f.code: f for f in report.findings}
    assert "SD101" in codes and "SD501" in codes
    assert "SD101" in codes["SD501"].related and "SD101" in codes["SD501"].why
    assert any(s.title == "Dataset overview" for s in report.sections)


def test_select_narrows_the_checks(tmp_path):
    rc, report, _ = _main(tmp_path, SAMPLES / "blank_unet.keras", "--data", SAMPLES / "data", "--select", "SD503")
    assert [f["code"] for f in report["findings"]] == ["SD503"] and rc == 0


def test_select_of_a_scope_this_run_does_not_cover_is_a_usage_error(tmp_path, capsys):
    rc, _, _ = _main(tmp_path, SAMPLES / "healthy_unet.keras", "--select", "SD601")  # history check, no --history
    assert rc == 2 and "--select" in capsys.readouterr().err


def test_select_data_checks_only(tmp_path):
    rc, report, _ = _main(tmp_path, SAMPLES / "blank_unet.keras", "--data", SAMPLES / "data", "--select", "SD1")
    ran = {c["code"] for c in report["checks"] if c["status"] != "skipped"}
    assert ran and all(code.startswith("SD1") for code in ran) and rc == 0
