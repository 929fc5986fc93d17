"""Output safety (issue 11): an output never resolves to an input, writes are atomic, failures are one line, exit 2."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from segdoctor.cli import main
from segdoctor.io import outputs
from segdoctor.io.outputs import OutputError, atomic_write_text, guard_outputs
from _synth import binary_mask, dataset

HISTORY = {"loss": [0.9, 0.7, 0.5, 0.4], "val_loss": [0.95, 0.8, 0.6, 0.5]}


def _fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


@pytest.fixture
def ds(tmp_path) -> Path:
    return dataset(tmp_path / "ds", [binary_mask(i) for i in range(3)])


@pytest.fixture
def history(tmp_path) -> Path:
    p = tmp_path / "h.json"
    p.write_text(json.dumps(HISTORY))
    return p


def _run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("flag", ["--report", "--json"])
def test_report_onto_dataset_file_is_refused(ds, capsys, flag):
    before = _fingerprint(ds)
    target = next((ds / "images").iterdir())
    rc, err = _run(capsys, "check-data", str(ds), flag, str(target), "-q")
    assert rc == 2
    assert "destroy" in err or "inside" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert _fingerprint(ds) == before


def test_report_inside_dataset_folder_is_refused(ds, capsys):
    before = _fingerprint(ds)
    rc, err = _run(capsys, "check-data", str(ds), "--report", str(ds / "new-report.html"), "-q")
    assert rc == 2 and "inside" in err
    assert _fingerprint(ds) == before
    assert not (ds / "new-report.html").exists()


def test_history_report_onto_history_refused(history, capsys):
    before = history.read_bytes()
    rc, err = _run(capsys, "check-history", str(history), "--report", str(history))
    assert rc == 2 and str(history) in err
    assert history.read_bytes() == before


def test_hard_link_and_symlink_to_input_refused(history, tmp_path, capsys):
    hard = tmp_path / "hard.html"
    os.link(history, hard)
    soft = tmp_path / "soft.html"
    soft.symlink_to(history)
    for out in (hard, soft):
        rc, err = _run(capsys, "check-history", str(history), "--report", str(out))
        assert rc == 2, err
    assert json.loads(history.read_text()) == HISTORY


def test_same_path_for_report_and_json_refused(history, tmp_path, capsys):
    out = tmp_path / "r.out"
    rc, err = _run(capsys, "check-history", str(history), "--report", str(out), "--json", str(out))
    assert rc == 2 and "same file" in err
    assert not out.exists()


def test_tilde_is_expanded(history, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    rc, err = _run(capsys, "check-history", str(history), "--report=~/r.html", "-q")
    assert rc in (0, 1), err
    assert (tmp_path / "r.html").is_file()
    assert not (Path.cwd() / "~").exists()


def test_unwritable_folder_fails_before_analysis(history, tmp_path, monkeypatch, capsys):
    real_access = os.access
    monkeypatch.setattr(outputs.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    rc, err = _run(capsys, "check-history", str(history), "--report", str(tmp_path / "r.html"))
    assert rc == 2 and "read-only file system" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_failed_write_keeps_old_report(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("old report")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "replace", full)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_text(target, "new report")
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left behind


def test_atomic_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_text(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert (target.stat().st_mode & 0o777) == 0o640


def test_guard_refuses_folder_and_special_file(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        guard_outputs([("--report", str(tmp_path))], [])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="not a regular file"):
        guard_outputs([("--json", str(fifo))], [])


def test_guard_ignores_urls_and_skip_values(tmp_path):
    assert guard_outputs([("--report", "none"), ("--json", "-")], [("DIR", "s3://bucket/x")]) == {}
    out = guard_outputs([("--report", str(tmp_path / "r.html"))], [("DIR", "s3://bucket/x")])
    assert out["--report"] == (tmp_path / "r.html").resolve()


def test_model_and_custom_objects_inputs(tmp_path):
    from segdoctor.commands import model as model_cmd

    class Args:
        model = str(tmp_path / "m.keras")
        data = None
        history = None
        custom_objects = [str(tmp_path / "losses.py:make_loss")]

    (tmp_path / "m.keras").write_bytes(b"PK\x03\x04")
    (tmp_path / "losses.py").write_text("x = 1\n")
    inputs = model_cmd.input_paths(Args)
    with pytest.raises(OutputError):
        guard_outputs([("--report", str(tmp_path / "m.keras"))], inputs)
    with pytest.raises(OutputError):
        guard_outputs([("--json", str(tmp_path / "losses.py"))], inputs)
