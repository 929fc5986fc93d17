"""The check registry, the runner's crash isolation, the public API and the JSON writer's validity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import segdoctor
from _synth import binary_mask, dataset
from segdoctor.checks.masks import MaskEmpty
from segdoctor.cli import main
from segdoctor.commands.data import check_data
from segdoctor.errors import UsageError
from segdoctor.findings import Finding, Severity
from segdoctor.registry import _BY_NAME, _REGISTRY, Check, all_checks, get_check, register, select_checks
from segdoctor.report.html import render_html
from segdoctor.report.json_writer import report_json, write_json
from segdoctor.report.model import Report
from segdoctor.runner import run_checks

DATA_CODES = {"SD001", "SD002", "SD003", "SD004", "SD005",
              *(f"SD10{i}" for i in range(1, 10)), "SD151", "SD152", "SD153", "SD154",
              "SD201", "SD202", "SD203", "SD251", "SD252"}


def _make(code: str, name: str, scope: str = "data"):
    return type(f"Check_{code}_{name.replace('-', '_')}", (Check,), {
        "__doc__": "A test check.", "code": code, "name": name, "severity": Severity.WARNING, "scope": scope,
        "run": lambda self, ctx: iter(()),
    })


@pytest.fixture
def clean_registry():
    """Leave the global registry as it was, whatever a test registers."""
    all_checks()
    reg, names = dict(_REGISTRY), dict(_BY_NAME)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(reg)
    _BY_NAME.clear()
    _BY_NAME.update(names)


# ---------------------------------------------------------------- registration


def test_duplicate_code_raises(clean_registry):
    with pytest.raises(ValueError, match="duplicate check code SD101"):
        register(_make("SD101", "another-check"))
    assert get_check("SD101").name == "mask-0-255"
    assert "another-check" not in _BY_NAME


def test_duplicate_name_raises(clean_registry):
    with pytest.raises(ValueError, match="duplicate check name 'mask-0-255'"):
        register(_make("SD998", "mask-0-255"))
    assert "SD998" not in _REGISTRY


@pytest.mark.parametrize("code, name, scope", [("SD1", "ok-name", "data"), ("XX101", "ok-name", "data"),
                                               ("SD997", "Not_Kebab", "data"), ("SD997", "ok-name", "galaxy")])
def test_malformed_checks_are_refused(clean_registry, code, name, scope):
    with pytest.raises(ValueError):
        register(_make(code, name, scope))
    assert "SD997" not in _REGISTRY


def test_registering_the_same_class_twice_is_harmless(clean_registry):
    cls = _make("SD996", "test-only-check")
    register(cls)
    register(cls)
    assert get_check("test-only-check") is cls


def test_every_data_check_of_the_contract_is_registered():
    codes = {c.code for c in all_checks() if c.scope == "data"}
    assert DATA_CODES <= codes
    for c in all_checks():
        assert c.summary(), c.code
        assert "Why it matters" in c.documentation() and "How to fix" in c.documentation(), c.code


# ---------------------------------------------------------------- selection


def _codes(checks) -> set[str]:
    return {c.code for c in checks}


def test_select_by_code_prefix_and_name():
    assert _codes(select_checks(["data"], ["SD101"])) == {"SD101"}
    assert _codes(select_checks(["data"], ["SD1"])) == {c for c in DATA_CODES if c.startswith("SD1")}
    assert _codes(select_checks(["data"], ["SD00"])) == {c for c in DATA_CODES if c.startswith("SD00")}
    assert _codes(select_checks(["data"], ["mask-empty", "SD004"])) == {"SD108", "SD004"}
    assert _codes(select_checks(["data"], ["MASK-EMPTY"])) == {"SD108"}
    assert _codes(select_checks(["data"], [" sd105 "])) == {"SD105"}


def test_ignore_and_select_together():
    got = _codes(select_checks(["data"], ["SD1"], ["mask-0-255", "SD105"]))
    assert got == {c for c in DATA_CODES if c.startswith("SD1")} - {"SD101", "SD105"}
    assert _codes(select_checks(["data"], (), ["SD0"])) == _codes(select_checks(["data"])) - {
        c for c in DATA_CODES if c.startswith("SD0")}


@pytest.mark.parametrize("bad", ["SD999", "SD9", "mask-zero-255", "101"])
def test_unknown_selection_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        select_checks(["data"], [bad])
    with pytest.raises(UsageError):
        select_checks(["data"], (), [bad])


def test_get_check_unknown():
    with pytest.raises(UsageError, match="list-checks"):
        get_check("nope")


# ---------------------------------------------------------------- crash isolation


class _Boom(Exception):
    pass


def _boom(self, ctx):
    raise _Boom("deliberate failure")
    yield  # pragma: no cover


def test_runner_records_a_crash_and_keeps_the_other_findings():
    class Crashing(Check):
        """Crashes."""
        code, name, severity, scope = "SD995", "crashing-check", Severity.ERROR, "data"
        run = _boom

    class Finds(Check):
        """Finds one thing."""
        code, name, severity, scope = "SD994", "finding-check", Severity.WARNING, "data"

        def run(self, ctx):
            yield self.finding(title="one thing", evidence={"n": 1}, why="w", fix="f")

    findings, statuses = run_checks([Crashing, Finds], {"data": object()})
    assert [f.code for f in findings] == ["SD994"]
    by = {s.code: s for s in statuses}
    assert by["SD995"].status == "crashed" and "_Boom: deliberate failure" in by["SD995"].message
    assert by["SD994"].status == "found"
    assert findings[0].title == "One thing"


def test_check_without_context_is_skipped():
    findings, statuses = run_checks([_make("SD993", "model-only", "model")], {"data": object()})
    assert findings == [] and statuses[0].status == "skipped"


def test_crashing_check_in_check_data_still_renders(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(MaskEmpty, "run", _boom)
    root = dataset(tmp_path / "d", [binary_mask(i, fg=255) for i in range(3)])
    report = check_data(root, jobs=1)
    status = {c.code: c for c in report.checks}
    assert status["SD108"].status == "crashed"
    assert status["SD101"].status == "found"
    html = render_html(report)
    assert "crashed" in html and "deliberate failure" in html
    data = report_json(report)
    assert {"code": "SD108", "status": "crashed"}.items() <= next(c for c in data["checks"] if c["code"] == "SD108").items()
    # through the CLI: the run still ends normally, with the crash named in the summary
    rc = main(["check-data", str(root), "--jobs", "1", "--report", str(tmp_path / "r.html"),
               "--json", str(tmp_path / "r.json")])
    assert rc == 1
    assert "check SD108 could not run" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "segdoctor.report/1"


def test_verdict_mentions_crashed_checks_when_nothing_was_found(tmp_path, monkeypatch):
    monkeypatch.setattr(MaskEmpty, "run", _boom)
    report = check_data(dataset(tmp_path / "d", [binary_mask(i) for i in range(3)]), jobs=1)
    assert report.findings == []
    assert "could not run" in report.verdict


# ---------------------------------------------------------------- public API


def test_all_is_sorted_and_resolves():
    assert segdoctor.__all__ == sorted(segdoctor.__all__)
    assert len(set(segdoctor.__all__)) == len(segdoctor.__all__)
    for name in segdoctor.__all__:
        assert getattr(segdoctor, name) is not None, name
    assert segdoctor.check_data is check_data
    assert {"Finding", "Report", "Severity", "check_data"} <= set(segdoctor.__all__)
    assert set(segdoctor.__all__) <= set(dir(segdoctor))
    with pytest.raises(AttributeError):
        getattr(segdoctor, "no_such_name")


# ---------------------------------------------------------------- JSON validity


def _strict_loads(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def test_report_json_is_strictly_valid_with_nan_inf_and_numpy(tmp_path):
    f = Finding(
        code="SD101", name="mask-0-255", severity=Severity.ERROR, title="t",
        evidence={"nan": float("nan"), "inf": float("inf"), "ninf": -math.inf, "np_nan": np.float32("nan"),
                  "np_int": np.int64(7), "np_float": np.float64(0.25), "arr": np.arange(3), "tuple": (1, 2),
                  "np_bool": np.bool_(True), 3: "int key", "obj": object.__class__},
        why="w", fix="f", files=("a.png",),
    )
    report = Report(command="check-data", target="x", findings=[f])
    path = write_json(report, tmp_path / "r.json")
    data = _strict_loads(path.read_text())
    ev = data["findings"][0]["evidence"]
    assert ev["nan"] is None and ev["np_nan"] is None
    assert ev["inf"] == "inf" and ev["ninf"] == "-inf"
    assert ev["np_int"] == 7 and ev["np_float"] == 0.25 and ev["np_bool"] is True
    assert ev["tuple"] == [1, 2] and ev["3"] == "int key"
    assert isinstance(ev["arr"], (list, str))


def test_check_data_json_is_strictly_valid(tmp_path):
    root = dataset(tmp_path / "d", [binary_mask(i, fg=255) for i in range(3)])
    (root / "masks" / "case_000.png").write_bytes(b"")
    report = check_data(root, jobs=1)
    text = json.dumps(report_json(report), allow_nan=False)
    data = _strict_loads(text)
    assert data["summary"]["counts"]["error"] >= 1


def test_select_that_selects_nothing_in_this_scope_is_a_usage_error():
    # regression: `check-data --select SD601` (a history check) ran no check and printed "No problems found."
    history = [c.code for c in all_checks() if c.scope == "history"]
    if not history:
        pytest.skip("no history checks registered")
    with pytest.raises(UsageError, match="selects none of the data checks"):
        select_checks(["data"], [history[0]])
    # ignoring another command's check is harmless
    assert _codes(select_checks(["data"], (), [history[0]])) == _codes(select_checks(["data"]))
