"""Class balance across a dataset: which values are classes, their pixel shares (global, per image,
per split), empty masks, object sizes, and the class weights a loss should use.

Reads the per-pair records (``mask_info["values"]`` / ``["colours"]`` and ``objects``) and the
dataset-wide encoding summary; never touches pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdoctor.stats.labels import VOC_VOID_COLOUR, unpack_rgb
from segdoctor.stats.objects import SIZE_BINS, tiny_limit

VOC_VOID_PACKED = (VOC_VOID_COLOUR[0] << 16) | (VOC_VOID_COLOUR[1] << 8) | VOC_VOID_COLOUR[2]


@dataclass
class ClassBalance:
    """Pixel counts per class over the labelled pixels (void excluded)."""

    classes: list  # class values (ints) or packed colours, sorted
    names: list[str]  # display names ("0", "255", "(128, 0, 0)")
    colour: bool  # classes are RGB colours
    background: Any  # the background class, or None when there is none (e.g. trimaps {1, 2, 3})
    void: Any  # the ignored value, or None
    counts: np.ndarray  # (K,) labelled pixels per class
    present_in: np.ndarray  # (K,) masks that contain the class
    pixels_where_present: np.ndarray  # (K,) labelled pixels of the masks that contain the class
    n_masks: int
    per_mask_index: list[int]  # pair index of each counted mask
    per_mask_counts: np.ndarray  # (n_masks, K)
    empty_masks: list[int] = field(default_factory=list)  # pair indices of masks holding only background
    object_hist: np.ndarray = field(default_factory=lambda: np.zeros(SIZE_BINS, np.int64))
    objects: int = 0
    tiny_objects: int = 0
    objects_by_class: dict = field(default_factory=dict)  # class -> [components, tiny, pixels, tiny pixels]
    object_masks: int = 0
    object_tiny_masks: list[int] = field(default_factory=list)  # pair indices of masks whose objects are mostly tiny
    median_area: float = 0.0

    @property
    def k(self) -> int:
        return len(self.classes)

    @property
    def binary(self) -> bool:
        return self.k == 2 and self.background is not None

    @property
    def shares(self) -> np.ndarray:
        total = self.counts.sum()
        return self.counts / total if total else np.zeros(self.k)

    def foreground_index(self) -> int | None:
        """For binary masks, the index of the foreground class."""
        if not self.binary:
            return None
        return 1 - self.classes.index(self.background)

    def per_mask_foreground_share(self) -> np.ndarray:
        """Per mask: share of labelled pixels that are not background (all classes when there is no background)."""
        tot = self.per_mask_counts.sum(axis=1).astype(np.float64)
        if self.background is None:
            return np.ones(len(tot))
        bi = self.classes.index(self.background)
        fg = tot - self.per_mask_counts[:, bi]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, fg / tot, 0.0)

    def inverse_frequency_weights(self) -> np.ndarray:
        """w_c = N / (K * n_c): the pixel-weighted mean weight is 1. Inf for absent classes is replaced by 0."""
        total = float(self.counts.sum())
        with np.errstate(divide="ignore"):
            w = total / (self.k * self.counts.astype(np.float64))
        return np.where(np.isfinite(w), w, 0.0)

    def median_frequency_weights(self) -> np.ndarray:
        """Median-frequency balancing (Eigen & Fergus 2015): freq_c = n_c / pixels of the masks containing c,
        w_c = median(freq) / freq_c."""
        with np.errstate(divide="ignore", invalid="ignore"):
            freq = self.counts / np.maximum(self.pixels_where_present, 1)
        ok = self.counts > 0
        if not ok.any():
            return np.zeros(self.k)
        med = float(np.median(freq[ok]))
        with np.errstate(divide="ignore"):
            w = med / freq
        return np.where(ok & np.isfinite(w), w, 0.0)


def _name(v, colour: bool) -> str:
    return str(unpack_rgb(v)) if colour else str(v)


def _void_value(classes: list, colour: bool):
    if colour:
        return VOC_VOID_PACKED if VOC_VOID_PACKED in classes else None
    # 255 is void when the other ids are small (Cityscapes train ids, VOC indices); in {0, 255} it is the foreground
    if 255 in classes and len(classes) >= 3 and max(c for c in classes if c != 255) < 128:
        return 255
    return None


def class_balance(ctx) -> ClassBalance | None:
    """The dataset's class balance (cached on the context), or None when no mask holds a label map."""
    return ctx.memo("class_balance", _class_balance)


