"""`segdoctor check-history` end to end through cli.main: exit codes, JSON contract, HTML, input errors."""

from __future__ import annotations

import importlib.util
import json

import pytest


@pytest.fixture
def main(monkeypatch):
    from segdoctor import cli

    # Command modules that other branches add may be absent here; the CLI is tested with those present.
    present = tuple(m for m in cli.COMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(cli, "COMMAND_MODULES", present)
    assert "segdoctor.commands.history" in present
    return cli.main


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_error_finding_exits_1_and_writes_json_and_html(tmp_path, main, capsys):
    log = write(tmp_path, "h.json", {"loss": [0.2, 0.199, 0.2, 0.198, 0.197], "dice_coef": [0, 0, 0, 0, 0]})
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(["check-history", str(log), "--json", str(out_json), "--report", str(out_html)])
    assert rc == 1
    report = json.loads(out_json.read_text())
    assert report["schema"] == "segdoctor.report/1" and report["command"] == "check-history"
    assert report["target"] == str(log)
    codes = [f["code"] for f in report["findings"]]
    assert codes[0] == "SD605"
    first = report["findings"][0]
    assert {"code", "name", "severity", "title", "evidence", "fix", "files"} <= set(first)
    assert first["name"] == "metric-collapse" and first["severity"] == "error"
    assert {c["code"] for c in report["checks"]} == {f"SD6{i:02d}" for i in range(1, 11)}
    assert all({"code", "status", "seconds"} <= set(c) for c in report["checks"])
    html = out_html.read_text()
    assert "SD605" in html and "data:image/svg+xml;base64," in html and "Columns recognised" in html
    # a symptom with no cause in the log alone: the first line says so, and what to add
    first_line = capsys.readouterr().out.splitlines()[0]
    assert "(SD605)" in first_line and "cannot tell why" in first_line and "--data DIR" in first_line
    assert report["diagnosis"] == []


def test_healthy_log_exits_0_and_fail_on_controls_the_exit(tmp_path, main):
    log = write(tmp_path, "log.csv", "epoch,loss,val_loss\n0,1.0,1.1\n1,0.7,0.8\n2,0.5,0.6\n3,0.4,0.45\n")
    assert main(["check-history", str(log), "--report", "none"]) == 0
    # SD608 (info: still improving) is present, so --fail-on info fails
    assert main(["check-history", str(log), "--report", "none", "--fail-on", "info"]) == 1
    assert main(["check-history", str(log), "--report", "none", "--fail-on", "info", "--ignore", "SD608"]) == 0


def test_json_non_finite_values_stay_valid_json(tmp_path, main):
    log = write(tmp_path, "h.json", '{"loss": [NaN, Infinity], "val_loss": [NaN, NaN]}')
    out = tmp_path / "r.json"
    assert main(["check-history", str(log), "--report", "none", "--json", str(out)]) == 1
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    report = json.loads(out.read_text(), parse_constant=refuse)
    assert report["findings"][0]["code"] == "SD601"


def test_select_limits_the_checks(tmp_path, main):
    log = write(tmp_path, "h.json", {"loss": [float("nan")] * 2, "dice_coef": [0.0, 0.0]})
    out = tmp_path / "r.json"
    assert main(["check-history", str(log), "--report", "none", "--json", str(out), "--select", "SD605"]) == 1
    report = json.loads(out.read_text())
    assert [f["code"] for f in report["findings"]] == ["SD605"]
    assert [c["code"] for c in report["checks"]] == ["SD605"]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("empty.json", "", "the file is empty"),
        ("ragged.csv", "loss,val_loss\n0.5,0.6\n0.4\n", "line 3 has 1 fields"),
        ("words.csv", "loss,val_loss\n0.5,high\n", "non-numeric value 'high'"),
        ("ragged.json", '{"loss": [1, 2], "val_loss": [1]}', "different lengths"),
    ],
)
def test_unreadable_log_exits_2_with_one_line(tmp_path, main, capsys, name, content, expected):
    log = write(tmp_path, name, content)
    assert main(["check-history", str(log), "--report", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("segdoctor: error: ") and str(log) in err[0] and expected in err[0]


def test_missing_log_exits_2(tmp_path, main, capsys):
    assert main(["check-history", str(tmp_path / "missing.json"), "--report", "none"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_list_checks_and_explain_cover_history(main, capsys):
    assert main(["list-checks", "--scope", "history"]) == 0
    out = capsys.readouterr().out
    assert out.count("history") >= 10 and "SD603  loss-oscillation" in out
    assert main(["explain", "accuracy-trap-history"]) == 0
    assert "*Why it matters:*" in capsys.readouterr().out


def test_public_api_exposes_check_history():
    import segdoctor

    assert "check_history" in segdoctor.__all__
    from segdoctor.commands.history import check_history

    assert segdoctor.check_history is check_history


def test_with_data_uses_the_data_checks(tmp_path, main):
    if importlib.util.find_spec("segdoctor.commands.data") is None:
        pytest.skip("segdoctor.commands.data (the data checks) is not on this branch")
    from conftest import realdata_path

    data = realdata_path("membrane_isbi2012", "train")
    log = write(tmp_path, "h.json", {"loss": [0.53, 0.528, 0.529, 0.527, 0.528], "accuracy": [0.7804] * 5})
    out = tmp_path / "r.json"
    main(["check-history", str(log), "--data", str(data), "--report", "none", "--json", str(out)])
    report = json.loads(out.read_text())
    codes = {f["code"] for f in report["findings"]}
    assert any(c.startswith("SD1") for c in codes)  # the data findings (0/255 masks at least) are merged
    assert {c["code"] for c in report["checks"]} >= {f"SD6{i:02d}" for i in range(1, 11)}


def test_background_share_is_read_from_a_data_report():
    from segdoctor.commands.history import background_share_from
    from segdoctor.findings import Finding, Severity
    from segdoctor.report.model import Report

    assert background_share_from(Report("check-data", "d", facts={"background_share": 0.78})) == 0.78
    assert background_share_from(Report("check-data", "d", facts={"foreground_share": 0.05})) == pytest.approx(0.95)
    sd151 = Finding("SD151", "class-imbalance", Severity.WARNING, "t", {"foreground_share": 0.02}, "w", "f")
    assert background_share_from(Report("check-data", "d", findings=[sd151])) == pytest.approx(0.98)
    assert background_share_from(Report("check-data", "d")) is None


def test_data_path_merges_data_findings_and_uses_the_background_share(tmp_path, monkeypatch):
    """check_history(data_dir=...) with a stand-in data command: the wiring, not the data checks."""
    import sys
    import types

    from segdoctor.commands.history import check_history
    from segdoctor.findings import Finding, Severity
    from segdoctor.report.model import Report

    calls = {}
    mask_finding = Finding("SD101", "mask-0-255", Severity.ERROR, "30 of 30 masks hold only 0 and 255",
                           {"masks": 30}, "w", "f")

    def check_data(path, *, select=(), ignore=()):
        calls["args"] = (path, tuple(select), tuple(ignore))
        return Report("check-data", str(path), findings=[mask_finding], facts={"background_share": 0.78})

    stand_in = types.ModuleType("segdoctor.commands.data")
    stand_in.check_data = check_data
    monkeypatch.setitem(sys.modules, "segdoctor.commands.data", stand_in)
    log = write(tmp_path, "h.json", {"loss": [0.53, 0.528, 0.529, 0.527, 0.528, 0.526], "accuracy": [0.7804] * 6})
    report = check_history(log, data_dir=tmp_path / "data")
    assert calls["args"] == (tmp_path / "data", (), ())
    by_code = {f.code: f for f in report.findings}
    assert "SD101" in by_code  # merged
    assert "background share" in by_code["SD606"].title  # 0.7804 is what a constant prediction scores
    assert by_code["SD604"].evidence["constant_predictor_bce"] == pytest.approx(0.5269, abs=1e-3)
    assert "constant prediction" in by_code["SD604"].title
