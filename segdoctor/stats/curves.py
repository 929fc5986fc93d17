"""Training-curve statistics: what a logged column means, and pure functions over per-epoch values.

Everything here is numpy (Kendall's tau included: scipy.stats costs seconds to import); no Keras, no
plotting. Functions take the values of one column as a 1-D array in epoch order; NaN marks an epoch
without a usable value. Every function is vectorised or linear: a log may hold 10^6 epochs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

#: kinds of logged quantity segdoctor reasons about
LOSS, DICE, IOU, ACCURACY, LR, OTHER = "loss", "dice", "iou", "accuracy", "lr", "other"
OVERLAP_KINDS = frozenset({DICE, IOU})

_SUFFIX_RE = re.compile(r"(_\d+)+$")  # Keras numbers repeated metrics: mean_io_u_1, dice_coef_2
_DICE_WORDS = ("dice", "f1", "fscore", "f_score", "f1score", "f1_score", "sorensen")
_IOU_WORDS = ("iou", "io_u", "jaccard", "intersection_over_union")
_ACCURACY_NAMES = re.compile(r"^(.*_)?(acc|accuracy)$")


@dataclass(frozen=True, slots=True)
class ColumnRole:
    """What one logged column is: its kind, whether it is measured on validation data, its base name."""

    name: str
    kind: str  # loss | dice | iou | accuracy | lr | other
    split: str  # "train" | "val"
    base: str  # the name without the val_ prefix

    @property
    def is_overlap(self) -> bool:
        return self.kind in OVERLAP_KINDS

    @property
    def label(self) -> str:
        """How findings name the quantity: Dice, IoU, accuracy, loss, learning rate."""
        return {DICE: "Dice", IOU: "IoU", ACCURACY: "accuracy", LOSS: "loss", LR: "learning rate"}.get(self.kind, self.base)


def column_role(name: str) -> ColumnRole:
    """Recognise a column by meaning: ``val_mean_io_u_1`` is validation IoU, ``f1-score`` is Dice."""
    raw = name.strip()
    lowered = raw.lower()
    split = "train"
    for prefix in ("val_", "validation_", "val-", "val/", "validation/"):
        if lowered.startswith(prefix):
            split, lowered = "val", lowered[len(prefix):]
            break
    base = raw[len(raw) - len(lowered):] if split == "val" else raw
    key = _SUFFIX_RE.sub("", re.sub(r"[\s\-/.]+", "_", lowered))
    if key in ("lr", "learning_rate", "learningrate"):
        kind = LR
    elif "loss" in key:
        kind = LOSS  # checked before the metric words: dice_coef_loss is a loss, not a Dice
    elif any(w in key for w in _IOU_WORDS):
        kind = IOU
    elif any(w in key for w in _DICE_WORDS):
        kind = DICE
    elif _ACCURACY_NAMES.match(key):
        kind = ACCURACY
    else:
        kind = OTHER
    return ColumnRole(name=name, kind=kind, split=split, base=base)


# --- loss forms ----------------------------------------------------------------------------------

PLAIN, NEGATIVE_OVERLAP, ONE_MINUS_OVERLAP, NEGATIVE_UNEXPLAINED = (
    "plain", "negative-overlap", "one-minus-overlap", "negative-unexplained",
)

#: a loss within this distance of ``-metric`` or ``1 - metric`` (median over epochs) is that metric.
#: Keras logs both as the mean over the same batches, so they agree to rounding unless the loss adds
#: a regulariser; 0.02 leaves room for weight decay of that order.
LOSS_RELATION_TOLERANCE = 0.02

#: no standard segmentation loss (CE, Dice, focal, Tversky, -Dice, their sums) goes below -1
LOWEST_STANDARD_LOSS = -1.0


@dataclass(frozen=True, slots=True)
class LossForm:
    """How a loss column relates to a perfect fit.

    ``metric`` names the column the loss was matched to (None when the form is inferred from the
    values alone). ``offset`` turns the loss into a distance from a perfect fit (``loss + offset >= 0``) so that
    ratios such as "10x its minimum" mean something; it is ``None`` when the loss is negative for no
    standard reason (then only differences, never ratios, are judged).
    """

    form: str
    metric: str | None = None
    offset: float | None = 0.0

    @property
    def description(self) -> str:
        return {
            PLAIN: "a loss that is 0 at a perfect fit",
            NEGATIVE_OVERLAP: f"-{self.metric or 'Dice'} (negative by design, -1 at a perfect fit)",
            ONE_MINUS_OVERLAP: f"1 - {self.metric or 'Dice'}",
            NEGATIVE_UNEXPLAINED: "below -1, which no standard loss reaches (SD609)",
        }[self.form]


def loss_form(loss: np.ndarray, metric: np.ndarray | None = None, *, metric_name: str | None = None) -> LossForm:
    """Judge whether ``loss`` is ``-metric``, ``1 - metric``, an ordinary loss, or impossibly negative."""
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    if metric is not None:
        metric = np.asarray(metric, dtype=float)
        both = finite & np.isfinite(metric)
        if both.any():
            if np.median(np.abs(loss[both] + metric[both])) <= LOSS_RELATION_TOLERANCE:
                return LossForm(NEGATIVE_OVERLAP, metric_name, 1.0)
            if np.median(np.abs(loss[both] - (1.0 - metric[both]))) <= LOSS_RELATION_TOLERANCE:
                return LossForm(ONE_MINUS_OVERLAP, metric_name, 0.0)
    if not finite.any():
        return LossForm(PLAIN)
    lowest = float(np.min(loss[finite]))
    if lowest < LOWEST_STANDARD_LOSS - LOSS_RELATION_TOLERANCE:
        return LossForm(NEGATIVE_UNEXPLAINED, None, None)
    if lowest < 0:
        # In [-1, 0): the shape of -Dice (or CE - Dice) even when no Dice column confirms it.
        return LossForm(NEGATIVE_OVERLAP, None, 1.0)
    return LossForm(PLAIN)


def loss_form_among(loss: np.ndarray, metrics: list[tuple[str, np.ndarray]]) -> LossForm:
    """``loss_form(loss, metric)`` for the first metric the loss is ``-metric`` or ``1 - metric`` of, else
    ``loss_form(loss)``. Metrics finite wherever the loss is are compared together (a log may hold
    thousands of them); the rest one by one, in order."""
    loss = np.asarray(loss, dtype=float)
    finite = np.isfinite(loss)
    start = 0
    while start < len(metrics):
        # a run of metrics that share the loss's finite epochs, compared as one matrix (bounded in size)
        stop = start
        limit = max(1, (1 << 22) // max(loss.size, 1))
        while stop < len(metrics) and stop - start < limit and np.isfinite(np.asarray(metrics[stop][1], dtype=float)[finite]).all():
            stop += 1
        if stop == start:
            name, values = metrics[start]
            form = loss_form(loss, values, metric_name=name)
            if form.metric is not None:
                return form
            start += 1
            continue
        if finite.any():
            block = np.stack([np.asarray(v, dtype=float)[finite] for _, v in metrics[start:stop]])
            lv = loss[finite]
            negative = np.median(np.abs(lv + block), axis=1) <= LOSS_RELATION_TOLERANCE
            one_minus = np.median(np.abs(lv - (1.0 - block)), axis=1) <= LOSS_RELATION_TOLERANCE
            hit = np.flatnonzero(negative | one_minus)
            if hit.size:
                k = int(hit[0])
                name = metrics[start + k][0]
                return LossForm(NEGATIVE_OVERLAP, name, 1.0) if negative[k] else LossForm(ONE_MINUS_OVERLAP, name, 0.0)
        start = stop
    return loss_form(loss)


# --- curve statistics ----------------------------------------------------------------------------


def finite_part(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the finite entries, in order."""
    values = np.asarray(values, dtype=float)
    idx = np.flatnonzero(np.isfinite(values))
    return idx, values[idx]


