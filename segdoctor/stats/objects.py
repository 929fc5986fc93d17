"""Objects (connected components) per class value, for the class-balance checks (SD151, SD152).

Per mask only a compact summary is kept: for each region-filling value, the number of components,
how many are tiny, and a histogram of component sizes over powers of two (pixels at full resolution).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segdoctor import speedups
from segdoctor.stats.encoding import CLASS_INTERIOR_RATIO
from segdoctor.stats.labels import uint8_histogram

#: component-size histogram bins: [2**k, 2**(k+1)) pixels, k = 0..SIZE_BINS-1 (the last bin is open)
SIZE_BINS = 28
#: an object is tiny below this many pixels ...
TINY_PIXELS = 64
#: ... or below this share of the image area (0.1%)
TINY_SHARE = 0.001
#: components are found on a copy at most this long on its long side (stride sampling); sizes are scaled back
OBJECT_SIDE = 256
#: values tracked per mask (the largest ones by pixel count); label maps with more are not class maps
MAX_OBJECT_VALUES = 64
#: above this many values, components come from one multi-value labelling pass (skimage) instead of one per value
MULTI_LABEL_FROM = 3


def tiny_limit(area: int) -> float:
    """Component size (pixels) below which an object counts as tiny in an image of ``area`` pixels."""
    return max(float(TINY_PIXELS), TINY_SHARE * float(area))


def region_values(values: np.ndarray, counts: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """Values that fill regions (interior share >= CLASS_INTERIOR_RATIO); boundary artefacts are excluded."""
    ok = (counts > 0) & (interior >= CLASS_INTERIOR_RATIO * np.maximum(counts, 1))
    return np.asarray(values)[ok]


def snap_to_values(label: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Replace every value by the nearest of ``keep`` (JPEG/interpolation artefacts join their class)."""
    keep = np.sort(np.asarray(keep))
    if label.dtype == np.uint8:
        lut = keep[np.abs(np.arange(256)[:, None] - keep[None, :].astype(np.int64)).argmin(axis=1)]
        return lut.astype(np.int64)[label] if keep.max() > 255 else lut.astype(np.uint8)[label]
    idx = np.clip(np.searchsorted(keep, label), 1, len(keep) - 1) if len(keep) > 1 else np.zeros(label.shape, np.int64)
    if len(keep) == 1:
        return np.full(label.shape, keep[0])
    lo, hi = keep[idx - 1], keep[idx]
    return np.where(np.abs(label - lo) <= np.abs(hi - label), lo, hi)


