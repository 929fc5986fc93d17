"""Summaries of one pipeline's samples, pooled from their records: what the targets are (encodings, one-hot rows,
smoothing, rescaling, values), what the images are (dtypes, sizes, scale) and the foreground per sample.
Pure functions of the records; the pipeline checks and the report read them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdoctor.stats.pair import Record
from segdoctor.stats.pipeline import MAX_RAW_VALUES


@dataclass
class TargetSummary:
    """What the targets of one pipeline are, pooled over its samples."""

    samples: int = 0
    encodings: Counter = field(default_factory=Counter)  # sparse / one-hot / multichannel / unreadable
    depths: Counter = field(default_factory=Counter)
    shapes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    extra_axis: list[int] = field(default_factory=list)  # record indices
    zero_rows: int = 0
    multi_rows: int = 0
    partial_rows: int = 0
    onehot_pixels: int = 0
    zero_row_samples: list[int] = field(default_factory=list)
    multi_row_samples: list[int] = field(default_factory=list)
    soft_onehot_samples: list[int] = field(default_factory=list)
    smoothing: Counter = field(default_factory=Counter)
    rescaled: dict[float, list[int]] = field(default_factory=dict)  # divisor -> record indices
    rescaled_ids: set = field(default_factory=set)
    unreadable: list[int] = field(default_factory=list)
    values: Counter = field(default_factory=Counter)  # raw value -> count (when every sample has few values)
    continuous: bool = False  # some sample holds too many values to list
    vmin: float = float("inf")
    vmax: float = float("-inf")
    fractional_samples: int = 0

    @property
    def main_encoding(self) -> str:
        return self.encodings.most_common(1)[0][0] if self.encodings else "none"

    def value_set(self, limit: int = 8) -> str:
        """The raw target values as a short set, e.g. '{0, 0.003922}'."""
        if self.continuous or not self.values:
            return f"{self.vmin:.4g} to {self.vmax:.4g} (many distinct values)"
        vals = sorted(self.values)
        shown = ", ".join(f"{v:.4g}" for v in vals[:limit])
        return "{" + shown + (", …" if len(vals) > limit else "") + "}"


def target_summary(records: list[Record]) -> TargetSummary:
    s = TargetSummary()
    for i, rec in enumerate(records):
        p = rec.get("pipeline")
        if p is None:
            continue
        s.samples += 1
        enc = p.get("encoding", "unreadable")
        s.encodings[enc] += 1
        s.shapes[p["target_shape"]] += 1
        s.dtypes[p["target_dtype"]] += 1
        if p.get("depth"):
            s.depths[p["depth"]] += 1
        if p.get("extra_axis"):
            s.extra_axis.append(i)
        if enc == "one-hot":
            s.onehot_pixels += p.get("pixels", 0)
            s.zero_rows += p.get("zero_rows", 0)
            s.multi_rows += p.get("multi_rows", 0)
            s.partial_rows += p.get("partial_rows", 0)
            if p.get("zero_rows"):
                s.zero_row_samples.append(i)
            if p.get("multi_rows") or p.get("partial_rows"):
                s.multi_row_samples.append(i)
            if p.get("soft_one_hot"):
                s.soft_onehot_samples.append(i)
        if enc == "unreadable":
            s.unreadable.append(i)
        if p.get("smoothing") is not None:
            s.smoothing[p["smoothing"]] += 1
        if p.get("rescaled"):
            s.rescaled.setdefault(p["rescaled"], []).append(i)
            s.rescaled_ids.update(p.get("rescaled_ids", ()))
        if p.get("fractional_share"):
            s.fractional_samples += 1
        raw = p.get("raw_values") or _label_values(rec)
        s.vmin, s.vmax = min(s.vmin, raw.get("min", s.vmin)), max(s.vmax, raw.get("max", s.vmax))
        if "values" in raw and not s.continuous:
            for v, c in zip(raw["values"].tolist(), raw["counts"].tolist()):
                s.values[v] += c
            if len(s.values) > 4 * MAX_RAW_VALUES:
                s.continuous = True
        elif "hist" in raw:
            s.continuous = True
    return s


def _label_values(rec: Record) -> dict[str, Any]:
    """The raw values of an integral target: the label map's own values and counts (from the mask record)."""
    v = (rec.get("mask_info") or {}).get("values")
    if v is None or len(v["values"]) == 0:
        return {}
    vals = np.asarray(v["values"], dtype=np.float64)
    return {"values": vals, "counts": np.asarray(v["counts"], dtype=np.int64), "min": float(vals.min()),
            "max": float(vals.max())}


