"""The per-pair statistics record, computed once per image/mask pair in a worker process.

A record is a small dict of plain values and short numpy arrays (no per-pixel data), so records
merge cheaply and memory stays bounded however large the dataset. Extractors add keys to it; each
is a pure function of the decoded arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from segdoctor.io.readers import LOSSY_FORMATS, Decoded, UnreadableFile, read_file
from segdoctor.stats.labels import (
    MAX_TRACKED_COLOURS,
    channel_spread,
    is_integral,
    label_value_stats,
    monotone_pixels,
    pack_rgb,
    value_stats,
    voc_palette,
)

Record = dict[str, Any]


@dataclass(slots=True)
class PairData:
    """What extractors see: the decoded image and mask (None when missing or unreadable)."""

    image: Decoded | None
    mask: Decoded | None
    label: np.ndarray | None  # the mask as a 2-D label map (channel-collapsed), or None for colour masks


Extractor = Callable[[PairData, Record], None]


def _palette_kind(palette: tuple[tuple[int, int, int], ...] | None) -> str | None:
    if palette is None:
        return None
    voc = voc_palette(len(palette))
    pal = np.asarray(palette, dtype=np.uint8)
    n = min(len(pal), 21)
    if n and np.array_equal(pal[:n], voc[:n]):
        return "voc"
    return "custom"


def image_info(dec: Decoded) -> Record:
    a = dec.array
    info: Record = {
        "height": int(a.shape[0]), "width": int(a.shape[1]), "channels": dec.channels,
        "dtype": str(a.dtype), "mode": dec.mode, "format": dec.format, "bits": dec.bits,
        "exif_orientation": dec.exif_orientation,
    }
    if "pages" in dec.extra:  # a multi-page TIFF (or animated file): only its first page was read
        info["pages"] = int(dec.extra["pages"])
    return info


def mask_label(dec: Decoded, info: Record) -> np.ndarray | None:
    """Collapse a mask to a 2-D label map when its channels carry one value; None for colour-coded masks."""
    a = dec.array
    if a.ndim == 2:
        return a
    ch = a.shape[2]
    if ch == 2:  # LA: the label is in L unless only the alpha varies
        if a[..., 0].min() == a[..., 0].max() and a[..., 1].min() != a[..., 1].max():
            info["label_in_alpha"] = True
            return a[..., 1]
        return a[..., 0]
    if ch >= 3:
        if ch >= 4 and a[..., 3].min() != a[..., 3].max() and all(a[..., i].min() == a[..., i].max() for i in range(3)):
            info["label_in_alpha"] = True
            return a[..., 3]
        if a.dtype.kind == "f":
            spread = float(np.nanmax(a[..., :3], axis=2).mean() - np.nanmin(a[..., :3], axis=2).mean())
            info["channel_diff_share"], info["channel_spread_mean"] = (0.0 if spread == 0 else 1.0), spread
        else:
            info["channel_diff_share"], info["channel_spread_mean"] = channel_spread(a)
        if info["channel_diff_share"] < 0.005 and info["channel_spread_mean"] < 2.0:
            info["equal_channels"] = True
            return a[..., 0]
        return None
    return a[..., 0]


def mask_record(dec: Decoded) -> tuple[Record, np.ndarray | None]:
    a = dec.array
    if a.ndim == 3 and a.shape[2] > 4:
        # neither a label map nor a colour mask; judging its first 3 channels as colours would mislead
        one_hot = bool(np.all(np.count_nonzero(a, axis=2) == 1))
        raise UnreadableFile(
            f"{a.shape[2]}-channel mask: expected a label map (H, W) or a 3/4-channel colour mask"
            + ("; it is one-hot, store np.argmax(mask, axis=-1) as class ids" if one_hot else "")
        )
    info = image_info(dec)
    info["lossy"] = dec.format in LOSSY_FORMATS
    info["palette"] = _palette_kind(dec.palette)
    label = mask_label(dec, info)
    if label is None:
        packed = pack_rgb(a)
        vs = value_stats(packed)
        keep = np.argsort(vs.counts)[::-1][:MAX_TRACKED_COLOURS]
        keep = np.sort(keep)
        info["colours"] = {
            "values": vs.values[keep], "counts": vs.counts[keep], "interior": vs.interior[keep],
            "n_distinct": vs.n_distinct, "other_count": int(vs.other_count + vs.counts.sum() - vs.counts[keep].sum()),
        }
        return info, None
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        info["nonfinite"] = int((~finite).sum())
        if not finite.all():
            label = np.where(finite, label, 0)
        if not is_integral(label):
            info["float_soft"] = True
            info["float_min"], info["float_max"] = float(label.min()), float(label.max())
            info["nonintegral_share"] = float((label != np.round(label)).mean())
            hi = max(1.0, float(label.max()))
            hist, edges = np.histogram(label, bins=32, range=(min(0.0, float(label.min())), hi))
            info["float_hist"] = (hist.astype(np.int64), edges)
            # judge the encoding on an 8-bit quantisation of the soft values
            scaled = np.clip(np.round((label - min(0.0, float(label.min()))) / (hi - min(0.0, float(label.min()))) * 255), 0, 255)
            label = scaled.astype(np.uint8)
            info["float_scale"] = hi
        else:
            label = label.astype(np.int64)
    elif label.dtype == np.bool_:
        label = label.astype(np.uint8)
    if label.dtype.kind in "iu" and label.shape[0] >= 3 and label.shape[1] >= 3:
        vs, monotone = label_value_stats(label)  # one pass shares the neighbour comparisons
    else:
        vs, monotone = value_stats(label), monotone_pixels(label)
    info["values"] = {"values": vs.values, "counts": vs.counts, "interior": vs.interior, "between": vs.between,
                      "n_distinct": vs.n_distinct, "other_count": vs.other_count, "monotone": monotone}
    return info, label


def _decode(path, rec: Record, key: str) -> Decoded | None:
    if path is None:
        return None
    try:
        return read_file(path)
    except UnreadableFile as exc:
        rec[f"{key}_error"] = str(exc)
    except MemoryError:
        rec[f"{key}_error"] = "too large to decode in memory"
    except Exception as exc:  # a decoder bug on a hostile file is still just an unreadable file
        rec[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    return None


#: extra extractors registered by check families (image statistics, alignment, hashes ...)
EXTRACTORS: list[Extractor] = []


def _register_builtin_extractors() -> None:
    # Imported here, at import of this module, so that spawned workers register them too.
    from segdoctor.stats.alignment import alignment_maps
    from segdoctor.stats.hashing import image_hashes
    from segdoctor.stats.image_stats import image_statistics
    from segdoctor.stats.objects import mask_objects

    for fn in (image_statistics, image_hashes, mask_objects, alignment_maps):
        if fn not in EXTRACTORS:
            EXTRACTORS.append(fn)


def extractor_names() -> tuple[str, ...]:
    return tuple(fn.__name__ for fn in EXTRACTORS)


def analyse_pair(image_path, mask_path, extractors: Collection[str] | None = None) -> Record:
    """Decode one pair once and compute the statistics the checks need: every extractor, or those named in
    ``extractors`` (the mask's value statistics are always computed: every mask check reads them)."""
    rec: Record = {}
    image = _decode(image_path, rec, "image")
    mask = _decode(mask_path, rec, "mask")
    label = None
    if image is not None:
        rec["image_info"] = image_info(image)
    if mask is not None:
        try:
            rec["mask_info"], label = mask_record(mask)
        except UnreadableFile as exc:
            rec["mask_error"] = str(exc)
            mask = None
        except Exception as exc:
            rec["mask_error"] = f"cannot analyse mask: {type(exc).__name__}: {exc}"
            mask = None
    data = PairData(image, mask, label)
    for extract in EXTRACTORS:
        if extractors is not None and extract.__name__ not in extractors:
            continue
        try:
            extract(data, rec)
        except Exception as exc:  # one statistic failing on one file must not lose the others
            rec.setdefault("extractor_errors", []).append(f"{getattr(extract, '__name__', extract)}: {exc}")
    return rec


_register_builtin_extractors()