def _class_balance(ctx) -> ClassBalance | None:
    summary = ctx.labels
    colour = summary.n_colour_masks > summary.n_label_masks
    if colour:
        classes = sorted(int(c) for c in summary.class_colours)
        key = "colours"
    else:
        classes = sorted(v for v in summary.class_values if float(v) == int(v))
        classes = [int(v) for v in classes]
        key = "values"
    k_opt = getattr(ctx.options, "num_classes", None)
    binary_stored_as_0_k = len(classes) == 2 and classes[0] == 0 and k_opt == 2
    if not colour and k_opt and not binary_stored_as_0_k:
        # The user's declared classes win, so that classes absent from these masks still get a weight;
        # other values are SD107's business. ({0, 255} with K=2 is a binary mask stored as 0/255: SD101.)
        classes = list(range(k_opt)) + ([255] if 255 in classes and k_opt <= 255 else [])
    void = _void_value(classes, colour)
    real = [c for c in classes if c != void]
    if len(real) < 2:
        return None
    if colour:
        background = 0 if 0 in real else None
    else:
        background = 0 if 0 in real else None
    all_cls = np.asarray(sorted(set(real) | ({void} if void is not None else set())), dtype=np.int64)
    k = len(real)
    index = {c: i for i, c in enumerate(real)}
    counts = np.zeros(k, np.int64)
    present = np.zeros(k, np.int64)
    where_present = np.zeros(k, np.int64)
    per_idx, per_counts, empty = [], [], []
    hist = np.zeros(SIZE_BINS, np.int64)
    objects = tiny = obj_masks = 0
    by_class: dict = {}
    tiny_masks: list[int] = []
    areas = []
    snap_cache: dict[bytes, tuple[np.ndarray | None, np.ndarray]] = {}
    for i, (_, rec) in enumerate(ctx.items()):
        info = rec.get("mask_info")
        if not info or key not in info:
            continue
        v = info[key]
        vals = np.asarray(v["values"]).astype(np.int64)
        cnts = np.asarray(v["counts"]).astype(np.int64)
        if vals.size == 0:
            continue
        # artefact values (JPEG, interpolation) count for the nearest class, as a model trained on them would see;
        # the mapping depends on the value set alone, which most masks of a dataset share: computed once per set
        vkey = vals.tobytes()
        cached = snap_cache.get(vkey)
        if cached is None:
            if colour:
                known = np.isin(vals, all_cls)
                cached = known, vals[known]
            else:
                pos = (np.clip(np.searchsorted(all_cls, vals), 1, len(all_cls) - 1) if len(all_cls) > 1
                       else np.zeros(len(vals), np.int64))
                lo, hi = all_cls[pos - 1], all_cls[pos]
                snapped = np.where(np.abs(vals - lo) <= np.abs(hi - vals), lo, hi)
                cached = None, np.where(np.isin(vals, all_cls), vals, snapped)
            snap_cache[vkey] = cached
        known, snapped = cached
        if known is not None:
            cnts = cnts[known]
        row = np.zeros(k, np.int64)
        for s, n in zip(snapped.tolist(), cnts.tolist()):
            j = index.get(s)
            if j is not None:
                row[j] += n
        tot = int(row.sum())
        if tot == 0:
            continue
        areas.append(int(cnts.sum()))
        per_idx.append(i)
        per_counts.append(row)
        counts += row
        has = row > 0
        present += has
        where_present += np.where(has, tot, 0)
        if background is not None and row[index[background]] == tot:
            empty.append(i)
        obj = rec.get("objects")
        if obj:
            m_comp = m_tiny = 0
            for val, n_c, n_t, px, tpx, h in zip(obj["values"], obj["components"], obj["tiny"], obj["pixels"],
                                                 obj["tiny_pixels"], obj["hist"]):
                val = int(val)
                if val == background or val == void or val not in index:
                    continue
                m_comp += n_c
                m_tiny += n_t
                hist += np.asarray(h, np.int64)
                rowc = by_class.setdefault(val, [0, 0, 0.0, 0.0])
                rowc[0] += n_c
                rowc[1] += n_t
                rowc[2] += px
                rowc[3] += tpx
            if m_comp:
                obj_masks += 1
                objects += m_comp
                tiny += m_tiny
                if m_tiny * 2 > m_comp:
                    tiny_masks.append(i)
    if not per_idx:
        return None
    return ClassBalance(
        classes=real, names=[_name(c, colour) for c in real], colour=colour, background=background, void=void,
        counts=counts, present_in=present, pixels_where_present=where_present, n_masks=len(per_idx),
        per_mask_index=per_idx, per_mask_counts=np.asarray(per_counts, np.int64).reshape(len(per_idx), k),
        empty_masks=empty, object_hist=hist, objects=objects, tiny_objects=tiny, objects_by_class=by_class,
        object_masks=obj_masks, object_tiny_masks=tiny_masks, median_area=float(np.median(areas)) if areas else 0.0,
    )


def typical_tiny_limit(balance: ClassBalance) -> float:
    """The tiny-object limit (pixels) for the dataset's typical image area."""
    return tiny_limit(int(balance.median_area))