def direction_changes(values: np.ndarray) -> tuple[int, int]:
    """(changes, comparisons): how often successive non-zero differences change sign, out of how many pairs."""
    _, y = finite_part(values)
    d = np.diff(y)
    s = np.sign(d[d != 0])
    if s.size < 2:
        return 0, 0
    return int(np.count_nonzero(s[1:] != s[:-1])), int(s.size - 1)


def smoothness(values: np.ndarray) -> float:
    """Share of successive steps without a sign change of the differences, in [0, 1]; NaN if < 3 moving points.

    1.0 for a monotone curve, 0.0 for a perfect zig-zag, about 1/3 for white noise.
    """
    changes, comparisons = direction_changes(values)
    return float("nan") if comparisons == 0 else 1.0 - changes / comparisons


def relative_steps(values: np.ndarray, *, offset: float = 0.0) -> np.ndarray:
    """|Δ| of each finite step relative to the level it starts from (``offset`` shifts the level to >= 0)."""
    _, y = finite_part(values)
    if y.size < 2:
        return np.zeros(0)
    level = np.maximum(np.abs(y[:-1] + offset), 1e-12)
    return np.abs(np.diff(y)) / level


def relative_change(values: np.ndarray, *, offset: float = 0.0) -> float:
    """|last - first| over |first + offset| for the finite values; 0 for fewer than two."""
    _, y = finite_part(values)
    if y.size < 2:
        return 0.0
    return float(abs(y[-1] - y[0]) / max(abs(y[0] + offset), 1e-12))


