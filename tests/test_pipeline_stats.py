"""The per-sample records of batch samples: target calibration, fast float paths, the SD301 study, bounded memory."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline_helpers import blob_arrays
from segdoctor.io.pipeline import Batch
from segdoctor.stats import pipeline as P
from segdoctor.stats.alignment import stored_edges
from segdoctor.stats.downsample import gray_grid
from segdoctor.stats.image_stats import image_value_statistics
from segdoctor.stats.pipeline_alignment import study_pipeline_pairs


@pytest.fixture(scope="module")
def blobs():
    return blob_arrays(48, seed=11)


def calibrate(t, layout="sparse"):
    info = {}
    return P.calibrate_target(np.asarray(t), layout, info), info


def test_ids_divided_by_a_constant_are_recovered(blobs):
    _, y = blobs
    label, info = calibrate(y[0].astype(np.float32) / 255)
    assert info["rescaled"] == 255 and info["rescaled_ids"] == [0, 1]
    assert label.dtype == np.uint8 and np.array_equal(label, y[0])
    three = np.minimum(y[0] + (np.arange(64)[None, :] > 40), 2).astype(np.float32)
    label, info = calibrate(three / 255)
    assert info["rescaled_ids"] == [0, 1, 2] and np.array_equal(label, three.astype(np.uint8))
    label, info = calibrate(three / 2)  # ids halved: {0, 0.5, 1}
    assert info["rescaled"] == 2 and np.array_equal(label, three.astype(np.uint8))


def test_label_smoothing_soft_boundaries_and_continuous_values(blobs):
    _, y = blobs
    label, info = calibrate(y[1] * 0.8 + 0.1)
    assert info["smoothing"] == pytest.approx(0.2) and np.array_equal(label, y[1])
    from scipy.ndimage import zoom

    soft = np.clip(zoom(y[2].astype(np.float32), 1.5, order=1), 0, 1)  # a bilinear resize
    label, info = calibrate(soft)
    assert info["soft"] == "interpolated" and set(np.unique(label)) <= {0, 1}
    rng = np.random.default_rng(0)
    label, info = calibrate(rng.random((32, 32)))
    assert info["soft"] == "continuous" and set(np.unique(label)) <= {0, 1}
    label, info = calibrate(y[3].astype(np.float64))
    assert label.dtype == np.uint8 and "soft" not in info
    label, _ = calibrate(y[3].astype(bool))
    assert label.dtype == np.uint8
    label, _ = calibrate((y[3].astype(np.int32) * 1000))
    assert label.dtype == np.int64 and label.max() == 1000


def test_one_hot_rows_extra_axis_and_channels(blobs):
    _, y = blobs
    onehot = np.eye(2, dtype=np.float32)[y[4]]
    label, info = calibrate(onehot, "channels")
    assert info["encoding"] == "one-hot" and info["depth"] == 2 and info["zero_rows"] == 0
    assert np.array_equal(label, y[4])
    zero = onehot.copy()
    zero[y[4] == 1] = 0  # tf.one_hot of 255
    _, info = calibrate(zero, "channels")
    assert info["zero_rows"] == int((y[4] == 1).sum())
    _, info = calibrate(np.eye(3, dtype=np.float32)[y[4]][:, :, None, :], "extra-axis")
    assert info["extra_axis"] and info["depth"] == 3
    _, info = calibrate(np.eye(3, dtype=np.float32)[y[4]] * 0.7 + 0.1, "channels")
    assert info["smoothing"] == pytest.approx(0.3)
    label, info = calibrate(np.repeat((y[4] * 255)[..., None], 3, axis=2).astype(np.uint8), "channels")
    assert info["encoding"] == "multichannel" and label.shape[-1] == 3
    label, info = calibrate(np.ones((8, 8, 7), np.float32) * 3, "channels")
    assert info["encoding"] == "unreadable" and label is None


@pytest.mark.parametrize("shape", [(64, 64, 3), (50, 37), (30, 80, 1), (16, 16, 4), (300, 200, 3)])
def test_float_fast_paths_match_the_file_statistics(shape):
    rng = np.random.default_rng(sum(shape))
    a = (rng.random(shape) * 4 - 1).astype(np.float32)
    fast, ref = P.float_image_statistics(a), image_value_statistics(a)
    assert fast.keys() == ref.keys()
    for k in ("dtype", "nonfinite", "min", "max", "range_kind", "constant", "near_constant"):
        assert fast[k] == ref[k], k
    # moments on a smaller strided sample: within a few percent of the spread
    assert np.allclose(fast["channel_mean"], ref["channel_mean"], atol=0.05 * max(ref["channel_std"]))
    assert np.allclose(fast["channel_std"], ref["channel_std"], rtol=0.05)
    assert np.allclose(P.gray_grid_fast(a), gray_grid(a), atol=1e-4)
    a.flat[7] = np.nan
    assert P.float_image_statistics(a) == image_value_statistics(a)


def test_float_kinds_follow_the_pipeline_scale():
    assert P.pipeline_float_kind(-2.1, 2.6, 2.5) == P.FLOAT_STANDARDISED
    assert P.pipeline_float_kind(-0.8, 0.9, 2.5) == "float -1-1"
    assert P.pipeline_float_kind(0, 1, 2.5) == "float 0-1"
    assert P.pipeline_float_kind(0, 200, 2.5) == P.FLOAT_8BIT  # an outlier on another scale
    assert P.pipeline_float_kind(0, 5, 200) == P.FLOAT_8BIT  # a dark 0-255 image in a 0-255 pipeline
    assert P.pipeline_float_kind(0, 0.9, 200) == "float 0-1"  # a unit image in a 0-255 pipeline: mixed
    from segdoctor.checks.images import FAMILY

    assert FAMILY[P.FLOAT_STANDARDISED] == FAMILY["float 0-1"] and FAMILY[P.FLOAT_8BIT] == FAMILY["uint8 0-255"]


def _study(x, y):
    rec = P.BatchRecorder("t")
    for b in range(0, len(x), 8):
        rec.add(Batch(b // 8, x[b:b + 8], y[b:b + 8]))
    rec.finalise()
    idx = [i for i, r in enumerate(rec.records) if np.any(r["align"]["boundary"])]
    edges = stored_edges(np.stack([rec.records[i]["align"]["edges"] for i in idx]))
    bounds = np.stack([rec.records[i]["align"]["boundary"] for i in idx])
    return study_pipeline_pairs(edges, bounds, np.ones(len(idx), bool), idx)


def test_pair_study_names_flips_rotations_and_mismatched_pairs(blobs):
    x, y = blobs
    x = x.astype(np.float32) / 255
    rng = np.random.default_rng(2)
    clean = _study(x, y)
    assert clean.signal >= 6 and not clean.affected()
    a, b = rng.random(len(x)) < 0.5, rng.random(len(x)) < 0.5
    flipped = _study(np.where(a[:, None, None, None], x[:, :, ::-1], x), np.where(b[:, None, None], y[:, :, ::-1], y))
    n_flip = flipped.counts.get("horizontal flip", 0)
    assert abs(n_flip - int((a != b).sum())) <= 3
    joint = _study(np.where(a[:, None, None, None], x[:, :, ::-1], x), np.where(a[:, None, None], y[:, :, ::-1], y))
    assert not joint.affected()
    k1, k2 = rng.integers(0, 4, len(x)), rng.integers(0, 4, len(x))
    rotated = _study(np.stack([np.rot90(x[i], k1[i]) for i in range(len(x))]),
                     np.stack([np.rot90(y[i], k2[i]) for i in range(len(x))]))
    assert len(rotated.affected()) >= 0.8 * int((k1 != k2).sum())
    shuffled = _study(x, y[rng.permutation(len(x))])
    assert shuffled.counts.get("other", 0) >= 0.8 * len(x)


def test_records_hold_statistics_not_pixels(blobs, monkeypatch):
    x, y = blobs
    monkeypatch.setattr(P, "MAX_KEPT_MAPS", 16)
    rec = P.BatchRecorder("t", max_thumbs=10)
    for b in range(0, len(x), 8):
        rec.add(Batch(b // 8, x[b:b + 8].astype(np.float32), y[b:b + 8]))
    assert len(rec.thumbs) == 10
    assert sum("dropped" in r["align"] for r in rec.records) == len(x) - 16
    # a record with its maps is a few KB, one without them about one (a 64x64 sample is 48 KB of pixels as float32)
    kept, dropped = rec.records[0], rec.records[-1]
    assert len(pickle.dumps(kept)) < 16_000 and len(pickle.dumps(dropped)) < 6_000
