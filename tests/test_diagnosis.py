"""The diagnosis table (segdoctor/diagnosis/links.py) and its evaluation on findings built by hand.

Every link is exercised: it explains its effect when its conditions hold, and not when one fails.
The end-to-end failure chains (real models, data and logs) are in test_diagnosis_chains.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from segdoctor import diagnosis as dx
from segdoctor.cli import main
from segdoctor.findings import Finding, Severity
from segdoctor.registry import all_checks, get_check
from segdoctor.report.model import Report

REPO = Path(__file__).resolve().parent.parent

# For every condition: evidence (by the code of the finding that measures it), facts and other findings of the
# run that make it hold, and that make it fail. A new condition needs a case here (a test says so).
CASES: dict[str, tuple[dict, dict]] = {
    "plain-ce-loss": ({"facts": {"loss": "binary_crossentropy", "loss_family": "binary_ce"}},
                      {"facts": {"loss": "bce_dice_loss", "loss_family": "custom"}}),
    "binary-loss": ({"facts": {"loss": "binary_crossentropy", "loss_family": "binary_ce"}},
                    {"facts": {"loss": "sparse_categorical_crossentropy", "loss_family": "sparse_ce"}}),
    "sparse-loss": ({"facts": {"loss": "sparse_categorical_crossentropy", "loss_family": "sparse_ce"}},
                    {"facts": {"loss": "binary_crossentropy", "loss_family": "binary_ce"}}),
    "class-prior-output": ({"SD505": {"output_is_class_prior": True}}, {"SD505": {"output_is_class_prior": False}}),
    "collapse-blank": ({"SD605": {"fits": "blank"}}, {"SD605": {"fits": "everything-foreground"}}),
    "collapse-all-foreground": ({"SD605": {"fits": "everything-foreground"}}, {"SD605": {"fits": "blank"}}),
    "collapse-after-rise": ({"SD605": {"kind": "fell"}}, {"SD605": {"kind": "throughout"}}),
    "collapse-throughout": ({"SD605": {"kind": "flat"}}, {"SD605": {"kind": "fell"}}),
    "lr-high": ({"SD404": {"learning_rate": 0.5, "range_low": 1e-7, "range_high": 1e-2}},
                {"SD404": {"learning_rate": 1e-9, "range_low": 1e-7, "range_high": 1e-2}}),
    "lr-high-in-log": ({"SD404": {"learning_rate": 0.5, "range_low": 1e-7, "range_high": 1e-2}, "facts": {"log_learning_rate_max": 0.5}},
                       {"SD404": {"learning_rate": 0.5, "range_low": 1e-7, "range_high": 1e-2}, "facts": {"log_learning_rate_max": 1e-3}}),
    "lr-low-in-log": ({"SD404": {"learning_rate": 1e-9, "range_low": 1e-7, "range_high": 1e-2}, "facts": {"log_learning_rate_max": 1e-9}},
                      {"SD404": {"learning_rate": 1e-9, "range_low": 1e-7, "range_high": 1e-2}, "facts": {"log_learning_rate_max": 1e-3}}),
    "nan-images": ({"SD202": {"with_nonfinite": 2}}, {"SD202": {"with_nonfinite": 0}}),
    "measured-lr-high": ({"SD451": {"saved_lr_position": "beyond-blowup"}}, {"SD451": {"saved_lr_position": "inside"}}),
    "measured-lr-low": ({"SD451": {"saved_lr_position": "above", "history_lr_highest_position": "below"}},
                        {"SD451": {"saved_lr_position": "below", "history_lr_highest_position": "inside"}}),
    "double-sigmoid": ({"SD410": {"output_range_low": 0.5}}, {"SD410": {"output_range_low": 0.09}}),
    "output-near-one": ({"SD505": {"mean_probability": 0.99}}, {"SD505": {"mean_probability": 0.02}}),
    "one-hot-zero-rows": ({"SD303": {"zero_row_pixels": 120}}, {"SD303": {"zero_row_pixels": 0}}),
    "same-files": ({"same_files": True}, {"same_files": False}),
    "most-masks-empty": ({"SD108": {"share": 0.8}}, {"SD108": {"share": 0.1}}),
    "many-pairs": ({"SD251": {"suspect_pairs": 5, "pairs_checked": 10}}, {"SD251": {"suspect_pairs": 1, "pairs_checked": 10}}),
    "nan-from-start": ({"SD601": {"from_first_epoch": True}}, {"SD601": {"from_first_epoch": False}}),
    "nan-after-training": ({"SD601": {"from_first_epoch": False}}, {"SD601": {"from_first_epoch": True}}),
    "metric-defect": ({"SD407": {"treated_as": "metric"}}, {"SD407": {"treated_as": "loss"}}),
    "loss-defect": ({"SD407": {"treated_as": "loss"}}, {"SD407": {"treated_as": "metric"}}),
    "not-everywhere": ({}, {"present": ["SD508"]}),
    "high-accuracy": ({"SD606": {"accuracy": 0.97}}, {"SD606": {"accuracy": 0.0}}),
    "frozen-accuracy": ({"SD610": {"kind": "accuracy"}}, {"SD610": {"kind": "dice"}}),
    "tiny-objects": ({"present": ["SD152"]}, {}),
    "plateau-at-prior": ({"SD604": {"at_constant_predictor": True}}, {"SD604": {"at_constant_predictor": False}}),
}


def finding(code: str, evidence: dict | None = None, *, files=(), severity: Severity | None = None, title: str = "") -> Finding:
    cls = get_check(code)
    return Finding(code=code, name=cls.name, severity=cls.severity if severity is None else severity,
                   title=title or f"{cls.name} found", evidence=dict(evidence or {}), why="because", fix=f"fix {code}",
                   snippet=f"# code for {code}", files=tuple(files))


def _merge(case: dict, into: dict) -> None:
    for key, value in case.items():
        if isinstance(value, dict):
            into.setdefault(key, {}).update(value)
        elif isinstance(value, list):
            into.setdefault(key, []).extend(value)
        else:
            into[key] = value


def build(link: dx.Link, *, failing: str | None = None) -> tuple[list[Finding], dict, Finding, Finding]:
    """The cause and the effect of ``link`` with evidence that makes every condition hold (``failing``: that one fails)."""
    spec: dict = {}
    for c in link.conditions:
        holds, fails = CASES[c.name]
        _merge(fails if c.name == failing else holds, spec)
    codes = {link.cause, link.effect}
    for key in spec:
        if key.startswith("SD"):
            assert key in codes, f"condition evidence for {key} on link {link.cause} → {link.effect}: that finding is not part of it"
    files = ("masks/a.png",)
    cause = finding(link.cause, spec.get(link.cause), files=files)
    effect = finding(link.effect, spec.get(link.effect), files=files if spec.get("same_files", True) else ("masks/b.png",))
    others = [finding(code) for code in spec.get("present", []) if code not in codes]
    return [cause, effect, *others], spec.get("facts", {}), cause, effect


# --- the table ----------------------------------------------------------------------------------------


def test_every_code_in_the_table_is_registered():
    registered = {c.code for c in all_checks()}
    named = {code for link in dx.LINKS for code in (link.cause, link.effect)}
    named |= set(dx.SYMPTOMS) | set(dx.LABELS) | set(dx.HEADLINES) | set(dx.ANSWERED_IN_TRAINING)
    assert named <= registered, sorted(named - registered)


def test_every_condition_exists_and_has_a_case():
    for link in dx.LINKS:
        assert link.conditions or not link.when  # unknown names raise KeyError here
    used = {c.name for link in dx.LINKS for c in link.conditions}
    assert used <= set(CASES), f"give these conditions a case in CASES: {sorted(used - set(CASES))}"
    assert set(CONDITION_NAMES) == set(CASES)


CONDITION_NAMES = list(dx.CONDITIONS)


def test_links_are_unique_and_form_no_cycle():
    pairs = [(lk.cause, lk.effect) for lk in dx.LINKS]
    assert len(pairs) == len(set(pairs)), "a (cause, effect) pair is declared twice"
    assert all(a != b for a, b in pairs)
    graph: dict[str, set[str]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("cycle: " + " → ".join([*path, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph.get(node, ()):
            visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        visit(node, [])


def test_symptoms_never_lead_and_causes_are_not_symptoms():
    # a symptom may explain other symptoms, never a defect to fix
    for link in dx.LINKS:
        if link.cause in dx.SYMPTOMS:
            assert link.effect in dx.SYMPTOMS, f"{link.cause} (a symptom) explains {link.effect}, which is not one"


@pytest.mark.parametrize("name", CONDITION_NAMES)
def test_condition_cases_hold_and_fail(name):
    link = next(lk for lk in dx.LINKS if name in {c.name for c in lk.conditions})
    for failing, expected in ((None, True), (name, False)):
        findings, facts, cause, effect = build(link, failing=failing)
        assert dx.CONDITIONS[name].test(dx.Run(findings, facts), cause, effect) is expected, (name, failing)


@pytest.mark.parametrize("link", dx.LINKS, ids=lambda lk: f"{lk.cause}-{lk.effect}")
def test_every_link_explains_its_effect_when_its_conditions_hold(link):
    findings, facts, cause, effect = build(link)
    d = dx.diagnose(findings, facts)
    assert link.cause in d.explainers(effect), f"{link.cause} should explain {link.effect}"
    for c in link.conditions:
        findings, facts, cause, effect = build(link, failing=c.name)
        d = dx.diagnose(findings, facts)
        assert link.cause not in d.explainers(effect), f"{link.cause} → {link.effect} should be off when '{c.name}' fails"


@pytest.mark.parametrize("link", [lk for lk in dx.LINKS if lk.conditions], ids=lambda lk: f"{lk.cause}-{lk.effect}")
def test_a_condition_the_run_cannot_check_keeps_the_link_at_medium_confidence(link):
    # with no facts and no evidence, a condition cannot tell: the link stays, the confidence drops
    cause, effect = finding(link.cause, files=("masks/a.png",)), finding(link.effect, files=("masks/a.png",))
    findings = [cause, effect]
    state, unknown = link.state(dx.Run(findings), cause, effect)
    if state is None:
        d = dx.diagnose(findings)
        assert link.cause in d.explainers(effect)
        if link.cause not in dx.SYMPTOMS:  # a symptom is never a root cause, so it has no confidence
            root = d.cause_of(effect)
            assert root is not None and root.confidence == "medium" and root.unchecked


# --- evaluation ------------------------------------------------------------------------------------------


def test_a_healthy_run_has_no_diagnosis():
    report = Report(command="check-model", target="m.keras", facts={"mean_dice": 0.88},
                    findings=[finding("SD151"), finding("SD152"), finding("SD608")])
    assert not report.diagnosis and report.to_json()["diagnosis"] == []
    assert report.verdict == "The model works on this data: mean Dice 0.88, with 2 warning(s) likely to hurt results."
    assert not Report(command="check-data", target="d").diagnosis


def test_root_cause_ranks_by_what_it_explains_and_leads_the_findings():
    facts = {"loss": "binary_crossentropy", "loss_family": "binary_ce"}
    findings = [finding("SD501"), finding("SD502"), finding("SD503"), finding("SD154"),
                finding("SD151", title="Foreground is 1.2% of the pixels"),
                finding("SD505", {"output_is_class_prior": True}), finding("SD152")]
    d = dx.diagnose(findings, facts)
    assert [c.code for c in d.causes] == ["SD151", "SD154"]  # the warning that explains four findings leads the error that explains none
    top = d.causes[0]
    assert top.explained_codes == ["SD505", "SD501", "SD502", "SD503"] and top.confidence == "high"
    assert top.chain.startswith("rare foreground (SD151) → plain cross-entropy is lowest when every pixel gets the class prior "
                                "→ constant output (SD505) → blank predictions (SD501)")
    assert [f.code for f in d.findings] == ["SD151", "SD505", "SD501", "SD502", "SD503", "SD154", "SD152"]
    assert d.explainers(findings[0]) == ("SD151", "SD505")
    report = Report(command="check-model", target="m.keras", findings=findings, facts=facts)
    assert report.verdict == ("The model predicts blank masks (SD501) because foreground is 1.2% of the pixels (SD151), "
                              "and the loss is plain cross-entropy (binary_crossentropy). 1 more cause below.")
    doc = report.to_json()
    assert [f["code"] for f in doc["findings"]][:2] == ["SD151", "SD505"]
    assert doc["diagnosis"][0]["cause"] == "SD151" and doc["diagnosis"][0]["explains"] == ["SD505", "SD501", "SD502", "SD503"]
    assert doc["diagnosis"][0]["fix"] == "fix SD151"


def test_the_same_symptoms_without_the_loss_known_are_medium_and_with_an_overlap_loss_unexplained():
    findings = [finding("SD501"), finding("SD151")]
    assert dx.diagnose(findings).causes[0].confidence == "medium"
    d = dx.diagnose(findings, {"loss": "dice_bce", "loss_family": "custom"})
    assert not d.causes and d.unexplained == (findings[0],)
    report = Report(command="check-model", target="m.keras", findings=findings, inputs={"model": "m.keras"},
                    facts={"loss": "dice_bce", "loss_family": "custom"})
    assert "(SD501)" in report.verdict and "cannot tell why" in report.verdict and "--data DIR" in report.verdict


def test_a_symptom_is_never_the_root_cause():
    d = dx.diagnose([finding("SD605", {"kind": "throughout", "fits": "unknown"}), finding("SD604")])
    assert not d.causes and [f.code for f in d.unexplained] == ["SD605"]
    report = Report(command="check-history", target="log.csv", findings=list(d.findings), inputs={"history": "log.csv"})
    assert report.verdict.startswith("metric-collapse found (SD605)") and "cannot tell why: add --data DIR" in report.verdict


def test_a_cause_whose_findings_a_higher_cause_explains_is_low():
    facts = {"loss": "binary_crossentropy", "loss_family": "binary_ce"}
    findings = [finding("SD101", files=["masks/a.png"]), finding("SD609"), finding("SD508"), finding("SD502"),
                finding("SD151")]
    d = dx.diagnose(findings, facts)
    assert d.causes[0].code == "SD101" and set(d.causes[0].explained_codes) == {"SD609", "SD508", "SD502"}
    # SD151 -> SD502 needs predictions that are not foreground everywhere: SD508 says they are
    assert all(c.code != "SD151" for c in d.causes)


def test_independent_defects_are_all_causes_ranked_by_reach():
    findings = [finding("SD001", files=["images/x.png"]), finding("SD101", files=[f"masks/{i}.png" for i in range(12)]),
                finding("SD002", files=["images/y.png"])]
    d = dx.diagnose(findings, command="check-data", inputs={"data": "my data"})
    assert [c.code for c in d.causes] == ["SD101", "SD001"]  # more files first; the warning explains nothing: no cause
    assert d.causes[0].confirm == "Apply the fix, then re-run `segdoctor check-data 'my data'`: SD101 should be gone."
    report = Report(command="check-data", target="my data", findings=findings, inputs={"data": "my data"})
    assert report.verdict == "Not ready to train. Root cause: mask-0-255 found (SD101). 1 more cause below."


def test_confirm_asks_to_retrain_and_keeps_data_properties():
    findings = [finding("SD151"), finding("SD501")]
    facts = {"loss": "binary_crossentropy", "loss_family": "binary_ce"}
    d = dx.diagnose(findings, facts, command="check-model", inputs={"model": "m.keras", "data": "d"})
    assert d.causes[0].confirm == ("Apply the fix, retrain, then re-run `segdoctor check-model m.keras --data d`: SD501 should be "
                                   "gone (SD151 stays: it describes the data, and the fix answers it in training).")


def test_lower_first_keeps_names():
    assert dx.lower_first("All 12 masks") == "all 12 masks"
    assert dx.lower_first("IoU reaches 7") == "IoU reaches 7"
    assert dx.lower_first("Adam learning rate 0.5") == "Adam learning rate 0.5"
    assert dx.lower_first("Val_loss rose") == "val_loss rose"


# --- HTML: the diagnosis first, each snippet once ---------------------------------------------------------


def test_html_opens_with_the_diagnosis_and_prints_each_snippet_once():
    from segdoctor.report.html import render_html

    shared = "model.compile(loss=dice_ce_loss)"
    findings = [finding("SD151"), finding("SD505", {"output_is_class_prior": True}), finding("SD501"), finding("SD502")]
    findings = [f if f.code == "SD151" else dataclasses.replace(f, snippet=shared) for f in findings]
    report = Report(command="check-model", target="m.keras", findings=findings,
                    facts={"loss": "binary_crossentropy", "loss_family": "binary_ce"})
    html = render_html(report)
    assert html.index('id="diagnosis"') < html.index('class="finding ')
    assert html.count("# code for SD151") == 1 and html.count(shared) == 1
    assert "printed once, in SD505 above" in html
    assert "Explained by SD151, SD505 (root cause 1: SD151)" in html


def test_html_shows_the_reason_of_each_file():
    from segdoctor.report.html import render_html

    f = finding("SD001", files=["images/a.png"])
    f = dataclasses.replace(f, file_details={"images/a.png": "truncated data"})
    html = render_html(Report(command="check-data", target="d", findings=[f]))
    assert "images/a.png <span class=\"detail\">— truncated data</span>" in html


# --- the commands that document it -------------------------------------------------------------------------


def test_explain_lists_the_links_of_a_check(capsys):
    assert main(["explain", "SD101"]) == 0
    out = capsys.readouterr().out
    assert "Causal links" in out and "SD609" in out and "can explain" in out
    assert main(["explain", "blank-predictions", "--links"]) == 0
    out = capsys.readouterr().out
    assert "can be explained by" in out and "SD151" in out and "a symptom" in out


def test_explain_links_lists_every_link_and_condition(capsys):
    assert main(["explain", "--links"]) == 0
    out = capsys.readouterr().out
    for link in dx.LINKS:
        assert f"{link.cause} → {link.effect}" in out
    for name in dx.CONDITIONS:
        assert f"  {name}: " in out


def test_explain_without_a_check_is_a_usage_error(capsys):
    assert main(["explain"]) == 2
    assert "--links" in capsys.readouterr().err


def test_schema_command_prints_the_packaged_schema(capsys):
    import jsonschema

    from segdoctor.report.json_writer import schema

    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema() and printed["$id"] == "urn:segdoctor:report:1"
    jsonschema.Draft202012Validator.check_schema(printed)
    assert (REPO / "segdoctor" / "report" / "report.schema.json").is_file()  # inside the package, so in the wheel


def test_schema_rejects_what_the_contract_forbids():
    from report_schema import report_errors

    doc = Report(command="check-data", target="d", findings=[finding("SD001", files=["images/a.png"])]).to_json()
    assert report_errors(json.loads(json.dumps(doc))) == []
    broken = json.loads(json.dumps(doc))
    del broken["findings"][0]["file_details"]
    assert any("file_details" in e for e in report_errors(broken))
    broken = json.loads(json.dumps(doc))
    broken["findings"][0]["file_details"] = {"images/other.png": "x"}
    assert any("file_details" in e for e in report_errors(broken))
    broken = json.loads(json.dumps(doc))
    broken["diagnosis"][0]["confidence"] = 0.9
    assert report_errors(broken)


def test_schema_command_does_not_import_tensorflow():
    code = ("import sys\nfrom segdoctor.cli import main\nmain(['schema'])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
