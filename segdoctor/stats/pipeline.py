"""Per-sample statistics of pipeline batches: the same records as the file scan, plus what only batches have.

A batch sample is an image array and a target array, in whatever form the loader produced: uint8 or
float, sparse ids (H, W[, 1]), one-hot (H, W, C), one-hot with an extra axis (H, W, 1, C), soft values.
Each sample is turned into the record the file scan builds (``image_info``, ``mask_info``,
``image_stats``, ``objects``, ``align``), so every SD1xx/SD15x/SD20x check runs on it unchanged, plus a
``pipeline`` entry that only the SD3xx checks and the report read. Nothing keeps pixels except a bounded
number of small display copies.

Float targets are calibrated before the mask checks see them: one-hot rows become class ids (zero rows
and multi-hot rows are counted, not hidden), a binary label-smoothed target {a, 1 - a} becomes {0, 1}
with its smoothing recorded (it is not a defect), and targets whose region values are class ids divided
by a constant ({0, 1/255}) become those ids with the divisor recorded (SD302 reports it). Values that
are fractional only on class boundaries stay fractional: that is interpolation (SD106).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.io.dataset import Dataset, Pair
from segdoctor.io.readers import Decoded, UnreadableFile
from segdoctor.stats.alignment import MAX_KEPT_MAPS
from segdoctor.stats.downsample import GRID, nearest_resize, pool_to, strided_sample
from segdoctor.stats.encoding import CLASS_INTERIOR_RATIO, LOSSY_NEAR_SHARE, NEAR_GAP
from segdoctor.stats.image_stats import (
    NEAR_CONSTANT_STD,
    content_range_kind,
    image_value_statistics,
    nominal_scale,
)
from segdoctor.stats.labels import value_stats
from segdoctor.stats.objects import snap_to_values
from segdoctor.stats.pair import EXTRACTORS, PairData, Record, image_info, mask_record

#: the file scan's extractors that make sense on batch samples (perceptual hashes only serve split leakage)
PIPELINE_EXTRACTORS = ("image_statistics", "mask_objects", "alignment_maps")
#: side of the display copies kept for the report, and how many samples per pipeline keep one
THUMB_SIDE = 96
MAX_THUMBS = 256
#: threads that compute the records of one batch's samples
ANALYSIS_THREADS = max(1, min(4, os.cpu_count() or 1))
#: long side of the strided sample the per-channel moments of float batch images are taken on
MOMENT_SIDE_BATCH = 64
#: raw target values kept per sample (beyond: a histogram)
MAX_RAW_VALUES = 64
#: one-hot rows whose sum is within this of 1 are valid; below this they are zero rows
ROW_TOLERANCE = 1e-3
#: a label-smoothed binary target {a, 1 - a} has a at most this
MAX_SMOOTHING = 0.3
#: a region value times the divisor must be this close to an integer for the target to count as rescaled ids
#: (float32 keeps k / 65535 to about 0.004 of an id)
RESCALE_TOLERANCE = 0.01
#: fractional values on at most this share of a sparse target's pixels are interpolation (a band along the
#: boundaries); beyond it the target is continuous (probabilities, blurred labels)
INTERPOLATED_MAX_SHARE = 0.5
#: float image kinds of the pipeline calibration (see ``finalise_image_kinds``); FAMILY in checks/images maps them
FLOAT_STANDARDISED = "float standardised"
FLOAT_8BIT = "float 8-bit scale"
#: a pipeline whose typical float image reaches beyond this is on an 8-bit scale (0-255), otherwise unit-like
EIGHT_BIT_SCALE_FROM = 8.0
#: in a unit-like pipeline, a float image reaching beyond this is on another scale (e.g. a branch forgot /255)
OUTLIER_SCALE = 30.0
#: float images on an 8-bit scale reach at most this far (augmented 0-255 data); beyond, another scale (16-bit ...)
EIGHT_BIT_REACH = 512.0


def sample_id(split: str, batch: int, index: int) -> str:
    return f"{split} batch {batch}, sample {index}"


def _decoded(array: np.ndarray) -> Decoded:
    a = np.asarray(array)
    bits = 1 if a.dtype == np.bool_ else a.dtype.itemsize * 8
    return Decoded(array=a, format="batch", mode=str(a.dtype), bits=bits)


def target_layout(y: np.ndarray) -> str:
    """How a batch's targets are laid out: sparse (B, H, W[, 1]), channels (B, H, W, C), extra-axis
    (B, H, W, 1, C) or unreadable."""
    if y.ndim == 3 or (y.ndim == 4 and y.shape[-1] == 1):
        return "sparse"
    if y.ndim == 4:
        return "channels"
    if y.ndim == 5 and y.shape[3] == 1:
        return "extra-axis"
    return "unreadable"


def _one_hot_rows(a: np.ndarray) -> dict[str, Any] | None:
    """Row statistics of a (H, W, C) target whose values lie in [0, 1] and whose rows sum to 1 or 0; else None."""
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            return None
    lo, hi = float(a.min()), float(a.max())
    if lo < -ROW_TOLERANCE or hi > 1 + ROW_TOLERANCE:
        return None
    s = a.sum(axis=-1, dtype=np.float64)
    valid = np.abs(s - 1.0) < ROW_TOLERANCE
    zero = s < ROW_TOLERANCE
    n = s.size
    n_valid, n_zero = int(valid.sum()), int(zero.sum())
    if n_valid == 0 or (n_valid + n_zero) < 0.99 * n and n_valid < 0.9 * n:
        return None
    return {"zero_rows": n_zero, "multi_rows": int((s > 1 + ROW_TOLERANCE).sum()),
            "partial_rows": int(n - n_valid - n_zero - int((s > 1 + ROW_TOLERANCE).sum())), "pixels": int(n)}


def _smoothing_of(levels: np.ndarray, depth: int) -> float | None:
    """Label smoothing epsilon of a target whose values are exactly {a, b}: binary {a, 1 - a}, or one-hot
    {eps / C, 1 - eps + eps / C}. None when the values are not such a pair."""
    if len(levels) != 2:
        return None
    a, b = float(levels[0]), float(levels[1])
    if not (0 < a <= MAX_SMOOTHING and 1 - MAX_SMOOTHING <= b < 1):
        return None
    if abs(a * (max(depth, 2) - 1) + b - 1) > ROW_TOLERANCE:
        return None
    return round(a * max(depth, 2), 6)


def _raw_values(a: np.ndarray) -> dict[str, Any]:
    """The target's own values (before any calibration), compactly: distinct values with counts, or a histogram.

    Counted on at most 16k evenly strided values (they feed the report's histogram and the value sets the
    findings quote; the pixel-exact statistics are the mask record's)."""
    flat = a.reshape(-1)
    if flat.size > 1 << 14:
        flat = flat[:: int(np.ceil(flat.size / (1 << 14)))]
    if flat.dtype.kind == "f" and flat.size and np.isfinite(flat).all():
        lo, hi = float(flat.min()), float(flat.max())
        if lo >= 0 and hi <= 255 and np.array_equal(flat, np.rint(flat)):
            flat = flat.astype(np.uint8)  # integral floats: count like bytes, report as the floats they are
    if a.dtype.kind == "f":
        finite = flat[np.isfinite(flat)]
    else:
        finite = flat
    if finite.size == 0:
        return {"values": np.zeros(0), "counts": np.zeros(0, np.int64), "min": 0.0, "max": 0.0}
    lo, hi = float(finite.min()), float(finite.max())
    if a.dtype == np.uint8 or a.dtype == np.bool_:
        counts = np.bincount(finite.astype(np.uint8), minlength=256)
        vals = np.flatnonzero(counts)
        out_v, out_c = vals.astype(np.float64), counts[vals].astype(np.int64)
    else:
        out_v, out_c = np.unique(finite, return_counts=True)
        out_v = out_v.astype(np.float64)
    if len(out_v) <= MAX_RAW_VALUES:
        return {"values": out_v, "counts": out_c.astype(np.int64), "min": lo, "max": hi}
    counts, edges = np.histogram(finite, bins=32, range=(lo, hi if hi > lo else lo + 1))
    return {"hist": counts.astype(np.int64), "edges": edges, "min": lo, "max": hi, "n_distinct": int(len(out_v))}


def _to_small_int(label: np.ndarray) -> np.ndarray:
    """Integral labels in the cheapest dtype the mask statistics have a fast path for."""
    lo, hi = int(label.min()), int(label.max())
    if 0 <= lo and hi <= 255:
        return label.astype(np.uint8)
    return label.astype(np.int64)


def calibrate_sparse(a: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """A 2-D target as the mask checks should see it (see the module docstring); notes go into ``info``."""
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.kind in "iu":
        return a if a.dtype == np.uint8 else _to_small_int(a) if a.size else a
    finite = np.isfinite(a)
    if not finite.all():
        return a  # NaN/Inf targets: the mask record counts them (SD107)
    rounded = np.rint(a)
    fractional = a != rounded
    if not fractional.any():
        return _to_small_int(rounded)
    share = float(fractional.mean())
    info["fractional_share"] = round(share, 6)
    if _fractional_regions(a, fractional):
        vs = value_stats(a)
        region = vs.values[(vs.counts > 0) & (vs.interior >= CLASS_INTERIOR_RATIO * np.maximum(vs.counts, 1))]
        if vs.n_distinct <= 256 and np.any(region != np.rint(region)):
            calibrated = _fractional_classes(a, region, info)
            if calibrated is not None:
                return calibrated
    if share <= INTERPOLATED_MAX_SHARE:
        # fractional values in a band between the classes (a bilinear resize or warp): the classes are the integral
        # values, the in-between values are the defect (SD106), recorded as such; fractional values that sit next to
        # the classes are compression noise instead (a JPEG mask divided by 255 without a threshold, SD105). The file
        # scan quantises soft masks to 8 bits, which would turn {0, 1} into {0, 255} and misreport the encoding (SD101)
        classes = np.unique(rounded[~fractional])
        info["soft"] = "compressed" if _near_classes(a[fractional], classes) else "interpolated"
        return _to_small_int(snap_to_values(a, classes)) if 0 < classes.size <= 256 else a
    # continuous values (soft masks, probabilities, blurred labels): judged as the classes they threshold to
    info["soft"] = "continuous"
    lo, hi = float(a.min()), float(a.max())
    return (a >= (0.5 if lo >= 0 and hi <= 1 else (lo + hi) / 2)).astype(np.uint8)


def _near_classes(values: np.ndarray, classes: np.ndarray) -> bool:
    """Do the fractional values cluster near the class values, as lossy compression leaves them (SD105's rule: most
    within NEAR_GAP of the gap between classes), rather than spread across the gap, as interpolation leaves them?"""
    if classes.size == 0 or values.size == 0:
        return False
    classes = np.sort(classes.astype(np.float64))
    gap = float(np.min(np.diff(classes))) if classes.size > 1 else 1.0
    v = values.astype(np.float64)
    k = np.clip(np.searchsorted(classes, v), 1, max(classes.size - 1, 1))
    lo, hi = classes[k - 1], classes[np.minimum(k, classes.size - 1)]
    dist = np.minimum(np.abs(v - lo), np.abs(v - hi)) / max(gap, 1e-12)
    return float(np.mean(dist <= NEAR_GAP)) >= LOSSY_NEAR_SHARE


def _fractional_regions(a: np.ndarray, fractional: np.ndarray) -> bool:
    """Do fractional values fill regions (pixels equal to their four neighbours), as class values do? A cheap
    pre-test: the per-value statistics (a sort of every pixel) run only when they do."""
    if a.shape[0] < 3 or a.shape[1] < 3:
        return True
    c = a[1:-1, 1:-1]
    inner = (c == a[:-2, 1:-1]) & (c == a[2:, 1:-1]) & (c == a[1:-1, :-2]) & (c == a[1:-1, 2:])
    inner &= fractional[1:-1, 1:-1]
    return int(inner.sum()) >= CLASS_INTERIOR_RATIO * int(fractional.sum())


def _fractional_classes(a: np.ndarray, region: np.ndarray, info: dict[str, Any]) -> np.ndarray | None:
    """Targets whose region-filling values are fractional: label smoothing, or class ids divided by a constant
    (the ids come back, the divisor goes into ``info``); None for anything else."""
    eps = _smoothing_of(region, 2)
    if eps is not None:
        info["smoothing"] = eps
        info["smoothed_levels"] = [float(region[0]), float(region[1])]
        return (a >= 0.5).astype(np.uint8)
    positive = region[region > 0]
    if positive.size and float(region.min()) >= 0 and float(region.max()) <= 1 + ROW_TOLERANCE:
        for divisor in (255.0, 65535.0, float(round(1.0 / float(positive.min()), 6))):
            if divisor <= 1.5:
                continue
            scaled = region * divisor
            if np.all(np.abs(scaled - np.rint(scaled)) <= RESCALE_TOLERANCE):
                info["rescaled"] = divisor
                info["rescaled_ids"] = sorted({int(v) for v in np.rint(scaled)})
                ids = a * divisor
                r = np.rint(ids)
                # ids that only the float representation moved off an integer come back exactly
                ids = np.where(np.abs(ids - r) <= RESCALE_TOLERANCE, r, ids)
                if np.all(ids == np.rint(ids)):
                    return _to_small_int(ids)
                # ids divided and also interpolated: the ids' classes, with the in-between values recorded (SD106)
                info["soft"] = "interpolated"
                frac = ids != np.rint(ids)
                info["fractional_share"] = round(float(frac.mean()), 6)
                return _to_small_int(snap_to_values(ids, np.unique(np.rint(ids[~frac])))) if (~frac).any() else None
    return None


def calibrate_target(t: np.ndarray, layout: str, info: dict[str, Any]) -> np.ndarray | None:
    """One sample's target (``layout`` as ``target_layout``) -> the mask array the file records are built from:
    a 2-D label map, an (H, W, C <= 4) colour-like mask, or None when no mask can be made of it."""
    a = np.asarray(t)
    if layout == "extra-axis":
        info["extra_axis"] = True
        a = a[..., 0, :]
        layout = "channels"
    if layout == "sparse":
        info["encoding"] = "sparse"
        if a.ndim == 3:
            a = a[..., 0]
        return calibrate_sparse(a, info)
    if layout != "channels" or a.ndim != 3:
        info["encoding"] = "unreadable"
        return None
    depth = int(a.shape[-1])
    rows = _one_hot_rows(a)
    if rows is not None:
        info["encoding"] = "one-hot"
        info["depth"] = depth
        info.update(rows)
        step = max(1, int(np.ceil(np.sqrt(a[..., 0].size / 4096))))
        levels = np.unique(a[::step, ::step])
        eps = _smoothing_of(levels, depth)
        if eps is not None:
            info["smoothing"] = eps
            info["smoothed_levels"] = [float(levels[0]), float(levels[1])]
        elif np.any((levels > ROW_TOLERANCE) & (levels < 1 - ROW_TOLERANCE)):
            info["soft_one_hot"] = True
        label = np.argmax(a, axis=-1)
        return label.astype(np.uint8) if depth <= 256 else label
    if depth <= 4:
        info["encoding"] = "multichannel"
        info["depth"] = depth
        if a.dtype == np.bool_:
            return a.astype(np.uint8)
        return a
    info["encoding"] = "unreadable"
    info["depth"] = depth
    return None


def float_image_statistics(image: np.ndarray) -> dict[str, Any]:
    """``image_value_statistics`` for a float image, with the same keys, in fewer passes: the same exact min, max,
    non-finite count and value convention; moments on a strided sample of MOMENT_SIDE_BATCH px.

    Batches are float far more often than files; the file routine's float path (a finite mask, a
    float64 copy of the strided sample and moments over a short last axis) costs about 2 ms per 256x256
    RGB sample. Here min and max come first (NaN or Inf show in them) and the moments are taken channel
    by channel on a 64 px sample (4k values per channel: the standard error of a mean stays below 2% of
    the std, far below anything the checks compare)."""
    a = np.asarray(image)
    vmin, vmax = float(a.min()), float(a.max())
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        return image_value_statistics(a)  # NaN/Inf: the reference path counts them
    sample = strided_sample(a, MOMENT_SIDE_BATCH)
    if sample.ndim == 2:
        sample = sample[..., None]
    means, stds = [], []
    for c in range(sample.shape[2]):
        v = sample[..., c]
        m = float(v.mean(dtype=np.float64))
        means.append(m)
        stds.append(float(np.sqrt(max(float(np.square(v - m, dtype=np.float64).mean()), 0.0))))
    kind = content_range_kind(a.dtype, vmin, vmax)
    scale = nominal_scale(kind, vmin, vmax)
    spread = max(stds) / scale if scale > 0 else 0.0
    return {"dtype": str(a.dtype), "nonfinite": 0, "min": vmin, "max": vmax,
            "channel_mean": [round(x, 6) for x in means], "channel_std": [round(x, 6) for x in stds],
            "range_kind": kind, "relative_std": spread, "constant": bool(vmax == vmin),
            "near_constant": bool(vmax == vmin or spread < NEAR_CONSTANT_STD)}


def gray_grid_fast(image: np.ndarray, size: int = GRID) -> np.ndarray:
    """``downsample.gray_grid`` (channels summed, pooled to size x size) for float images without a reduction over
    the short channel axis, which numpy runs slowly; the same values up to float rounding."""
    a = strided_sample(np.asarray(image), 2 * size)
    if a.ndim == 3:
        ch = a[..., :3] if a.shape[2] >= 3 else a[..., :1]
        g = ch[..., 0].astype(np.float32)
        for c in range(1, ch.shape[2]):
            g += ch[..., c]
    else:
        g = a.astype(np.float32)
    if not np.isfinite(g).all():
        finite = np.isfinite(g)
        g = np.where(finite, g, float(g[finite].mean()) if finite.any() else 0.0).astype(np.float32)
    g = pool_to(g, size)
    if g.shape != (size, size):
        g = nearest_resize(g, size, size)
    return g


def display_copy(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """A small uint8 RGB copy of an image for the report (strided, percentile-stretched; NaN shown dark)."""
    a = np.asarray(image)
    step = max(1, int(np.ceil(max(a.shape[:2]) / side)))
    a = a[::step, ::step]
    if a.ndim == 3:
        a = a[..., :3] if a.shape[2] >= 3 else a[..., 0]
    a = a.astype(np.float32)  # a small copy from here on
    probe = a[::2, ::2].reshape(-1)
    finite = probe[np.isfinite(probe)]
    if finite.size:
        k_lo, k_hi = int(0.005 * (finite.size - 1)), int(0.995 * (finite.size - 1))
        part = np.partition(finite, (k_lo, k_hi))  # the 0.5% and 99.5% order statistics, as a percentile stretch
        lo, hi = float(part[k_lo]), float(part[k_hi])
        if not np.isfinite(a).all():
            a = np.where(np.isfinite(a), a, lo)
        if hi > lo:
            a -= lo
            a *= 255.0 / (hi - lo)
        else:
            a[...] = 0
    else:
        a = np.zeros(a.shape, np.float32)
    np.clip(a, 0, 255, out=a)
    a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a


def label_copy(label: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    a = np.asarray(label)
    step = max(1, int(np.ceil(max(a.shape[:2]) / side)))
    return np.ascontiguousarray(a[::step, ::step])


def _weight_summary(w: np.ndarray | None) -> dict[str, Any] | None:
    if w is None:
        return None
    a = np.asarray(w, dtype=np.float64)
    finite = a[np.isfinite(a)]
    return {"kind": "per-sample" if a.size == 1 else "per-pixel", "mean": float(finite.mean()) if finite.size else 0.0,
            "zero_share": float((finite == 0).mean()) if finite.size else 0.0, "nonfinite": int(a.size - finite.size)}


def sample_record(image: np.ndarray, target: np.ndarray, weight: np.ndarray | None, *, layout: str,
                  extractors: tuple[str, ...] = PIPELINE_EXTRACTORS) -> tuple[Record, np.ndarray | None]:
    """The record of one batch sample (as ``analyse_pair`` builds it for a file pair) and the label map used."""
    rec: Record = {}
    info: dict[str, Any] = {"image_shape": tuple(int(s) for s in image.shape), "image_dtype": str(image.dtype),
                            "target_shape": tuple(int(s) for s in np.shape(target)), "target_dtype": str(target.dtype)}
    rec["pipeline"] = info
    weights = _weight_summary(weight)
    if weights is not None:
        info["weight"] = weights
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    image_dec = _decoded(img)
    rec["image_info"] = image_info(image_dec)
    if img.dtype.kind == "f":
        # the float fast paths (same values): precomputed statistics, and the alignment's gray grid in its cache
        if "image_statistics" in extractors:
            rec["image_stats"] = float_image_statistics(img)
        image_dec.extra[f"small_gray_{GRID}"] = gray_grid_fast(img)
    mask_array = calibrate_target(target, layout, info)
    if info.get("encoding") != "sparse" or np.asarray(target).dtype.kind == "f" and mask_array is not None and (
            info.get("soft") or info.get("rescaled") or info.get("smoothing") is not None):
        # the values the loss receives differ from the label map's: keep them (integral targets are the label map's
        # values, counted exactly by the mask record)
        info["raw_values"] = _raw_values(np.asarray(target))
    mask_dec = label = None
    if mask_array is not None:
        mask_dec = _decoded(mask_array)
        try:
            rec["mask_info"], label = mask_record(mask_dec)
        except UnreadableFile as exc:
            rec["mask_error"] = str(exc)
            mask_dec = None
        except Exception as exc:  # a statistic failing on odd values must not lose the sample
            rec["mask_error"] = f"cannot analyse the target: {type(exc).__name__}: {exc}"
            mask_dec = None
    else:
        rec["mask_error"] = (f"target of shape {info['target_shape']} is neither class ids, one-hot rows nor a "
                             "colour mask")
    data = PairData(image_dec, mask_dec, label)
    for extract in EXTRACTORS:
        if extract.__name__ not in extractors or (extract.__name__ == "image_statistics" and "image_stats" in rec):
            continue
        try:
            extract(data, rec)
        except Exception as exc:
            rec.setdefault("extractor_errors", []).append(f"{extract.__name__}: {exc}")
    if info.get("soft") == "compressed" and "mask_info" in rec:
        # fractional values clustered at the class values: compression noise (SD105), judged as a lossy mask is
        rec["mask_info"]["lossy"] = True
    elif info.get("soft") and "mask_info" in rec:
        # the target as the loss receives it holds fractional values (SD106); the record's label map holds their
        # classes. Set after the extractors, which read float_soft as "the label is an 8-bit quantisation"
        soft = np.asarray(target, dtype=np.float64)
        rec["mask_info"].update({"float_soft": True, "float_min": float(np.nanmin(soft)), "float_max": float(np.nanmax(soft)),
                                 "nonintegral_share": info.get("fractional_share", 0.0)})
    return rec, label if label is not None else mask_array


@dataclass
class BatchRecorder:
    """Accumulates the records of one pipeline's batches (train or val), in bounded memory per sample."""

    split: str
    extractors: tuple[str, ...] = PIPELINE_EXTRACTORS
    max_thumbs: int = MAX_THUMBS
    records: list[Record] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    thumbs: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    x_shapes: Counter = field(default_factory=Counter)
    y_shapes: Counter = field(default_factory=Counter)
    w_shapes: Counter = field(default_factory=Counter)
    x_dtypes: Counter = field(default_factory=Counter)
    y_dtypes: Counter = field(default_factory=Counter)
    layouts: Counter = field(default_factory=Counter)
    batch_sizes: list[int] = field(default_factory=list)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def add(self, batch) -> None:
        """Reduce one ``segdoctor.io.pipeline.Batch`` to per-sample records (the batch itself is not kept)."""
        x, y, w = batch.x, batch.y, batch.w
        layout = target_layout(y)
        self.layouts[layout] += 1
        self.x_shapes[tuple(x.shape[1:])] += 1
        self.y_shapes[tuple(y.shape[1:])] += 1
        if w is not None:
            self.w_shapes[tuple(w.shape[1:])] += 1
        self.x_dtypes[str(x.dtype)] += 1
        self.y_dtypes[str(y.dtype)] += 1
        self.batch_sizes.append(len(x))

        def one(i: int):
            return sample_record(x[i], y[i], None if w is None else w[i], layout=layout, extractors=self.extractors)

        # numpy, scipy.ndimage and the FFTs release the GIL: a few threads keep up with a pipeline that uses several
        # cores (1.2-1.6x on 2 busy cores), and the records come back in sample order
        if self._pool is None and len(x) > 1 and ANALYSIS_THREADS > 1:
            self._pool = ThreadPoolExecutor(max_workers=ANALYSIS_THREADS, thread_name_prefix="segdoctor-samples")
        results = list(self._pool.map(one, range(len(x)))) if self._pool is not None else [one(i) for i in range(len(x))]
        for i, (rec, label) in enumerate(results):
            sid = sample_id(self.split, batch.index, i)
            rec["pipeline"].update({"id": sid, "split": self.split, "batch": batch.index, "index": i})
            n = len(self.records)
            if n >= MAX_KEPT_MAPS and "align" in rec:  # as the file scan's map retention: statistics stay, maps go
                a = rec["align"]
                rec["align"] = {"has_boundary": bool(np.any(a["boundary"])), "square": a["square"], "dropped": True}
            if len(self.thumbs) < self.max_thumbs:
                self.thumbs[sid] = (display_copy(x[i]), None if label is None else label_copy(label))
            self.records.append(rec)
            self.ids.append(sid)

    def finalise(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        finalise_image_kinds(self.records)

    def dataset(self, kind: str) -> Dataset:
        """The samples as a Dataset whose pairs name the samples (so the data checks can list them)."""
        root = Path("pipeline")
        pairs = [Pair(root / sid / "image", root / sid / "mask", None, sid) for sid in self.ids]
        return Dataset(root=root, pairs=pairs, layout=f"{kind} batches", rules=["the pipeline's own pairing"])


def finalise_image_kinds(records: list[Record]) -> None:
    """Calibrate the float image statistics on the whole pipeline: value convention and near-constant images.

    A file's convention follows from its own range, but a batch of standardised images (ImageNet mean/std,
    per-image standardisation) spans different ranges from sample to sample: some within [-1, 1], some
    beyond. One pipeline applies one preprocessing, so its float samples are judged against the pipeline's
    typical scale: unit-like (0-1, -1-1 or standardised: one family) or 8-bit (0-255). Only a sample on
    another scale than the rest (a branch that forgot ``/ 255``) stands out. Near-constant is measured
    against the pipeline's typical value range, so that images scaled twice (all values below 1/255) are
    not blank, they are mis-scaled (SD304).
    """
    rows = [r["image_stats"] for r in records if r.get("image_stats") and r["image_stats"]["dtype"].startswith("float")]
    if not rows:
        return
    reach = np.array([max(abs(s["min"]), abs(s["max"])) for s in rows])
    spans = np.array([s["max"] - s["min"] for s in rows])
    scale = float(np.median(reach))
    typical_span = float(np.median(spans[spans > 0])) if np.any(spans > 0) else 0.0
    for s, r in zip(rows, reach):
        s["range_kind"] = pipeline_float_kind(s["min"], s["max"], scale)
        if typical_span > 0:
            spread = float(np.max(s["channel_std"])) / typical_span if s["channel_std"] else 0.0
            s["relative_std"] = spread
            s["near_constant"] = bool(s["max"] == s["min"] or spread < NEAR_CONSTANT_STD)
        s["pipeline_scale"] = scale


def pipeline_float_kind(vmin: float, vmax: float, scale: float) -> str:
    """The value convention of a float sample within a pipeline whose typical max |value| is ``scale``."""
    eps = 1e-6
    reach = max(abs(vmin), abs(vmax))
    unit = vmin >= -eps and vmax <= 1 + eps
    symmetric = vmin >= -1 - eps and vmax <= 1 + eps
    if unit:
        return "float 0-1"
    if symmetric:
        return "float -1-1"
    if scale > EIGHT_BIT_SCALE_FROM or reach > OUTLIER_SCALE:
        # 0-255 data, also when brightness or contrast augmentation pushes it somewhat past 0 or 255
        return FLOAT_8BIT if reach <= EIGHT_BIT_REACH else "float other"
    return FLOAT_STANDARDISED
