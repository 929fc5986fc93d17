"""Properties of the numpy segmentation metrics behind check-model (no Keras)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.stats.segmentation_metrics import (
    THRESHOLDS,
    BinaryAccumulator,
    best_threshold,
    counts_at_thresholds,
    dice_score,
    iou_score,
    rank_decode,
    roc_auc,
    roc_auc_from_histograms,
    threshold_histograms,
)


def _brute_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (pos.size * neg.size)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=4, max_size=40), st.randoms(use_true_random=False))
def test_roc_auc_equals_pairwise_count_with_ties(values, rnd):
    scores = np.array(values, float)
    labels = np.array([rnd.random() < 0.5 for _ in values])
    if labels.all() or not labels.any():
        assert np.isnan(roc_auc(scores, labels))
        return
    assert roc_auc(scores, labels) == pytest.approx(_brute_auc(scores, labels))


def test_histogram_auc_matches_exact_auc_on_continuous_scores():
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.1
    scores = 1 / (1 + np.exp(-(rng.normal(0, 1, 5000) + 2 * labels)))
    fg, bg = threshold_histograms(scores, labels)
    assert roc_auc_from_histograms(fg, bg) == pytest.approx(roc_auc(scores, labels), abs=0.01)


def test_dice_and_iou_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 pixels
    b[1:3] = True  # 8 pixels, 4 shared
    assert dice_score(a, b) == pytest.approx(0.5)
    assert iou_score(a, b) == pytest.approx(4 / 12)
    assert dice_score(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_counts_at_thresholds_match_direct_thresholding():
    rng = np.random.default_rng(1)
    p = rng.random((16, 16))
    t = rng.random((16, 16)) < 0.3
    fg, bg = threshold_histograms(p, t)
    tp, fp, fn = counts_at_thresholds(fg, bg)
    for k in (0, 60, 120, 200, 240):
        pred = p >= THRESHOLDS[k]
        assert tp[k] == np.logical_and(pred, t).sum()
        assert fp[k] == np.logical_and(pred, ~t).sum()
        assert fn[k] == np.logical_and(~pred, t).sum()


def test_rank_decode_recovers_a_shifted_but_well_ranked_map():
    truth = np.zeros((32, 32), bool)
    truth[10:16, 10:16] = True
    prob = np.where(truth, 0.3, 0.01)  # under-confident: nothing passes 0.5
    assert not (prob >= 0.5).any()
    assert dice_score(rank_decode(prob), truth) == pytest.approx(1.0)


def test_rank_decode_predicts_nothing_when_the_map_is_empty_and_confident():
    assert not rank_decode(np.full((8, 8), 1e-4)).any()


def test_accumulator_best_threshold_beats_half_for_underconfident_maps():
    acc = BinaryAccumulator(threshold=0.5)
    rng = np.random.default_rng(2)
    for _ in range(5):
        truth = np.zeros((24, 24), bool)
        y, x = rng.integers(0, 18, 2)
        truth[y : y + 5, x : x + 5] = True
        acc.add("img", np.where(truth, 0.2, 0.02) + rng.random((24, 24)) * 0.01, truth)
    a = acc.arrays()
    assert a["dice"].max() == 0.0
    t, d = best_threshold(acc.dice_curve())
    assert 0.02 < t < 0.2 and d == pytest.approx(1.0)
    assert a["rank_dice"].mean() == pytest.approx(1.0)
    assert acc.pooled_auc() == pytest.approx(1.0)


def test_fine_histograms_fold_into_the_threshold_histograms():
    from segdoctor.stats.segmentation_metrics import coarse_from_fine, fine_histograms

    rng = np.random.default_rng(3)
    p = 1 / (1 + np.exp(-rng.normal(0, 6, (40, 40))))
    p[0, :5] = [0.0, 1.0, 0.5, 1e-9, 1 - 1e-9]
    t = rng.random((40, 40)) < 0.2
    fg, bg, psum = fine_histograms(p, t)
    assert fg.sum() == t.sum() and bg.sum() == (~t).sum() and psum.sum() == pytest.approx(p.sum())
    exact_fg, exact_bg = threshold_histograms(p, t)
    np.testing.assert_array_equal(coarse_from_fine(fg), exact_fg)
    np.testing.assert_array_equal(coarse_from_fine(bg), exact_bg)


def test_histogram_rank_decoding_agrees_with_the_exact_sort():
    from segdoctor.stats.segmentation_metrics import fine_histograms, rank_counts_from_histograms

    rng = np.random.default_rng(4)
    for _ in range(5):
        truth = rng.random((32, 32)) < 0.1
        p = np.clip(np.where(truth, 0.3, 0.05) + rng.normal(0, 0.05, (32, 32)), 0.001, 0.999)
        exact = rank_decode(p)
        fg, bg, psum = fine_histograms(p, truth)
        kept, tp = rank_counts_from_histograms(fg, bg, psum, float(np.log1p(-p).sum()))
        assert abs(kept - exact.sum()) <= 0.02 * p.size
        assert dice_score(exact, truth) == pytest.approx(2 * tp / (kept + truth.sum()), abs=0.02)
