"""Per-mask label statistics: which values occur, where they lie, how they are encoded.

All functions are numpy (``label_value_stats`` hands uint8 maps to a compiled twin where it is built,
with the same results). The key observation: a true class value fills regions (many of its
pixels have four neighbours of the same value), while values made by bilinear/bicubic resizing or
by lossy compression live in one- or two-pixel bands along class boundaries, and a resized boundary
value lies strictly between the values of its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segdoctor import speedups

#: a mask is not a label map when it holds more distinct values than this
MAX_TRACKED_VALUES = 4096
#: colour masks: distinct colours kept per mask
MAX_TRACKED_COLOURS = 1024

VOC_VOID_COLOUR = (224, 224, 192)


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map (the bit-interleaving rule of the VOC devkit), shape (n, 3) uint8."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


@dataclass(frozen=True, slots=True)
class ValueStats:
    """Per distinct value: pixel count, pixels whose 4 neighbours share the value, and pixels strictly
    between their neighbours' min and max (the signature of interpolation)."""

    values: np.ndarray  # int64 or float64, sorted
    counts: np.ndarray  # int64
    interior: np.ndarray  # int64
    between: np.ndarray  # int64
    n_distinct: int  # before truncation to MAX_TRACKED_VALUES
    other_count: int  # pixels of values dropped by truncation


