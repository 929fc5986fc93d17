"""Dataset-wide mask encoding: which values are classes, which are artefacts, and of what kind.

A value is a *class* when at least ``CLASS_INTERIOR_RATIO`` of its pixels sit inside a region of
that value (all four neighbours equal). Values below that live only on boundaries: they were made
by resizing with interpolation (they lie between their neighbours, spread across the gap between
two classes) or by lossy compression (they cluster within a few grey levels of a class value).

Calibration (measured with scikit-image shapes resized/compressed by Pillow, and ../shared/realdata):
clean masks have ≤ 1.4% of boundary pixels strictly between their neighbours (Cityscapes train ids),
resized masks 18–37% (bilinear, bicubic, Lanczos, up and down), JPEG masks 10–23%. Class values
keep ≥ 12% interior pixels even for thin classes (poles in a 128x256 crop); artefact values < 1%.
JPEG artefacts lie within 10% of the class gap of a class value (86–100% of them); interpolated
values spread evenly (21–34% within 10%).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CLASS_INTERIOR_RATIO = 0.03
#: boundary pixels strictly between their neighbours, above which a mask counts as resized/compressed
BOUNDARY_BETWEEN_LIMIT = 0.06
#: share of artefact pixels within NEAR_GAP of a class value, above which compression is the cause
NEAR_GAP = 0.1
LOSSY_NEAR_SHARE = 0.7


@dataclass
class MaskFlags:
    index: int
    boundary_pixels: int
    between_pixels: int
    artefact_pixels: int
    total_pixels: int
    values: tuple
    near_pixels: int = 0  # artefact pixels within NEAR_GAP of a class value
    lossy_format: bool = False

    @property
    def near_share(self) -> float:
        return self.near_pixels / self.artefact_pixels if self.artefact_pixels else 0.0

    @property
    def lossy_like(self) -> bool:
        """Compression artefacts: stray values that cluster near the class values (or a lossy file format)."""
        return self.lossy_format or (self.artefact_pixels > 0 and self.near_share >= LOSSY_NEAR_SHARE)

    @property
    def interpolated(self) -> bool:
        """Resizing artefacts: many boundary pixels between their neighbours, not explained by compression."""
        return self.between_ratio >= BOUNDARY_BETWEEN_LIMIT and not self.lossy_like

    @property
    def between_ratio(self) -> float:
        return self.between_pixels / self.boundary_pixels if self.boundary_pixels else 0.0


@dataclass
class LabelSummary:
    """What the masks hold, across the dataset."""

    value_table: dict[Any, list[int]] = field(default_factory=dict)  # value -> [count, interior, between, n_masks]
    colour_table: dict[int, list[int]] = field(default_factory=dict)  # packed rgb -> [count, interior, n_masks]
    class_values: list = field(default_factory=list)
    artefact_values: list = field(default_factory=list)
    class_colours: list[int] = field(default_factory=list)
    n_label_masks: int = 0
    n_colour_masks: int = 0
    n_equal_channel_masks: int = 0
    n_float_soft: int = 0
    palette_kinds: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    max_distinct_per_mask: int = 0
    truncated_masks: int = 0
    per_mask: list[MaskFlags] = field(default_factory=list)
    total_pixels: int = 0
    boundary_pixels: int = 0
    between_pixels: int = 0
    artefact_pixels: int = 0
    artefact_near_share: float = 0.0
    artefact_between_share: float = 0.0

    @property
    def boundary_between_ratio(self) -> float:
        return self.between_pixels / self.boundary_pixels if self.boundary_pixels else 0.0

    @property
    def artefact_share(self) -> float:
        return self.artefact_pixels / self.total_pixels if self.total_pixels else 0.0

    def share(self, value) -> float:
        row = self.value_table.get(value)
        return row[0] / self.total_pixels if row and self.total_pixels else 0.0


def _gap_distance(v: float, classes: np.ndarray) -> float:
    """Distance from v to the nearest class value, relative to the gap between the classes around it."""
    lo, hi = classes[classes < v], classes[classes > v]
    if len(lo) and len(hi):
        a, b = lo.max(), hi.min()
        return float(min(v - a, b - v) / (b - a))
    nearest = float(np.abs(classes - v).min()) if len(classes) else 0.0
    span = float(classes.max() - classes.min()) if len(classes) > 1 else 255.0
    return nearest / max(span, 1.0)


def summarise_labels(ctx) -> LabelSummary:
    s = LabelSummary()
    for i, (_, rec) in enumerate(ctx.items()):
        info = rec.get("mask_info")
        if info is None:
            continue
        s.formats[info["format"]] += 1
        if info.get("palette"):
            s.palette_kinds[info["palette"]] += 1
        if "colours" in info:
            s.n_colour_masks += 1
            c = info["colours"]
            for v, n, inner in zip(c["values"].tolist(), c["counts"].tolist(), c["interior"].tolist()):
                row = s.colour_table.setdefault(int(v), [0, 0, 0])
                row[0] += n
                row[1] += inner
                row[2] += 1
            continue
        s.n_label_masks += 1
        if info.get("equal_channels"):
            s.n_equal_channel_masks += 1
        if info.get("float_soft"):
            s.n_float_soft += 1
        v = info["values"]
        s.max_distinct_per_mask = max(s.max_distinct_per_mask, int(v["n_distinct"]))
        if v["other_count"]:
            s.truncated_masks += 1
        vals = v["values"].tolist()
        for val, n, inner, betw in zip(vals, v["counts"].tolist(), v["interior"].tolist(), v["between"].tolist()):
            row = s.value_table.setdefault(val, [0, 0, 0, 0])
            row[0] += n
            row[1] += inner
            row[2] += betw
            row[3] += 1
        total = int(v["counts"].sum()) + int(v["other_count"])
        boundary = int((v["counts"] - v["interior"]).sum())
        between = int(v["between"].sum())
        s.per_mask.append(MaskFlags(i, boundary, between, 0, total, tuple(vals[:256]),
                                    lossy_format=bool(info.get("lossy"))))
        s.total_pixels += total
        s.boundary_pixels += boundary
        s.between_pixels += between

    for val, (n, inner, _, _) in s.value_table.items():
        (s.class_values if inner / n >= CLASS_INTERIOR_RATIO else s.artefact_values).append(val)
    s.class_values.sort()
    s.artefact_values.sort()
    if s.artefact_values and s.class_values:
        classes = np.asarray(s.class_values, dtype=float)
        near_values = {v for v in s.artefact_values if _gap_distance(float(v), classes) <= NEAR_GAP}
        art = set(s.artefact_values)
        for flags, (_, rec) in zip(s.per_mask, ((p, r) for p, r in ctx.items() if "values" in (r.get("mask_info") or {}))):
            v = rec["mask_info"]["values"]
            for val, n in zip(v["values"].tolist(), v["counts"].tolist()):
                if val in art:
                    flags.artefact_pixels += n
                    if val in near_values:
                        flags.near_pixels += n
        s.artefact_pixels = sum(f.artefact_pixels for f in s.per_mask)
        near = sum(f.near_pixels for f in s.per_mask)
        s.artefact_near_share = near / s.artefact_pixels if s.artefact_pixels else 0.0
        betw = sum(s.value_table[v][2] for v in s.artefact_values)
        s.artefact_between_share = betw / s.artefact_pixels if s.artefact_pixels else 0.0
    for colour, (n, inner, _) in s.colour_table.items():
        if inner / n >= CLASS_INTERIOR_RATIO:
            s.class_colours.append(colour)
    s.class_colours.sort(key=lambda c: -s.colour_table[c][0])
    return s
