"""Curve statistics and column semantics, tested by their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.stats import curves

finite_floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
series = st.lists(finite_floats, min_size=3, max_size=60).map(np.asarray)
# values on a coarse grid, so that scaling and shifting cannot create or erase differences by rounding
grid_series = st.lists(st.integers(min_value=-1000, max_value=1000), min_size=3, max_size=60).map(lambda v: np.asarray(v, float) / 8)
# no deadline: these are property tests, not timings
quick = settings(deadline=None)


@pytest.mark.parametrize(
    "name, kind, split",
    [
        ("dice_coef", "dice", "train"),
        ("val_dice_coefficient", "dice", "val"),
        ("f1-score", "dice", "train"),
        ("val_fscore", "dice", "val"),
        ("f1", "dice", "train"),
        ("iou_score", "iou", "train"),
        ("val_mean_io_u_1", "iou", "val"),
        ("mean_iou", "iou", "train"),
        ("jaccard", "iou", "train"),
        ("iou_thresholded", "iou", "train"),
        ("binary_io_u", "iou", "train"),
        ("acc", "accuracy", "train"),
        ("val_binary_accuracy", "accuracy", "val"),
        ("categorical_accuracy", "accuracy", "train"),
        ("sparse_categorical_accuracy", "accuracy", "train"),
        ("lr", "lr", "train"),
        ("learning_rate", "lr", "train"),
        ("loss", "loss", "train"),
        ("val_loss", "loss", "val"),
        ("dice_coef_loss", "loss", "train"),
        ("val_bce_dice_loss", "loss", "val"),
        ("precision", "other", "train"),
        ("val_recall_2", "other", "val"),
    ],
)
def test_column_role_by_meaning(name, kind, split):
    role = curves.column_role(name)
    assert (role.kind, role.split) == (kind, split)


def test_val_twin_shares_base_name():
    assert curves.column_role("val_dice_coef").base == curves.column_role("dice_coef").base == "dice_coef"


def test_loss_form_recognises_negative_and_one_minus_dice():
    dice = np.array([0.1, 0.4, 0.7, 0.8])
    assert curves.loss_form(-dice, dice).form == curves.NEGATIVE_OVERLAP
    assert curves.loss_form(1 - dice, dice).form == curves.ONE_MINUS_OVERLAP
    assert curves.loss_form(np.array([0.7, 0.5, 0.3, 0.2]), dice).form == curves.PLAIN
    # below -1 no standard loss can go, whatever the metric says
    assert curves.loss_form(np.array([23.0, -10.5, -41.9]), np.array([0.8, 1.2, 1.6])).form == curves.NEGATIVE_UNEXPLAINED
    # in [-1, 0) without a Dice column: the shape of -Dice, judged as such
    form = curves.loss_form(np.array([-0.2, -0.5, -0.6]))
    assert form.form == curves.NEGATIVE_OVERLAP and form.offset == 1.0


def test_loss_form_offset_makes_a_distance():
    dice = np.array([0.2, 0.5, 0.9])
    form = curves.loss_form(-dice, dice)
    np.testing.assert_allclose(-dice + form.offset, 1 - dice)


@quick
@given(st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), min_size=3, max_size=40, unique=True))
def test_monotone_curve_is_perfectly_smooth(values):
    y = np.sort(np.asarray(values))
    assert curves.smoothness(y) == 1.0
    assert curves.smoothness(y[::-1]) == 1.0
    assert curves.variation_to_net_change(y) == pytest.approx(1.0)


@quick
@given(st.integers(min_value=4, max_value=60), st.floats(min_value=0.01, max_value=10))
def test_zigzag_is_never_smooth(n, amplitude):
    y = amplitude * (-1.0) ** np.arange(n)
    assert curves.smoothness(y) == 0.0
    changes, comparisons = curves.direction_changes(y)
    assert changes == comparisons == n - 2


@quick
@given(grid_series, st.sampled_from([0.5, 2.0, 8.0]), st.integers(min_value=-64, max_value=64))
def test_smoothness_ignores_positive_scale_and_shift(y, scale, shift):
    s = curves.smoothness(y)
    t = curves.smoothness(scale * y + shift)
    assert (math.isnan(s) and math.isnan(t)) or s == pytest.approx(t)


@quick
@given(series)
def test_smoothness_is_a_share(y):
    s = curves.smoothness(y)
    assert math.isnan(s) or 0.0 <= s <= 1.0
    assert curves.variation_to_net_change(y) >= 1.0 - 1e-9


@quick
@given(series)
def test_smoothness_is_symmetric_in_time_and_sign(y):
    s = curves.smoothness(y)
    for other in (y[::-1], -y):
        t = curves.smoothness(other)
        assert (math.isnan(s) and math.isnan(t)) or s == pytest.approx(t)


def test_noise_is_about_one_third_smooth():
    rng = np.random.default_rng(1)
    assert curves.smoothness(rng.normal(size=5000)) == pytest.approx(1 / 3, abs=0.03)


def test_nan_entries_are_skipped():
    y = np.array([1.0, np.nan, 0.8, 0.6, np.nan, 0.4])
    assert curves.smoothness(y) == 1.0
    assert curves.relative_change(y) == pytest.approx(0.6)


@quick
@given(series)
def test_rising_runs_really_rise(y):
    for start, end in curves.rising_runs(y):
        assert end > start
        assert np.all(np.diff(y[start:end + 1]) > 0)
    steps, start, end = curves.longest_rising_run(y)
    assert steps == (end - start if steps else 0)


def test_longest_rising_run_finds_the_run():
    y = np.array([5, 4, 3, 3.1, 3.2, 3.3, 3.4, 3.5, 2.0])
    assert curves.longest_rising_run(y) == (5, 2, 7)


@quick
@given(st.lists(st.booleans(), max_size=50))
def test_true_runs_cover_exactly_the_true_entries(mask):
    mask = np.asarray(mask, dtype=bool)
    covered = np.zeros(mask.size, dtype=bool)
    for a, b in curves.true_runs(mask):
        covered[a:b + 1] = True
    assert np.array_equal(covered, mask)


def test_frozen_runs_need_two_equal_epochs():
    y = np.array([0.5, 0.7814, 0.7814, 0.7814, 0.79, 0.79])
    assert curves.frozen_runs(y, tolerance=1e-6) == [(1, 3), (4, 5)]


@quick
@given(series, st.integers(min_value=1, max_value=9))
def test_rolling_median_stays_within_the_values(y, window):
    m = curves.rolling_median(y, window)
    assert np.all(m >= y.min() - 1e-9) and np.all(m <= y.max() + 1e-9)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-5, max_value=5, allow_nan=False), min_size=3, max_size=30, unique=True))
def test_trend_tau_sign_follows_the_trend(values):
    y = np.sort(np.asarray(values))
    assert curves.trend_tau(y) == pytest.approx(1.0)
    assert curves.trend_tau(y[::-1]) == pytest.approx(-1.0)


def test_learning_rate_changes_ignore_float_noise():
    lr = np.array([1e-3, 1e-3 * (1 + 1e-7), 1e-3, 1e-4, 1e-4, 2e-5])
    assert [(i, round(a, 6), round(b, 6)) for i, a, b in curves.learning_rate_changes(lr)] == [(3, 0.001, 0.0001), (5, 0.0001, 0.00002)]


def test_relative_steps_use_the_offset_level():
    # -Dice from -0.9 to -0.8: the distance 1 - Dice doubles (0.1 -> 0.2), a 100% step
    assert curves.relative_steps(np.array([-0.9, -0.8]), offset=1.0)[0] == pytest.approx(1.0)


# --- the vectorised statistics give the numbers of their plain definitions ------------------------
# (the references below are the straightforward loops; the library runs on logs of 10^6 epochs)


def _rolling_median_reference(values, window):
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(values))
    y = values[idx]
    if y.size == 0:
        return out
    w = max(1, min(int(window), y.size))
    half = w // 2
    for k in range(y.size):
        hi = min(y.size, k - half + w)
        out[idx[k]] = float(np.median(y[max(0, hi - w):hi]))
    return out


def _frozen_runs_reference(values, tolerance):
    runs, k, n = [], 0, values.size
    while k < n:
        if not np.isfinite(values[k]):
            k += 1
            continue
        j = k
        while j + 1 < n and np.isfinite(values[j + 1]) and abs(values[j + 1] - values[k]) <= tolerance:
            j += 1
        if j > k:
            runs.append((k, j))
        k = j + 1
    return runs


def _rising_runs_reference(values):
    idx = np.flatnonzero(np.isfinite(values))
    y = values[idx]
    runs, start = [], None
    for k in range(1, y.size):
        if y[k] > y[k - 1]:
            start = k - 1 if start is None else start
        elif start is not None:
            runs.append((int(idx[start]), int(idx[k - 1])))
            start = None
    if start is not None:
        runs.append((int(idx[start]), int(idx[-1])))
    return runs


# few distinct values, NaN and Inf among them, so that ties, frozen stretches and gaps are common
coarse = st.lists(st.sampled_from([0.0, 0.5, 0.5 + 4e-7, 0.5 + 9e-7, 0.5 + 2e-6, 1.0, 2.0, np.nan, np.inf]),
                  max_size=80).map(lambda v: np.asarray(v, dtype=float))


@quick
@given(coarse, st.integers(min_value=1, max_value=9))
def test_rolling_median_matches_its_definition(y, window):
    assert np.array_equal(curves.rolling_median(y, window), _rolling_median_reference(y, window), equal_nan=True)


@quick
@given(coarse, st.sampled_from([0.0, 1e-6, 5e-7, 0.6]))
def test_frozen_runs_match_the_greedy_walk(y, tolerance):
    assert curves.frozen_runs(y, tolerance=tolerance) == _frozen_runs_reference(y, tolerance)


def test_frozen_runs_on_a_long_drifting_stretch():
    # every step is within 2x tolerance, no value stays within tolerance of a start for long
    y = np.arange(5000) * 0.9e-6
    assert curves.frozen_runs(y, tolerance=1e-6) == _frozen_runs_reference(y, 1e-6)
    flat = np.r_[np.full(3000, 0.25), 0.3, np.full(4000, 0.25)]
    assert curves.frozen_runs(flat, tolerance=1e-6) == [(0, 2999), (3001, 7000)]


@quick
@given(coarse)
def test_rising_runs_match_their_definition(y):
    assert curves.rising_runs(y) == _rising_runs_reference(y)


@quick
@given(coarse)
def test_learning_rate_changes_match_their_definition(y):
    idx = np.flatnonzero(np.isfinite(y))
    v = y[idx]
    expected = [(int(idx[k]), float(v[k - 1]), float(v[k])) for k in range(1, v.size)
                if abs(v[k] - v[k - 1]) > 0.05 * max(abs(v[k - 1]), 1e-30)]
    assert curves.learning_rate_changes(y) == expected


@quick
@given(st.lists(st.integers(min_value=0, max_value=6), max_size=70))
def test_discordant_pairs_count_the_inversions(values):
    r = np.asarray(values, dtype=np.int64)
    brute = sum(1 for i in range(r.size) for j in range(i + 1, r.size) if r[i] > r[j])
    assert curves.discordant_pairs(r) == brute


def test_trend_tau_is_scipys_kendall_tau():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(3, 300))
        y = (rng.normal(size=n), rng.integers(0, 4, n).astype(float), np.cumsum(rng.normal(size=n)))[trial % 3]
        if trial % 5 == 0:
            y[rng.integers(0, n, 4)] = np.nan
        idx = np.flatnonzero(np.isfinite(y))
        got = curves.trend_tau(y)
        if idx.size < 3 or np.all(y[idx] == y[idx][0]):
            assert math.isnan(got)
        else:
            assert got == kendalltau(idx, y[idx]).statistic  # the same float, not merely close
    y = np.cumsum(rng.normal(size=20000))
    assert curves.trend_tau(y) == kendalltau(np.arange(y.size), y).statistic


def test_curve_statistics_do_not_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from segdoctor.stats import curves; "
            "curves.trend_tau(np.arange(50.0)); curves.rolling_median(np.arange(9.0), 3); "
            "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))