def component_summary(label: np.ndarray, *, values: np.ndarray | None = None, skip_zero: bool = True) -> dict[str, Any]:
    """Connected components (8-connectivity) of each value of a 2-D label map.

    Returns ``{"values": [...], "components": [...], "tiny": [...], "tiny_pixels": [...], "pixels": [...],
    "hist": (n_values, SIZE_BINS) int64,
    "scale": pixels per sampled pixel, "area": full-resolution pixels}``. ``values`` restricts and snaps
    the map to those values first; ``skip_zero`` leaves out value 0 (the usual background).
    """
    from scipy import ndimage

    lab = np.asarray(label)
    h, w = lab.shape
    area = h * w
    step = max(1, int(np.ceil(max(h, w) / OBJECT_SIDE)))
    small = np.ascontiguousarray(lab[::step, ::step])  # one copy: passes over a strided view are several times slower
    scale = float(area) / float(small.size)
    if values is not None and len(values):
        small = snap_to_values(small, np.asarray(values))
        present = np.asarray(values)
    elif small.dtype == np.uint8:
        present = np.flatnonzero(uint8_histogram(small))  # several times faster than np.unique or np.bincount
    else:
        present = np.unique(small)
    if len(present) > MAX_OBJECT_VALUES:
        uniq, cnt = np.unique(small, return_counts=True)
        present = uniq[np.argsort(cnt)[::-1][:MAX_OBJECT_VALUES]]
    if skip_zero and len(present) > 1:
        # value 0 is the background of nearly every label convention; its components cost time and mean nothing
        present = present[present != 0]
    limit = tiny_limit(area)
    out_vals, comps, tiny, tiny_px, pixels, hists = [], [], [], [], [], []

    def add(v, sizes: np.ndarray) -> None:
        sizes = sizes.astype(np.float64) * scale
        bins = np.clip(np.floor(np.log2(np.maximum(sizes, 1.0))).astype(np.int64), 0, SIZE_BINS - 1)
        small_obj = sizes < limit
        out_vals.append(v.item() if hasattr(v, "item") else v)
        comps.append(int(len(sizes)))
        tiny.append(int(small_obj.sum()))
        tiny_px.append(float(sizes[small_obj].sum()))
        pixels.append(float(sizes.sum()))
        hists.append(np.bincount(bins, minlength=SIZE_BINS)[:SIZE_BINS].astype(np.int64))

    present = np.sort(present)
    if small.dtype == np.uint8 and speedups.native is not None:
        # one compiled labelling pass for every value: the same components, numbered in the same raster order
        wanted = np.zeros(256, dtype=np.uint8)
        wanted[present] = 1
        comp_values, comp_sizes = speedups.native.u8_components(small, wanted)
        comp_values = np.frombuffer(comp_values, dtype=np.uint8)
        comp_sizes = np.frombuffer(comp_sizes, dtype=np.int64)
        for v in present:
            sel = comp_values == v
            if sel.any():
                add(v, comp_sizes[sel])
    elif len(present) <= MULTI_LABEL_FROM:
        structure = np.ones((3, 3), dtype=bool)
        for v in present:
            region = small == v
            rows = np.flatnonzero(region.any(axis=1))
            if rows.size == 0:
                continue
            cols = np.flatnonzero(region.any(axis=0))
            # label only the bounding box of the value: the same components, numbered in the same raster
            # order, at a fraction of the cost for objects that cover part of the map
            region = region[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
            lab_v, n = ndimage.label(region, structure=structure)
            # count only the labelled pixels: the background is most of the map and its count is dropped
            add(v, np.bincount(lab_v[region], minlength=n + 1)[1:])
    else:
        # many classes: one pass that labels regions of equal value, instead of one pass per class
        from skimage.measure import label as label_regions

        regions, n = label_regions(small, background=-1, connectivity=2, return_num=True)
        flat = regions.ravel()
        sizes = np.bincount(flat, minlength=n + 1)
        value_of = np.zeros(n + 1, dtype=small.dtype)
        value_of[flat] = small.ravel()
        wanted = np.isin(value_of, present)
        wanted[0] = False  # skimage leaves label 0 unused with background=-1
        for v in present:
            sel = wanted & (value_of == v)
            if sel.any():
                add(v, sizes[sel])
    return {
        "values": out_vals,
        "components": comps,
        "tiny": tiny,
        "tiny_pixels": tiny_px,
        "pixels": pixels,
        "hist": np.asarray(hists, dtype=np.int64).reshape(len(hists), SIZE_BINS),
        "scale": scale,
        "area": int(area),
    }


def mask_objects(data, rec: dict) -> None:
    """Extractor: ``rec["objects"]`` for label-map masks (colour masks are packed to colour ids first)."""
    if data.mask is None:
        return
    info = rec.get("mask_info") or {}
    label = data.label
    if label is None:
        from segdoctor.stats.labels import pack_rgb

        colours = info.get("colours")
        if colours is None:
            return
        label = pack_rgb(data.mask.array)
        keep = region_values(colours["values"], colours["counts"], colours["interior"])
    else:
        v = info.get("values")
        if v is None or label.dtype.kind == "f":
            return
        keep = region_values(v["values"], v["counts"], v["interior"])
        if len(keep) == 0:
            keep = np.asarray(v["values"])
    if len(keep) == 0:
        return
    n_values = (info.get("colours") or info.get("values") or {}).get("n_distinct", 0)
    # snapping artefact values costs a full pass; skip it when every value is a region value
    rec["objects"] = component_summary(label, values=keep if len(keep) < n_values else None)
