"""check-data on a hostile dataset: broken, lying, huge-claiming, oddly named and unreadable files.

The contract: no traceback, every bad file reported (SD001 or a specific finding), everything else
analysed, exit status 1, file names escaped in the HTML, nothing written outside the report paths and
the dataset left exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segdoctor.cli import main
from segdoctor.commands.data import check_data
from tests import _synth

# Names as bytes: one is not valid UTF-8, one carries HTML-special characters.
NON_UTF8 = os.fsdecode(b"caf\xe9_latin1")
HTML_NAME = "<script>alert(1)<x & \"q\" 'a'"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header (valid CRCs) that claims a gigantic image, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def tiff_claiming(width: int, height: int, samples: int = 1) -> bytes:
    """A minimal baseline TIFF whose IFD claims ``width`` x ``height`` 8-bit pixels in one tiny strip.

    With 5 samples per pixel Pillow refuses the mode, so the tifffile fallback sees the header too.
    """
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, samples), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd_offset = 8 + 16
    head = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\0" * 16
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    return head + ifd + struct.pack("<I", 0)


def npy_claiming(shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64


def build_hostile(root: Path) -> dict[str, object]:
    """images/ + masks/ with good pairs and one hostile file per kind; returns what the test expects."""
    images, masks = root / "images", root / "masks"
    good: list[str] = []
    bad: dict[str, str] = {}  # dataset-relative path -> what is wrong

    def good_pair(stem: str, seed: int, *, image=None, mask=None, image_ext=".png", mask_ext=".png") -> None:
        img = _synth.image_rgb(seed) if image is None else image
        if image_ext == ".tif":
            tifffile.imwrite(images / f"{stem}{image_ext}", img, photometric="rgb" if img.ndim == 3 else "minisblack")
        else:
            _synth.save(images / f"{stem}{image_ext}", img)
        _synth.save(masks / f"{stem}{mask_ext}", _synth.binary_mask(seed) if mask is None else mask)
        good.append(stem)

    def bad_image(stem: str, data: bytes, seed: int, ext: str = ".png") -> None:
        (images / f"{stem}{ext}").write_bytes(data)
        _synth.save(masks / f"{stem}.png", _synth.binary_mask(seed))
        bad[f"images/{stem}{ext}"] = "image"

    def bad_mask(stem: str, data: bytes | None, seed: int, ext: str = ".png", array=None) -> None:
        _synth.save(images / f"{stem}.png", _synth.image_rgb(seed))
        if array is not None:
            _synth.save(masks / f"{stem}{ext}", array)
        else:
            (masks / f"{stem}{ext}").write_bytes(data)
        bad[f"masks/{stem}{ext}"] = "mask"

    for i in range(6):
        good_pair(f"good_{i}", i)
    # storage that is unusual but valid: analysed, not called unreadable
    good_pair("img16", 30, image=(_synth.image_rgb(30)[..., 0].astype(np.uint16) * 257), image_ext=".tif")
    good_pair("imgfloat", 31, image=_synth.image_rgb(31).astype(np.float32) / 255, image_ext=".tif")
    good_pair(NON_UTF8, 32)

    png = (images / "good_0.png").read_bytes()
    bad_image("zero_bytes", b"", 40)
    bad_image("truncated", png[: len(png) // 2], 41)
    bad_image("text_as_png", b"this is a text file, not an image\n" * 4, 42)
    bad_image("html_as_jpg", b"<html><body>404 Not Found</body></html>", 43, ext=".jpg")
    bad_image("bomb_png", png_claiming(100_000, 100_000), 44)
    bad_image("bomb_tif", tiff_claiming(100_000, 100_000), 45, ext=".tif")
    bad_image("bomb_tif_5_samples", tiff_claiming(100_000, 100_000, samples=5), 55, ext=".tif")
    bad_image("bomb_npy", npy_claiming((100_000, 100_000)), 46, ext=".npy")
    bad_mask("nan_mask", None, 47, ext=".npy",
             array=np.where(_synth.binary_mask(47) > 0, np.nan, 0).astype(np.float32))
    bad_mask("five_channel_npy", None, 48, ext=".npy",
             array=np.stack([_synth.binary_mask(48 + c) for c in range(5)], axis=-1))
    labels = _synth.multiclass_mask(56, classes=(0, 1, 2, 3, 4))
    bad_mask("one_hot_npy", None, 56, ext=".npy", array=np.eye(5, dtype=np.uint8)[labels])
    five = np.stack([_synth.binary_mask(60 + c) * 255 for c in range(5)], axis=-1).astype(np.uint8)
    _synth.save(images / "five_channel_tif.png", _synth.image_rgb(49))
    tifffile.imwrite(masks / "five_channel_tif.tif", five, photometric="minisblack", planarconfig="contig")
    bad["masks/five_channel_tif.tif"] = "mask"
    bad_mask(HTML_NAME, b"", 50)  # zero bytes: listed under SD001, so its name reaches the HTML
    bad_mask("trunc_" + NON_UTF8, png[:40], 51)

    # a symlink loop in the tree (a folder inside itself) and a link that points at itself
    os.symlink("..", images / "loop")
    os.symlink("self_link.png", images / "self_link.png")
    _synth.save(masks / "self_link.png", _synth.binary_mask(52))
    bad["images/self_link.png"] = "image"
    # a FIFO with an image name: opening it for reading would block forever
    os.mkfifo(images / "fifo.png")
    _synth.save(masks / "fifo.png", _synth.binary_mask(53))
    bad["images/fifo.png"] = "image"
    # a folder whose name looks like an image
    (images / "folder.png").mkdir()
    # no permission to read (root reads it anyway: then it is simply a good pair)
    _synth.save(images / "no_permission.png", _synth.image_rgb(54))
    _synth.save(masks / "no_permission.png", _synth.binary_mask(54))
    os.chmod(masks / "no_permission.png", 0)
    if os.access(masks / "no_permission.png", os.R_OK):
        good.append("no_permission")
    else:
        bad["masks/no_permission.png"] = "mask"
    return {"good": good, "bad": bad}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below root (links not followed): type, mode, size, mtime and content hash."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = ""
            if stat.S_ISREG(st.st_mode) and os.access(p, os.R_OK):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                digest = os.readlink(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                                             st.st_mtime_ns, digest)
    return out


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "hostile"
    expected = build_hostile(root)
    yield root, expected
    for p in root.rglob("*"):  # let pytest remove the tmp folder
        if p.is_file() and not p.is_symlink() and not stat.S_ISFIFO(p.lstat().st_mode):
            os.chmod(p, 0o644)


def reported_files(doc: dict) -> dict[str, set[str]]:
    """dataset-relative path -> codes of the findings that list it (paths only; reasons are in file_details)."""
    out: dict[str, set[str]] = {}
    for f in doc["findings"]:
        assert set(f["file_details"]) <= set(f["files"]), f["code"]
        for entry in f["files"]:
            out.setdefault(entry, set()).add(f["code"])
    return out


def test_hostile_dataset_cli(hostile, tmp_path, monkeypatch, capsys):
    root, expected = hostile
    out = tmp_path / "out"
    out.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)

    code = main(["check-data", str(root), "--report", str(out / "report.html"), "--json", str(out / "report.json"),
                 "--jobs", "2"])

    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert code == 1

    # nothing but the two requested files was written, and the dataset is untouched (bytes, modes, mtimes)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == \
           {k: v for k, v in before.items() if not k.startswith("out")}
    assert sorted(os.listdir(out)) == ["report.html", "report.json"]
    assert os.listdir(cwd) == []

    raw = (out / "report.json").read_bytes()
    doc = json.loads(raw.decode("utf-8"))  # strict UTF-8, whatever the file names
    assert not [c for c in doc["checks"] if c["status"] == "crashed"]
    listed = reported_files(doc)
    for rel, which in expected["bad"].items():
        shown = rel.replace(NON_UTF8, _display(NON_UTF8))
        assert shown in listed, f"{rel} ({which}) is not reported; reported: {sorted(listed)}"
    # the specific finding where there is one
    assert "SD107" in listed["masks/nan_mask.npy"]
    assert "SD001" in listed["masks/five_channel_tif.tif"] and "SD104" not in listed["masks/five_channel_tif.tif"]
    # the folder link back up the tree lists nothing twice: no phantom images/loop/... files, no unpaired files
    assert not [f for f in listed if "loop" in f]
    assert not {"SD002", "SD003"} & {f["code"] for f in doc["findings"]}
    unreadable = {e for f in doc["findings"] if f["code"] == "SD001" for e in f["files"]}
    sd001 = next(f for f in doc["findings"] if f["code"] == "SD001")
    assert set(sd001["file_details"]) == set(sd001["files"]) and all(sd001["file_details"].values())
    # every listed path is a file under the dataset, exactly as named (names that are not UTF-8 are shown escaped)
    for path in listed:
        if _display(NON_UTF8) not in path:
            assert (root / path).exists() or (root / path).is_symlink(), path
    for stem in expected["good"]:
        assert not any(Path(u).stem == _display(stem) for u in unreadable), f"good pair {stem} called unreadable"

    html = (out / "report.html").read_bytes().decode("utf-8")  # strict: no lone surrogates
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;x &amp; &#34;q&#34;" in html


def _display(name: str) -> str:
    """How a report shows a name that is not valid UTF-8: the undecodable bytes as \\xNN escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def test_hostile_dataset_everything_else_analysed(hostile):
    root, expected = hostile
    report = check_data(root, jobs=1)
    ctx = report.context
    by_stem = {p.key: rec for p, rec in ctx.items()}
    for stem in expected["good"]:
        rec = by_stem[stem]
        assert "image_info" in rec and "mask_info" in rec, (stem, rec.get("image_error"), rec.get("mask_error"))
    infos = {stem: by_stem[stem]["image_info"] for stem in ("img16", "imgfloat")}
    assert infos["img16"]["bits"] == 16 and infos["imgfloat"]["dtype"] == "float32"
    assert report.fails("error")
    assert report.facts["unpaired_images"] == 0 and report.facts["unpaired_masks"] == 0
    errors = {p.key: rec.get("mask_error", "") for p, rec in ctx.items()}
    assert "one-hot" in errors["one_hot_npy"] and "argmax" in errors["one_hot_npy"]
    assert "size limit" in by_stem["bomb_tif_5_samples"]["image_error"]
    assert "FIFO" in by_stem["fifo"]["image_error"]