def target_histogram(records: list[Record], bins: int = 40) -> tuple[list[float], list[int]] | None:
    """Pooled histogram of the raw target values: (edges, counts), from the per-sample value lists or histograms."""
    raws = [r["pipeline"].get("raw_values") or _label_values(r) for r in records if r.get("pipeline")]
    raws = [r for r in raws if r]
    raws = [r for r in raws if r.get("max", 0) >= r.get("min", 0)]
    if not raws:
        return None
    lo = min(r["min"] for r in raws)
    hi = max(r["max"] for r in raws)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, np.int64)
    for r in raws:
        if "values" in r:
            c, _ = np.histogram(r["values"], bins=edges, weights=r["counts"])
            counts += c.astype(np.int64)
        else:
            centres = (r["edges"][:-1] + r["edges"][1:]) / 2
            c, _ = np.histogram(centres, bins=edges, weights=r["hist"])
            counts += c.astype(np.int64)
    return edges.tolist(), counts.tolist()


@dataclass
class ImageSummary:
    """The batch images of one pipeline, pooled."""

    samples: int = 0
    dtypes: Counter = field(default_factory=Counter)
    channels: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)  # (height, width)
    vmin: float = float("inf")
    vmax: float = float("-inf")
    reach: float = 0.0  # median over samples of max |value|
    span: float = 0.0  # median over samples of max - min
    mean: float = 0.0  # median over samples of the mean value
    std: float = 0.0  # median over samples of the largest channel std
    constant: int = 0
    nonfinite: int = 0
    kinds: Counter = field(default_factory=Counter)


def image_summary(records: list[Record]) -> ImageSummary:
    s = ImageSummary()
    reach, span, means, stds = [], [], [], []
    for rec in records:
        info, st = rec.get("image_info"), rec.get("image_stats")
        if info is None:
            continue
        s.samples += 1
        s.dtypes[info["dtype"]] += 1
        s.channels[info["channels"]] += 1
        s.sizes[(info["height"], info["width"])] += 1
        if st is None:
            continue
        s.vmin, s.vmax = min(s.vmin, st["min"]), max(s.vmax, st["max"])
        reach.append(max(abs(st["min"]), abs(st["max"])))
        span.append(st["max"] - st["min"])
        means.append(float(np.mean(st["channel_mean"])) if st["channel_mean"] else 0.0)
        stds.append(float(np.max(st["channel_std"])) if st["channel_std"] else 0.0)
        s.constant += bool(st["constant"])
        s.nonfinite += bool(st["nonfinite"])
        s.kinds[st["range_kind"]] += 1
    if reach:
        s.reach, s.span = float(np.median(reach)), float(np.median(span))
        s.mean, s.std = float(np.median(means)), float(np.median(stds))
    return s


def foreground_shares(records: list[Record]) -> np.ndarray:
    """Per sample with a label map: the share of pixels that are not 0 (background)."""
    out = []
    for rec in records:
        info = rec.get("mask_info") or {}
        v = info.get("values")
        if v is None:
            continue
        total = int(v["counts"].sum()) + int(v["other_count"])
        if total == 0:
            continue
        bg = int(v["counts"][v["values"] == 0].sum())
        out.append(1.0 - bg / total)
    return np.asarray(out, dtype=np.float64)
