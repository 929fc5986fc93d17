"""segdoctor fix against hostile outputs and failures: one line, exit status 2, the input untouched, and never a
half-written output that looks complete."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _synth import binary_mask, dataset, image_rgb, save
from segdoctor.cli import main
from segdoctor.fix import output as fix_output
from segdoctor.fix.run import fix_dataset
from test_fix_command import fingerprint


@pytest.fixture
def src(tmp_path) -> Path:
    return dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(4)])


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["fix", *argv, "--jobs", "1", "-q", "--report", "none"])
    return rc, capsys.readouterr().err


def one_line(err: str) -> bool:
    lines = [x for x in err.strip().splitlines() if not x.startswith("segdoctor: note:")]
    return len(lines) == 1 and "Traceback" not in err and lines[0].startswith("segdoctor: error:")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".segdoctor-" in p.name)


@pytest.mark.parametrize("where", ["inside", "same", "masks", "parent"])
def test_out_inside_or_around_the_dataset_is_refused(src, tmp_path, capsys, where):
    before = fingerprint(src)
    out = {"inside": src / "fixed", "same": src, "masks": src / "masks", "parent": tmp_path}[where]
    rc, err = run(capsys, str(src), "--out", str(out))
    assert rc == 2 and one_line(err), err
    assert ("inside" in err or "contains" in err or "is the dataset" in err)
    assert fingerprint(src) == before
    assert not (src / "fixed").exists()


def test_out_through_a_symlink_into_the_dataset_is_refused(src, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(src / "masks")
    rc, err = run(capsys, str(src), "--out", str(link / "new"))
    assert rc == 2 and "inside" in err and one_line(err)


def test_non_empty_out_is_refused_and_overwrite_only_replaces_a_fix_output(src, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    rc, err = run(capsys, str(src), "--out", str(out))
    assert rc == 2 and "not empty" in err and one_line(err)
    rc, err = run(capsys, str(src), "--out", str(out), "--overwrite")
    assert rc == 2 and "never deletes" in err and one_line(err)
    assert (out / "thesis.tex").read_text() == "years of work"


def test_out_that_is_a_file_or_a_url(src, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    rc, err = run(capsys, str(src), "--out", str(f))
    assert rc == 2 and "is a file" in err
    rc, err = run(capsys, str(src), "--out", "s3://bucket/fixed")
    assert rc == 2 and "URL" in err
    rc, err = run(capsys, "s3://bucket/data", "--out", str(tmp_path / "fixed"))
    assert rc == 2 and "local dataset folder" in err and one_line(err)


def test_reports_and_plan_inside_the_dataset_are_refused(src, tmp_path, capsys):
    before = fingerprint(src)
    rc = main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--report", str(src / "r.html"), "-q"])
    assert rc == 2 and "inside" in capsys.readouterr().err
    rc = main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--dry-run", "--manifest", str(src / "plan.json")])
    assert rc == 2 and "inside" in capsys.readouterr().err
    rc = main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--manifest", str(tmp_path / "plan.json")])
    assert rc == 2 and "only with --dry-run" in capsys.readouterr().err
    assert fingerprint(src) == before and not (tmp_path / "fixed").exists()


def test_read_only_output_folder_fails_before_any_analysis(src, tmp_path, capsys, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    real = os.access
    monkeypatch.setattr(fix_output.os, "access", lambda p, mode: False if Path(p) == parent else real(p, mode))
    import segdoctor.commands.data as data_cmd

    monkeypatch.setattr(data_cmd, "check_data", lambda *a, **k: pytest.fail("analysed before refusing --out"))
    rc, err = run(capsys, str(src), "--out", str(parent / "fixed"))
    assert rc == 2 and "read-only" in err and one_line(err)


def test_read_only_file_system_at_creation(src, tmp_path, capsys, monkeypatch):
    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(fix_output.tempfile, "mkdtemp", erofs)
    before = fingerprint(src)
    rc, err = run(capsys, str(src), "--out", str(tmp_path / "fixed"))
    assert rc == 2 and "Read-only file system" in err and one_line(err)
    assert not (tmp_path / "fixed").exists() and fingerprint(src) == before


@pytest.mark.parametrize("when", ["repaired file", "hard link", "manifest", "rename"])
def test_disk_full_leaves_no_output(src, tmp_path, capsys, monkeypatch, when):
    before = fingerprint(src)
    full = OSError(errno.ENOSPC, "No space left on device")
    if when == "repaired file":
        calls = {"n": 0}
        real_write = fix_output.Staging.write

        def write(self, rel, data):
            calls["n"] += 1
            if calls["n"] == 3:
                raise self._error(full, rel)
            return real_write(self, rel, data)

        monkeypatch.setattr(fix_output.Staging, "write", write)
    elif when == "hard link":
        def link(*a, **k):
            raise full

        monkeypatch.setattr(fix_output.os, "link", link)
    elif when == "manifest":
        def open_new(self, rel):
            raise self._error(full, rel)

        monkeypatch.setattr(fix_output.Staging, "open_new", open_new)
    else:
        real_rename = os.rename

        def rename(a, b):
            if ".segdoctor-" in str(a):
                raise full
            return real_rename(a, b)

        monkeypatch.setattr(fix_output.os, "rename", rename)
    out = tmp_path / "fixed"
    rc, err = run(capsys, str(src), "--out", str(out))
    assert rc == 2 and one_line(err), err
    assert "No space left on device" in err and "nothing was written" in err
    assert not out.exists()
    assert leftovers(tmp_path) == []
    assert fingerprint(src) == before


def test_a_failed_overwrite_keeps_the_previous_output(src, tmp_path, capsys, monkeypatch):
    out = tmp_path / "fixed"
    assert run(capsys, str(src), "--out", str(out))[0] == 0
    previous = fingerprint(out)
    real_rename = os.rename

    def rename(a, b):
        if ".segdoctor-" in str(a) and "-old-" not in str(a) and Path(b) == out:
            raise OSError(errno.EIO, "Input/output error")
        return real_rename(a, b)

    monkeypatch.setattr(fix_output.os, "rename", rename)
    rc, err = run(capsys, str(src), "--out", str(out), "--overwrite")
    assert rc == 2 and one_line(err)
    assert fingerprint(out) == previous
    assert leftovers(tmp_path) == []


def test_interrupted_run_leaves_nothing(src, tmp_path, monkeypatch):
    def interrupted(self, rel, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(fix_output.Staging, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fix_dataset(src, tmp_path / "fixed", jobs=1)
    assert not (tmp_path / "fixed").exists() and leftovers(tmp_path) == []


def test_odd_files_in_the_dataset(src, tmp_path):
    os.mkfifo(src / "images" / "pipe.png")  # a FIFO named like an image: reported unreadable, never copied
    (src / "notes").mkdir()
    (src / "notes" / "README.txt").write_text("how the masks were made")
    (src / ".hidden").write_text("x")
    os.symlink("nowhere.png", src / "images" / "dangling.png")
    os.symlink(src, src / "notes" / "loop")  # a link back to the dataset
    before = fingerprint(src)
    out = tmp_path / "fixed"
    report = fix_dataset(src, out, jobs=1)
    assert (out / "notes" / "README.txt").read_text() == "how the masks were made"
    assert (out / ".hidden").is_file()
    assert os.readlink(out / "images" / "dangling.png") == "nowhere.png"
    assert not (out / "images" / "pipe.png").exists() and not (out / "notes" / "loop").exists()
    with Image.open(out / "masks" / "case_000.png") as im:
        assert np.array_equal(np.unique(np.asarray(im)), [0, 1])
    assert fingerprint(src) == before
    assert report.fix["files_repaired"] == 4


def test_a_repaired_name_that_is_taken_is_left_to_the_user(tmp_path):
    src = tmp_path / "data"
    for i in range(4):
        save(src / "images" / f"c{i}.png", image_rgb(i))
        save(src / "masks" / f"c{i}.jpg", binary_mask(i, fg=255), quality=80)
    save(src / "masks" / "c0.png", binary_mask(7))  # another file already has the lossless name
    out = tmp_path / "fixed"
    report = fix_dataset(src, out, jobs=1, mask_pattern="*.jpg")
    assert (out / "masks" / "c0.jpg").read_bytes() == (src / "masks" / "c0.jpg").read_bytes()
    assert (out / "masks" / "c0.png").read_bytes() == (src / "masks" / "c0.png").read_bytes()
    assert (out / "masks" / "c1.png").is_file() and not (out / "masks" / "c1.jpg").exists()
    assert any(n["files"] == ["masks/c0.jpg"] and "replace another file" in n["reason"] for n in report.fix["needs_you"])
