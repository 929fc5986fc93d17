"""check-pipeline on the command line: help, the check catalogue, exit codes, the report contract, the bundled example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_helpers import write_module
from segdoctor.cli import main

REPO = Path(__file__).resolve().parent.parent
CHECKS_MD = REPO.parent / "shared" / "CHECKS.md"

PIPELINE = """
import numpy as np

def _data(n=32, size=48, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(2):
            r = rng.integers(5, 10)
            c = rng.integers(r, size - r, 2)
            yy, xx = np.mgrid[:size, :size]
            y[i] |= ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r).astype(np.uint8)
    x = (rng.normal(60, 8, (n, size, size, 3)) + 120 * y[..., None]).clip(0, 255).astype(np.float32) / 255
    return x, y

def clean():
    return _data()

def divided():
    x, y = _data()
    return x, y.astype(np.float32) / 255
"""

EXPECTED = {  # the pipeline table of CHECKS.md, and the extra input check
    "SD301": ("pipeline-pair-mismatch", "error"), "SD302": ("mask-rescaled", "error"),
    "SD303": ("target-encoding", "error"), "SD304": ("image-scale-implausible", "error"),
    "SD305": ("foreground-starved-batches", "warning"), "SD306": ("train-val-pipeline-mismatch", "error"),
    "SD307": ("pipeline-model-input", "error"),
}


@pytest.fixture
def spec(tmp_path):
    path = write_module(tmp_path / "user", "train.py", PIPELINE)
    return str(path)


def test_help_lists_the_command_and_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "check-pipeline" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["check-pipeline", "--help"])
    text = capsys.readouterr().out
    for flag in ("--val", "--data", "--model", "--batches", "--num-classes", "--time-limit", "--report", "--json",
                 "--select", "--custom-objects"):
        assert flag in text


def test_list_checks_and_explain(capsys):
    assert main(["list-checks", "--scope", "pipeline"]) == 0
    listed = {line.split()[0]: (line.split()[1], line.split()[2]) for line in capsys.readouterr().out.splitlines()}
    assert listed == EXPECTED
    for code in EXPECTED:
        assert main(["explain", code]) == 0
        text = capsys.readouterr().out
        assert "Why it matters" in text and "How to fix" in text


def test_codes_names_and_severities_match_checks_md():
    if not CHECKS_MD.is_file():
        pytest.skip(f"{CHECKS_MD} is absent")
    rows = {}
    for line in CHECKS_MD.read_text().splitlines():
        m = re.match(r"^\|\s*(SD3\d\d)\s*\|\s*([a-z0-9-]+)\s*\|\s*([a-z]+)", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    assert rows and all(EXPECTED[c] == v for c, v in rows.items())


def test_exit_codes_json_contract_and_html(spec, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["check-pipeline", f"{spec}:clean", "--report", str(out / "c.html"), "--json", str(out / "c.json")]) == 0
    assert capsys.readouterr().out.startswith("No problems found.")
    rc = main(["check-pipeline", f"{spec}:divided", "--report", str(out / "d.html"), "--json", str(out / "d.json")])
    assert rc == 1
    text = capsys.readouterr().out
    assert "SD302" in text and text.splitlines()[0].startswith("Not ready to train")
    assert main(["check-pipeline", f"{spec}:divided", "--report", "none", "--fail-on", "never", "-q"]) == 0
    data = json.loads((out / "d.json").read_text())
    assert data["schema"] == "segdoctor.report/1" and data["command"] == "check-pipeline"
    assert data["target"] == f"{spec}:divided"
    f = next(f for f in data["findings"] if f["code"] == "SD302")
    assert {"code", "name", "severity", "title", "evidence", "fix", "snippet", "files"} <= set(f)
    assert f["files"] == [] and len(f["evidence"]["samples"]) == 32
    assert {c["code"] for c in data["checks"]} >= set(EXPECTED) | {"SD101", "SD106"}
    assert data["summary"]["train_samples"] == 32
    html = (out / "d.html").read_text()
    assert "Batch samples of the train pipeline" in html and "data:image/png;base64," in html
    assert "<script" not in html.lower()


def test_select_narrows_and_a_foreign_selection_is_refused(spec, capsys):
    assert main(["check-pipeline", f"{spec}:divided", "--select", "SD301", "--report", "none", "-q"]) == 0
    assert main(["check-pipeline", f"{spec}:divided", "--select", "SD251", "--report", "none"]) == 2
    err = capsys.readouterr().err
    assert "selects none of the checks check-pipeline runs" in err


def test_names_from_the_user_are_escaped_in_the_report(tmp_path):
    folder = tmp_path / "<b>x</b>"
    path = write_module(folder, "p.py", PIPELINE)
    out = tmp_path / "r.html"
    assert main(["check-pipeline", f"{path}:divided", "--report", str(out), "-q"]) == 1
    html = out.read_text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


@pytest.mark.slow
def test_bundled_example_finds_its_two_planted_bugs(tmp_path):
    pytest.importorskip("tensorflow")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    example = "sample_data/pipeline/coins_pipeline.py"
    p = subprocess.run([sys.executable, "-m", "segdoctor", "check-pipeline", f"{example}:make_train_ds",
                        "--data", "sample_data/coins_clean", "--json", str(tmp_path / "r.json"), "--report", "none"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    found = {f["code"]: f for f in json.loads((tmp_path / "r.json").read_text())["findings"]}
    assert set(found) == {"SD106", "SD301"}, [f["title"] for f in found.values()]
    assert "not in the files" in found["SD106"]["title"] and "flipped left-right" in found["SD301"]["title"]
    assert not p.stderr.strip(), p.stderr  # no TensorFlow start-up chatter, no notes
    fixed = subprocess.run([sys.executable, "-m", "segdoctor", "check-pipeline", f"{example}:make_fixed_ds",
                            "--val", f"{example}:make_val_ds", "--report", "none", "-q"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0 and fixed.stdout.startswith("No problems found."), fixed.stdout + fixed.stderr
    assert not (REPO / "sample_data" / "pipeline" / "__pycache__").exists()
