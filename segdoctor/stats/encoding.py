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
#: boundary pixels on a monotone ramp, above which a map without stray values counts as resized
MONOTONE_LIMIT = 0.08


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
    monotone_pixels: int = 0  # between their opposite neighbours (a resize ramp)

    @property
    def near_share(self) -> float:
        return self.near_pixels / self.artefact_pixels if self.artefact_pixels else 0.0

    @property
    def lossy_like(self) -> bool:
        """Compression artefacts: stray values that cluster near the class values (or a lossy file format)."""
        return self.lossy_format or (self.artefact_pixels > 0 and self.near_share >= LOSSY_NEAR_SHARE)

    @property
    def between_ratio(self) -> float:
        return self.between_pixels / self.boundary_pixels if self.boundary_pixels else 0.0

    @property
    def interpolated(self) -> bool:
        """Resizing artefacts: many boundary pixels between their neighbours, not explained by compression.

        Junctions of three classes and one-pixel-thin classes in small clean maps also sit between their
        neighbours (6–8% of boundary pixels in a Cityscapes crop downsampled 4x with nearest), so the values
        must also ramp monotonically along one axis for ``MONOTONE_LIMIT`` of the boundary (clean: ≤ 4.5%;
        resized binary or multi-class maps: 12–41%).
        """
        if self.lossy_like or self.between_ratio < BOUNDARY_BETWEEN_LIMIT:
            return False
        return self.boundary_pixels > 0 and self.monotone_pixels / self.boundary_pixels >= MONOTONE_LIMIT


#: colours closer than this (RGB Euclidean) to a more frequent class colour are compression noise of it
COLOUR_MERGE_DISTANCE = 24.0
#: colours considered when grouping (the most frequent first); the rest count as stray
MAX_COLOUR_GROUPING = 4096
#: a stray colour within this distance of the segment between two class colours is a blend of them
COLOUR_BLEND_DISTANCE = 12.0


@dataclass
class ColourFlags:
    """Per colour mask: pixels in stray colours (not a class colour), near a class colour, or blends of two."""

    index: int
    total_pixels: int
    stray_pixels: int = 0
    near_pixels: int = 0
    blend_pixels: int = 0
    lossy_format: bool = False

    @property
    def lossy_like(self) -> bool:
        if self.lossy_format:
            return True
        return self.stray_pixels >= 1e-3 * self.total_pixels and self.near_pixels >= LOSSY_NEAR_SHARE * self.stray_pixels

    @property
    def interpolated(self) -> bool:
        return (not self.lossy_like and self.stray_pixels >= 2e-3 * self.total_pixels
                and self.blend_pixels >= 0.5 * self.stray_pixels)


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
    per_colour_mask: list[ColourFlags] = field(default_factory=list)
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
            s.per_colour_mask.append(ColourFlags(i, int(c["counts"].sum()) + int(c["other_count"]),
                                                 lossy_format=bool(info.get("lossy"))))
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
                                    lossy_format=bool(info.get("lossy")), monotone_pixels=int(v.get("monotone", 0))))
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
    if s.colour_table:
        _classify_colours(ctx, s)
    return s


def _blend_distance(x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Distance of each colour in x to the nearest segment between two class colours (inner 80% only)."""
    best = np.full(len(x), np.inf)
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            a, b = classes[i], classes[j]
            ab = b - a
            t = np.clip(((x - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
            dist = np.sqrt((((a + t[:, None] * ab) - x) ** 2).sum(-1))
            dist[(t < 0.1) | (t > 0.9)] = np.inf  # a colour at an end of the segment is noise, not a blend
            best = np.minimum(best, dist)
    return best


def _rgb(packed: np.ndarray) -> np.ndarray:
    packed = np.asarray(packed, dtype=np.int64)
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.float64)


def _classify_colours(ctx, s: LabelSummary) -> None:
    """Class colours fill regions and stand apart; the rest are compression noise near a class colour or blends.

    Colours are first grouped around the most frequent ones (within ``COLOUR_MERGE_DISTANCE``), since JPEG
    scatters one flat colour over dozens of nearby values none of which fills a region on its own. A group
    is a class when its members fill regions, or when it holds ≥ 2% of the pixels and is no blend of two
    other classes.
    """
    ordered = sorted(s.colour_table, key=lambda c: -s.colour_table[c][0])
    total = sum(s.colour_table[c][0] for c in ordered) or 1
    centres: list[int] = []
    members: dict[int, list[int]] = {}
    covered = 0
    for colour in ordered[:MAX_COLOUR_GROUPING]:
        if centres:
            d = np.sqrt(((_rgb(np.array(centres)) - _rgb(np.array([colour]))) ** 2).sum(-1))
            k = int(d.argmin())
            if d[k] <= COLOUR_MERGE_DISTANCE:
                members[centres[k]].append(colour)
                continue
        centres.append(colour)
        members[colour] = [colour]
        covered += s.colour_table[colour][0]
    group_count = {c: sum(s.colour_table[m][0] for m in members[c]) for c in centres}
    group_inner = {c: sum(s.colour_table[m][1] for m in members[c]) for c in centres}
    kept = [c for c in centres if group_inner[c] / group_count[c] >= CLASS_INTERIOR_RATIO]
    for c in centres:
        if c in kept or group_count[c] < 0.02 * total:
            continue
        # compression bleeds one colour into its neighbour: a large group on the way between two classes is no class
        if len(kept) >= 2 and _blend_distance(_rgb(np.array([c])), _rgb(np.array(kept)))[0] <= COLOUR_MERGE_DISTANCE:
            continue
        kept.append(c)
    kept.sort(key=lambda c: -group_count[c])
    s.class_colours = kept
    if not kept:
        return
    classes = _rgb(np.array(kept))
    stray = np.array([c for c in s.colour_table if c not in set(kept)], dtype=np.int64)
    near: set[int] = set()
    blend: set[int] = set()
    if len(stray):
        x = _rgb(stray)
        nearest = np.sqrt(((x[:, None, :] - classes[None, :, :]) ** 2).sum(-1)).min(axis=1)
        near = {int(c) for c, dist in zip(stray, nearest) if dist <= COLOUR_MERGE_DISTANCE}
        if len(kept) >= 2:
            best = _blend_distance(x, classes)
            blend = {int(c) for c, dist in zip(stray, best) if dist <= COLOUR_BLEND_DISTANCE} - near
    class_set = set(kept)
    flags = iter(s.per_colour_mask)
    for _, rec in ctx.items():
        info = rec.get("mask_info") or {}
        if "colours" not in info:
            continue
        f = next(flags)
        c = info["colours"]
        for v, n in zip(c["values"].tolist(), c["counts"].tolist()):
            if v in class_set:
                continue
            f.stray_pixels += n
            if v in near:
                f.near_pixels += n
            elif v in blend:
                f.blend_pixels += n
        f.stray_pixels += int(c["other_count"])