def neighbourhood_flags(label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the inner pixels of a 2-D label map: (centre values, interior flag, between flag)."""
    c = label[1:-1, 1:-1]
    up, down, left, right = label[:-2, 1:-1], label[2:, 1:-1], label[1:-1, :-2], label[1:-1, 2:]
    interior = (c == up) & (c == down) & (c == left) & (c == right)
    lo = np.minimum(np.minimum(up, down), np.minimum(left, right))
    hi = np.maximum(np.maximum(up, down), np.maximum(left, right))
    between = (c > lo) & (c < hi)
    return c, interior, between


def monotone_pixels(label: np.ndarray) -> int:
    """Inner pixels whose value lies strictly between two opposite neighbours (left/right or up/down).

    A resize ramp (0, 1, 2, 3 across an edge between ids 0 and 3) is monotone along the edge normal;
    a junction of three classes in a clean map is not. This separates resized consecutive-id maps
    from small clean multi-class maps, which both have values between their neighbours' min and max.
    """
    lab = np.asarray(label)
    if lab.ndim != 2 or lab.shape[0] < 3 or lab.shape[1] < 3:
        return 0
    c = lab[1:-1, 1:-1]
    up, down, left, right = lab[:-2, 1:-1], lab[2:, 1:-1], lab[1:-1, :-2], lab[1:-1, 2:]
    mono = ((left < c) & (c < right)) | ((left > c) & (c > right)) | ((up < c) & (c < down)) | ((up > c) & (c > down))
    return int(mono.sum())


def value_stats(label: np.ndarray) -> ValueStats:
    """Count each value of a 2-D integer (or integral float) label map with its interior/between pixels."""
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise ValueError("value_stats expects a 2-D label map")
    if lab.dtype.kind in "iu" and lab.shape[0] >= 3 and lab.shape[1] >= 3:
        return label_value_stats(lab)[0]
    return _value_stats_generic(lab)


def _value_stats_generic(lab: np.ndarray) -> ValueStats:
    """The reference computation (full-size neighbour comparisons); used for float and tiny maps."""
    if lab.shape[0] < 3 or lab.shape[1] < 3:
        vals, counts = np.unique(lab, return_counts=True)
        z = np.zeros_like(counts)
        return ValueStats(vals.astype(np.int64), counts.astype(np.int64), z, z, len(vals), 0)
    c, interior, between = neighbourhood_flags(lab)
    if lab.dtype == np.uint8:
        counts = np.bincount(lab.ravel(), minlength=256)
        inner = np.bincount(c[interior], minlength=256)
        betw = np.bincount(c[between], minlength=256)
        vals = np.nonzero(counts)[0]
        return ValueStats(vals.astype(np.int64), counts[vals].astype(np.int64), inner[vals].astype(np.int64),
                          betw[vals].astype(np.int64), len(vals), 0)
    vals, inv = np.unique(lab, return_inverse=True)
    inv = inv.reshape(lab.shape)
    counts = np.bincount(inv.ravel(), minlength=len(vals))
    ci = inv[1:-1, 1:-1]
    inner = np.bincount(ci[interior], minlength=len(vals))
    betw = np.bincount(ci[between], minlength=len(vals))
    return _truncated(vals, counts, inner, betw)


def _truncated(vals, counts, inner, betw) -> ValueStats:
    n = len(vals)
    other = 0
    if n > MAX_TRACKED_VALUES:
        keep = np.sort(np.argsort(counts)[::-1][:MAX_TRACKED_VALUES])
        other = int(counts.sum() - counts[keep].sum())
        vals, counts, inner, betw = vals[keep], counts[keep], inner[keep], betw[keep]
    vals = vals.astype(np.float64) if vals.dtype.kind == "f" else vals.astype(np.int64)
    return ValueStats(vals, counts.astype(np.int64), inner.astype(np.int64), betw.astype(np.int64), n, other)


def uint8_histogram(a: np.ndarray) -> np.ndarray:
    """256 pixel counts of a 2-D uint8 array, int64.

    Most masks hold one or two values: min, max and two comparisons count them. Otherwise Pillow's C
    histogram, about 4x faster than ``np.bincount`` (which first widens every pixel to intp)."""
    counts = np.zeros(256, dtype=np.int64)
    if a.size == 0:
        return counts
    lo, hi = int(a.min()), int(a.max())
    if lo == hi:
        counts[lo] = a.size
        return counts
    n_lo, n_hi = int(np.count_nonzero(a == lo)), int(np.count_nonzero(a == hi))
    if n_lo + n_hi == a.size:
        counts[lo], counts[hi] = n_lo, n_hi
        return counts
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).histogram(), dtype=np.int64)


#: integer maps whose values span fewer than this many ids are counted with a bincount instead of a sort
_BINCOUNT_SPAN = 1 << 16
#: above this share of non-interior pixels, gathering them one by one costs more than full-size comparisons
_SPARSE_SHARE = 0.25


_BYTE_SPREAD = np.uint64(0x0101010101010101)


def boundary_rows(lab: np.ndarray) -> tuple[int, int]:
    """Rows ``[a, b)`` of a 2-D map outside which every pixel equals its four neighbours ((0, 0): none differ).

    A pixel in a row that is uniform and equal to both adjacent rows cannot differ from any neighbour.
    For byte maps whose width is a multiple of 8 the rows are compared 8 pixels at a time (uint64 words):
    a few microseconds, so that masks whose objects cover part of the rows (most masks) skip the rest of
    the per-pixel comparisons. Other maps return all rows."""
    h, w = lab.shape
    if not (lab.dtype.itemsize == 1 and w % 8 == 0 and lab.flags.c_contiguous and h >= 3):
        return 0, h
    words = lab.view(np.uint64)
    per_row = w // 8
    below = (words[1:] != words[:-1]).ravel()  # word k: row k // per_row differs from the next row there
    inside = (words != lab[:, :1].astype(np.uint64) * _BYTE_SPREAD).ravel()  # row not uniform
    first = last = None
    # only the first and last active rows matter
    for flags, extra in ((below, 1), (inside, 0)):
        hits = np.flatnonzero(flags)
        if hits.size == 0:
            continue
        top = int(hits[0]) // per_row
        bottom = int(hits[-1]) // per_row + extra  # where a row differs from the next, both are active
        first = top if first is None else min(first, top)
        last = bottom if last is None else max(last, bottom)
    if first is None:
        return 0, 0
    return max(0, first - 1), min(h, last + 2)


def label_value_stats(label: np.ndarray) -> tuple[ValueStats, int]:
    """``(value_stats(label), monotone_pixels(label))`` of a 2-D integer map of at least 3x3, in one pass.

    Interior pixels equal all four neighbours, so they are never "between" nor "monotone": only the
    non-interior pixels (a thin band along class boundaries in a clean map) are examined further, and
    interior counts follow by subtraction. The results equal the reference computation exactly.
    """
    lab = np.asarray(label)
    if lab.dtype == np.uint8 and lab.flags.c_contiguous and speedups.native is not None:
        # the same counts from one compiled pass (eight interior pixels at a time away from boundaries)
        counts, inner, betw = (np.zeros(256, dtype=np.int64) for _ in range(3))
        monotone = speedups.native.u8_label_stats(lab, counts, inner, betw)
        present = np.flatnonzero(counts)
        return _truncated(present.astype(np.int64), counts[present], inner[present], betw[present]), monotone
    # value -> bin: uint8 maps bin by value, small-span integer maps by value - min, others by rank
    if lab.dtype == np.uint8:
        counts = uint8_histogram(lab)
        bin_values, offset = np.arange(256, dtype=np.int64), 0
    else:
        lo, hi = int(lab.min()), int(lab.max())
        if hi - lo < _BINCOUNT_SPAN and -(1 << 62) < lo and hi < (1 << 62):
            counts = np.bincount((lab.astype(np.int64) - lo).ravel(), minlength=hi - lo + 1)
            bin_values, offset = np.arange(lo, hi + 1, dtype=np.int64), lo
        else:
            bin_values, counts = np.unique(lab, return_counts=True)
            offset = None

    def binned(x: np.ndarray) -> np.ndarray:
        if lab.dtype != np.uint8:
            x = np.searchsorted(bin_values, x) if offset is None else x.astype(np.int64) - offset
        return np.bincount(x, minlength=len(counts))

    present = np.flatnonzero(counts)
    ring = np.concatenate([lab[0], lab[-1], lab[1:-1, 0], lab[1:-1, -1]])
    # every non-interior inner pixel lies in these rows: the comparisons below look at them only
    a, b = boundary_rows(lab)
    band = lab[a:b] if b - a >= 3 else lab[:0]
    # non-interior flags of the inner pixels from one horizontal and one vertical comparison
    dh = band[1:-1, 1:] != band[1:-1, :-1]  # (h-2, w-1): pixel differs from its right neighbour
    dv = band[1:, 1:-1] != band[:-1, 1:-1]  # (h-1, w-2): pixel differs from the one below
    edge = dh[:, :-1] | dh[:, 1:]
    edge |= dv[:-1]
    edge |= dv[1:]
    if len(present) == 2:
        # two values (every binary mask): no pixel lies strictly between its neighbours, so "between" and
        # "monotone" are 0, and the boundary pixels of the high value are all that remains to count
        n_edge = np.count_nonzero(edge)
        hi_value = int(bin_values[present[1]])  # a Python int compares in the map's own dtype
        n_edge_hi = np.count_nonzero(edge & (band[1:-1, 1:-1] == hi_value)) if n_edge else 0
        edge_counts = np.array([n_edge - n_edge_hi, n_edge_hi], dtype=np.int64)
        ring_hi = int(np.count_nonzero(ring == hi_value))
        ring_counts = np.array([ring.size - ring_hi, ring_hi], dtype=np.int64)
        c2 = counts[present]
        zero = np.zeros(2, dtype=np.int64)
        return _truncated(bin_values[present], c2, c2 - ring_counts - edge_counts, zero), 0
    if np.count_nonzero(edge) <= _SPARSE_SHARE * edge.size:
        # flatnonzero on the contiguous flags is an order of magnitude faster than a 2-D np.nonzero
        rows, cols = np.divmod(np.flatnonzero(edge), edge.shape[1])
        rows += 1
        cols += 1
        cv, u, d = band[rows, cols], band[rows - 1, cols], band[rows + 1, cols]
        lf, rt = band[rows, cols - 1], band[rows, cols + 1]
    else:
        c, up, down, left, right = band[1:-1, 1:-1], band[:-2, 1:-1], band[2:, 1:-1], band[1:-1, :-2], band[1:-1, 2:]
        cv, u, d, lf, rt = c[edge], up[edge], down[edge], left[edge], right[edge]
    # interior = pixels of the inner area (all minus the outer ring) that are not boundary pixels
    inner = counts - binned(ring) - binned(cv)
    lo4 = np.minimum(np.minimum(u, d), np.minimum(lf, rt))
    hi4 = np.maximum(np.maximum(u, d), np.maximum(lf, rt))
    betw = binned(cv[(cv > lo4) & (cv < hi4)])
    mono = ((lf < cv) & (cv < rt)) | ((lf > cv) & (cv > rt)) | ((u < cv) & (cv < d)) | ((u > cv) & (cv > d))
    monotone = int(np.count_nonzero(mono))
    return _truncated(bin_values[present], counts[present], inner[present], betw[present]), monotone


def channel_spread(mask: np.ndarray) -> tuple[float, float]:
    """For a colour mask: (share of pixels whose R, G, B differ by more than 8, mean absolute spread)."""
    rgb = np.asarray(mask[..., :3], dtype=np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float((spread > 8).mean()), float(spread.mean())


def pack_rgb(mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 → (H, W) int32 colour ids r<<16 | g<<8 | b."""
    m = np.asarray(mask[..., :3])
    if m.dtype != np.uint8:
        m = np.clip(m, 0, 255).astype(np.uint8)
    m = m.astype(np.int32)
    return (m[..., 0] << 16) | (m[..., 1] << 8) | m[..., 2]


def unpack_rgb(colour: int) -> tuple[int, int, int]:
    colour = int(colour)
    return (colour >> 16) & 255, (colour >> 8) & 255, colour & 255


def is_integral(a: np.ndarray) -> bool:
    if a.dtype.kind in "biu":
        return True
    finite = a[np.isfinite(a)]
    return bool(finite.size and np.all(finite == np.round(finite)))
