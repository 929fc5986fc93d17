"""Datasets behind fsspec URLs: discovery and reading through fsspec give the same report as local paths."""

from __future__ import annotations

import os
import uuid
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from segdoctor.cli import main
from segdoctor.commands.data import check_data
from segdoctor.errors import DatasetError
from segdoctor.io.dataset import discover_dataset, printable
from segdoctor.io.readers import UnreadableFile, read_file
from segdoctor.io.remote import RemotePath, is_url
from tests import _synth

fsspec = pytest.importorskip("fsspec")

REPO = Path(__file__).resolve().parent.parent
COINS_BROKEN = REPO / "sample_data" / "coins_broken"


def findings_key(report):
    return [(f.code, f.severity.label, f.title, tuple(f.files)) for f in report.findings]


@pytest.fixture
def memory_root():
    """A fresh folder in fsspec's in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/segdoctor-test-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def upload(fs, local: Path, root: str) -> str:
    for f in sorted(local.rglob("*")):
        if f.is_file():
            fs.pipe(f"{root}/{f.relative_to(local).as_posix()}", f.read_bytes())
    return f"memory://{root}"


def test_is_url():
    assert is_url("s3://bucket/key") and is_url("memory://x") and is_url("file:///tmp/x")
    assert not is_url("/tmp/x") and not is_url("data/images") and not is_url(Path("s3:/x"))


def test_memory_url_report_equals_local(memory_root):
    fs, root = memory_root
    url = upload(fs, COINS_BROKEN, root)
    local = check_data(COINS_BROKEN, jobs=1)
    remote = check_data(url, jobs=1)
    assert findings_key(remote) == findings_key(local)
    assert remote.facts["pairs"] == local.facts["pairs"]
    assert remote.target == url


def test_memory_url_npy_and_tiff_masks(memory_root, tmp_path):
    fs, root = memory_root
    local = tmp_path / "ds"
    for i in range(3):
        _synth.save(local / "images" / f"c{i}.png", _synth.image_rgb(i))
        _synth.save(local / "masks" / f"c{i}.npy", _synth.binary_mask(i))
    _synth.save(local / "images" / "t.png", _synth.image_rgb(9))
    _synth.save(local / "masks" / "t.tif", _synth.binary_mask(9).astype(np.uint16) * 300)
    url = upload(fs, local, root)
    assert findings_key(check_data(url, jobs=1)) == findings_key(check_data(local, jobs=1))
    dec = read_file(f"{url}/masks/c0.npy")
    assert dec.format == "NPY" and dec.array.shape == (64, 64)


def test_keys_with_url_syntax_are_read_as_keys(memory_root, tmp_path):
    """'::' (fsspec URL chaining), '#' and '?' inside object names are just characters of the key."""
    fs, root = memory_root
    local = tmp_path / "ds"
    for i, stem in enumerate(("a::b", "c#d", "e?f", "g h")):
        _synth.pair(local, stem, _synth.binary_mask(i), seed=i)
    url = upload(fs, local, root)
    report = check_data(url, jobs=2)
    assert not [f for f in report.findings if f.code == "SD001"], [f.files for f in report.findings]
    assert all("mask_info" in rec for rec in report.context.records)


def test_file_url_report_equals_local():
    local = check_data(COINS_BROKEN, jobs=1)
    remote = check_data(COINS_BROKEN.resolve().as_uri(), jobs=2)
    assert findings_key(remote) == findings_key(local)


def test_remote_unreadable_files(memory_root):
    fs, root = memory_root
    fs.pipe(f"{root}/empty.png", b"")
    fs.pipe(f"{root}/text.png", b"hello, not a png")
    # an .npy header claiming far more data than the file holds must not allocate the claimed size
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += " " * (118 - len(header)) + "\n"
    fs.pipe(f"{root}/huge.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)
    for name, reason in (("empty.png", "empty"), ("text.png", "not an image"), ("huge.npy", "size limit")):
        with pytest.raises(UnreadableFile, match=reason):
            read_file(f"memory://{root}/{name}")
    with pytest.raises(UnreadableFile, match="cannot open"):
        read_file(f"memory://{root}/missing.png")


def test_remote_path_behaves_like_a_path_for_pairing():
    fs = fsspec.filesystem("memory")
    p = RemotePath(fs, "/b/data/images/case_01.png")
    root = RemotePath(fs, "/b/data")
    assert (p.name, p.stem, p.suffix) == ("case_01.png", "case_01", ".png")
    assert p.parent == root / "images"
    assert root in p.parents
    assert p.relative_to(root) == PurePosixPath("images/case_01.png")
    assert str(p) == "memory:///b/data/images/case_01.png"
    with pytest.raises(ValueError):
        root.relative_to(p.parent)
    assert sorted([p, root]) == [root, p]


def test_remote_discovery_with_flags_and_splits(memory_root, tmp_path):
    fs, root = memory_root
    local = tmp_path / "ds"
    for split in ("train", "val"):
        for i in range(2):
            _synth.pair(local / split, f"{split}_{i}", _synth.binary_mask(i), images="imgs", masks="annotations")
    url = upload(fs, local, root)
    ds = discover_dataset(url)
    assert len(ds.pairs) == 4 and ds.splits == ["train", "val"]
    assert ds.display(ds.pairs[0].mask).startswith(("train/annotations/", "val/annotations/"))
    flagged = discover_dataset(url, images="train/imgs", masks="train/annotations")
    assert len(flagged.pairs) == 2


def test_missing_url_and_unknown_protocol_are_dataset_errors(capsys):
    with pytest.raises(DatasetError, match="no such folder"):
        discover_dataset(f"memory:///nothing-{uuid.uuid4().hex}")
    assert main(["check-data", "nosuchprotocol://bucket/data", "--report", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nosuchprotocol://bucket/data" in err


def test_remote_report_draws_thumbnails(memory_root):
    from segdoctor.report.html import render_html

    fs, root = memory_root
    url = upload(fs, COINS_BROKEN, root)
    local_html = render_html(check_data(COINS_BROKEN, jobs=1))
    remote_html = render_html(check_data(url, jobs=1))
    assert remote_html.count("data:image/png") == local_html.count("data:image/png") > 0


def test_hostile_files_behind_a_url(memory_root, tmp_path):
    """The hostile dataset's regular files, served through fsspec: the same files are reported."""
    import stat as stat_mod

    from tests.test_hostile_data import build_hostile

    fs, root = memory_root
    local = tmp_path / "hostile"
    expected = build_hostile(local)
    for p in sorted(local.rglob("*")):
        st = p.lstat()
        if stat_mod.S_ISREG(st.st_mode) and os.access(p, os.R_OK):
            fs.pipe(f"{root}/{p.relative_to(local).as_posix()}", p.read_bytes())
    report = check_data(f"memory://{root}", jobs=1)
    assert not [c for c in report.checks if c.status == "crashed"]
    listed = {entry.split(": ")[0] for f in report.findings for entry in f.files}
    served = {printable(k) for k in expected["bad"] if fs.exists(f"{root}/{k}")}
    assert len(served) >= 10 and served <= listed, served - listed


def test_storage_errors_are_reported_as_such(monkeypatch):
    fs = fsspec.filesystem("memory")

    def refuse(path, **kwargs):
        raise PermissionError("access denied by the bucket policy")

    monkeypatch.setattr(fs, "exists", refuse)
    with pytest.raises(DatasetError, match="cannot reach it .*access denied"):
        discover_dataset("memory://guarded/data")
