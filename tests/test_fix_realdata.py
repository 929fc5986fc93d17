"""segdoctor fix on the real datasets of ../shared/realdata: after fix + re-check no SD1xx error is left."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import realdata_path
from segdoctor.findings import Severity
from segdoctor.fix.run import fix_dataset
from segdoctor.stats.labels import VOC_VOID_COLOUR, voc_palette
from test_fix_command import fingerprint

pytestmark = pytest.mark.realdata


def read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def run(name: str, tmp_path, **kw):
    src = realdata_path(name)
    before = fingerprint(src)
    out = tmp_path / f"{name}-fixed"
    report = fix_dataset(src, out, jobs=2, **kw)
    assert fingerprint(src) == before
    sd1_errors = [(f.code, f.title) for f in report.findings if f.code.startswith("SD1") and f.severity is Severity.ERROR]
    assert sd1_errors == [], sd1_errors
    assert report.unrepaired == []
    manifest = json.loads((out / "segdoctor-fix.json").read_text())
    return src, out, report, manifest


def test_membrane_0_255_masks_binarised_exactly(tmp_path):
    src, out, report, m = run("membrane_isbi2012", tmp_path)
    assert m["summary"]["files_repaired"] == 30
    for p in sorted((src / "train" / "label").glob("*.png")):
        assert np.array_equal(read(out / "train" / "label" / p.name), (read(p) > 127).astype(np.uint8))
    assert len(list((out / "test").iterdir())) == len(list((src / "test").iterdir()))  # untouched files copied too


def test_kvasir_jpeg_rgb_masks_become_single_channel_0_1_png(tmp_path):
    src, out, report, m = run("kvasir_seg_jpeg", tmp_path)
    assert {r["code"] for r in m["repairs"]} == {"SD101", "SD104", "SD105"}
    changed = 0
    for p in sorted((src / "Kvasir-SEG" / "masks").glob("*.jpg")):
        got = read(out / "Kvasir-SEG" / "masks" / (p.stem + ".png"))
        stored = read(p)
        assert got.ndim == 2 and set(np.unique(got)) <= {0, 1}
        assert np.array_equal(got, (stored[..., 0] > 127).astype(np.uint8))
        changed += int(np.count_nonzero(~np.isin(stored[..., 0], (0, 255))))
        assert not (out / "Kvasir-SEG" / "masks" / p.name).exists()
    assert changed > 0  # JPEG values around the class values were snapped


def test_voc_rgb_targets_become_voc_indices_with_void(tmp_path):
    src, out, report, m = run("voc_rgb_targets", tmp_path)
    lut = {tuple(int(x) for x in c): i for i, c in enumerate(voc_palette(256)[:21])}
    lut[VOC_VOID_COLOUR] = 255
    for p in sorted(src.glob("*_target.png")):
        rgb = read(p)[..., :3]
        expected = np.vectorize(lambda r, g, b: lut[(r, g, b)], otypes=[np.uint8])(rgb[..., 0], rgb[..., 1], rgb[..., 2])
        assert np.array_equal(read(out / p.name), expected)
    assert any(f.code == "SD103" for f in report.findings)  # the void label is kept, and said
    assert (out / "1_pred.png").read_bytes() == (src / "1_pred.png").read_bytes()


def test_cityscapes_train_ids_copied_unchanged(tmp_path):
    src, out, report, m = run("cityscapes_trainids", tmp_path)
    assert m["changed"] == [] and m["summary"]["files_hard_linked"] == 4
    copied = fingerprint(out)
    del copied["segdoctor-fix.json"]
    assert copied == fingerprint(src)  # every file, label files not taken as masks included, byte for byte
