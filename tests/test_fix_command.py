"""segdoctor fix end to end: each defect built in tmp_path, repaired in a copy, re-checked; the input never changes."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _synth import (
    binary_mask,
    dataset,
    image_rgb,
    jpeg_roundtrip,
    multiclass_mask,
    pair,
    resize,
    save,
    save_palette,
)
from conftest import REPO
from segdoctor.cli import main
from segdoctor.commands.data import check_data
from segdoctor.fix.run import fix_dataset
from segdoctor.stats.labels import voc_palette
from synth import blob_pair, write_dataset
from test_fix_repairs import void_border, voc_rgb

N = 6


def fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file under root: the input tree must keep both."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def fix(src: Path, out: Path, *extra: str) -> int:
    return main(["fix", str(src), "--out", str(out), "--jobs", "1", "-q", "--report", "none", *extra])


def manifest(out: Path) -> dict:
    return json.loads((out / "segdoctor-fix.json").read_text())


def changed(out: Path) -> dict[str, dict]:
    return {e["source"]: e for e in manifest(out)["changed"]}


def recheck(out: Path, **kw):
    return {f.code for f in check_data(out, jobs=1, **kw).findings}


# ---- the repairs, against the ground truth ---------------------------------------------------------

def test_0_255_masks_become_0_1_exactly_and_the_rest_is_linked(tmp_path):
    truths = [binary_mask(i) for i in range(N)]
    src = dataset(tmp_path / "data", [m * 255 for m in truths])
    before = fingerprint(src)
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    for i, truth in enumerate(truths):
        assert np.array_equal(read(out / "masks" / f"case_{i:03d}.png"), truth)
        img, orig = out / "images" / f"case_{i:03d}.png", src / "images" / f"case_{i:03d}.png"
        assert img.read_bytes() == orig.read_bytes() and os.path.samefile(img, orig)  # hard link
    assert "SD101" not in recheck(out)
    assert fingerprint(src) == before
    m = manifest(out)
    assert m["repairs"][0]["code"] == "SD101" and m["repairs"][0]["after"] == "gone"
    entry = changed(out)["masks/case_000.png"]
    assert entry["sha256_before"] == hashlib.sha256((src / "masks" / "case_000.png").read_bytes()).hexdigest()
    assert entry["values_before"]["values"] == [0, 255] and entry["values_after"]["values"] == [0, 1]
    assert entry["extension_changed"] is False and entry["repairs"][0]["code"] == "SD101"
    assert m["summary"]["files_repaired"] == N and m["summary"]["files_hard_linked"] == N


def test_copy_option_copies_instead_of_linking(tmp_path):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(4)])
    out = tmp_path / "fixed"
    assert fix(src, out, "--copy") == 0
    img = out / "images" / "case_000.png"
    assert not os.path.samefile(img, src / "images" / "case_000.png")
    assert img.read_bytes() == (src / "images" / "case_000.png").read_bytes()
    assert manifest(out)["summary"]["files_copied"] == 4


def test_label_offset_is_remapped_exactly(tmp_path):
    truths = [multiclass_mask(i, classes=(0, 1, 2)) for i in range(N)]
    src = dataset(tmp_path / "data", [t + 1 for t in truths])
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    for i, t in enumerate(truths):
        assert np.array_equal(read(out / "masks" / f"case_{i:03d}.png"), t)
    assert "SD102" not in recheck(out)


def test_voc_colour_masks_become_index_masks_with_void(tmp_path):
    truths = [void_border(multiclass_mask(i, classes=(0, 1, 15))) for i in range(N)]
    src = dataset(tmp_path / "data", [voc_rgb(t) for t in truths])
    out = tmp_path / "fixed"
    fix(src, out)
    for i, t in enumerate(truths):
        got = read(out / "masks" / f"case_{i:03d}.png")
        assert got.ndim == 2 and np.array_equal(got, t)
    assert "SD104" not in recheck(out)
    action = changed(out)["masks/case_000.png"]["repairs"][0]["action"]
    assert "(224, 224, 192)->255" in action and "(128, 0, 0)->1" in action


def test_equal_channel_masks_stored_once(tmp_path):
    truths = [binary_mask(i) for i in range(N)]
    src = dataset(tmp_path / "data", [np.stack([t] * 3, -1) for t in truths])
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    for i, t in enumerate(truths):
        assert np.array_equal(read(out / "masks" / f"case_{i:03d}.png"), t)
    assert "SD104" not in recheck(out)


@pytest.mark.parametrize("quality", [75, 95])
def test_jpeg_masks_become_png_and_match_the_mask(tmp_path, quality):
    truths = [binary_mask(i, fg=255) for i in range(N)]
    src = tmp_path / "data"
    for i, t in enumerate(truths):
        save(src / "images" / f"c{i}.png", image_rgb(i))
        save(src / "masks" / f"c{i}.jpg", t, quality=quality)
    out = tmp_path / "fixed"
    assert fix(src, out, "--select", "SD105") == 0
    agreement = np.mean([(read(out / "masks" / f"c{i}.png") == t).mean() for i, t in enumerate(truths)])
    assert agreement >= 0.995, agreement
    assert not list((out / "masks").glob("*.jpg"))
    entry = changed(out)["masks/c0.jpg"]
    assert entry["output"] == "masks/c0.png" and entry["extension_changed"] and entry["format_before"] == "JPEG"
    assert "SD105" not in recheck(out)


def test_colour_jpeg_masks_snapped_and_mapped(tmp_path):
    truths = [multiclass_mask(i, classes=(0, 1, 15)) for i in range(N)]
    src = tmp_path / "data"
    for i, t in enumerate(truths):
        save(src / "images" / f"c{i}.png", image_rgb(i))
        save(src / "masks" / f"c{i}.jpg", voc_rgb(t), quality=95)
    out = tmp_path / "fixed"
    fix(src, out)
    agreement = np.mean([(read(out / "masks" / f"c{i}.png") == t).mean() for i, t in enumerate(truths)])
    assert agreement >= 0.995, agreement
    codes = recheck(out)
    assert not codes & {"SD104", "SD105", "SD106"}, codes


def test_bilinear_masks_snapped(tmp_path):
    truths = [binary_mask(i, fg=255) for i in range(N)]
    src = dataset(tmp_path / "data", [resize(resize(t, 256, Image.NEAREST), 64, Image.BILINEAR) for t in truths])
    assert "SD106" in recheck(src)
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    fixed = [read(out / "masks" / f"case_{i:03d}.png") for i in range(N)]
    agreement = np.mean([(f == (t > 0)).mean() for f, t in zip(fixed, truths)])
    assert agreement >= 0.995, agreement
    assert not recheck(out) & {"SD101", "SD106"}


def test_all_together_on_the_bundled_sample(tmp_path):
    src = REPO / "sample_data" / "coins_broken"
    clean = REPO / "sample_data" / "coins_clean"
    before = fingerprint(src)
    out = tmp_path / "fixed"
    assert fix(src, out) == 1  # the truncated image (SD001) needs the user
    agree = {}
    for p in sorted((clean / "masks").glob("*.png")):
        agree[p.name] = float((read(out / "masks" / p.name) == read(p)).mean())
    assert min(agree.values()) >= 0.995, agree
    assert sum(v == 1.0 for v in agree.values()) >= 9  # every PNG and JPEG mask exactly; resized ones >= 99.5%
    m = manifest(out)
    assert {r["code"] for r in m["repairs"]} == {"SD101", "SD105", "SD106"}
    assert {n["code"] for n in m["needs_you"]} == {"SD001", "SD002"}
    assert m["needs_you"][0]["files"]
    assert (out / "images" / "coin_03.png").read_bytes() == (src / "images" / "coin_03.png").read_bytes()
    assert (out / "images" / "coin_99.png").is_file()  # complete copy: unpaired files too
    assert fingerprint(src) == before


def test_flipped_masks_are_flipped_back(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [blob_pair(rng, size=96) for _ in range(12)]
    write_dataset(tmp_path / "data", [(img, np.ascontiguousarray(m[:, ::-1])) for img, m in pairs])
    out = tmp_path / "fixed"
    fix(tmp_path / "data", out, "--select", "SD25")
    m = manifest(out)
    assert m["repairs"][0]["code"] == "SD252"
    repaired = {e["source"] for e in m["changed"]}
    for i, (_, truth) in enumerate(pairs):
        got = read(out / "masks" / f"s{i:03d}.png")
        if f"masks/s{i:03d}.png" in repaired:
            assert np.array_equal(got, truth)
    assert len(repaired) >= 10
    assert "SD252" not in recheck(out, select=["SD25"])


def test_transposed_masks_are_transposed_back(tmp_path):
    truths = [multiclass_mask(i, size=64, classes=(0, 1))[:, :40] for i in range(4)]
    src = tmp_path / "data"
    for i, t in enumerate(truths):
        pair(src, f"c{i}", t, image=image_rgb(i, 64)[:, :40])
    save(src / "masks" / "c1.png", np.ascontiguousarray(truths[1].T))
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    assert np.array_equal(read(out / "masks" / "c1.png"), truths[1])
    assert list(changed(out)) == ["masks/c1.png"]
    assert "SD004" not in recheck(out)
    save(src / "masks" / "c2.png", np.ascontiguousarray(truths[2][::2, ::2]))  # a size mismatch with no repair
    assert fix(src, tmp_path / "fixed2") == 1
    assert list(changed(tmp_path / "fixed2")) == ["masks/c1.png"]
    need = [n for n in manifest(tmp_path / "fixed2")["needs_you"] if n["code"] == "SD004"]
    assert len(need) == 1 and need[0]["files"] == ["masks/c2.png"] and "nearest" in need[0]["reason"]
    assert "image" in need[0]["file_details"]["masks/c2.png"]  # what is wrong with it travels beside the path


def test_findings_without_repair_parameters_are_left_to_the_user(tmp_path):
    from segdoctor.findings import Finding, Severity
    from segdoctor.fix.plan import make_plan
    from segdoctor.io.dataset import discover_dataset

    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(3)])
    old = Finding("SD101", "mask-0-255", Severity.ERROR, "All 3 masks ...", {"foreground_value": 255}, "why", "fix",
                  files=("masks/case_000.png",))
    plan = make_plan([old], discover_dataset(src))
    assert plan.tasks == [] and plan.needs_you[0].code == "SD101" and "parameters" in plan.needs_you[0].reason


def _exif_jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "a camera"  # other tags stay
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())


def test_exif_rotated_images_are_turned_and_untagged(tmp_path):
    src = tmp_path / "data"
    masks = [binary_mask(i)[:, :40] for i in range(4)]
    stored = [image_rgb(i)[:40, :] for i in range(4)]  # the camera stored the pixels lying on their side
    for i in range(4):
        # the mask was drawn on the picture as a viewer shows it: rotated 90 degrees clockwise (orientation 6)
        _exif_jpeg(src / "images" / f"c{i}.jpg", stored[i], 6 if i < 2 else 1)
        save(src / "masks" / f"c{i}.png", masks[i] if i < 2 else np.ascontiguousarray(np.rot90(masks[i], 1)))
    out = tmp_path / "fixed"
    fix(src, out, "--select", "SD203")
    for i in range(2):
        with Image.open(out / "images" / f"c{i}.png") as im:
            assert im.getexif().get(0x0112) is None and im.getexif().get(0x010F) == "a camera"
            assert np.array_equal(np.asarray(im)[..., :3].shape[:2], masks[i].shape)
    assert not (out / "images" / "c0.jpg").exists() and (out / "images" / "c2.jpg").is_file()
    assert "SD203" not in recheck(out)
    assert "SD004" not in recheck(out)


def test_exif_tag_dropped_when_the_mask_matches_the_stored_pixels(tmp_path):
    src = tmp_path / "data"
    for i in range(3):
        _exif_jpeg(src / "images" / f"c{i}.jpg", image_rgb(i)[:40, :], 6)
        save(src / "masks" / f"c{i}.png", binary_mask(i)[:40, :])  # drawn on the stored pixels
    out = tmp_path / "fixed"
    fix(src, out, "--select", "SD203")
    entry = changed(out)["images/c0.jpg"]
    assert entry["shape_after"] == entry["shape_before"] and "pixels kept" in entry["notes"][0]
    assert "SD004" not in recheck(out)


def test_palette_masks_keep_their_palette_when_rewritten(tmp_path):
    rng = np.random.default_rng(1)
    truths = []
    root = tmp_path / "data"
    for i in range(12):
        img, m = blob_pair(rng, size=96)
        m = (m * 15).astype(np.uint8)
        truths.append(m)
        save(root / "images" / f"s{i:03d}.png", img)
        save_palette(root / "masks" / f"s{i:03d}.png", np.ascontiguousarray(m[::-1]))
    out = tmp_path / "fixed"
    fix(root, out, "--select", "SD252,SD109")
    m = manifest(out)
    assert m["kept"][0]["code"] == "SD109"
    for e in m["changed"]:
        with Image.open(out / e["output"]) as im:
            assert im.mode == "P" and im.getpalette()[:48] == voc_palette(16).ravel().tolist()
            i = int(Path(e["source"]).stem[1:])
            assert np.array_equal(np.array(im), truths[i])


# ---- what the command promises ---------------------------------------------------------------------

def test_dry_run_writes_nothing_but_the_plan(tmp_path, monkeypatch, capsys):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(4)])
    before = fingerprint(src)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rc = main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--dry-run", "--jobs", "1"])
    assert rc == 1  # SD101 is found (and would be repaired)
    assert not (tmp_path / "fixed").exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["segdoctor-fix-plan.json"]  # no HTML report either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "data"]
    plan = json.loads((cwd / "segdoctor-fix-plan.json").read_text())
    assert plan["dry_run"] is True and len(plan["changed"]) == 4
    assert plan["changed"][0]["values_after"]["values"] == [0, 1]
    assert "sha256_after" not in plan["changed"][0]
    assert "Dry run: 4 file(s) would be repaired" in capsys.readouterr().out
    assert fingerprint(src) == before
    other = tmp_path / "plan.json"
    assert main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--dry-run", "--manifest", str(other),
                 "-q", "--jobs", "1"]) == 1
    assert other.is_file() and not (tmp_path / "fixed").exists()


def test_remaining_warning_still_fails(tmp_path, monkeypatch):
    import segdoctor.fix.apply as apply

    src = dataset(tmp_path / "data", [multiclass_mask(i, classes=(1, 2, 3)) for i in range(4)])
    # a broken repair: ids shifted by one more, so the offset is still there afterwards
    monkeypatch.setattr(apply, "remap_ids", lambda a, table: (np.asarray(a) + 1).astype(np.uint8))
    out = tmp_path / "fixed"
    rc = main(["fix", str(src), "--out", str(out), "--jobs", "1", "-q", "--report", "none",
               "--json", str(tmp_path / "r.json")])
    assert rc == 1  # SD102 is a warning, below --fail-on error, but a repair that did not work fails
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["command"] == "fix" and r["fix"]["still_found"] == ["SD102"]
    assert manifest(out)["repairs"][0]["after"].startswith("still found")
    assert main(["fix", str(src), "--out", str(tmp_path / "f2"), "--jobs", "1", "-q", "--report", "none",
                 "--fail-on", "never"]) == 0


def test_select_limits_the_repairs(tmp_path):
    truths = [binary_mask(i, fg=255) for i in range(N)]
    src = tmp_path / "data"
    for i, t in enumerate(truths):
        save(src / "images" / f"c{i}.png", image_rgb(i))
        save(src / "masks" / f"c{i}.jpg", t, quality=80)
    out = tmp_path / "fixed"
    fix(src, out, "--select", "SD105")
    assert set(np.unique(read(out / "masks" / "c0.png"))) == {0, 255}  # snapped, not binarised
    fix(src, tmp_path / "fixed2", "--ignore", "SD1")
    assert (tmp_path / "fixed2" / "masks" / "c0.jpg").is_file()  # nothing selected to repair: copied as it is
    assert not (tmp_path / "fixed2" / "masks" / "c0.png").exists()
    assert manifest(tmp_path / "fixed2")["changed"] == []


def test_html_report_of_fix_and_of_check_data(tmp_path):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(4)])
    save(src / "images" / "orphan.png", image_rgb(9))
    report = tmp_path / "fix.html"
    main(["fix", str(src), "--out", str(tmp_path / "fixed"), "--jobs", "1", "-q", "--report", str(report)])
    html = report.read_text()
    assert "Repairs: before and after" in html and "Needs you" in html and "gone" in html
    assert "Every repaired finding is gone" in html
    cd = tmp_path / "cd.html"
    main(["check-data", str(src), "--jobs", "1", "-q", "--report", str(cd), "--num-classes", "2"])
    html = cd.read_text()
    assert html.count("Repair a copy automatically") == 1  # SD101 only; the unpaired image has no repair
    assert f"segdoctor fix {src} --out {src}-fixed --num-classes 2 --select SD101" in html


def test_fix_command_quotes_paths(tmp_path):
    src = dataset(tmp_path / "my data; rm -rf x", [binary_mask(i) * 255 for i in range(3)])
    cd = tmp_path / "cd.html"
    main(["check-data", str(src), "--jobs", "1", "-q", "--report", str(cd)])
    assert f"segdoctor fix &#39;{src}&#39;" in cd.read_text()


def test_parallel_and_serial_runs_write_the_same_files(tmp_path):
    src = dataset(tmp_path / "data", [jpeg_roundtrip(binary_mask(i, fg=255), 70) for i in range(12)])
    fix(src, tmp_path / "a")
    main(["fix", str(src), "--out", str(tmp_path / "b"), "--jobs", "2", "-q", "--report", "none"])
    for p in sorted((tmp_path / "a" / "masks").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / "masks" / p.name).read_bytes()


def test_dask_engine_writes_the_same_files(tmp_path):
    pytest.importorskip("distributed")
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(6)])
    fix(src, tmp_path / "a")
    assert main(["fix", str(src), "--out", str(tmp_path / "b"), "--engine", "dask", "--jobs", "1", "-q",
                 "--report", "none"]) == 0
    for p in sorted((tmp_path / "a" / "masks").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / "masks" / p.name).read_bytes()


def test_overwrite_replaces_a_previous_fix_output(tmp_path):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(3)])
    before = fingerprint(src)
    out = tmp_path / "fixed"
    assert fix(src, out) == 0
    (out / "stale.txt").write_text("from an earlier run")
    assert fix(src, out) == 2  # not empty
    assert fix(src, out, "--overwrite") == 0
    assert not (out / "stale.txt").exists() and (out / "segdoctor-fix.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert fingerprint(src) == before


def test_an_existing_empty_folder_is_used(tmp_path):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(3)])
    out = tmp_path / "fixed"
    out.mkdir()
    assert fix(src, out) == 0
    assert (out / "masks" / "case_000.png").is_file()


def test_unrepairable_mask_is_copied_and_listed(tmp_path):
    from scipy import ndimage

    src = tmp_path / "data"
    for i in range(N):
        pair(src, f"c{i}", binary_mask(i))
    np.save(src / "masks" / "c9.npy", ndimage.gaussian_filter(binary_mask(9).astype(np.float32), 1.5))  # soft labels
    save(src / "images" / "c9.png", image_rgb(9))
    out = tmp_path / "fixed"
    report = fix_dataset(src, out, jobs=1)
    assert (out / "masks" / "c9.npy").read_bytes() == (src / "masks" / "c9.npy").read_bytes()
    m = manifest(out)
    assert [x["file"] for x in m["not_repaired"]] == ["masks/c9.npy"] and "soft" in m["not_repaired"][0]["reason"]
    assert report.unrepaired == ["SD106"] and "Still found after repair: SD106" in report.verdict
    assert report.fails("error")


def test_hard_links_are_never_written_through(tmp_path):
    src = dataset(tmp_path / "data", [binary_mask(i) * 255 for i in range(3)])
    before = fingerprint(src)
    out = tmp_path / "fixed"
    fix(src, out)
    fix(src, out, "--overwrite")  # deletes an output full of links to the originals
    fix(out, tmp_path / "again")  # and fixes a fixed copy whose images are links to the originals
    assert fingerprint(src) == before
    with Image.open(io.BytesIO((src / "masks" / "case_000.png").read_bytes())) as im:
        assert set(np.unique(np.array(im))) == {0, 255}
