"""The local scan engine: worker processes, their allocator setting, the extractor plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from synth import blob_pair, write_dataset

import segdoctor.scan as scan
from segdoctor.io.dataset import discover_dataset

ROOT = Path(__file__).resolve().parent.parent


def test_tune_allocator_reports_what_it_did():
    """In a throwaway interpreter: True where glibc's mallopt exists, False elsewhere, never an error."""
    code = ("import sys; from segdoctor.allocator import tune_allocator as t; r = t(); "
            "print(r); sys.exit(0 if isinstance(r, bool) else 1)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    if sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver()):
        assert run.stdout.strip() == "True"


def test_only_worker_processes_tune_their_allocator(tmp_path, monkeypatch):
    """An in-process scan (jobs=1, the caller's process) leaves the caller's allocator alone; workers tune theirs."""
    calls = []
    original = scan.tune_allocator
    monkeypatch.setattr(scan, "tune_allocator", lambda: calls.append(1) or original())
    rng = np.random.default_rng(0)
    write_dataset(tmp_path, [blob_pair(rng) for _ in range(9)])
    pairs = discover_dataset(tmp_path).pairs
    one = scan.scan_pairs(pairs, jobs=1)
    assert calls == []
    two = scan.scan_pairs(pairs, jobs=2)  # forked workers run the patched initializer in their own processes
    assert calls == []  # ... so nothing was recorded here
    assert [r["mask_info"]["values"]["n_distinct"] for r in one] == [r["mask_info"]["values"]["n_distinct"] for r in two]


def test_the_cli_tunes_its_own_process_and_the_library_does_not(tmp_path, monkeypatch, capsys):
    import segdoctor.allocator as allocator
    from segdoctor.cli import main
    from segdoctor.commands.data import check_data

    calls = []
    monkeypatch.setattr(allocator, "tune_allocator", lambda: calls.append("process") or True)
    monkeypatch.setattr(scan, "tune_allocator", lambda: calls.append("worker") or True)
    rng = np.random.default_rng(1)
    write_dataset(tmp_path, [blob_pair(rng) for _ in range(4)])
    check_data(tmp_path, jobs=1)
    assert calls == []  # a user's program keeps its allocator
    main(["check-data", str(tmp_path), "--jobs", "1", "--report", "none", "--quiet"])
    assert calls == ["process"]
    log = tmp_path / "history.csv"
    log.write_text("epoch,loss,val_loss\n0,0.9,0.95\n1,0.7,0.8\n2,0.5,0.6\n")
    main(["check-history", str(log), "--report", "none", "--quiet"])  # no scan, no tuning
    assert calls == ["process"]


def test_parallel_scan_returns_every_record_in_pair_order(tmp_path):
    """Head chunks and the single-pair tail (guided scheduling) land at their pairs' indices."""
    rng = np.random.default_rng(7)
    pairs = [blob_pair(rng, size=48) for _ in range(70)]
    for k, (_, m) in enumerate(pairs):
        m[0, 0] = k % 2  # make neighbouring records differ
    write_dataset(tmp_path, pairs)
    ds = discover_dataset(tmp_path).pairs
    one = scan.scan_pairs(ds, jobs=1)
    two = scan.scan_pairs(ds, jobs=2)
    assert len(two) == len(one) == 70
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in ("values", "counts", "interior", "between"):
            np.testing.assert_array_equal(a["mask_info"]["values"][key], b["mask_info"]["values"][key])
        np.testing.assert_array_equal(a["align"]["boundary"], b["align"]["boundary"])
