"""Splits: perceptual hashes and checks SD153 split-shift, SD154 split-leakage."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from synth import blob_pair, codes, finding, write_dataset

from conftest import realdata_path
from segdoctor.commands.data import check_data
from segdoctor.io.readers import read_file
from segdoctor.stats.downsample import gray_grid
from segdoctor.stats.hashing import NEAR_DUPLICATE_BITS, difference_hash, hamming_distance, hash_words, near_duplicates


def _hash(a):
    return difference_hash(gray_grid(np.asarray(a)))


# ---- statistics -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 40), st.integers(1, 40))
def test_near_duplicates_equals_brute_force(seed, n, m):
    rng = np.random.default_rng(seed)
    a = [rng.bytes(32) for _ in range(n)]
    b = [rng.bytes(32) for _ in range(m)]
    # plant close copies: flip a few bits of some of a's hashes
    for k in range(min(n, m, 5)):
        x = bytearray(a[k])
        for bit in rng.choice(256, int(rng.integers(0, 40)), replace=False):
            x[bit // 8] ^= 1 << (bit % 8)
        b[k] = bytes(x)
    want = {(i, j, hamming_distance(a[i], b[j])) for i in range(n) for j in range(m)
            if hamming_distance(a[i], b[j]) <= NEAR_DUPLICATE_BITS}
    got = set(near_duplicates(hash_words(a), hash_words(b), block=7))
    assert got == want


def _jpeg(a, q):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=q)
    return np.array(Image.open(buf))


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea"])
def test_hash_survives_reencoding_and_resizing(name):
    a = getattr(skimage.data, name)()
    h = _hash(a)
    half = np.array(Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2)))
    assert hamming_distance(h, _hash(_jpeg(a, 40))) <= NEAR_DUPLICATE_BITS // 2
    assert hamming_distance(h, _hash(half)) <= NEAR_DUPLICATE_BITS // 2
    assert hamming_distance(h, _hash(np.clip(a.astype(int) + 25, 0, 255).astype(np.uint8))) <= NEAR_DUPLICATE_BITS // 2


def test_unrelated_images_are_far_apart():
    names = ["astronaut", "camera", "coffee", "chelsea", "rocket", "moon"]
    hashes = [_hash(getattr(skimage.data, n)()) for n in names]
    d = [hamming_distance(hashes[i], hashes[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    assert min(d) > 2 * NEAR_DUPLICATE_BITS


# ---- SD154 -------------------------------------------------------------------------------------

def _split_set(tmp_path, train, val):
    write_dataset(tmp_path, train, split="train")
    write_dataset(tmp_path, val, split="val")
    return tmp_path


def _photos():
    """Real photographs (skimage.data), cropped to 128x128, with a threshold mask each."""
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "moon", "page", "text", "horse", "clock"):
        a = np.asarray(getattr(skimage.data, name)())
        a = a if a.ndim == 2 else a[..., 0]
        a = a.astype(np.uint8)
        a = np.array(Image.fromarray(a).resize((128, 128)))
        out.append((a, (a > np.median(a)).astype(np.uint8)))
    return out


def test_copies_across_splits_fire(tmp_path):
    photos = _photos()
    train, val = photos[:7], photos[7:]
    val.append(train[2])  # identical copy
    resized = np.array(Image.fromarray(_jpeg(train[5][0], 60)).resize((96, 96)))
    val.append((resized, np.array(Image.fromarray(train[5][1]).resize((96, 96), Image.NEAREST))))
    f = finding(check_data(_split_set(tmp_path, train, val), select=["SD154"], jobs=1), "SD154")
    assert f.evidence["identical"] == 1 and f.evidence["near_identical"] == 1
    assert sorted(f.files) == ["train/images/s002.png", "train/images/s005.png", "val/images/s003.png",
                               "val/images/s004.png"]


def test_noise_dominated_images_are_not_duplicates(tmp_path):
    """Synthetic blobs on strong noise: similar layouts, different pixels, never matched."""
    rng = np.random.default_rng(0)
    r = check_data(_split_set(tmp_path, [blob_pair(rng) for _ in range(10)], [blob_pair(rng) for _ in range(10)]),
                   select=["SD154"], jobs=1)
    assert codes(r) == []


def test_distinct_splits_pass(tmp_path):
    photos = _photos()
    r = check_data(_split_set(tmp_path, photos[:6], photos[6:]), select=["SD154"], jobs=1)
    assert "SD153" not in codes(r) and "SD154" not in codes(r)


# ---- SD153 -------------------------------------------------------------------------------------

def test_val_with_much_less_foreground_fires(tmp_path):
    rng = np.random.default_rng(2)
    train = [blob_pair(rng, n_blobs=4, radius=(18, 26)) for _ in range(8)]
    val = [blob_pair(rng, n_blobs=1, radius=(4, 6)) for _ in range(6)]
    f = finding(check_data(_split_set(tmp_path, train, val), select=["SD153"], jobs=1), "SD153")
    assert "foreground share" in f.title and abs(f.evidence["foreground_share_d train/val"]) >= 1
    assert len(f.files) == 6 and "stratified_split" in f.snippet


def test_val_with_darker_images_fires(tmp_path):
    rng = np.random.default_rng(3)
    train = [blob_pair(rng) for _ in range(8)]
    val = [((img * 0.5).astype(np.uint8), m) for img, m in (blob_pair(rng) for _ in range(6))]
    f = finding(check_data(_split_set(tmp_path, train, val), select=["SD153"], jobs=1), "SD153")
    assert "brightness" in f.title


# ---- real data: the 30 ISBI membrane slices split in several ways ---------------------------------

def _membrane_splits(tmp_path, train, val):
    src = realdata_path("membrane_isbi2012", "train")
    for sp, idx in (("train", train), ("val", val)):
        (tmp_path / sp / "image").mkdir(parents=True)
        (tmp_path / sp / "label").mkdir(parents=True)
        for i in idx:
            shutil.copy(src / "image" / f"{i}.png", tmp_path / sp / "image" / f"{i}.png")
            shutil.copy(src / "label" / f"{i}.png", tmp_path / sp / "label" / f"{i}.png")
    return tmp_path


@pytest.mark.realdata
def test_random_membrane_split_passes(tmp_path):
    perm = np.random.default_rng(1).permutation(30)
    r = check_data(_membrane_splits(tmp_path, perm[:22], perm[22:]), select=["SD153", "SD154"], jobs=2)
    assert r.facts["splits"] == "train (22), val (8)"
    assert codes(r) == []


@pytest.mark.realdata
def test_overlapping_membrane_split_leaks(tmp_path):
    f = finding(check_data(_membrane_splits(tmp_path, range(22), range(20, 30)), select=["SD154"], jobs=2), "SD154")
    assert f.evidence["identical"] == 2 and f.evidence["near_identical"] == 0


@pytest.mark.realdata
def test_membrane_split_by_brightness_shifts(tmp_path):
    src = realdata_path("membrane_isbi2012", "train")
    order = np.argsort([read_file(src / "image" / f"{i}.png").array.mean() for i in range(30)])
    f = finding(check_data(_membrane_splits(tmp_path, order[:22], order[22:]), select=["SD153"], jobs=2), "SD153")
    assert "brightness" in f.title


def test_val_at_another_resolution_fires(tmp_path):
    rng = np.random.default_rng(4)
    train = [blob_pair(rng, size=96) for _ in range(6)]
    val = [blob_pair(rng, size=200) for _ in range(5)]
    f = finding(check_data(_split_set(tmp_path, train, val), select=["SD153"], jobs=1), "SD153")
    assert "image size" in f.evidence["differences"] and f.evidence["median_pixels train/val"] == "9216 / 40000"


def test_splits_drawn_from_one_distribution_pass(tmp_path):
    rng = np.random.default_rng(11)
    pairs = [blob_pair(rng, n_blobs=3, radius=(10, 20)) for _ in range(16)]
    r = check_data(_split_set(tmp_path, pairs[:11], pairs[11:]), select=["SD153"], jobs=1)
    assert codes(r) == []


def test_the_scan_computes_only_what_selected_and_applicable_checks_read(tmp_path):
    """Image hashes feed only the split-leakage check: no splits (or SD154 not selected) -> not computed."""
    from segdoctor.commands.data import planned_extractors
    from segdoctor.io.dataset import discover_dataset
    from segdoctor.registry import select_checks

    every = select_checks(["data"], (), ())
    rng = np.random.default_rng(5)
    flat = tmp_path / "flat"
    write_dataset(flat, [blob_pair(rng) for _ in range(6)])
    ds = discover_dataset(flat)
    assert planned_extractors(every, ds) == {"image_statistics", "mask_objects", "alignment_maps"}
    assert planned_extractors(select_checks(["data"], ["SD101"], ()), ds) == {"image_statistics"}
    r = check_data(flat, jobs=1)
    assert all("image_hash" not in rec and "align" in rec and "objects" in rec for rec in r.context.records)

    split = tmp_path / "split"
    for name in ("train", "val"):
        write_dataset(split, [blob_pair(rng) for _ in range(4)], split=name)
    ds = discover_dataset(split)
    assert "image_hashes" in planned_extractors(every, ds)
    assert "image_hashes" not in planned_extractors(select_checks(["data"], (), ["SD154"]), ds)
    r = check_data(split, jobs=1)
    assert all("image_hash" in rec for rec in r.context.records)
    assert {c.code: c.status for c in r.checks}["SD154"] == "passed"
