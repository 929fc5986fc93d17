"""check-model end to end through segdoctor.cli.main: exit codes, JSON contract, HTML, merged data/history reports."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from segdoctor import cli
from segdoctor.findings import Finding, Severity
from segdoctor.report.model import Report
from segdoctor.runner import CheckStatus

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
    assert "Not ready" in capsys.readouterr().out


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


def test_history_flag_without_the_history_module_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "segdoctor.commands.history", None)  # an import of it fails
    rc, _, _ = _main(tmp_path, SAMPLES / "healthy_unet.keras", "--history", tmp_path / "h.json")
    assert rc == 2 and "segdoctor.commands.history" in capsys.readouterr().err


def test_history_report_is_merged(tmp_path, monkeypatch):
    fake = types.ModuleType("segdoctor.commands.history")

    def check_history(path):
        f = Finding("SD605", "metric-collapse", Severity.ERROR, "Dice stays at 0.00 for 30 epochs", {"epochs": 30}, "why", "fix")
        return Report(command="check-history", target=str(path), findings=[f],
                      checks=[CheckStatus("SD605", "metric-collapse", "found", 0.0)])

    fake.check_history = check_history
    monkeypatch.setitem(sys.modules, "segdoctor.commands.history", fake)
    import segdoctor.commands

    monkeypatch.setattr(segdoctor.commands, "history", fake, raising=False)
    rc, report, _ = _main(tmp_path, SAMPLES / "healthy_unet.keras", "--history", tmp_path / "h.json")
    assert rc == 1 and "SD605" in {f["code"] for f in report["findings"]}


def test_data_findings_are_merged_and_linked(tmp_path, monkeypatch):
    """With --data the dataset checks' findings join the report, and the prediction findings point at them."""
    calls = {}
    fake = types.ModuleType("segdoctor.commands.data")

    def check_data(path, *, images=None, masks=None, mask_pattern=None, num_classes=None, select=(), ignore=(),
                   jobs=None, sample=None, progress=None):
        calls["path"] = Path(path)
        f = Finding("SD151", "class-imbalance", Severity.WARNING, "Foreground is 1.2% of the pixels", {"share": 0.012}, "why", "fix")
        return Report(command="check-data", target=str(path), findings=[f],
                      checks=[CheckStatus("SD151", "class-imbalance", "found", 0.0)])

    fake.check_data = check_data
    monkeypatch.setitem(sys.modules, "segdoctor.commands.data", fake)
    from segdoctor.commands.model import check_model

    report = check_model(SAMPLES / "blank_unet.keras", data=SAMPLES / "data")
    assert calls["path"] == SAMPLES / "data"
    codes = {f.code: f for f in report.findings}
    assert "SD151" in codes and "SD151" in codes["SD501"].related and "SD151" in codes["SD501"].why


def test_select_narrows_the_checks(tmp_path):
    rc, report, _ = _main(tmp_path, SAMPLES / "blank_unet.keras", "--data", SAMPLES / "data", "--select", "SD503")
    assert [f["code"] for f in report["findings"]] == ["SD503"] and rc == 0
