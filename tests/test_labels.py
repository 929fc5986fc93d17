"""Property tests for segdoctor.stats.labels: counting, and the 'between neighbours' signature of interpolation."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy import ndimage

from segdoctor.stats.encoding import BOUNDARY_BETWEEN_LIMIT
from segdoctor.stats.labels import (
    MAX_TRACKED_VALUES,
    is_integral,
    monotone_pixels,
    neighbourhood_flags,
    pack_rgb,
    unpack_rgb,
    value_stats,
    voc_palette,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 24), st.integers(1, 24))
label_dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.int64])


def boundary_between_ratio(label: np.ndarray) -> float:
    v = value_stats(label)
    boundary = int((v.counts - v.interior).sum())
    return int(v.between.sum()) / boundary if boundary else 0.0


@st.composite
def label_maps(draw, max_value: int = 20):
    dtype = draw(label_dtypes)
    return draw(arrays(dtype, shapes, elements=st.integers(0, max_value)))


@SETTINGS
@given(label_maps())
def test_counts_sum_to_the_pixel_count(lab):
    v = value_stats(lab)
    assert int(v.counts.sum()) + v.other_count == lab.size
    np.testing.assert_array_equal(v.values, np.unique(lab))
    assert v.n_distinct == len(np.unique(lab))
    assert np.all(np.diff(v.values) > 0)
    for val, n in zip(v.values.tolist(), v.counts.tolist()):
        assert n == int((lab == val).sum())


@SETTINGS
@given(label_maps())
def test_interior_and_between_are_subsets_of_the_inner_pixels(lab):
    v = value_stats(lab)
    inner = max(0, lab.shape[0] - 2) * max(0, lab.shape[1] - 2)
    assert np.all(v.interior <= v.counts) and np.all(v.between <= v.counts)
    assert int(v.interior.sum()) + int(v.between.sum()) <= inner
    # a pixel cannot be both interior (all neighbours equal) and strictly between them
    if lab.shape[0] >= 3 and lab.shape[1] >= 3:
        _, interior, between = neighbourhood_flags(lab)
        assert not np.any(interior & between)


@SETTINGS
@given(arrays(np.float32, shapes, elements=st.floats(-5, 5, width=32)))
def test_counts_sum_for_float_maps(lab):
    v = value_stats(lab)
    assert int(v.counts.sum()) + v.other_count == lab.size


def test_truncation_keeps_the_pixel_count():
    lab = np.arange(80 * 80, dtype=np.int64).reshape(80, 80)
    v = value_stats(lab)
    assert len(v.values) == MAX_TRACKED_VALUES and v.n_distinct == 80 * 80
    assert int(v.counts.sum()) + v.other_count == lab.size


@SETTINGS
@given(arrays(np.bool_, shapes), st.integers(0, 200), st.integers(1, 55))
def test_two_valued_maps_have_no_between_pixels(grid, low, step):
    # with only two values, no pixel can lie strictly between its neighbours, whatever the shapes
    lab = np.where(grid, low + step, low).astype(np.uint8)
    assert int(value_stats(lab).between.sum()) == 0


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(2, 6)), min_size=1, max_size=8), st.integers(3, 12))
def test_stripes_of_classes_have_no_between_pixels(stripes, width):
    # piecewise constant, every region at least 2 px thick: nothing is 'between'
    rows = np.concatenate([np.full(thick, cls, np.uint8) for cls, thick in stripes])
    lab = np.repeat(rows[:, None], width, axis=1)
    assert int(value_stats(lab).between.sum()) == 0
    assert int(value_stats(np.ascontiguousarray(lab.T)).between.sum()) == 0


@SETTINGS
@given(arrays(np.uint8, st.tuples(st.integers(2, 6), st.integers(2, 6)), elements=st.integers(0, 6)),
       st.integers(8, 12))
def test_clean_block_label_maps_stay_below_the_interpolation_limit(grid, block):
    lab = np.kron(grid, np.ones((block, block), np.uint8))
    assert boundary_between_ratio(lab) < BOUNDARY_BETWEEN_LIMIT


@SETTINGS
@given(arrays(np.bool_, st.tuples(st.integers(3, 8), st.integers(3, 8))), st.integers(0, 100), st.integers(16, 155),
       st.sampled_from([Image.BILINEAR, Image.BICUBIC]))
def test_interpolated_upsampling_of_two_values_creates_between_pixels(grid, low, step, resample):
    assume(grid.any() and not grid.all())
    small = np.where(grid, low + step, low).astype(np.uint8)
    h, w = small.shape
    big = np.asarray(Image.fromarray(small).resize((w * 4, h * 4), resample))
    v = value_stats(big)
    assert int(v.between.sum()) > 0
    assert len(v.values) > 2
    # nearest-neighbour upsampling of the same map stays clean
    near = np.asarray(Image.fromarray(small).resize((w * 4, h * 4), Image.NEAREST))
    assert int(value_stats(near).between.sum()) == 0


@SETTINGS
@given(st.integers(20, 44), st.integers(20, 44), st.integers(10, 16),
       st.sampled_from([0.4, 0.7, 1.0, 1.5]), st.sampled_from([0.5, 1.0]))
def test_more_blur_means_a_higher_between_ratio(cy, cx, radius, sigma, more):
    # the regime of resizing blur (sigma up to ~2.5 px); far beyond it a small disc melts into a plateau
    yy, xx = np.mgrid[:64, :64]
    disc = (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2).astype(np.float64) * 255

    def blurred(s: float) -> np.ndarray:
        return np.clip(np.round(ndimage.gaussian_filter(disc, s)), 0, 255).astype(np.uint8)

    clean = boundary_between_ratio(disc.astype(np.uint8))
    a, b = boundary_between_ratio(blurred(sigma)), boundary_between_ratio(blurred(sigma + more))
    assert clean == 0.0
    assert clean < a < b


@SETTINGS
@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(3))))
def test_pack_unpack_roundtrip(rgb):
    packed = pack_rgb(rgb)
    assert packed.shape == rgb.shape[:2]
    for (y, x), c in np.ndenumerate(packed):
        assert unpack_rgb(c) == tuple(int(v) for v in rgb[y, x])


def test_voc_palette_known_entries():
    pal = voc_palette(256)
    assert tuple(pal[0]) == (0, 0, 0)
    assert tuple(pal[1]) == (128, 0, 0)
    assert tuple(pal[15]) == (192, 128, 128)
    assert tuple(pal[255]) == (224, 224, 192)  # the VOC void colour is index 255 of the palette
    assert len({tuple(c) for c in pal}) == 256


@SETTINGS
@given(arrays(np.float64, shapes, elements=st.integers(-100, 100).map(float)))
def test_is_integral_on_integral_floats(a):
    assert is_integral(a)
    if a.size:
        b = a.copy()
        b.flat[0] += 0.5
        assert not is_integral(b)


# ---- the fast one-pass statistics equal the reference computation --------------------------------

def _maps_with_objects(draw_seed: int, shape, dtype, kind: int) -> np.ndarray:
    rng = np.random.default_rng(draw_seed)
    h, w = shape
    a = np.zeros((h, w), np.int64)
    if kind == 0:  # a few rectangles of a few classes (objects covering part of the rows)
        for _ in range(int(rng.integers(0, 4))):
            r0, r1 = sorted(rng.integers(0, h, 2)); c0, c1 = sorted(rng.integers(0, w, 2))
            a[r0:r1 + 1, c0:c1 + 1] = rng.integers(1, 6)
    elif kind == 1:  # sparse noise
        a[rng.random((h, w)) < 0.05] = rng.integers(1, 256)
    elif kind == 2:  # dense multi-class
        a = rng.integers(0, 5, (h, w)) * int(rng.integers(1, 50))
    else:  # one full row or column, or a single pixel on the ring
        if rng.random() < 0.5:
            a[int(rng.integers(0, h))] = 9
        else:
            a[0, int(rng.integers(0, w))] = 9
    return a.astype(dtype)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 40), st.sampled_from([8, 16, 24, 40, 5, 13]),
       st.sampled_from([np.uint8, np.int16, np.uint16, np.int64]), st.integers(0, 3))
def test_label_value_stats_equal_the_reference(seed, h, w, dtype, kind):
    """Two-value fast path, row band (8-pixel words) and sparse/dense gathers: all equal the full-size reference."""
    from segdoctor.stats.labels import _value_stats_generic, boundary_rows, label_value_stats

    lab = _maps_with_objects(seed, (h, w), dtype, kind)
    vs, mono = label_value_stats(lab)
    ref = _value_stats_generic(lab)
    assert mono == monotone_pixels(lab)
    for field in ("values", "counts", "interior", "between"):
        np.testing.assert_array_equal(getattr(vs, field), getattr(ref, field))
    assert (vs.n_distinct, vs.other_count) == (ref.n_distinct, ref.other_count)
    # the band: every row outside it is uniform and equal to its neighbours
    a, b = boundary_rows(lab)
    differs = np.zeros(h, bool)
    differs |= (lab[:, 1:] != lab[:, :-1]).any(axis=1)
    below = (lab[1:] != lab[:-1]).any(axis=1)
    differs[:-1] |= below
    differs[1:] |= below
    assert not differs[:a].any() and not differs[b:].any()
