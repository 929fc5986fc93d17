"""Dataset discovery and pairing (issue 2 §2): every layout, the pairing rules, formats, and the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _synth import binary_mask, image_rgb, multiclass_mask, save, save_palette
from conftest import realdata_path
from segdoctor.errors import DatasetError
from segdoctor.io.dataset import discover_dataset
from segdoctor.io.readers import UnreadableFile, read_file
from segdoctor.stats.labels import voc_palette


def _img(p: Path, seed: int = 0, ext_mode: str | None = None) -> Path:
    return save(p, image_rgb(seed))


def _mask(p: Path, seed: int = 0) -> Path:
    if p.suffix.lower() == ".gif":
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(binary_mask(seed, fg=255)).save(p)
        return p
    return save(p, binary_mask(seed))


def _names(ds, which: str = "both") -> set:
    out = set()
    for p in ds.pairs:
        out.add((ds.display(p.image), ds.display(p.mask)))
    return out


def _rel(root: Path, *names: str) -> set:
    return set(names)


# ---------------------------------------------------------------- folder pairs


@pytest.mark.parametrize(
    "image_dir, mask_dir",
    [
        ("images", "masks"),
        ("image", "label"),
        ("imgs", "labels"),
        ("images_prepped_train", "annotations_prepped_train"),
        ("JPEGImages", "SegmentationClass"),
    ],
)
def test_sibling_folder_pairs(tmp_path, image_dir, mask_dir):
    ext = ".jpg" if image_dir == "JPEGImages" else ".png"
    for i, stem in enumerate(["a", "b", "c"]):
        _img(tmp_path / image_dir / f"{stem}{ext}", i)
        _mask(tmp_path / mask_dir / f"{stem}.png", i)
    ds = discover_dataset(tmp_path)
    assert _names(ds) == {(f"{image_dir}/{s}{ext}", f"{mask_dir}/{s}.png") for s in "abc"}
    assert not ds.unpaired_images and not ds.unpaired_masks
    assert ds.layout == f"{image_dir}/ + {mask_dir}/"
    assert ds.rules == ["identical file stems"]


def test_img_dir_ann_dir_with_splits(tmp_path):
    for split in ("train", "val"):
        for i in range(2):
            _img(tmp_path / "img_dir" / split / f"{split}{i}.jpg", i)
            _mask(tmp_path / "ann_dir" / split / f"{split}{i}.png", i)
    ds = discover_dataset(tmp_path)
    assert len(ds.pairs) == 4
    assert {(p.image.stem, p.mask.stem) for p in ds.pairs} == {(s, s) for s in ("train0", "train1", "val0", "val1")}
    assert {p.split for p in ds.pairs} == {"train", "val"}
    assert all(p.split == p.image.stem[:-1] for p in ds.pairs)
    assert ds.splits == ["train", "val"]


def test_split_folders_each_with_a_pair(tmp_path):
    for split in ("train", "val", "valid", "test"):
        _img(tmp_path / split / "images" / f"{split}_1.png")
        _mask(tmp_path / split / "masks" / f"{split}_1.png")
    ds = discover_dataset(tmp_path)
    assert len(ds.pairs) == 4
    got = {(p.image.parent.parent.name, p.split) for p in ds.pairs}
    assert got == {("train", "train"), ("val", "val"), ("valid", "val"), ("test", "test")}
    for p in ds.pairs:
        assert p.image.stem == p.mask.stem
    assert not ds.unpaired_images and not ds.unpaired_masks


def test_pascal_voc_with_imagesets_and_extra_folders(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for i, stem in enumerate(["2007_000032", "2007_000039"]):
        _img(voc / "JPEGImages" / f"{stem}.jpg", i)
        save_palette(voc / "SegmentationClass" / f"{stem}.png", multiclass_mask(i, classes=(0, 1, 15)))
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000039\n")
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        ("2007_000032.jpg", "2007_000032.png"), ("2007_000039.jpg", "2007_000039.png")}
    assert all(p.mask.parent.name == "SegmentationClass" for p in ds.pairs)


def _cityscapes(root: Path, n: int = 2, split: str = "train") -> list[str]:
    stems = []
    for i in range(n):
        stem = f"aachen_{i:06d}_000019"
        stems.append(stem)
        _img(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", i)
        gt = root / "gtFine" / split / "aachen"
        save(gt / f"{stem}_gtFine_labelTrainIds.png", multiclass_mask(i, classes=(0, 1, 2, 255)))
        save(gt / f"{stem}_gtFine_labelIds.png", multiclass_mask(i, classes=(7, 8, 11, 0)))
        save(gt / f"{stem}_gtFine_instanceIds.png", multiclass_mask(i, classes=(7, 8, 26000, 26001)).astype(np.uint16))
        save(gt / f"{stem}_gtFine_color.png", np.stack([multiclass_mask(i)] * 3, -1) * 60)
    return stems


def test_cityscapes_takes_label_train_ids_and_says_so(tmp_path):
    stems = _cityscapes(tmp_path)
    ds = discover_dataset(tmp_path)
    assert {p.mask.name for p in ds.pairs} == {f"{s}_gtFine_labelTrainIds.png" for s in stems}
    assert {p.image.name for p in ds.pairs} == {f"{s}_leftImg8bit.png" for s in stems}
    assert all(p.split == "train" for p in ds.pairs)
    assert not ds.unpaired_images and not ds.unpaired_masks
    assert any("labelTrainIds" in n and "--mask-pattern" in n for n in ds.notes), ds.notes


def test_cityscapes_mask_pattern_overrides(tmp_path):
    stems = _cityscapes(tmp_path)
    ds = discover_dataset(tmp_path, mask_pattern="*_gtFine_labelIds.png")
    assert {p.mask.name for p in ds.pairs} == {f"{s}_gtFine_labelIds.png" for s in stems}
    assert not ds.unpaired_masks


# ---------------------------------------------------------------- masks beside images


@pytest.mark.parametrize("mask_suffix", ["_mask", "_seg", "_label", "_gt", "_target", "-mask"])
@pytest.mark.parametrize("image_suffix", ["", "_image", "_img"])
def test_masks_beside_images_with_suffix(tmp_path, mask_suffix, image_suffix):
    for i, stem in enumerate(["cat_1", "cat_2", "dog_3"]):
        _img(tmp_path / f"{stem}{image_suffix}.png", i)
        _mask(tmp_path / f"{stem}{mask_suffix}.png", i)
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        (f"{s}{image_suffix}.png", f"{s}{mask_suffix}.png") for s in ("cat_1", "cat_2", "dog_3")}
    assert not ds.unpaired_images and not ds.unpaired_masks
    if image_suffix or mask_suffix:
        assert any("suffix" in r for r in ds.rules), ds.rules


def test_carvana_train_and_train_masks_gif(tmp_path):
    stems = ["0cdf5b5d0ce1_01", "0cdf5b5d0ce1_02", "fff9b3a5373f_16"]
    for i, s in enumerate(stems):
        save(tmp_path / "train" / f"{s}.jpg", image_rgb(i))
        _mask(tmp_path / "train_masks" / f"{s}_mask.gif", i)
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {(f"{s}.jpg", f"{s}_mask.gif") for s in stems}
    assert not ds.unpaired_images and not ds.unpaired_masks
    # GIF masks are palette images: read as indices, as np.array(Image.open(path)) does
    a = read_file(ds.pairs[0].mask).array
    assert a.ndim == 2
    np.testing.assert_array_equal(a, np.array(Image.open(ds.pairs[0].mask)))
    assert set(np.unique(a).tolist()) == {0, 1}


def test_drive_numeric_ids(tmp_path):
    for i, n in enumerate([21, 22, 40]):
        save(tmp_path / "training" / "images" / f"{n}_training.tif", image_rgb(i))
        _mask(tmp_path / "training" / "1st_manual" / f"{n}_manual1.gif", i)
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        (f"{n}_training.tif", f"{n}_manual1.gif") for n in (21, 22, 40)}
    assert not ds.unpaired_images and not ds.unpaired_masks


def test_pairing_by_numeric_id_is_named_in_the_rules(tmp_path):
    for i, n in enumerate([3, 7, 12]):
        _img(tmp_path / "images" / f"scan{n:03d}.png", i)
        _mask(tmp_path / "masks" / f"seg-{n}.png", i)
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        ("scan003.png", "seg-3.png"), ("scan007.png", "seg-7.png"), ("scan012.png", "seg-12.png")}
    assert any("numeric id" in r for r in ds.rules), ds.rules


def test_unpaired_files_are_reported_not_dropped(tmp_path):
    for i, s in enumerate(["a", "b", "c"]):
        _img(tmp_path / "images" / f"{s}.png", i)
        _mask(tmp_path / "masks" / f"{s}.png", i)
    _img(tmp_path / "images" / "lonely_image.png")
    _mask(tmp_path / "masks" / "stray_mask.png")
    ds = discover_dataset(tmp_path)
    assert len(ds.pairs) == 3
    assert [p.image.name for p in ds.unpaired_images] == ["lonely_image.png"]
    assert [p.mask.name for p in ds.unpaired_masks] == ["stray_mask.png"]


def test_images_and_masks_flags_override_discovery(tmp_path):
    for i, s in enumerate(["a", "b"]):
        _img(tmp_path / "raw_pictures" / f"{s}.png", i)
        _mask(tmp_path / "hand_drawn" / f"{s}.png", i)
    with pytest.raises(DatasetError):
        discover_dataset(tmp_path)
    ds = discover_dataset(tmp_path, images="raw_pictures", masks="hand_drawn")
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {("a.png", "a.png"), ("b.png", "b.png")}
    assert "from flags" in ds.layout


def test_flags_choose_other_masks_than_discovery(tmp_path):
    for i, s in enumerate(["a", "b"]):
        _img(tmp_path / "images" / f"{s}.png", i)
        _mask(tmp_path / "masks" / f"{s}.png", i)
        _mask(tmp_path / "masks_v2" / f"{s}.png", i + 5)
    ds = discover_dataset(tmp_path, images="images", masks="masks_v2")
    assert {p.mask.parent.name for p in ds.pairs} == {"masks_v2"}


def test_flag_errors(tmp_path):
    _img(tmp_path / "images" / "a.png")
    with pytest.raises(DatasetError, match="together"):
        discover_dataset(tmp_path, images="images")
    with pytest.raises(DatasetError, match="nope"):
        discover_dataset(tmp_path, images="images", masks="nope")


def test_nothing_found_lists_what_was_seen(tmp_path):
    (tmp_path / "photos_2023").mkdir()
    (tmp_path / "notes").mkdir()
    for i in range(3):
        _img(tmp_path / f"holiday{i}.jpg", i)
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError) as exc:
        discover_dataset(tmp_path)
    msg = str(exc.value)
    assert str(tmp_path) in msg
    assert "photos_2023/" in msg and "notes/" in msg
    assert "3 image files" in msg and ".jpg" in msg
    assert "--images" in msg and "--masks" in msg


def test_missing_or_file_path_raises(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        discover_dataset(tmp_path / "absent")
    f = tmp_path / "file.png"
    _img(f)
    with pytest.raises(DatasetError, match="is a file"):
        discover_dataset(f)


def test_empty_pair_of_folders_raises(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError):
        discover_dataset(tmp_path)


# ---------------------------------------------------------------- formats


def _write_formats(d: Path) -> dict[str, tuple]:
    """name -> (expected array, expected mode/format facts)."""
    lab = multiclass_mask(1, classes=(0, 1, 2))
    out = {}
    Image.fromarray(lab, "L").save(d / "l8.png")
    out["l8.png"] = (lab, "L", 8)
    lab16 = (lab.astype(np.uint16) * 1000)
    Image.fromarray(lab16).save(d / "i16.png")
    out["i16.png"] = (lab16, "I;16", 16)
    la = np.stack([lab, np.full_like(lab, 255)], -1)
    Image.fromarray(la, "LA").save(d / "la.png")
    out["la.png"] = (la, "LA", 8)
    rgb = np.stack([lab * 100] * 3, -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(d / "rgb.png")
    out["rgb.png"] = (rgb, "RGB", 8)
    rgba = np.concatenate([rgb, np.full_like(lab, 255)[..., None]], -1)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    out["rgba.png"] = (rgba, "RGBA", 8)
    save_palette(d / "p.png", lab)
    out["p.png"] = (lab, "P", 8)
    Image.fromarray(lab * 100, "L").save(d / "l.bmp")
    out["l.bmp"] = (lab * 100, "L", 8)
    Image.fromarray(lab * 100, "L").save(d / "g.gif")
    out["g.gif"] = (np.array(Image.open(d / "g.gif")), "P", 8)  # GIF: palette indices, as PIL reads them
    import tifffile

    f32 = lab.astype(np.float32) / 2
    tifffile.imwrite(d / "f32.tif", f32)
    out["f32.tif"] = (f32, None, 32)
    tifffile.imwrite(d / "u16.tiff", lab16)
    out["u16.tiff"] = (lab16, None, 16)
    np.save(d / "arr.npy", lab.astype(np.int64))
    out["arr.npy"] = (lab.astype(np.int64), None, 64)
    np.save(d / "chw.npy", np.stack([lab] * 3, 0))
    out["chw.npy"] = (np.stack([lab] * 3, -1), None, 8)
    return out


def test_formats_decode_to_the_stored_values(tmp_path):
    expected = _write_formats(tmp_path)
    for name, (arr, mode, bits) in expected.items():
        dec = read_file(tmp_path / name)
        np.testing.assert_array_equal(dec.array, arr, err_msg=name)
        assert dec.array.dtype == arr.dtype or name.endswith((".gif", ".bmp")), (name, dec.array.dtype)
        if mode:
            assert dec.mode == mode, name
        assert dec.bits == bits, (name, dec.bits)


def test_16_bit_png_stays_16_bit(tmp_path):
    a = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 13)
    Image.fromarray(a).save(tmp_path / "x.png")
    dec = read_file(tmp_path / "x.png")
    assert dec.array.dtype == np.uint16 and dec.bits == 16
    np.testing.assert_array_equal(dec.array, a)


def test_jpeg_decodes_with_lossy_format(tmp_path):
    save(tmp_path / "x.jpg", image_rgb(0))
    dec = read_file(tmp_path / "x.jpg")
    assert dec.format == "JPEG" and dec.array.shape == (64, 64, 3)


def test_palette_png_is_read_as_indices(tmp_path):
    lab = multiclass_mask(0, classes=(0, 3, 15))
    save_palette(tmp_path / "m.png", lab)
    dec = read_file(tmp_path / "m.png")
    assert dec.mode == "P"
    assert dec.array.ndim == 2
    assert set(np.unique(dec.array).tolist()) == {0, 3, 15}
    assert dec.palette[:16] == tuple(tuple(int(x) for x in c) for c in voc_palette(16))


def test_every_format_pairs_as_a_mask(tmp_path):
    (tmp_path / "masks").mkdir()
    expected = _write_formats(tmp_path / "masks")
    for name in expected:
        save(tmp_path / "images" / (Path(name).stem + ".png"), image_rgb(0))
    ds = discover_dataset(tmp_path)
    assert {p.mask.name for p in ds.pairs} == set(expected)


def test_unreadable_file_raises_with_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("this is not an image\n" * 10)
    save(tmp_path / "ok.png", binary_mask(0))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFile, match="empty"):
        read_file(tmp_path / "empty.png")
    with pytest.raises(UnreadableFile, match="not an image"):
        read_file(tmp_path / "text.png")
    with pytest.raises(UnreadableFile, match="truncated|corrupt"):
        read_file(tmp_path / "cut.png")


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_membrane_pairs_train_and_notes_test():
    root = realdata_path("membrane_isbi2012")
    ds = discover_dataset(root)
    assert len(ds.pairs) == 30
    assert all(p.image.stem == p.mask.stem for p in ds.pairs)
    assert all(p.image.parent.name == "image" and p.mask.parent.name == "label" for p in ds.pairs)
    assert not ds.unpaired_images and not ds.unpaired_masks
    assert any("test/" in n and "Not analysed" in n for n in ds.notes), ds.notes


@pytest.mark.realdata
def test_real_kvasir_pairs():
    ds = discover_dataset(realdata_path("kvasir_seg_jpeg"))
    assert len(ds.pairs) == 5
    assert all(p.image.name == p.mask.name and p.mask.parent.name == "masks" for p in ds.pairs)
    assert not ds.unpaired_images and not ds.unpaired_masks


@pytest.mark.realdata
def test_real_voc_rgb_targets_ignore_predictions():
    ds = discover_dataset(realdata_path("voc_rgb_targets"))
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        (f"{n}_image.png", f"{n}_target.png") for n in (1, 23, 114)}
    assert not ds.unpaired_images and not ds.unpaired_masks
    every = [p.image.name for p in ds.pairs] + [p.mask.name for p in ds.pairs]
    assert not any("_pred" in n for n in every)
    assert any("_pred" in n for n in ds.notes), ds.notes


@pytest.mark.realdata
def test_real_voc_palette_pairs_and_reads_indices():
    ds = discover_dataset(realdata_path("voc_palette"))
    assert [(p.image.name, p.mask.name) for p in ds.pairs] == [("1.jpg", "1.png")]
    dec = read_file(ds.pairs[0].mask)
    assert dec.mode == "P" and dec.array.ndim == 2
    assert set(np.unique(dec.array).tolist()) == {0, 8}


@pytest.mark.realdata
def test_real_cityscapes_takes_label_train_ids():
    ds = discover_dataset(realdata_path("cityscapes_trainids"))
    assert len(ds.pairs) == 1
    p = ds.pairs[0]
    assert p.mask.name.endswith("_gtFine_labelTrainIds.png")
    assert p.image.name.endswith("_leftImg8bit.png")
    assert p.split == "val"
    assert not ds.unpaired_masks
    assert any("labelTrainIds" in n for n in ds.notes)


def test_one_duplicate_stem_does_not_unpair_the_whole_dataset(tmp_path):
    # regression: masks/c0.png + masks/c0.jpg made every rule "ambiguous", so all pairs were lost
    for i in range(5):
        _img(tmp_path / "images" / f"c{i}.png", i)
        _mask(tmp_path / "masks" / f"c{i}.png", i)
    save(tmp_path / "masks" / "c0.jpg", binary_mask(0, fg=255))
    ds = discover_dataset(tmp_path)
    assert {p.image.stem for p in ds.pairs} == {"c1", "c2", "c3", "c4"}
    assert [p.image.name for p in ds.unpaired_images] == ["c0.png"]
    assert sorted(p.mask.name for p in ds.unpaired_masks) == ["c0.jpg", "c0.png"]


def test_x_and_y_folders(tmp_path):
    for i in range(3):
        _img(tmp_path / "x" / f"{i}.png", i)
        _mask(tmp_path / "y" / f"{i}.png", i)
    ds = discover_dataset(tmp_path)
    assert ds.layout == "x/ + y/" and len(ds.pairs) == 3


def test_same_folder_given_as_images_and_masks(tmp_path):
    for i in range(3):
        _img(tmp_path / "data" / f"{i}.png", i)
        _mask(tmp_path / "data" / f"{i}_mask.png", i)
    ds = discover_dataset(tmp_path, images="data", masks="data")
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {(f"{i}.png", f"{i}_mask.png") for i in range(3)}


def test_isic_style_folders_pair_by_their_image_and_mask_words(tmp_path):
    # regression: ISIC-style folders (*_Input/ + *_GroundTruth/ with *_segmentation.png) were taken for
    # "masks beside images": every mask came out unpaired and every image was silently left out.
    # The two folder names share no other word, but one says input and the other ground truth.
    inp, gt = "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth"
    for i in range(3):
        save(tmp_path / inp / f"ISIC_{i:07d}.jpg", image_rgb(i))
        save(tmp_path / gt / f"ISIC_{i:07d}_segmentation.png", binary_mask(i, fg=255))
    ds = discover_dataset(tmp_path)
    assert {(p.image.name, p.mask.name) for p in ds.pairs} == {
        (f"ISIC_{i:07d}.jpg", f"ISIC_{i:07d}_segmentation.png") for i in range(3)}
    assert any("by name alone" in n and f"{inp}/" in n for n in ds.notes)
    assert discover_dataset(tmp_path, images=inp, masks=gt).pairs == ds.pairs


def test_masks_by_suffix_with_images_elsewhere_is_a_dataset_error(tmp_path):
    # masks found by their suffix, images in a folder whose name says nothing: an error naming both, not a
    # dataset of unpaired masks
    for i in range(3):
        save(tmp_path / "photos_2019" / f"case_{i:07d}.jpg", image_rgb(i))
        save(tmp_path / "misc" / f"case_{i:07d}_segmentation.png", binary_mask(i, fg=255))
    with pytest.raises(DatasetError) as exc:
        discover_dataset(tmp_path)
    msg = str(exc.value)
    assert "case_0000000_segmentation.png" in msg and "--images" in msg


def test_test_split_without_masks_is_noted(tmp_path):
    for i in range(2):
        _img(tmp_path / "data" / "train" / "images" / f"{i}.png", i)
        _mask(tmp_path / "data" / "train" / "masks" / f"{i}.png", i)
        _img(tmp_path / "data" / "test" / "images" / f"{i}.png", i)
    ds = discover_dataset(tmp_path)
    assert len(ds.pairs) == 2 and {p.split for p in ds.pairs} == {"train"}
    assert any("Not analysed: data/test/" in n for n in ds.notes), ds.notes


def test_uppercase_extensions(tmp_path):
    for i in range(2):
        _img(tmp_path / "images" / f"C{i}.PNG", i)
        _mask(tmp_path / "masks" / f"C{i}.PNG", i)
    assert len(discover_dataset(tmp_path).pairs) == 2


def test_two_candidate_mask_folders_are_noted(tmp_path):
    for i in range(2):
        _img(tmp_path / "images" / f"{i}.png", i)
        _mask(tmp_path / "masks" / f"{i}.png", i)
        _mask(tmp_path / "labels" / f"{i}.png", i)
    ds = discover_dataset(tmp_path)
    assert {p.mask.parent.name for p in ds.pairs} == {"masks"}
    assert any("also found labels/" in n and "--masks" in n for n in ds.notes), ds.notes


def test_a_suffix_learnt_from_the_names_pairs_camvid_style_labels(tmp_path):
    # CamVid: train/0001TP_006690.png with train_labels/0001TP_006690_L.png; "_L" is in no list of suffixes
    from PIL import Image

    (tmp_path / "train").mkdir()
    (tmp_path / "train_labels").mkdir()
    for i in range(5):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / f"0001TP_00{i}690.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train_labels" / f"0001TP_00{i}690_L.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "0001TP_009990.png")
    ds = discover_dataset(tmp_path)
    assert len(ds.pairs) == 5
    assert [p.image.name for p in ds.unpaired_images] == ["0001TP_009990.png"]
    assert "'_L'" in ds.rules[0]
    assert all(p.mask.stem == p.image.stem + "_L" for p in ds.pairs)


@pytest.mark.parametrize("mode,shape,dtype", [
    ("L", (300, 200), np.uint8), ("RGB", (300, 200, 3), np.uint8), ("RGBA", (300, 200, 4), np.uint8),
    ("I;16", (300, 200), np.uint16), ("I", (300, 200), np.int32), ("F", (300, 200), np.float32),
    ("LA", (300, 200, 2), np.uint8),
])
def test_pixel_array_equals_numpy_conversion_and_restores_pillow_state(mode, shape, dtype):
    """The one-piece copy gives exactly np.asarray(im), and leaves Pillow's MAXBLOCK as it was."""
    from PIL import ImageFile

    from segdoctor.io.readers import pixel_array

    a = np.random.default_rng(0).integers(0, 250, shape).astype(dtype)
    im = Image.fromarray(a, mode) if mode not in ("I;16",) else Image.fromarray(a)
    before = ImageFile.MAXBLOCK
    got = pixel_array(im)
    assert ImageFile.MAXBLOCK == before
    want = np.asarray(im)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
