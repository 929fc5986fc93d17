"""The repair functions of segdoctor fix, each against the ground truth its defect was made from."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage

from _synth import binary_mask, image_rgb, jpeg_roundtrip, multiclass_mask, resize
from segdoctor.fix.binarise import binarise
from segdoctor.fix.colour import colours_to_ids, single_channel
from segdoctor.fix.encode import EncodeError, decode_bytes, encode, output_name
from segdoctor.fix.orient import apply_exif_orientation, apply_transform, transpose
from segdoctor.fix.remap import remap_ids
from segdoctor.fix.snap import snap_to_colours, snap_to_values
from segdoctor.stats.alignment import TRANSFORMS
from segdoctor.stats.labels import VOC_VOID_COLOUR, voc_palette

VOC_TABLE = [[*map(int, voc_palette(256)[i]), i] for i in range(21)] + [[*VOC_VOID_COLOUR, 255]]


def void_border(mask: np.ndarray, void: int = 255) -> np.ndarray:
    band = ndimage.binary_dilation(mask > 0) & ~ndimage.binary_erosion(mask > 0)
    out = mask.copy()
    out[band] = void
    return out


def voc_rgb(indices: np.ndarray) -> np.ndarray:
    rgb = voc_palette(256)[indices]
    rgb[indices == 255] = VOC_VOID_COLOUR
    return rgb


# ---- SD101 binarise --------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [255, 128, 38])
def test_binarise_0_k_gives_the_0_1_mask_exactly(k):
    truth = binary_mask(3)
    out = binarise(truth * k, threshold=max(1, k // 2))
    assert out.dtype == np.uint8 and np.array_equal(out, truth)


def test_binarise_keeps_void_and_dtype():
    truth = binary_mask(4).astype(np.uint16)
    stored = truth * 1000
    stored[0, :] = 65535
    out = binarise(stored, threshold=500, keep=[65535])
    assert out.dtype == np.uint16
    assert np.array_equal(out[1:], truth[1:]) and np.all(out[0] == 65535)


# ---- SD102 remap ------------------------------------------------------------------------------------

def test_remap_trimap_ids_to_zero_based_exactly():
    truth = multiclass_mask(1, classes=(0, 1, 2))
    out = remap_ids(truth + 1, {1: 0, 2: 1, 3: 2})
    assert out.dtype == np.uint8 and np.array_equal(out, truth)


def test_remap_scaled_ids_keeps_void_and_never_maps_twice():
    truth = void_border(multiclass_mask(2, classes=(0, 1, 2, 3)))
    stored = np.where(truth == 255, 255, truth * 50).astype(np.uint8)
    out = remap_ids(stored, {0: 0, 50: 1, 100: 2, 150: 3})
    assert np.array_equal(out, truth)
    # {1: 0, 2: 1} reads the original values: a 2 becomes 1, never 0
    assert remap_ids(np.array([[1, 2]], np.uint8), {1: 0, 2: 1}).tolist() == [[0, 1]]


def test_remap_wide_integer_masks():
    truth = multiclass_mask(5, classes=(0, 1, 2)).astype(np.int64)
    assert np.array_equal(remap_ids(truth * 1000 + 7, {7: 0, 1007: 1, 2007: 2}), truth)


# ---- SD104 channels and colours ---------------------------------------------------------------------

def test_single_channel_of_equal_channels():
    truth = binary_mask(2, fg=255)
    assert np.array_equal(single_channel(np.stack([truth] * 3, -1)), truth)


def test_voc_colours_to_ids_exactly_with_void():
    truth = void_border(multiclass_mask(6, classes=(0, 1, 15, 7)))
    out = colours_to_ids(voc_rgb(truth), VOC_TABLE)
    assert out.dtype == np.uint8 and np.array_equal(out, truth)


def test_unknown_colours_become_void():
    rgb = voc_rgb(multiclass_mask(6, classes=(0, 1)))
    rgb[:4, :4] = (10, 200, 30)
    out = colours_to_ids(rgb, VOC_TABLE)
    assert np.all(out[:4, :4] == 255) and set(np.unique(out[8:])) <= {0, 1}


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_jpeg_colour_masks_snapped_then_mapped_to_ids(quality):
    # as segdoctor fix does for SD105 + SD104: the nearest class colour of the table, then its id
    truth = void_border(multiclass_mask(7, classes=(0, 1, 15)))
    table = [row for row in VOC_TABLE if row[3] in (0, 1, 15, 255)]
    stored = jpeg_roundtrip(voc_rgb(truth), quality)
    out = colours_to_ids(snap_to_colours(stored, [row[:3] for row in table]), table, max_distance=40.0)
    agreement = float((out == truth).mean())
    assert agreement >= 0.995, (quality, agreement)


def test_far_colours_become_void_with_a_distance_cap():
    truth = multiclass_mask(7, classes=(0, 1, 15))
    rgb = voc_rgb(truth)
    rgb[:4, :4] = (10, 200, 30)
    rgb[4:8, :4] = np.clip(rgb[4:8, :4].astype(int) + 5, 0, 255)
    table = [row for row in VOC_TABLE if row[3] in (0, 1, 15)]
    out = colours_to_ids(rgb, table, max_distance=40.0)
    assert np.all(out[:4, :4] == 255) and np.array_equal(out[4:8, :4], truth[4:8, :4])


def test_rgba_colour_masks_ignore_alpha():
    truth = multiclass_mask(8, classes=(0, 2, 3))
    rgba = np.concatenate([voc_rgb(truth), np.full(truth.shape + (1,), 255, np.uint8)], axis=-1)
    assert np.array_equal(colours_to_ids(rgba, VOC_TABLE), truth)


# ---- SD105 / SD106 snapping -------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [50, 75, 95])
def test_snap_jpeg_binary_masks_recovers_the_mask(quality):
    truth = binary_mask(9, fg=255)
    out = snap_to_values(jpeg_roundtrip(truth, quality), [0, 255])
    agreement = float((out == truth).mean())
    assert agreement >= 0.995, (quality, agreement)


def test_snap_jpeg_multiclass_masks():
    truth = multiclass_mask(10, classes=(0, 85, 170, 255))
    out = snap_to_values(jpeg_roundtrip(truth, 90), [0, 85, 170, 255])
    assert float((out == truth).mean()) >= 0.995


@pytest.mark.parametrize("resample", [Image.BILINEAR, Image.BICUBIC])
def test_snap_resized_binary_masks(resample):
    # the mask drawn at 256 px and resized to 64 px with interpolation, against the same shape at 64 px
    truth = binary_mask(11, fg=255)
    stored = resize(resize(truth, 256, Image.NEAREST), 64, resample)
    assert len(np.unique(stored)) > 2
    out = snap_to_values(stored, [0, 255])
    agreement = float((out == truth).mean())
    assert agreement >= 0.995, agreement


def test_snap_properties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    out = snap_to_values(a, [0, 100, 255])
    assert set(np.unique(out)) <= {0, 100, 255}
    assert np.array_equal(snap_to_values(out, [0, 100, 255]), out)  # idempotent
    assert snap_to_values(np.array([[50, 51, 49]], np.uint8), [0, 100]).tolist() == [[0, 100, 0]]  # tie: lower
    wide = a.astype(np.int32) * 3
    assert np.array_equal(snap_to_values(wide, [0, 300, 765]), snap_to_values(wide.astype(np.float64), [0, 300, 765]))


def test_snap_colours_of_jpeg_voc_masks():
    truth = multiclass_mask(12, classes=(0, 1, 15))
    stored = jpeg_roundtrip(voc_rgb(truth), 90)
    colours = [row[:3] for row in VOC_TABLE if row[3] in (0, 1, 15)]
    out = snap_to_colours(stored, colours)
    assert float(np.all(out == voc_rgb(truth), axis=-1).mean()) >= 0.995


# ---- SD252 / SD004 / SD203 geometry ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_the_named_transform_undoes_the_defect(name):
    truth = np.arange(24 * 24, dtype=np.int32).reshape(24, 24)  # no symmetry: each transform is distinct
    fn = TRANSFORMS[name][0]
    defects = [g for g in TRANSFORMS.values() if np.array_equal(fn(g[0](truth)), truth)]
    assert len(defects) == 1
    stored = defects[0][0](truth)
    assert np.array_equal(apply_transform(stored, name), truth)
    rgb = np.stack([stored] * 3, -1)
    assert np.array_equal(apply_transform(rgb, name)[..., 1], truth)


def test_transpose_of_a_transposed_mask():
    truth = multiclass_mask(3, size=48)[:, :30]
    assert np.array_equal(transpose(truth.T), truth)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow_applies_it(orientation):
    a = image_rgb(1, 40)[:, :28]
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif.tobytes())
    buf.seek(0)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    assert np.array_equal(apply_exif_orientation(a, orientation), expected)


# ---- lossless encoding -------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.arange(64, dtype=np.uint8).reshape(8, 8),
    (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000),
    np.zeros((8, 8, 3), np.uint8) + 7,
    np.zeros((8, 8, 4), np.uint8) + 9,
])
@pytest.mark.parametrize("fmt", ["PNG", "NPY", "TIFF"])
def test_encode_is_lossless(array, fmt):
    back = decode_bytes(encode(array, fmt), fmt)
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_encode_keeps_a_palette_and_refuses_what_png_cannot_hold():
    pal = voc_palette(256).ravel().tolist()
    data = encode(multiclass_mask(1, classes=(0, 1, 15)), "PNG", palette=pal)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "P" and im.getpalette()[:63] == pal[:63]
    with pytest.raises(EncodeError):
        encode(np.zeros((4, 4), np.float32), "PNG")
    with pytest.raises(EncodeError):
        encode(np.full((4, 4), -1, np.int32), "PNG")
    assert decode_bytes(encode(np.full((4, 4), 0.5, np.float32), "NPY"), "NPY").dtype == np.float32


def test_output_names():
    assert output_name("masks/a.jpg") == "masks/a.png"
    assert output_name("masks/a.JPEG") == "masks/a.png"
    assert output_name("masks/a.gif") == "masks/a.png"
    assert output_name("masks/a.tif") == "masks/a.tif"
    assert output_name("masks/a.npy") == "masks/a.npy"
    assert output_name("a.b.png") == "a.b.png"
