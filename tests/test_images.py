"""Image value checks SD201 image-range, SD202 image-constant, SD203 image-exif-rotation, and their statistics."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from synth import blob_pair, codes, finding, write_dataset

from conftest import realdata_path
from segdoctor.commands.data import check_data
from segdoctor.io.readers import read_file
from segdoctor.stats.image_stats import content_range_kind, image_value_statistics


# ---- statistics -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_range_kind_follows_the_scaling_of_one_image(seed):
    img = np.random.default_rng(seed).integers(0, 256, (20, 20, 3)).astype(np.uint8)
    img[0, 0] = (0, 0, 0)
    img[0, 1] = (255, 255, 255)
    assert image_value_statistics(img)["range_kind"] == "uint8 0-255"
    assert image_value_statistics(img / 255.0)["range_kind"] == "float 0-1"
    assert image_value_statistics(img / 127.5 - 1)["range_kind"] == "float -1-1"
    assert image_value_statistics(img.astype(np.float32))["range_kind"] == "float 0-255"
    assert image_value_statistics(img.astype(np.uint16))["range_kind"] == "uint16 with 8-bit content"
    assert image_value_statistics(img.astype(np.uint16) * 257)["range_kind"] == "uint16 16-bit"
    z = (img - img.mean()) / img.std()
    assert image_value_statistics(z * 3)["range_kind"] == "float other"


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 40.0), st.floats(0.0, 40.0))
def test_more_noise_is_never_more_constant(a, b):
    base = np.full((64, 64), 128.0)
    noise = np.random.default_rng(0).standard_normal((64, 64))
    lo, hi = sorted((a, b))
    s_lo = image_value_statistics(np.clip(base + lo * noise, 0, 255).astype(np.uint8))
    s_hi = image_value_statistics(np.clip(base + hi * noise, 0, 255).astype(np.uint8))
    assert s_hi["relative_std"] >= s_lo["relative_std"] - 1e-9
    assert not (s_lo["near_constant"] is False and s_hi["near_constant"] is True)


def test_nonfinite_pixels_are_counted_and_moments_stay_finite():
    x = np.random.default_rng(0).random((50, 50, 3)).astype(np.float32)
    x[3, 4, 1] = np.nan
    x[7, 7, 0] = np.inf
    s = image_value_statistics(x)
    assert s["nonfinite"] == 2 and s["max"] <= 1.0
    assert all(np.isfinite(s["channel_mean"])) and s["range_kind"] == "float 0-1"


def test_content_range_kind_of_signed_integers():
    assert content_range_kind(np.dtype("int16"), -1024, 3000) == "signed integer"


# ---- SD201 -------------------------------------------------------------------------------------

def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [blob_pair(rng, size=64) for _ in range(n)]


def test_uint8_images_pass(tmp_path):
    write_dataset(tmp_path, _pairs(4))
    assert codes(check_data(tmp_path, select=["SD2"], jobs=1)) == []


def test_mixed_0_255_and_0_1_images_fire_with_one_normalisation(tmp_path):
    pairs = _pairs(6)
    write_dataset(tmp_path, pairs[:4])
    for i, (img, mask) in enumerate(pairs[4:], start=4):
        np.save(tmp_path / "images" / f"s{i:03d}.npy", img.astype(np.float32) / 255.0)
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i:03d}.png")
    r = check_data(tmp_path, select=["SD201"], jobs=1)
    f = finding(r, "SD201")
    assert f.severity.label == "error"
    assert f.evidence["images[uint8 0-255]"] == 4 and f.evidence["images[float 0-1]"] == 2
    assert sorted(f.files) == ["images/s004.npy", "images/s005.npy"]
    ns: dict = {}
    exec(f.snippet, ns)
    # the same content in either storage normalises to the same numbers
    for i, (img, _) in enumerate(pairs):
        path = tmp_path / "images" / (f"s{i:03d}.png" if i < 4 else f"s{i:03d}.npy")
        out = ns["normalise"](read_file(path).array)
        np.testing.assert_allclose(out, img / 255.0, atol=1e-6)


def test_sixteen_bit_files_with_eight_bit_content_fire(tmp_path):
    pairs = _pairs(3)
    write_dataset(tmp_path, [(Image.fromarray(img[..., 0].astype(np.uint16)), m) for img, m in pairs])
    f = finding(check_data(tmp_path, select=["SD201"], jobs=1), "SD201")
    assert f.evidence["images[uint16 with 8-bit content]"] == 3
    assert f.severity.label == "warning"  # consistent, but /65535 would make them black
    assert "x / 255.0" in f.snippet


def test_standardised_floats_mixed_with_uint8_fire(tmp_path):
    pairs = _pairs(4)
    write_dataset(tmp_path, pairs[:2])
    for i, (img, mask) in enumerate(pairs[2:], start=2):
        np.save(tmp_path / "images" / f"s{i:03d}.npy", ((img - 100.0) / 30.0).astype(np.float32))
        Image.fromarray(mask).save(tmp_path / "masks" / f"s{i:03d}.png")
    f = finding(check_data(tmp_path, select=["SD201"], jobs=1), "SD201")
    assert f.severity.label == "error" and f.evidence["images[float other]"] == 2


# ---- SD202 -------------------------------------------------------------------------------------

def test_constant_near_constant_and_nan_images_fire(tmp_path):
    pairs = _pairs(5)
    black = np.zeros_like(pairs[0][0])
    flat = np.full_like(pairs[1][0], 120)
    flat[::7, ::5] = 121  # one grey level of texture: near-constant
    write_dataset(tmp_path, [(black, pairs[0][1]), (flat, pairs[1][1]), *pairs[2:4]])
    nan_img = pairs[4][0].astype(np.float32) / 255
    nan_img[10:12, 10:12] = np.nan
    np.save(tmp_path / "images" / "s004.npy", nan_img)
    Image.fromarray(pairs[4][1]).save(tmp_path / "masks" / "s004.png")
    f = finding(check_data(tmp_path, select=["SD202"], jobs=1), "SD202")
    assert f.evidence["constant"] == 1 and f.evidence["near_constant"] == 1
    assert f.evidence["nonfinite_pixels"] == 4 * 3
    assert sorted(f.files) == ["images/s000.png", "images/s001.png", "images/s004.npy"]


def test_dark_but_textured_images_pass(tmp_path):
    rng = np.random.default_rng(0)
    dark = [(np.clip(rng.normal(6, 3, (64, 64)), 0, 255).astype(np.uint8), m) for _, m in _pairs(3)]
    write_dataset(tmp_path, dark)
    assert codes(check_data(tmp_path, select=["SD202"], jobs=1)) == []


# ---- SD203 -------------------------------------------------------------------------------------

def test_exif_orientation_fires_for_tagged_jpegs_only(tmp_path):
    pairs = _pairs(3)
    write_dataset(tmp_path, pairs, image_ext=".jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pairs[1][0]).save(tmp_path / "images" / "s001.jpg", exif=exif)
    f = finding(check_data(tmp_path, select=["SD203"], jobs=1), "SD203")
    assert f.files == ("images/s001.jpg",)
    assert f.evidence["tagged"] == 1 and "exif_transpose" in f.snippet


def test_untagged_jpegs_pass(tmp_path):
    write_dataset(tmp_path, _pairs(3), image_ext=".jpg")
    assert codes(check_data(tmp_path, select=["SD203"], jobs=1)) == []


# ---- real data -------------------------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("parts", [("membrane_isbi2012", "train"), ("kvasir_seg_jpeg",), ("cityscapes_trainids",),
                                   ("voc_rgb_targets",), ("voc_palette",)])
def test_real_images_are_consistent(parts):
    r = check_data(realdata_path(*parts), select=["SD2"], jobs=1)
    assert codes(r) == []


@pytest.mark.realdata
def test_real_membranes_mixed_with_a_rescaled_copy_fire(tmp_path):
    src = realdata_path("membrane_isbi2012", "train")
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    for i in range(6):
        img = read_file(src / "image" / f"{i}.png").array
        if i < 3:
            Image.fromarray(img).save(tmp_path / "image" / f"{i}.png")
        else:
            np.save(tmp_path / "image" / f"{i}.npy", img.astype(np.float32) / 255.0)
        Image.open(src / "label" / f"{i}.png").save(tmp_path / "label" / f"{i}.png")
    f = finding(check_data(tmp_path, select=["SD201"], jobs=1), "SD201")
    assert f.title.startswith("3 of 6 images")


def test_twelve_and_sixteen_bit_contents_are_one_convention(tmp_path):
    pairs = _pairs(4)
    imgs = [Image.fromarray((img[..., 0].astype(np.uint16) * (16 if i < 2 else 257))) for i, (img, _) in enumerate(pairs)]
    write_dataset(tmp_path, [(im, m) for im, (_, m) in zip(imgs, pairs)])
    assert codes(check_data(tmp_path, select=["SD201"], jobs=1)) == []


def test_eight_bit_content_beside_sixteen_bit_files_is_a_warning(tmp_path):
    pairs = _pairs(4)
    imgs = [Image.fromarray((img[..., 0].astype(np.uint16) * (1 if i == 0 else 257))) for i, (img, _) in enumerate(pairs)]
    write_dataset(tmp_path, [(im, m) for im, (_, m) in zip(imgs, pairs)])
    f = finding(check_data(tmp_path, select=["SD201"], jobs=1), "SD201")
    assert f.severity.label == "warning" and f.files == ("images/s000.png",)
    assert "x / 65535.0" in f.snippet


@pytest.mark.realdata
def test_real_membranes_with_a_blank_slice_fire(tmp_path):
    src = realdata_path("membrane_isbi2012", "train")
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    for i in range(8):
        img = read_file(src / "image" / f"{i}.png").array
        if i == 5:
            img = np.full_like(img, 255)  # an over-exposed, blank slice
        Image.fromarray(img).save(tmp_path / "image" / f"{i}.png")
        Image.open(src / "label" / f"{i}.png").save(tmp_path / "label" / f"{i}.png")
    f = finding(check_data(tmp_path, select=["SD202"], jobs=1), "SD202")
    assert f.files == ("image/5.png",) and f.evidence["constant"] == 1


@pytest.mark.realdata
def test_real_polyp_jpeg_with_an_orientation_tag_fires(tmp_path):
    src = realdata_path("kvasir_seg_jpeg", "Kvasir-SEG")
    shutil.copytree(src, tmp_path / "Kvasir-SEG")
    first = sorted((tmp_path / "Kvasir-SEG" / "images").glob("*.jpg"))[0]
    exif = Image.Exif()
    exif[0x0112] = 8
    with Image.open(first) as im:
        im.save(first, quality=95, exif=exif)
    f = finding(check_data(tmp_path, select=["SD203"], jobs=1), "SD203")
    assert f.files == (f"Kvasir-SEG/images/{first.name}",)
    assert "orientation[8] rotated 90 degrees counter-clockwise" in f.evidence


def test_dim_sixteen_bit_images_are_not_blank(tmp_path):
    rng = np.random.default_rng(12)
    pairs = [(Image.fromarray(np.clip(rng.normal(300, 15, (64, 64)), 0, 4095).astype(np.uint16)), m)
             for _, m in _pairs(3)]
    write_dataset(tmp_path, pairs)
    assert codes(check_data(tmp_path, select=["SD202"], jobs=1)) == []
