"""SD001-SD005 and SD101-SD109: one failing and one passing case each, built in tmp_path, through check_data.

The failing fixtures are made the way the defects arise in practice: masks resized with Pillow's bilinear or
bicubic filter, masks saved as JPEG (or PNG decoded from a JPEG), 0/255 exports, trimaps, VOC colour masks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from _synth import (
    above_info,
    binary_mask,
    by_code,
    codes,
    dataset,
    image_rgb,
    jpeg_roundtrip,
    multiclass_mask,
    pair,
    resize,
    save,
    save_palette,
)
from conftest import realdata_path
from segdoctor.commands.data import check_data
from segdoctor.findings import Severity
from segdoctor.io.readers import read_array
from segdoctor.stats.labels import VOC_VOID_COLOUR, voc_palette

N = 6
ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


def run(path, **kw):
    return check_data(path, jobs=1, **kw)


def severities(report, prefix: str = "SD") -> dict[str, Severity]:
    return {f.code: f.severity for f in report.findings if f.code.startswith(prefix)}


def assert_clean(report):
    """Nothing above info from the SD0xx/SD10x checks, and no check crashed."""
    assert above_info(report) == []
    assert [c.code for c in report.checks if c.status == "crashed"] == []


def with_void_border(mask: np.ndarray, width: int = 1, void: int = 255) -> np.ndarray:
    """Mark the pixels within ``width`` of a class boundary as void (the VOC convention)."""
    fg = mask > 0
    band = ndimage.binary_dilation(fg, iterations=width) & ~ndimage.binary_erosion(fg, iterations=width)
    out = mask.copy()
    out[band] = void
    return out


def voc_colour(mask: np.ndarray) -> np.ndarray:
    """Index mask (255 = void) -> RGB with the VOC palette and the void colour."""
    rgb = voc_palette(256)[mask]
    rgb[mask == 255] = VOC_VOID_COLOUR
    return rgb


# ---------------------------------------------------------------- clean data


def test_clean_binary_masks_raise_nothing(tmp_path):
    report = run(dataset(tmp_path, [binary_mask(i) for i in range(N)]))
    assert_clean(report)
    assert report.findings == []
    assert {c.status for c in report.checks if c.code not in ("SD153", "SD154")} == {"passed"}
    # the split comparisons cannot apply to a dataset without splits: skipped, saying why
    skipped = {c.code: c.message for c in report.checks if c.status == "skipped"}
    assert set(skipped) == {"SD153", "SD154"} and all("no splits" in m for m in skipped.values())


def test_clean_multiclass_masks_raise_nothing(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2, 3)) for i in range(N)]))
    assert_clean(report)
    assert report.findings == []


def test_clean_multiclass_with_num_classes_raises_nothing(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2)) for i in range(N)]), num_classes=3)
    assert report.findings == []


# ---------------------------------------------------------------- SD001 unreadable-file


def test_sd001_unreadable_files_are_listed_and_the_scan_goes_on(tmp_path):
    dataset(tmp_path, [binary_mask(i, fg=255) for i in range(4)])
    (tmp_path / "masks" / "case_000.png").write_bytes(b"")
    data = (tmp_path / "masks" / "case_001.png").read_bytes()
    (tmp_path / "masks" / "case_001.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "images" / "case_002.png").write_text("not an image, just text with a .png name\n" * 5)
    report = run(tmp_path)
    f = by_code(report, "SD001")
    assert f.severity is ERROR and f.name == "unreadable-file"
    assert f.title == "3 files cannot be decoded"
    assert f.evidence["unreadable"] == 3
    listed = f.file_details  # files are paths only; the reason of each is beside it
    assert set(f.files) == set(listed) == {"masks/case_000.png", "masks/case_001.png", "images/case_002.png"}
    assert "empty" in listed["masks/case_000.png"]
    assert "not an image" in listed["images/case_002.png"]
    assert "truncated" in listed["masks/case_001.png"] or "corrupt" in listed["masks/case_001.png"]
    # the rest was analysed: the readable 0/255 masks still produce SD101
    assert "SD101" in codes(report)
    assert [c.code for c in report.checks if c.status == "crashed"] == []


def test_sd001_passes_on_readable_files(tmp_path):
    assert "SD001" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(3)])))


# ---------------------------------------------------------------- SD002 / SD003 unpaired


def test_sd002_unpaired_images_warning(tmp_path):
    dataset(tmp_path, [binary_mask(i) for i in range(5)])
    save(tmp_path / "images" / "orphan.png", image_rgb(9))
    f = by_code(run(tmp_path), "SD002")
    assert f.severity is WARNING and f.name == "unpaired-image"
    assert f.title == "1 of 6 images have no mask"
    assert f.files == ("images/orphan.png",)
    assert f.evidence["example_stems"] == "orphan"
    assert "identical file stems" in f.evidence["pairing_rule"]


def test_sd002_error_when_more_than_half_unpaired(tmp_path):
    dataset(tmp_path, [binary_mask(i) for i in range(2)])
    for i in range(3):
        save(tmp_path / "images" / f"orphan{i}.png", image_rgb(i))
    f = by_code(run(tmp_path), "SD002")
    assert f.severity is ERROR
    assert f.evidence["unpaired_images"] == 3 and f.evidence["images"] == 5
    assert len(f.files) == 3


def test_sd003_unpaired_masks(tmp_path):
    dataset(tmp_path, [binary_mask(i) for i in range(3)])
    save(tmp_path / "masks" / "stray.png", binary_mask(7))
    report = run(tmp_path)
    f = by_code(report, "SD003")
    assert f.severity is WARNING and f.name == "unpaired-mask"
    assert f.files == ("masks/stray.png",)
    assert f.title == "1 of 4 masks have no image"
    assert "SD002" not in codes(report)


def test_sd002_sd003_pass_when_everything_pairs(tmp_path):
    report = run(dataset(tmp_path, [binary_mask(i) for i in range(3)]))
    assert not codes(report) & {"SD002", "SD003"}


# ---------------------------------------------------------------- SD004 shape-mismatch


def test_sd004_transposed_masks(tmp_path):
    for i in range(3):
        img = np.zeros((48, 64, 3), np.uint8) + i
        pair(tmp_path, f"c{i}", binary_mask(i, size=64)[:48].T.copy(), image=img)
    f = by_code(run(tmp_path), "SD004")
    assert f.severity is ERROR and f.name == "shape-mismatch"
    assert "transposed" in f.title
    assert "swapaxes" in f.snippet
    assert len(f.files) == 3 and "image 64x48, mask 48x64" in f.file_details[f.files[0]]
    assert f.title == "All 3 pairs have image and mask of different sizes: 3 transposed (H and W swapped)"


def test_sd004_integer_scale(tmp_path):
    for i in range(2):
        pair(tmp_path, f"c{i}", binary_mask(i, size=32), image=image_rgb(i, 64))
    f = by_code(run(tmp_path), "SD004")
    assert "2x smaller" in f.title
    assert "NEAREST" in f.snippet or "nearest" in f.snippet
    assert f.evidence["mismatched_pairs"] == 2


def test_sd004_only_the_mismatched_pair(tmp_path):
    dataset(tmp_path, [binary_mask(i) for i in range(3)])
    save(tmp_path / "masks" / "case_001.png", binary_mask(1, size=50))
    f = by_code(run(tmp_path), "SD004")
    assert f.files == ("masks/case_001.png",)
    assert f.file_details == {"masks/case_001.png": "image 64x64, mask 50x50 (different size)"}
    assert f.title == "1 of 3 pairs have image and mask of different sizes"  # no "(different size)" repeated


def test_sd004_passes_on_equal_sizes(tmp_path):
    assert "SD004" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(3)])))


# ---------------------------------------------------------------- SD005 inconsistent-images


def test_sd005_rgb_and_gray_images_mixed(tmp_path):
    for i in range(5):
        img = image_rgb(i)
        if i >= 3:
            img = img[..., 0]
        pair(tmp_path, f"c{i}", binary_mask(i), image=img)
    f = by_code(run(tmp_path), "SD005")
    assert f.severity is WARNING and f.name == "inconsistent-images"
    assert sorted(f.files) == ["images/c3.png", "images/c4.png"]
    assert f.evidence == {"RGB uint8 (8-bit)": 3, "gray uint8 (8-bit)": 2}
    assert "2 of 5" in f.title


def test_sd005_16_bit_and_8_bit(tmp_path):
    for i in range(4):
        img = image_rgb(i)[..., 0]
        if i == 0:
            img = img.astype(np.uint16) * 257
        pair(tmp_path, f"c{i}", binary_mask(i), image=img)
    f = by_code(run(tmp_path), "SD005")
    assert f.files == ("images/c0.png",)


def test_sd005_passes_on_one_mode(tmp_path):
    assert "SD005" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(4)])))


# ---------------------------------------------------------------- SD101 mask-0-255


def test_sd101_masks_0_255(tmp_path):
    report = run(dataset(tmp_path, [binary_mask(i, fg=255) for i in range(N)]))
    f = by_code(report, "SD101")
    assert f.severity is ERROR and f.name == "mask-0-255"
    assert f.title == f"All {N} masks store the foreground as 255 instead of 1"
    assert "> 127" in f.snippet
    assert f.evidence["foreground_value"] == 255 and f.evidence["masks_with_0_k"] == N
    assert len(f.files) == N
    assert severities(report, "SD1") == {"SD101": ERROR}


def test_sd101_masks_0_k(tmp_path):
    report = run(dataset(tmp_path, [binary_mask(i, fg=38) for i in range(N)]))
    f = by_code(report, "SD101")
    assert f.evidence["foreground_value"] == 38
    assert "> 19" in f.snippet


def test_sd101_mixed_0_1_and_0_255(tmp_path):
    masks = [binary_mask(i, fg=255 if i % 2 else 1) for i in range(N)]
    report = run(dataset(tmp_path, masks))
    f = by_code(report, "SD101")
    assert f.severity is ERROR
    assert f.evidence["masks_with_0_k"] == 3 and f.evidence["masks_with_0_1"] == 3
    assert sorted(f.files) == [f"masks/case_{i:03d}.png" for i in (1, 3, 5)]
    # 255 here is a second spelling of the foreground, not void, and those masks are not empty
    assert not codes(report) & {"SD103", "SD108"}


def test_sd101_passes_on_0_1(tmp_path):
    assert "SD101" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(N)])))


def test_sd101_not_for_palette_pngs(tmp_path):
    for i in range(N):
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save_palette(tmp_path / "masks" / f"c{i}.png", binary_mask(i, fg=8))
    report = run(tmp_path)
    assert "SD101" not in codes(report)
    assert severities(report) == {"SD109": INFO}


# ---------------------------------------------------------------- SD102 mask-label-offset


def test_sd102_trimap_1_2_3(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(1, 2, 3)) for i in range(N)]))
    f = by_code(report, "SD102")
    assert f.severity is WARNING and f.name == "mask-label-offset"
    assert "start at 1" in f.title
    assert "REMAP = {1: 0, 2: 1, 3: 2}" in f.snippet
    assert "SD101" not in codes(report)


def test_sd102_scaled_ids(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 50, 100, 150)) for i in range(N)]))
    f = by_code(report, "SD102")
    assert f.evidence["class_values"] == "0, 50, 100, 150"
    assert "REMAP = {0: 0, 50: 1, 100: 2, 150: 3}" in f.snippet
    assert "0..3" in f.fix


def test_sd102_passes_on_consecutive_ids(tmp_path):
    assert "SD102" not in codes(run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2, 3)) for i in range(N)])))


def test_sd102_gaps_accepted_when_num_classes_covers_them(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 2, 4)) for i in range(N)]), num_classes=6)
    assert not codes(report) & {"SD102", "SD107"}


# ---------------------------------------------------------------- SD103 mask-void-label


@pytest.mark.parametrize("width", [1, 3])
def test_sd103_void_255_on_borders(tmp_path, width):
    masks = [with_void_border(multiclass_mask(i, classes=(0, 1, 2)), width) for i in range(N)]
    report = run(dataset(tmp_path, masks))
    f = by_code(report, "SD103")
    assert f.severity is WARNING and f.name == "mask-void-label"
    assert f.evidence["void_value"] == 255
    if width == 1:
        assert f.evidence["void_on_borders"] > 0.9
    assert "ignore_class=255" in f.snippet
    assert len(f.files) == N
    # 255 is void, not an error-level label problem
    assert not [c for c, s in severities(report, "SD1").items() if s is ERROR]


def test_sd103_with_num_classes(tmp_path):
    masks = [with_void_border(multiclass_mask(i, classes=(0, 1, 2)), 2) for i in range(N)]
    report = run(dataset(tmp_path, masks), num_classes=3)
    f = by_code(report, "SD103")
    assert "num_classes=3" in f.snippet
    assert "SD107" not in codes(report)


def test_sd103_passes_without_void(tmp_path):
    assert "SD103" not in codes(run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2)) for i in range(N)])))


# ---------------------------------------------------------------- SD104 mask-multichannel


def test_sd104_voc_colour_masks_with_void(tmp_path):
    masks = []
    for i in range(N):
        m = with_void_border(multiclass_mask(i, classes=(0, 1, 15)), 1)
        masks.append(voc_colour(m))
    report = run(dataset(tmp_path, masks))
    f = by_code(report, "SD104")
    assert f.severity is ERROR and f.name == "mask-multichannel"
    assert "Pascal VOC" in f.title
    assert f.evidence["palette"] == "Pascal VOC"
    assert "(192, 128, 128) -> 15" in f.evidence["table"]
    assert "(224, 224, 192) -> 255" in f.evidence["table"]
    assert "(224, 224, 192)" in f.evidence["void_colour"]
    assert "(224, 224, 192): 255,  # void" in f.snippet
    assert "(192, 128, 128): 15,  # person" in f.snippet
    assert "(224, 224, 192)" in f.fix
    assert len(f.files) == N


def test_sd104_custom_colours_inferred_table(tmp_path):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    report = run(dataset(tmp_path, [colours[multiclass_mask(i, classes=(0, 1, 2, 3))] for i in range(N)]))
    f = by_code(report, "SD104")
    assert "Pascal VOC" not in f.title
    assert f.evidence["class_colours"] == 4
    table = dict(x.split(" -> ") for x in f.evidence["table"].split("; "))
    assert table["(0, 0, 0)"] == "0"
    assert sorted(table.values()) == ["0", "1", "2", "3"]
    for c in ("(255, 0, 0)", "(0, 255, 0)", "(0, 0, 255)"):
        assert f"{c}: {table[c]}," in f.snippet
    # the snippet maps the masks it was inferred from onto consecutive ids
    ns: dict = {}
    exec(f.snippet, ns)
    ids = ns["rgb_to_class"](read_array(tmp_path / "masks" / "case_000.png"))
    assert set(np.unique(ids).tolist()) == {0, 1, 2, 3}


def test_sd104_equal_channels(tmp_path):
    report = run(dataset(tmp_path, [np.stack([binary_mask(i)] * 3, -1) for i in range(N)]))
    f = by_code(report, "SD104")
    assert "same label" in f.title
    assert f.evidence == {"masks_equal_channels": N, "masks": N}
    assert "convert('L')" in f.snippet
    # the single channel is judged as a label map: {0, 1} is fine
    assert set(codes(report)) == {"SD104"}


def test_sd104_passes_on_single_channel(tmp_path):
    assert "SD104" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(N)])))


# ---------------------------------------------------------------- SD105 mask-jpeg-artifacts


@pytest.mark.parametrize("quality", [75, 95])
def test_sd105_jpeg_masks(tmp_path, quality):
    for i in range(N):
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save(tmp_path / "masks" / f"c{i}.jpg", binary_mask(i, fg=255), quality=quality)
    report = run(tmp_path)
    f = by_code(report, "SD105")
    assert f.severity is ERROR and f.name == "mask-jpeg-artifacts"
    assert "JPEG" in f.title
    assert f.evidence["masks_lossy_format"] == N
    assert len(f.files) == N
    assert "CLASS_VALUES = np.array([0, 255])" in f.snippet
    assert "SD106" not in codes(report)


@pytest.mark.parametrize("quality", [75, 95])
def test_sd105_png_decoded_from_jpeg(tmp_path, quality):
    report = run(dataset(tmp_path, [jpeg_roundtrip(binary_mask(i, fg=255), quality) for i in range(N)]))
    f = by_code(report, "SD105")
    assert f.severity is ERROR
    assert "lossy compression" in f.title
    assert f.evidence["masks_lossy_format"] == 0
    assert f.evidence["stray_near_class_share"] >= 0.7
    assert "SD106" not in codes(report)


def test_sd105_multiclass_png_from_jpeg(tmp_path):
    masks = [jpeg_roundtrip(multiclass_mask(i, classes=(0, 85, 170, 255)), 90) for i in range(N)]
    report = run(dataset(tmp_path, masks))
    assert "SD105" in codes(report)
    assert "SD106" not in codes(report)


def test_sd105_passes_on_png(tmp_path):
    assert "SD105" not in codes(run(dataset(tmp_path, [binary_mask(i, fg=255) for i in range(N)])))


# ---------------------------------------------------------------- SD106 mask-interpolated


@pytest.mark.parametrize("resample", [Image.BILINEAR, Image.BICUBIC])
@pytest.mark.parametrize("direction", ["up", "down"])
def test_sd106_binary_resized_with_interpolation(tmp_path, resample, direction):
    src = 32 if direction == "up" else 128
    report = run(dataset(tmp_path, [resize(binary_mask(i, size=src, fg=255), 64, resample) for i in range(N)]))
    f = by_code(report, "SD106")
    assert f.severity is ERROR and f.name == "mask-interpolated"
    assert f.evidence["masks_affected"] == N
    assert f.evidence["boundary_pixels_between_neighbours"] > 0.06
    assert "nearest" in f.snippet
    assert "SD105" not in codes(report)


@pytest.mark.parametrize("resample", [Image.BILINEAR, Image.BICUBIC])
def test_sd106_multiclass_resized_with_interpolation(tmp_path, resample):
    masks = [resize(multiclass_mask(i, size=32, classes=(0, 1, 2, 3)), 64, resample) for i in range(N)]
    report = run(dataset(tmp_path, masks))
    f = by_code(report, "SD106")
    assert f.severity is ERROR
    assert f.evidence["masks_affected"] == N
    assert "SD105" not in codes(report)


@pytest.mark.parametrize("fg, classes", [(255, None), (None, (0, 1, 2, 3))])
def test_sd106_passes_on_nearest_resize(tmp_path, fg, classes):
    if fg:
        masks = [resize(binary_mask(i, size=32, fg=fg), 64, Image.NEAREST) for i in range(N)]
    else:
        masks = [resize(multiclass_mask(i, size=32, classes=classes), 64, Image.NEAREST) for i in range(N)]
    report = run(dataset(tmp_path, masks))
    assert not codes(report) & {"SD105", "SD106"}


def test_sd106_float_soft_masks(tmp_path):
    import tifffile

    for i in range(N):
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        soft = ndimage.gaussian_filter(binary_mask(i).astype(np.float32), 1.5)
        (tmp_path / "masks").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "masks" / f"c{i}.tif", soft)
    f = by_code(run(tmp_path), "SD106")
    assert f.evidence["float_soft_masks"] == N


# ---------------------------------------------------------------- SD107 mask-unexpected-labels


def test_sd107_ids_outside_num_classes(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2, 5)) for i in range(N)]), num_classes=3)
    f = by_code(report, "SD107")
    assert f.severity is ERROR and f.name == "mask-unexpected-labels"
    assert "outside 0..2: 5" in f.title
    assert f.evidence["num_classes"] == 3 and f.evidence["value 5"] > 0
    assert len(f.files) == N


@pytest.mark.parametrize("kind", ["noise", "depth"])
def test_sd107_not_a_label_map(tmp_path, kind):
    # 16-bit images saved where the masks belong (random noise, a smooth depth map): nothing fills regions
    r = np.random.default_rng(0)
    if kind == "noise":
        masks = [r.integers(0, 60000, (64, 64)).astype(np.uint16) for _ in range(3)]
    else:
        yy, xx = np.mgrid[:64, :64]
        masks = [((yy * 300 + xx * 40 + i * 7) % 65535).astype(np.uint16) for i in range(3)]
    f = by_code(run(dataset(tmp_path, masks)), "SD107")
    assert f.severity is ERROR
    assert f.evidence["max_distinct_values_in_a_mask"] > 256


def test_sd107_passes_within_num_classes(tmp_path):
    report = run(dataset(tmp_path, [multiclass_mask(i, classes=(0, 1, 2)) for i in range(N)]), num_classes=3)
    assert "SD107" not in codes(report)


# ---------------------------------------------------------------- SD108 mask-empty


def test_sd108_all_empty_is_an_error(tmp_path):
    report = run(dataset(tmp_path, [np.zeros((64, 64), np.uint8) for _ in range(N)]))
    f = by_code(report, "SD108")
    assert f.severity is ERROR and f.name == "mask-empty"
    assert f.title == f"All {N} masks are empty (background 0 only)"
    assert len(f.files) == N


def test_sd108_30_percent_empty_is_a_warning(tmp_path):
    masks = [np.zeros((64, 64), np.uint8) if i < 3 else binary_mask(i) for i in range(10)]
    f = by_code(run(dataset(tmp_path, masks)), "SD108")
    assert f.severity is WARNING
    assert f.evidence["empty_masks"] == 3 and f.evidence["share"] == 0.3
    assert sorted(f.files) == [f"masks/case_{i:03d}.png" for i in range(3)]
    assert "Dice" in f.why


def test_sd108_few_empty_is_info(tmp_path):
    masks = [np.zeros((64, 64), np.uint8) if i == 0 else binary_mask(i) for i in range(10)]
    assert by_code(run(dataset(tmp_path, masks)), "SD108").severity is INFO


def test_sd108_passes_when_every_mask_has_foreground(tmp_path):
    assert "SD108" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(N)])))


# ---------------------------------------------------------------- SD109 mask-palette-mode


def test_sd109_palette_png_is_info_only(tmp_path):
    for i in range(N):
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save_palette(tmp_path / "masks" / f"c{i}.png", multiclass_mask(i, classes=(0, 1, 2)))
    report = run(tmp_path)
    f = by_code(report, "SD109")
    assert f.severity is INFO and f.name == "mask-palette-mode"
    assert "indices {0, 1, 2}" in f.title and "Pascal VOC" in f.title
    assert "convert" not in f.snippet.split("\n")[0]
    assert severities(report) == {"SD109": INFO}


def test_sd109_passes_on_grayscale_png(tmp_path):
    assert "SD109" not in codes(run(dataset(tmp_path, [binary_mask(i) for i in range(N)])))


# ---------------------------------------------------------------- real data (issue 2 §3)


@pytest.mark.realdata
def test_real_membrane_is_sd101():
    report = run(realdata_path("membrane_isbi2012"))
    assert severities(report) == {"SD101": ERROR}
    f = by_code(report, "SD101")
    assert f.evidence["masks_with_0_k"] == 30 and "> 127" in f.snippet
    assert any("test/" in n for n in report.notes)


@pytest.mark.realdata
def test_real_membrane_binarised_is_clean(tmp_path):
    src = realdata_path("membrane_isbi2012", "train")
    for p in sorted((src / "image").glob("*.png")):
        save(tmp_path / "image" / p.name, np.asarray(Image.open(p)))
        m = np.asarray(Image.open(src / "label" / p.name))
        save(tmp_path / "label" / p.name, (m > 127).astype(np.uint8))
    report = run(tmp_path)
    assert len(report.context.dataset.pairs) == 30
    assert_clean(report)


@pytest.mark.realdata
def test_real_kvasir_is_jpeg_and_multichannel():
    report = run(realdata_path("kvasir_seg_jpeg"))
    sev = severities(report)
    assert sev.get("SD105") is ERROR
    assert sev.get("SD104") is ERROR
    assert "same label" in by_code(report, "SD104").title
    assert "SD106" not in sev


@pytest.mark.realdata
def test_real_voc_rgb_targets_voc_palette_and_void():
    report = run(realdata_path("voc_rgb_targets"))
    f = by_code(report, "SD104")
    assert f.severity is ERROR
    assert f.evidence["palette"] == "Pascal VOC"
    assert "(224, 224, 192)" in f.evidence["void_colour"]
    assert "(224, 224, 192): 255" in f.snippet and "Pascal VOC" in f.snippet
    assert "(224, 224, 192)" in f.fix
    assert len(f.files) == 3 and not any("_pred" in x for x in f.files)


@pytest.mark.realdata
def test_real_voc_palette_at_most_info():
    report = run(realdata_path("voc_palette"))
    assert all(f.severity is INFO for f in report.findings), [(f.code, f.title) for f in report.findings]
    assert "indices {0, 8}" in by_code(report, "SD109").title


@pytest.mark.realdata
def test_real_cityscapes_void_and_no_label_error():
    report = run(realdata_path("cityscapes_trainids"))
    f = by_code(report, "SD103")
    assert f.evidence["void_value"] == 255
    assert abs(f.evidence["void_pixel_share"] - 0.118) < 0.005
    assert not [c for c, s in severities(report, "SD1").items() if s is ERROR]


# ---------------------------------------------------------------- --num-classes does not turn 0/255 into void


@pytest.mark.parametrize("k", [1, 2])
def test_sd101_with_num_classes_2_is_not_void(tmp_path, k):
    # regression: with --num-classes, 255 >= K was taken as void, so 0/255 masks were reported as
    # "all masks empty" (SD108 error) plus SD103, and SD101 stayed silent
    report = run(dataset(tmp_path, [binary_mask(i, fg=255) for i in range(N)]), num_classes=k)
    assert by_code(report, "SD101").severity is ERROR
    assert not codes(report) & {"SD103", "SD108"}


def test_void_with_num_classes_2_binary(tmp_path):
    masks = [with_void_border(binary_mask(i), 2) for i in range(N)]
    report = run(dataset(tmp_path, masks), num_classes=2)
    f = by_code(report, "SD103")
    assert "sample_weight" in f.snippet or "weights" in f.snippet
    assert not codes(report) & {"SD101", "SD107", "SD108"}


@pytest.mark.realdata
def test_real_membrane_with_num_classes_2():
    report = run(realdata_path("membrane_isbi2012"), num_classes=2)
    assert by_code(report, "SD101").severity is ERROR
    assert not codes(report) & {"SD103", "SD108"}


@pytest.mark.realdata
def test_real_cityscapes_with_num_classes_19():
    report = run(realdata_path("cityscapes_trainids"), num_classes=19)
    assert severities(report, "SD10") == {"SD103": WARNING}
    assert not {c for c in severities(report) if c.startswith(("SD0", "SD10"))} - {"SD103"}
    assert "num_classes=19" in by_code(report, "SD103").snippet


# ---------------------------------------------------------------- the parallel scan


def test_parallel_scan_gives_the_same_report(tmp_path):
    from segdoctor.report.json_writer import report_json

    root = dataset(tmp_path, [binary_mask(i, fg=255) for i in range(12)])
    (root / "masks" / "case_003.png").write_bytes(b"")
    one, two = report_json(run(root)), report_json(check_data(root, jobs=2))
    for j in (one, two):
        j.pop("created")
        for c in j["checks"]:
            c.pop("seconds")
    assert one == two
    assert {f["code"] for f in one["findings"]} >= {"SD001", "SD101"}


def test_sd101_one_odd_mask_title(tmp_path):
    report = run(dataset(tmp_path, [binary_mask(i, fg=255 if i == 0 else 1) for i in range(10)]))
    f = by_code(report, "SD101")
    assert f.title == "1 mask uses {0, 255} while 9 masks use {0, 1}"
    assert f.files == ("masks/case_000.png",)


# ---------------------------------------------------------------- known gaps (xfail, reported)


def test_sd105_colour_png_decoded_from_jpeg(tmp_path):
    masks = [jpeg_roundtrip(voc_palette(256)[multiclass_mask(i, classes=(0, 1, 15))], 95) for i in range(N)]
    assert "SD105" in codes(run(dataset(tmp_path, masks)))


def test_sd104_voc_palette_recognised_in_jpeg_colour_masks(tmp_path):
    masks = [voc_palette(256)[multiclass_mask(i, classes=(0, 1, 15))] for i in range(N)]
    report = run(dataset(tmp_path, masks, mask_ext=".jpg"))
    f = by_code(report, "SD104")
    assert f.evidence["palette"] == "Pascal VOC"
    assert "(128, 0, 0) -> 1" in f.evidence["table"]


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("k", [None, 3])
def test_sd103_void_minus_one(tmp_path, width, k):
    # regression: -1 (the other common ignore id) could never be void: the rule only looked above the class ids
    for i in range(N):
        m = with_void_border(multiclass_mask(i, classes=(0, 1, 2)), width).astype(np.int32)
        m[m == 255] = -1
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save(tmp_path / "masks" / f"c{i}.npy", m)
    report = run(tmp_path, num_classes=k)
    f = by_code(report, "SD103")
    assert f.evidence["void_value"] == -1
    assert "ignore_class=-1" in f.snippet
    assert not codes(report) & {"SD107", "SD108"}


def test_sd107_nan_and_inf_in_float_masks(tmp_path):
    # regression: NaN/Inf pixels were replaced by 0 when analysed and then reported by no check
    for i in range(N):
        m = binary_mask(i).astype(np.float32)
        if i < 2:
            m[0, 0], m[5, 5] = np.nan, np.inf
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save(tmp_path / "masks" / f"c{i}.npy", m)
    f = by_code(run(tmp_path), "SD107")
    assert f.severity is ERROR
    assert f.title == f"2 of {N} masks hold NaN or Inf values"
    assert f.files == ("masks/c0.npy", "masks/c1.npy")
    assert f.evidence["nan_or_inf_pixels"] == 4


def test_sd107_passes_on_finite_float_masks(tmp_path):
    for i in range(N):
        save(tmp_path / "images" / f"c{i}.png", image_rgb(i))
        save(tmp_path / "masks" / f"c{i}.npy", binary_mask(i).astype(np.float32))
    assert run(tmp_path).findings == []


@pytest.mark.realdata
@pytest.mark.parametrize("factor", [
    1, 2,
    4,
])
def test_real_cityscapes_nearest_downsampled_is_not_interpolated(tmp_path, factor):
    src = realdata_path("cityscapes_trainids")
    mask = np.asarray(Image.open(next(src.rglob("*_labelTrainIds.png")))).copy()
    mask[mask == 255] = 0
    image = np.asarray(Image.open(next(src.rglob("*_leftImg8bit.png"))))
    h, w = mask.shape
    small = np.asarray(Image.fromarray(mask).resize((w // factor, h // factor), Image.NEAREST))
    small_image = np.asarray(Image.fromarray(image).resize((w // factor, h // factor)))
    for i, flip in enumerate([lambda a: a, np.fliplr, np.flipud]):
        pair(tmp_path, f"c{i}", np.ascontiguousarray(flip(small)), image=np.ascontiguousarray(flip(small_image)))
    report = run(tmp_path)
    assert_clean(report)


def test_sd106_colour_masks_resized_with_interpolation(tmp_path):
    masks = [resize(voc_palette(256)[multiclass_mask(i, size=32, classes=(0, 1, 15))], 64, Image.BILINEAR)
             for i in range(N)]
    assert "SD106" in codes(run(dataset(tmp_path, masks)))


def test_colour_masks_resized_with_nearest_only_sd104(tmp_path):
    masks = [resize(voc_palette(256)[multiclass_mask(i, size=32, classes=(0, 1, 15))], 64, Image.NEAREST)
             for i in range(N)]
    report = run(dataset(tmp_path, masks))
    assert set(codes(report)) == {"SD104"}
    assert "pixels_in_stray_colours" not in by_code(report, "SD104").evidence
