"""Class balance: statistics (objects, weights) and checks SD151 class-imbalance, SD152 tiny-objects."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synth import blob_pair, codes, disk, finding, write_dataset

from conftest import realdata_path
from segdoctor.commands.data import check_data
from segdoctor.stats.objects import component_summary, snap_to_values, tiny_limit


# ---- statistics -------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(1, 4)), min_size=1, max_size=12))
def test_component_count_matches_separated_squares(squares):
    """Squares on a 10x10 lattice of 12-px cells never touch, so each is one component of its size."""
    lab = np.zeros((120, 120), np.uint8)
    cells = {}
    for cy, cx, side in squares:
        cells[(cy, cx)] = side
    for (cy, cx), side in cells.items():
        lab[cy * 12 + 1: cy * 12 + 1 + side * 2, cx * 12 + 1: cx * 12 + 1 + side * 2] = 1
    s = component_summary(lab)
    assert s["values"] == [1]
    assert s["components"] == [len(cells)]
    assert s["pixels"][0] == pytest.approx(float(lab.sum()))
    assert s["tiny"] == [sum(1 for side in cells.values() if (2 * side) ** 2 < tiny_limit(lab.size))]
    assert int(s["hist"].sum()) == len(cells)


def test_component_sizes_scale_back_from_the_strided_copy():
    lab = np.zeros((1024, 1024), np.uint8)
    lab[100:300, 100:300] = 3
    s = component_summary(lab)
    assert s["scale"] == 16.0
    assert s["pixels"][0] == pytest.approx(200 * 200, rel=0.02)


def test_snap_to_values_joins_jpeg_artefacts_to_their_class():
    lab = np.array([[0, 3, 8, 250, 255, 251]], np.uint8)
    assert snap_to_values(lab, np.array([0, 255])).tolist() == [[0, 0, 0, 255, 255, 255]]


# ---- SD151 -------------------------------------------------------------------------------------

def test_balanced_binary_masks_pass(tmp_path):
    rng = np.random.default_rng(0)
    write_dataset(tmp_path, [blob_pair(rng, n_blobs=4, radius=(14, 22)) for _ in range(6)])
    r = check_data(tmp_path, select=["SD151", "SD152"], jobs=1)
    assert codes(r) == []


def _rare_foreground(tmp_path, n=6, radius=10, size=128):
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(n):
        m = disk((size, size), rng.integers(20, size - 20, 2), radius).astype(np.uint8)
        img = np.clip(rng.normal(80, 10, (size, size)) + 90 * m, 0, 255).astype(np.uint8)
        pairs.append((img, m))
    write_dataset(tmp_path, pairs)
    return pairs


def test_rare_binary_foreground_gets_a_weighted_loss(tmp_path):
    pairs = _rare_foreground(tmp_path)
    fg = sum(int(m.sum()) for _, m in pairs) / sum(m.size for _, m in pairs)
    r = check_data(tmp_path, select=["SD151"], jobs=1)
    f = finding(r, "SD151")
    assert f.evidence["share[1]"] == pytest.approx(fg, rel=1e-4)
    w_fg = 1 / (2 * fg)
    assert f.evidence["inverse_frequency_weight[1]"] == pytest.approx(w_fg, rel=1e-3)
    assert f"{w_fg:.4g}" in f.snippet  # the weights in the code are this dataset's
    assert "sigmoid" in f.snippet and "Dice" in f.evidence["prescribed_loss"]
    assert len(f.files) == 6


def test_very_rare_foreground_prescribes_focal_tversky(tmp_path):
    _rare_foreground(tmp_path, radius=2, size=160)
    f = finding(check_data(tmp_path, select=["SD151"], jobs=1), "SD151")
    assert "Tversky" in f.evidence["prescribed_loss"] and "alpha=0.3, beta=0.7" in f.snippet


def test_multiclass_ratio_fires_and_weights_follow_the_counts(tmp_path):
    rng = np.random.default_rng(2)
    pairs = []
    for _ in range(4):
        m = np.zeros((100, 100), np.uint8)
        m[:, 50:] = 1
        m[10:14, 10:14] = 2  # 16 px of class 2 vs ~5000 of classes 0 and 1
        img = np.clip(rng.normal(60, 10, (100, 100)) + 40 * m, 0, 255).astype(np.uint8)
        pairs.append((img, m))
    write_dataset(tmp_path, pairs)
    f = finding(check_data(tmp_path, select=["SD151"], jobs=1), "SD151")
    assert f.evidence["max_min_ratio"] >= 50
    w = [f.evidence[f"median_frequency_weight[{c}]"] for c in (0, 1, 2)]
    assert w[2] > 100 * w[0] and w[0] == pytest.approx(w[1], rel=0.05)
    assert "NUM_CLASSES = 3" in f.snippet and "softmax" in f.snippet


def test_multiclass_without_dominance_passes(tmp_path):
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(4):
        m = (np.arange(90)[None, :] // 30).repeat(90, 0).astype(np.uint8)
        pairs.append((np.clip(rng.normal(60, 10, (90, 90)) + 40 * m, 0, 255).astype(np.uint8), m))
    write_dataset(tmp_path, pairs)
    assert codes(check_data(tmp_path, select=["SD151"], jobs=1)) == []


@pytest.mark.slow
def test_prescribed_snippets_compile_and_train(tmp_path):
    """The Keras snippets run as written for a sigmoid head and a softmax head."""
    keras = pytest.importorskip("keras")
    rare = tmp_path / "rare"
    _rare_foreground(rare)
    multi = tmp_path / "multi"
    pairs = []
    for _ in range(3):
        m = np.zeros((64, 64), np.uint8)
        m[:, 32:] = 1
        m[5:8, 5:8] = 2
        m[40:46, 40:46] = 255  # a void region beside small ids
        pairs.append((np.full((64, 64), 90, np.uint8) + m % 50, m))
    write_dataset(multi, pairs)
    for root, channels, y in (
        (rare, 1, np.random.default_rng(0).integers(0, 2, (2, 16, 16, 1)).astype("float32")),
        (multi, 3, np.where(np.random.default_rng(0).random((2, 16, 16, 1)) < 0.1, 255,
                            np.random.default_rng(1).integers(0, 3, (2, 16, 16, 1)))),
    ):
        snippet = finding(check_data(root, select=["SD151"], jobs=1), "SD151").snippet
        head, tail = snippet.split("model.compile")
        ns: dict = {}
        exec(head, ns)
        inp = keras.Input((16, 16, 3))
        act = "sigmoid" if channels == 1 else "softmax"
        ns["model"] = keras.Model(inp, keras.layers.Conv2D(channels, 1, activation=act)(inp))
        exec("model.compile" + tail, ns)
        hist = ns["model"].fit(np.random.default_rng(2).random((2, 16, 16, 3)), y, epochs=1, verbose=0).history
        assert np.isfinite(hist["loss"][0])


# ---- SD152 -------------------------------------------------------------------------------------

def test_tiny_objects_fire(tmp_path):
    rng = np.random.default_rng(4)
    pairs = []
    for _ in range(4):
        m = np.zeros((200, 200), np.uint8)
        for cy, cx in rng.integers(5, 195, (12, 2)):
            m[cy - 2: cy + 2, cx - 2: cx + 2] = 1  # 16-px dots
        pairs.append((np.clip(rng.normal(80, 10, m.shape) + 80 * m, 0, 255).astype(np.uint8), m))
    write_dataset(tmp_path, pairs)
    f = finding(check_data(tmp_path, select=["SD152"], jobs=1), "SD152")
    assert f.evidence["tiny_share[1]"] > 0.9
    assert len(f.files) == 4 and "sample_crop" in f.snippet


def test_large_objects_with_a_few_slivers_pass(tmp_path):
    rng = np.random.default_rng(5)
    pairs = []
    for _ in range(4):
        m = disk((200, 200), (100, 100), 60).astype(np.uint8)
        m[5, 5] = m[5, 190] = m[190, 5] = 1  # slivers: many tiny components, few pixels
        pairs.append((np.clip(rng.normal(80, 10, m.shape) + 80 * m, 0, 255).astype(np.uint8), m))
    write_dataset(tmp_path, pairs)
    assert codes(check_data(tmp_path, select=["SD152"], jobs=1)) == []


# ---- real data -------------------------------------------------------------------------------

@pytest.mark.realdata
def test_membranes_and_polyps_are_balanced():
    for parts in (("membrane_isbi2012", "train"), ("kvasir_seg_jpeg",)):
        r = check_data(realdata_path(*parts), select=["SD151", "SD152"], jobs=1)
        assert codes(r) == [], parts


@pytest.mark.realdata
def test_cityscapes_crop_is_imbalanced_with_tiny_poles():
    r = check_data(realdata_path("cityscapes_trainids"), select=["SD151", "SD152"], jobs=1)
    f = finding(r, "SD151")
    assert f.evidence["ignored_void"] == "255"  # 255 is void beside ids 0..13, not a class
    assert "VOID = 255" in f.snippet and "NUM_CLASSES = 14" in f.snippet
    assert "5" in finding(r, "SD152").title  # poles (train id 5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(4, 12))
def test_one_pass_labelling_equals_per_class_labelling(seed, n_classes):
    import segdoctor.stats.objects as objects

    rng = np.random.default_rng(seed)
    lab = rng.integers(0, n_classes, (24, 24)).repeat(5, 0).repeat(5, 1).astype(np.uint8)
    lab[rng.random(lab.shape) < 0.01] = 0  # isolated pixels: components of one pixel
    multi = component_summary(lab)
    saved = objects.MULTI_LABEL_FROM
    objects.MULTI_LABEL_FROM = 10**6
    try:
        single = component_summary(lab)
    finally:
        objects.MULTI_LABEL_FROM = saved
    for key in ("values", "components", "tiny", "pixels", "tiny_pixels"):
        assert multi[key] == single[key], key
    assert np.array_equal(multi["hist"], single["hist"])


def test_declared_classes_absent_from_the_masks_get_neutral_weights(tmp_path):
    rng = np.random.default_rng(6)
    pairs = []
    for _ in range(4):
        m = np.zeros((100, 100), np.uint8)
        m[:, 60:] = 1
        m[10:13, 10:13] = 2
        pairs.append((np.clip(rng.normal(60, 10, m.shape) + 40 * m, 0, 255).astype(np.uint8), m))
    write_dataset(tmp_path, pairs)
    f = finding(check_data(tmp_path, select=["SD151"], num_classes=5, jobs=1), "SD151")
    assert "NUM_CLASSES = 5" in f.snippet and "3, 4 never occur" in f.snippet
    assert f.evidence["masks_with[3]"] == 0


def test_binary_masks_stored_as_0_255_with_two_declared_classes(tmp_path):
    pairs = _rare_foreground(tmp_path)
    for i, (_, m) in enumerate(pairs):
        from PIL import Image

        Image.fromarray(m * 255).save(tmp_path / "masks" / f"s{i:03d}.png")
    f = finding(check_data(tmp_path, select=["SD151"], num_classes=2, jobs=1), "SD151")
    assert "share[255]" in f.evidence and "sigmoid" in f.snippet


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 10**7), min_size=2, max_size=12))
def test_class_weights_follow_their_definitions(counts):
    from segdoctor.stats.balance import ClassBalance

    k = len(counts)
    c = np.asarray(counts, np.int64)
    b = ClassBalance(classes=list(range(k)), names=[str(i) for i in range(k)], colour=False, background=0, void=None,
                     counts=c, present_in=np.ones(k, np.int64), pixels_where_present=np.full(k, c.sum()),
                     n_masks=1, per_mask_index=[0], per_mask_counts=c[None, :])
    inv = b.inverse_frequency_weights()
    assert float((b.shares * inv).sum()) == pytest.approx(1.0)  # the pixel-weighted mean weight is 1
    assert np.all(np.diff(inv[np.argsort(c)]) <= 1e-9)  # rarer class, larger weight
    med = b.median_frequency_weights()
    freq = c / c.sum()
    np.testing.assert_allclose(med * freq, np.median(freq))  # w_c * freq_c = median frequency


def test_mostly_empty_masks_add_oversampling_to_the_prescription(tmp_path):
    rng = np.random.default_rng(9)
    pairs = []
    for i in range(8):
        m = np.zeros((96, 96), np.uint8)
        if i < 2:
            m[30:50, 30:50] = 1
        pairs.append((np.clip(rng.normal(80, 10, m.shape) + 80 * m, 0, 255).astype(np.uint8), m))
    write_dataset(tmp_path, pairs)
    f = finding(check_data(tmp_path, select=["SD151"], jobs=1), "SD151")
    assert f.evidence["empty_masks"] == 6 and "6 of 8 masks hold only background" in f.fix