def rising_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of maximal runs of strictly rising consecutive finite values (end inclusive)."""
    idx, y = finite_part(values)
    if y.size < 2:
        return []
    steps = true_runs(y[1:] > y[:-1])  # step j rises from finite value j to j + 1
    return [(int(idx[a]), int(idx[b + 1])) for a, b in steps]


def longest_rising_run(values: np.ndarray) -> tuple[int, int, int]:
    """(steps, start, end) of the longest rising run; (0, -1, -1) when nothing rises."""
    runs = rising_runs(values)
    if not runs:
        return 0, -1, -1
    start, end = max(runs, key=lambda r: (r[1] - r[0], r[0]))
    return end - start, start, end


def variation_to_net_change(values: np.ndarray) -> float:
    """Total variation over net change (>= 1): 1 for a monotone curve, large for a zig-zag around a flat trend."""
    _, y = finite_part(values)
    if y.size < 2:
        return 1.0
    total = float(np.sum(np.abs(np.diff(y))))
    net = abs(float(y[-1] - y[0]))
    if total == 0:
        return 1.0
    return total / net if net > 0 else float("inf")


def mean_step(values: np.ndarray) -> float:
    """Mean absolute epoch-to-epoch change of the finite values."""
    _, y = finite_part(values)
    return float(np.mean(np.abs(np.diff(y)))) if y.size >= 2 else 0.0


def trend_tau(values: np.ndarray) -> float:
    """Kendall's tau-b of the finite values against epoch order, in [-1, 1]; NaN for fewer than 3 points.

    The same number as ``scipy.stats.kendalltau(epoch_indices, values).statistic`` (epochs are distinct, so
    only the values can tie), computed in O(n log n) with numpy.
    """
    _, y = finite_part(values)
    if y.size < 3 or np.all(y == y[0]):
        return float("nan")
    n = y.size
    _, ranks = np.unique(y, return_inverse=True)
    ranks = ranks.reshape(-1)
    counts = np.bincount(ranks).astype(np.int64)
    counts = counts[counts > 1]
    tot = n * (n - 1) // 2
    ytie = int((counts * (counts - 1) // 2).sum())
    con_minus_dis = tot - ytie - 2 * discordant_pairs(ranks)
    tau = con_minus_dis / np.sqrt(tot) / np.sqrt(tot - ytie)
    return float(min(1.0, max(-1.0, tau)))


def discordant_pairs(ranks: np.ndarray) -> int:
    """Pairs i < j with ``ranks[i] > ranks[j]`` (ties are not discordant): the inversions of a sequence.

    A bottom-up merge sort, vectorised per level: at width w every block of 2w holds two sorted halves,
    and each element of a right half counts the elements of its left half above it (one searchsorted
    over all left halves, keyed by block so that blocks never mix).
    """
    r = np.asarray(ranks, dtype=np.int64).ravel()
    n = r.size
    if n < 2:
        return 0
    r = r - r.min()
    span = int(r.max()) + 1
    pos = np.arange(n, dtype=np.int64)
    total = 0
    width = 1
    while width < n:
        block = pos // (2 * width)
        keys = block * span + r  # sorted within each half: r is sorted per block of ``width``
        left = (pos // width) % 2 == 0
        left_keys, right_keys = keys[left], keys[~left]
        right_block = block[~left]
        # left elements of the block above the right element: those before the block's end, minus those at or below
        at_or_below = np.searchsorted(left_keys, right_keys, side="right")
        block_end = np.searchsorted(left_keys, (right_block + 1) * span, side="left")
        total += int((block_end - at_or_below).sum())
        r = np.sort(keys, kind="stable") - block * span  # merge: each block of 2 * width now sorted
        width *= 2
    return total


def rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    """Running median over finite values (NaN stays NaN); ``window`` is clipped to the length.

    The window of the k-th finite value is ``[k - window // 2, k - window // 2 + window)``, shifted left to
    fit at the end and cut at the start.
    """
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, np.nan)
    idx, y = finite_part(values)
    m = y.size
    if m == 0:
        return out
    w = max(1, min(int(window), m))
    half = w // 2
    med = np.empty(m)
    for k in range(min(half, m)):  # cut windows at the start
        med[k] = np.median(y[:k - half + w])
    # full windows: row j of the view is y[j:j + w], the window of value j + half (or of every value whose
    # window is shifted to the end)
    windows = np.lib.stride_tricks.sliding_window_view(y, w)
    rows = windows.shape[0]
    chunk = max(1, (1 << 20) // w)  # bounded temporaries for long logs
    full = np.empty(rows)
    for a in range(0, rows, chunk):
        full[a:a + chunk] = np.median(windows[a:a + chunk], axis=1)
    k = np.arange(half, m)
    med[half:] = full[np.minimum(k - half, rows - 1)]
    out[idx] = med
    return out


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) inclusive index pairs of the maximal runs of True."""
    mask = np.asarray(mask, dtype=bool).ravel()
    if mask.size == 0:
        return []
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def frozen_runs(values: np.ndarray, *, tolerance: float) -> list[tuple[int, int]]:
    """(start, end) index runs (end inclusive, >= 2 epochs) over which the value stays within ``tolerance`` of its start.

    Runs are taken greedily from the first finite value: each starts where the previous one ended.
    """
    values = np.asarray(values, dtype=float).ravel()
    n = values.size
    if n < 2:
        return []
    # Two values within ``tolerance`` of one start differ by at most 2 x tolerance, so runs lie inside the
    # stretches where every step is that small; the greedy walk only visits those.
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", over="ignore"):
        close = finite[1:] & finite[:-1] & (np.abs(np.diff(values)) <= 2 * tolerance)
    runs: list[tuple[int, int]] = []
    for s, e in true_runs(close):  # the stretch is values[s:e + 2]
        start, last = s, e + 1
        while start < last:
            base = values[start]
            pos, step, stop = start + 1, 16, -1
            while pos <= last:  # the first value beyond tolerance, searched in growing slices
                hi = min(last + 1, pos + step)
                beyond = np.abs(values[pos:hi] - base) > tolerance
                if beyond.any():
                    stop = pos + int(np.argmax(beyond))
                    break
                pos, step = hi, step * 2
            end = last if stop < 0 else stop - 1
            if end > start:
                runs.append((start, end))
            if stop < 0:
                break
            start = stop
    return runs


def learning_rate_changes(lr: np.ndarray, *, min_relative: float = 0.05) -> list[tuple[int, float, float]]:
    """(index, before, after) for each epoch whose learning rate differs from the previous one by > ``min_relative``."""
    idx, y = finite_part(lr)
    if y.size < 2:
        return []
    before, after = y[:-1], y[1:]
    changed = np.flatnonzero(np.abs(after - before) > min_relative * np.maximum(np.abs(before), 1e-30))
    return list(zip(idx[changed + 1].tolist(), before[changed].tolist(), after[changed].tolist()))


def envelope(x: np.ndarray, values: np.ndarray, *, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` (x, value) points that draw like the whole curve: per bucket of consecutive
    epochs, its lowest and highest value in their order, so spikes and NaN episodes stay visible.

    Non-finite values are gaps (a bucket of nothing but gaps stays a gap); a curve that already fits is
    returned as is.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(values, dtype=float)
    n = y.size
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    width = -(-n // buckets)  # ceil
    buckets = -(-n // width)
    pad = buckets * width - n
    grid = np.concatenate([np.where(np.isfinite(y), y, np.nan), np.full(pad, np.nan)]).reshape(buckets, width)
    gap = np.all(np.isnan(grid), axis=1)
    lo = np.argmin(np.where(np.isnan(grid), np.inf, grid), axis=1)
    hi = np.argmax(np.where(np.isnan(grid), -np.inf, grid), axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    base = np.arange(buckets) * width
    order = np.column_stack([base + first, base + second]).ravel()
    xs, ys = x[order], y[order].astype(float)
    ys[np.repeat(gap, 2)] = np.nan
    return xs, np.where(np.isfinite(ys), ys, np.nan)
