"""The Dask engine against the local one: same data, same findings. Starts real loopback clusters."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from segdoctor.cli import main
from segdoctor.commands.data import check_data
from segdoctor.errors import UsageError
from tests import _synth

REPO = Path(__file__).resolve().parent.parent
COINS_BROKEN = REPO / "sample_data" / "coins_broken"

distributed = pytest.importorskip("distributed")


def findings_key(report):
    return [(f.code, f.severity.label, f.title, tuple(f.files)) for f in report.findings]


def mixed_dataset(root: Path) -> Path:
    """Several encodings at once, so many checks have something to say."""
    for i in range(6):
        _synth.pair(root, f"bin_{i}", _synth.binary_mask(i, fg=255), seed=i)
    for i in range(4):
        _synth.pair(root, f"multi_{i}", _synth.multiclass_mask(i, classes=(0, 1, 2, 3)), seed=10 + i)
    _synth.save(root / "masks" / "arr_0.npy", _synth.binary_mask(20).astype(np.float32))
    _synth.save(root / "images" / "arr_0.png", _synth.image_rgb(20))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    _synth.save(root / "masks" / "broken.png", _synth.binary_mask(21))
    _synth.save(root / "images" / "lonely.png", _synth.image_rgb(22))
    return root


@pytest.fixture(scope="module")
def cluster():
    """One small cluster shared by the tests that pass --scheduler."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


def test_dask_findings_equal_local_on_sample_data(cluster):
    local = check_data(COINS_BROKEN, jobs=2)
    dask = check_data(COINS_BROKEN, engine="dask", scheduler=cluster.scheduler_address)
    assert findings_key(dask) == findings_key(local)
    assert {f.code for f in local.findings} >= {"SD001", "SD101"}


def test_dask_findings_equal_local_on_mixed_dataset(tmp_path, cluster):
    root = mixed_dataset(tmp_path / "ds")
    local = check_data(root, jobs=1)
    dask = check_data(root, engine="dask", scheduler=cluster.scheduler_address)
    assert findings_key(dask) == findings_key(local)
    assert [f.evidence for f in dask.findings] == [f.evidence for f in local.findings]
    assert "SD001" in {f.code for f in dask.findings}


def test_dask_reads_file_urls_through_fsspec_on_workers(tmp_path, cluster):
    root = mixed_dataset(tmp_path / "ds")
    local = check_data(root, jobs=1)
    dask = check_data(root.as_uri(), engine="dask", scheduler=cluster.scheduler_address)
    assert findings_key(dask) == findings_key(local)


def test_small_batches_keep_order(tmp_path, cluster):
    """Many tasks completing out of order still give record i to pair i."""
    from segdoctor.engines.dask_engine import scan_pairs_dask
    from segdoctor.io.dataset import discover_dataset
    from segdoctor.scan import scan_pairs

    ds = discover_dataset(mixed_dataset(tmp_path / "ds"))
    recs = scan_pairs_dask(ds.pairs, scheduler=cluster.scheduler_address, batch_pairs=1)
    assert [r.get("mask_info", {}).get("values", {}).get("n_distinct") for r in recs] == \
           [r.get("mask_info", {}).get("values", {}).get("n_distinct") for r in scan_pairs(ds.pairs, jobs=1)]


def test_cli_dask_engine_starts_its_own_local_cluster(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = main(["check-data", str(COINS_BROKEN), "--engine", "dask", "--jobs", "1", "--report", "none",
                 "--json", str(out), "-q"])
    assert code == 1
    assert out.is_file()
    assert "Traceback" not in capsys.readouterr().err


def test_missing_dask_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'segdoctor\[dask\]'"):
        check_data(COINS_BROKEN, engine="dask")
    assert main(["check-data", str(COINS_BROKEN), "--engine", "dask", "--report", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "segdoctor[dask]" in err


def test_scheduler_without_dask_engine_is_a_usage_error(capsys):
    assert main(["check-data", str(COINS_BROKEN), "--scheduler", "tcp://127.0.0.1:8786", "--report", "none"]) == 2
    assert "--engine dask" in capsys.readouterr().err


def test_relative_paths_reach_the_workers(tmp_path, cluster, monkeypatch):
    mixed_dataset(tmp_path / "ds")
    monkeypatch.chdir(tmp_path)
    local = check_data("ds", jobs=1)
    dask = check_data("ds", engine="dask", scheduler=cluster.scheduler_address)
    assert findings_key(dask) == findings_key(local)


def test_memory_urls_are_refused_for_dask():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for f in (COINS_BROKEN / "images" / "coin_00.png", COINS_BROKEN / "masks" / "coin_00.png"):
        fs.pipe(f"/dask-refused/{f.parent.name}/{f.name}", f.read_bytes())
    try:
        with pytest.raises(UsageError, match="use --engine local"):
            check_data("memory://dask-refused", engine="dask")
    finally:
        fs.rm("/dask-refused", recursive=True)


def test_unknown_engine_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown engine"):
        check_data(COINS_BROKEN, engine="spark")


def test_local_engine_imports_neither_dask_nor_fsspec():
    import subprocess

    code = ("import sys\nfrom segdoctor.cli import main\n"
            f"main(['check-data', {str(COINS_BROKEN)!r}, '--report', 'none', '-q'])\n"
            "print(sorted(m for m in ('dask', 'distributed', 'fsspec') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr

