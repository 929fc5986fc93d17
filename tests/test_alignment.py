"""Content alignment: the edge/boundary statistics and checks SD251 pair-misaligned, SD252 mask-flipped."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from synth import blob_pair, codes, disk, finding, write_dataset

from conftest import realdata_path
from segdoctor.commands.data import check_data
from segdoctor.stats.alignment import (
    GRID,
    alignment_score,
    boundary_map,
    NULL_SHIFTS,
    TRANSFORMS,
    edge_map,
    own_mask_scores,
    shift_scores,
    shifted_scores,
    study_alignment,
    transformed_scores,
)
from segdoctor.stats.downsample import gray_grid


def _maps(img, mask):
    return edge_map(gray_grid(np.asarray(img), GRID)), boundary_map(mask)


# ---- statistics -------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 12))
def test_a_shifted_mask_scores_lower(seed, shift_cells):
    """One disk: its own boundary sits on the image's edges, a copy moved away does not."""
    rng = np.random.default_rng(seed)
    r = int(rng.integers(14, 24))
    centre = rng.integers(r + 2, 128 - r - 2, 2)
    m = disk((128, 128), centre, r).astype(np.uint8)
    img = np.clip(rng.normal(80, 15, m.shape) + 80 * m, 0, 255)
    e, b = _maps(img, m)
    own = alignment_score(e, b)
    moved = shifted_scores(e[None], b[None], (shift_cells, 0))[0]
    assert own > 1.5 and own > moved


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_shift_scores_equal_rolled_masks(seed):
    rng = np.random.default_rng(seed)
    e = rng.random((2, 64, 64)).astype(np.float32)
    b = (rng.random((2, 64, 64)) < 0.1).astype(np.uint8)
    s = shift_scores(e, b)
    for dy, dx in ((0, 0), (3, -5), (-16, 16)):
        np.testing.assert_allclose(s[:, dy % 64, dx % 64], shifted_scores(e, b, (dy, dx)), rtol=1e-5)


@pytest.mark.parametrize("density", [0.05, 0.4])  # scored from the boundary cells / from the whole maps
def test_own_mask_scores_equal_their_one_pair_definitions(density):
    """Each pair's shifted and transformed scores equal the direct definition, whichever way they are computed
    (and whatever the thread split); quantised edge maps (as stored) make every sum exact."""
    rng = np.random.default_rng(3)
    n = 700  # several thread chunks
    e = np.round(rng.random((n, 64, 64)) * 96).astype(np.float32) / 32  # stored edges are k/32
    b = (rng.random((n, 64, 64)) < density).astype(np.uint8) * rng.integers(1, 5, (n, 64, 64)).astype(np.uint8)
    b[5] = 0  # no boundary: NaN scores
    own = own_mask_scores(e, b)
    assert own.shape == (n, len(NULL_SHIFTS) + len(TRANSFORMS)) and own.dtype == np.float32
    for k in (0, 5, 349, 350, 699):
        for j, s in enumerate(NULL_SHIFTS):
            np.testing.assert_array_equal(own[k, j], shifted_scores(e[k:k + 1], b[k:k + 1], s)[0])
        for j, name in enumerate(TRANSFORMS):
            one = TRANSFORMS[name][0](b[k].astype(np.float32))
            w = one.sum()
            expect = np.nan if w == 0 else float((e[k] * one).sum() / w)
            np.testing.assert_allclose(own[k, len(NULL_SHIFTS) + j], expect, rtol=1e-6)
            np.testing.assert_array_equal(own[k, len(NULL_SHIFTS) + j], transformed_scores(e[k:k + 1], b[k:k + 1], name)[0])
    assert np.isnan(own[5]).all()


def test_shift_scores_do_not_depend_on_the_chunking():
    rng = np.random.default_rng(4)
    e = rng.random((300, 64, 64)).astype(np.float32)
    b = (rng.random((300, 64, 64)) < 0.05).astype(np.uint8)
    b[5] = 0
    full = shift_scores(e, b, chunk=128)
    rows = [0, 5, 150, 299]
    np.testing.assert_allclose(full[rows], shift_scores(e[rows], b[rows]), rtol=1e-5)
    assert np.isnan(full[5]).all()


def test_a_flat_image_scores_chance_for_any_mask():
    m = disk((100, 100), (50, 50), 20).astype(np.uint8)
    e, b = _maps(np.full((100, 100), 7.0), m)
    assert alignment_score(e, b) == pytest.approx(1.0)


def test_study_separates_own_pairs_from_the_null():
    rng = np.random.default_rng(0)
    pairs = [blob_pair(rng, size=128) for _ in range(8)]
    maps = [_maps(i, m) for i, m in pairs]
    res = study_alignment(np.stack([e for e, _ in maps]), np.stack([b for _, b in maps]), np.ones(8, bool))
    assert np.min(res["z_own"]) > 6
    assert res["n_cross"] == 8 * 7


# ---- SD251 / SD252 on synthetic pairs ------------------------------------------------------------

def _blobs(n=12, size=96, seed=0, shape=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img, m = blob_pair(rng, size=size)
        if shape is not None:
            img, m = img[: shape[0], : shape[1]], m[: shape[0], : shape[1]]
        out.append((img, m))
    return out


def test_correct_pairs_pass(tmp_path):
    write_dataset(tmp_path, _blobs())
    assert codes(check_data(tmp_path, select=["SD25"], jobs=1)) == []


def test_two_swapped_masks_are_named(tmp_path):
    pairs = _blobs()
    pairs[2], pairs[7] = (pairs[2][0], pairs[7][1]), (pairs[7][0], pairs[2][1])
    write_dataset(tmp_path, pairs)
    f = finding(check_data(tmp_path, select=["SD251"], jobs=1), "SD251")
    assert f.severity.label == "error"
    assert sorted(x for x in f.files if x.startswith("images/")) == ["images/s002.png", "images/s007.png"]
    assert "masks/s007.png" in f.evidence["pair images/s002.png"]  # the mask that fits image 2
    assert f.evidence["better_fit_found"] == 2


def test_shuffled_masks_fire(tmp_path):
    pairs = _blobs()
    perm = np.roll(np.arange(len(pairs)), 1)
    write_dataset(tmp_path, [(pairs[i][0], pairs[perm[i]][1]) for i in range(len(pairs))])
    f = finding(check_data(tmp_path, select=["SD25"], jobs=1), "SD251")
    assert f.evidence["suspect_pairs"] == len(pairs)


def test_all_masks_flipped_names_the_flip(tmp_path):
    write_dataset(tmp_path, [(i, np.ascontiguousarray(m[:, ::-1])) for i, m in _blobs()])
    r = check_data(tmp_path, select=["SD25"], jobs=1)
    f = finding(r, "SD252")
    assert f.evidence["transform"] == "horizontal flip" and "mask[:, ::-1]" in f.snippet
    assert "SD251" not in codes(r)  # one cause, one finding


def test_transposed_masks_of_square_images_name_the_transpose(tmp_path):
    write_dataset(tmp_path, [(i, np.ascontiguousarray(m.T)) for i, m in _blobs()])
    assert finding(check_data(tmp_path, select=["SD252"], jobs=1), "SD252").evidence["transform"] == "transpose"


def test_non_square_pairs_only_try_shape_keeping_transforms(tmp_path):
    pairs = _blobs(size=128, shape=(128, 80))
    write_dataset(tmp_path, [(i, np.ascontiguousarray(m[::-1])) for i, m in pairs])
    f = finding(check_data(tmp_path, select=["SD252"], jobs=1), "SD252")
    assert f.evidence["transform"] == "vertical flip"
    assert "median_z[transpose]" not in f.evidence


@pytest.mark.parametrize("search_cap", [None, 6])
def test_offset_masks_are_measured(tmp_path, monkeypatch, search_cap):
    """Found on every pair, and when located on a sample of pairs (large datasets) then confirmed on all."""
    import segdoctor.checks.alignment as checks_alignment

    if search_cap:
        monkeypatch.setattr(checks_alignment, "MAX_SHIFT_SEARCH_PAIRS", search_cap)
    pairs = _blobs(size=128)
    write_dataset(tmp_path, [(i, np.roll(m, 16, axis=0)) for i, m in pairs])
    r = check_data(tmp_path, select=["SD251"], jobs=1)
    f = finding(r, "SD251")
    assert abs(f.evidence["shift_rows_px"] + 16) <= 2 and abs(f.evidence["shift_cols_px"]) <= 2
    study = checks_alignment.alignment_study(r.context)
    assert study.result["shift_search_pairs"] == (search_cap or len(pairs))
    assert len(study.shift_z) == len(study.indices)  # confirmed on every studied pair


def test_unrelated_masks_stay_quiet_when_nothing_fits(tmp_path):
    """Masks with no relation to any image (no edges to follow anywhere) give no evidence either way."""
    rng = np.random.default_rng(3)
    pairs = [(np.clip(rng.normal(100, 20, (96, 96)), 0, 255).astype(np.uint8), blob_pair(rng, size=96)[1])
             for _ in range(10)]
    write_dataset(tmp_path, pairs)
    assert codes(check_data(tmp_path, select=["SD25"], jobs=1)) == []


# ---- real data: ISBI membranes (soft, thin boundaries), Kvasir polyps -----------------------------

def _membranes(tmp_path, transform=None, masks_of=None):
    src = realdata_path("membrane_isbi2012", "train")
    (tmp_path / "image").mkdir()
    (tmp_path / "label").mkdir()
    for i in range(30):
        shutil.copy(src / "image" / f"{i}.png", tmp_path / "image" / f"{i}.png")
        j = masks_of(i) if masks_of else i
        m = np.array(Image.open(src / "label" / f"{j}.png"))
        if transform is not None:
            m = np.ascontiguousarray(transform(m))
        Image.fromarray(m).save(tmp_path / "label" / f"{i}.png")
    return tmp_path


@pytest.mark.realdata
def test_real_membranes_and_polyps_stay_quiet():
    for parts in (("membrane_isbi2012", "train"), ("kvasir_seg_jpeg",), ("voc_rgb_targets",)):
        assert codes(check_data(realdata_path(*parts), select=["SD25"], jobs=2)) == [], parts


@pytest.mark.realdata
def test_real_membranes_with_shuffled_masks_fire(tmp_path):
    perm = np.random.default_rng(0).permutation(30)
    f = finding(check_data(_membranes(tmp_path, masks_of=lambda i: int(perm[i])), select=["SD25"], jobs=2), "SD251")
    moved = int((perm != np.arange(30)).sum())
    assert f.evidence["suspect_pairs"] >= moved - 1 and f.severity.label == "error"


@pytest.mark.realdata
def test_real_membranes_with_two_replaced_masks_flag_those(tmp_path):
    swap = {4: 21, 21: 4}
    f = finding(check_data(_membranes(tmp_path, masks_of=lambda i: swap.get(i, i)), select=["SD251"], jobs=2), "SD251")
    assert sorted(x for x in f.files if x.startswith("image/")) == ["image/21.png", "image/4.png"]


@pytest.mark.realdata
@pytest.mark.parametrize("transform, name", [(np.fliplr, "horizontal flip"), (np.flipud, "vertical flip"),
                                             (lambda m: np.rot90(m, 1), "rotation by 90 degrees clockwise")])
def test_real_membranes_with_transformed_masks_name_the_repair(tmp_path, transform, name):
    f = finding(check_data(_membranes(tmp_path, transform=transform), select=["SD252"], jobs=2), "SD252")
    assert f.evidence["transform"] == name


def test_a_few_flipped_masks_are_listed_with_their_repair(tmp_path):
    pairs = _blobs()
    for k in (1, 5, 9):
        pairs[k] = (pairs[k][0], np.ascontiguousarray(pairs[k][1][:, ::-1]))
    write_dataset(tmp_path, pairs)
    r = check_data(tmp_path, select=["SD25"], jobs=1)
    assert "SD252" not in codes(r)  # 3 of 12 is not the dataset's convention
    f = finding(r, "SD251")
    assert sorted(x for x in f.files if x.startswith("images/")) == ["images/s001.png", "images/s005.png",
                                                                    "images/s009.png"]
    assert all("fits after horizontal flip" in f.evidence[f"pair images/s00{k}.png"] for k in (1, 5, 9))


def test_large_datasets_study_a_bounded_subset_and_say_so(tmp_path, monkeypatch):
    import segdoctor.checks.alignment as checks_alignment

    pairs = _blobs(n=14)
    pairs[4] = (pairs[4][0], pairs[9][1])
    write_dataset(tmp_path, pairs)
    monkeypatch.setattr(checks_alignment, "MAX_STUDY_PAIRS", 10)
    r = check_data(tmp_path, select=["SD251"], jobs=1)
    study = checks_alignment.alignment_study(r.context)
    assert len(study.indices) == 10 and study.eligible == 14
    for f in r.findings:
        assert f.evidence["pairs_checked"] == 10 and f.evidence["pairs_eligible"] == 14
        assert "studied 10 of 14" in f.title


def test_spawned_workers_compute_every_statistic(tmp_path, monkeypatch):
    """Workers started with spawn (as after TensorFlow was loaded) register the extractors on import."""
    import multiprocessing as mp

    import segdoctor.scan as scan

    from segdoctor.io.dataset import discover_dataset

    write_dataset(tmp_path, _blobs(n=10))
    monkeypatch.setattr(scan, "_context", lambda: mp.get_context("spawn"))
    for rec in scan.scan_pairs(discover_dataset(tmp_path).pairs, jobs=2):
        assert {"align", "image_stats", "image_hash", "objects"} <= set(rec), sorted(rec)
    # and they receive the scan's plan: only what the selected checks read (plus the overview's statistics)
    r = check_data(tmp_path, select=["SD25"], jobs=2)
    for rec in r.context.records:
        assert {"align", "image_stats"} <= set(rec) and not {"image_hash", "objects"} & set(rec), sorted(rec)


def _soft_blobs(n=12, seed=7):
    """Blobs with soft, blurred edges (sigma 4 px) under noise, like polyps or cells out of focus."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        _, m = blob_pair(rng, size=128, radius=(12, 26))
        soft = gaussian_filter(m.astype(float) * 60, 4)
        out.append((np.clip(100 + soft + rng.normal(0, 8, m.shape), 0, 255).astype(np.uint8), m))
    return out


def test_soft_boundaries_correct_pairs_pass_and_shuffled_fire(tmp_path):
    pairs = _soft_blobs()
    write_dataset(tmp_path / "ok", pairs)
    assert codes(check_data(tmp_path / "ok", select=["SD25"], jobs=1)) == []
    perm = np.roll(np.arange(len(pairs)), 3)
    write_dataset(tmp_path / "bad", [(pairs[i][0], pairs[perm[i]][1]) for i in range(len(pairs))])
    f = finding(check_data(tmp_path / "bad", select=["SD25"], jobs=1), "SD251")
    assert f.evidence["suspect_pairs"] >= len(pairs) - 1


@pytest.mark.realdata
def test_real_voc_colour_targets_turned_upside_down_name_the_flip(tmp_path):
    src = realdata_path("voc_rgb_targets")
    for image in sorted(src.glob("*_image.png")):
        shutil.copy(image, tmp_path / image.name)
        target = np.array(Image.open(str(image).replace("_image", "_target")))
        Image.fromarray(np.ascontiguousarray(target[::-1])).save(tmp_path / image.name.replace("_image", "_target"))
    r = check_data(tmp_path, select=["SD25"], jobs=1)
    assert finding(r, "SD252").evidence["transform"] == "vertical flip"


def test_map_retention_keeps_a_seeded_sample_of_maps_on_large_scans():
    from segdoctor.stats.alignment import MAX_KEPT_MAPS, map_retention

    small = map_retention(10)
    rec = {"align": {"edges": np.zeros((64, 64), np.uint8), "boundary": np.ones((64, 64), np.uint8), "square": True}}
    assert small(3, dict(rec)) == rec  # small scans keep every map

    n = MAX_KEPT_MAPS + 500
    retain = map_retention(n)
    kept = dropped = 0
    for i in range(n):
        out = retain(i, {"align": dict(rec["align"])})
        if out["align"].get("dropped"):
            dropped += 1
            assert out["align"] == {"has_boundary": True, "square": True, "dropped": True}
        else:
            kept += 1
    assert kept == MAX_KEPT_MAPS and dropped == 500
    # the same pairs keep their maps on every run (the study is reproducible)
    again = map_retention(n)
    assert all(bool(again(i, {"align": dict(rec["align"])})["align"].get("dropped"))
               == bool(retain(i, {"align": dict(rec["align"])})["align"].get("dropped")) for i in range(0, n, 97))


@pytest.mark.parametrize("shape", [(512, 512, 3), (513, 512, 3), (256, 256, 4), (768, 770, 3), (600, 800, 3),
                                   (256, 512, 3), (512, 512), (100, 90, 3)])
def test_gray_grid_is_the_strided_pooled_gray(shape):
    from segdoctor.stats.downsample import gray_float, nearest_resize, pool_to, strided_sample

    a = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.uint8)
    ref = pool_to(gray_float(strided_sample(a, 2 * GRID)), GRID)
    if ref.shape != (GRID, GRID):
        ref = nearest_resize(ref, GRID, GRID)
    got = gray_grid(a, GRID)
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
