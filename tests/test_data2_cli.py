"""End to end: check-data through the CLI on a dataset with balance, range, alignment and split defects;
every figure of these checks draws; check-data never imports TensorFlow; the checks are documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from synth import blob_pair, write_dataset

from conftest import REPO
from segdoctor.cli import main
from segdoctor.commands.data import check_data
from segdoctor.registry import get_check

CODES = ("SD151", "SD152", "SD153", "SD154", "SD201", "SD202", "SD203", "SD251", "SD252")


def _broken(tmp_path):
    rng = np.random.default_rng(0)
    train = [blob_pair(rng, size=96, n_blobs=1, radius=(4, 6)) for _ in range(10)]
    train[3], train[6] = (train[3][0], train[6][1]), (train[6][0], train[3][1])  # swapped masks
    train[8] = (np.zeros_like(train[8][0]), train[8][1])  # a black image
    val = [blob_pair(rng, size=96, n_blobs=4, radius=(16, 22)) for _ in range(5)]
    val.append(train[1])  # leaked into val
    write_dataset(tmp_path, train, split="train")
    write_dataset(tmp_path, val, split="val")
    return tmp_path


def test_cli_reports_the_defects_with_exit_status_1(tmp_path):
    data = _broken(tmp_path / "data")
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(["check-data", str(data), "--json", str(out), "--report", str(html), "-q", "--jobs", "2"])
    assert rc == 1
    report = json.loads(out.read_text())
    found = {f["code"] for f in report["findings"]}
    assert {"SD153", "SD154", "SD202", "SD251"} <= found
    statuses = {c["code"]: c["status"] for c in report["checks"]}
    assert all(statuses[c] in ("passed", "found") for c in CODES), statuses
    assert html.stat().st_size > 10_000


def test_every_figure_of_these_checks_draws(tmp_path):
    from segdoctor.report.figures import render_png

    r = check_data(_broken(tmp_path), select=list(CODES), jobs=1)
    figures = [fig for f in r.findings for fig in f.figures]
    assert len(figures) >= 5
    for fig in figures:
        assert render_png(fig), fig.title


def test_check_data_never_imports_tensorflow(tmp_path):
    data = _broken(tmp_path / "data")
    code = ("import sys; from segdoctor.commands.data import check_data; "
            f"check_data({str(data)!r}, jobs=2); "
            "sys.exit(1 if any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules) else 0)")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    assert subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env).returncode == 0


def test_checks_are_documented():
    for code in CODES:
        doc = get_check(code).documentation()
        assert "*Why it matters*" in doc and "*How to fix*" in doc, code
        assert "realdata" in doc or "Threshold" in doc, code