def test_hostile_dataset_same_findings_with_dask(hostile):
    pytest.importorskip("distributed")
    root, _ = hostile
    before = snapshot(root.parent)
    local = check_data(root, jobs=1)
    dask = check_data(root, engine="dask", jobs=2)
    assert snapshot(root.parent) == before
    assert [(f.code, f.title, f.files) for f in dask.findings] == [(f.code, f.title, f.files) for f in local.findings]


def test_file_without_read_permission(tmp_path):
    root = tmp_path / "ds"
    for i in range(3):
        _synth.pair(root, f"c{i}", _synth.binary_mask(i), seed=i)
    locked = root / "masks" / "c1.png"
    os.chmod(locked, 0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: a file without read permission is still readable")
        report = check_data(root, jobs=1)
        sd001 = [f for f in report.findings if f.code == "SD001"]
        assert sd001, [(f.code, f.files) for f in report.findings]
        assert sd001[0].files == ("masks/c1.png",) and sd001[0].file_details["masks/c1.png"]
    finally:
        os.chmod(locked, 0o644)


def test_permission_denied_is_not_called_corrupt(tmp_path, monkeypatch):
    """Runs as root too: the decoder's PermissionError is simulated."""
    from PIL import Image

    from segdoctor.io.readers import UnreadableFile, read_file

    path = _synth.save(tmp_path / "m.png", _synth.binary_mask(0))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    import segdoctor.io.readers as readers

    # a file the process may not read: its bytes cannot be read ahead (None), and Pillow's open raises
    monkeypatch.setattr(readers, "_file_bytes", lambda source, suffix: None)
    monkeypatch.setattr(Image, "open", denied)
    with pytest.raises(UnreadableFile, match="^cannot open: Permission denied$"):
        read_file(path)
