"""Per-image value statistics for the normalisation checks (SD201-SD203): range, content bit depth,
per-channel mean/std, constant images and non-finite values.

Exact where it is cheap (global min/max, NaN/Inf count over every pixel); per-channel moments are
estimated on a strided sample of about 128 px on the long side (16k samples: the standard error of a
mean is well below one grey level), which keeps the scan close to plain decoding speed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from segdoctor import speedups
from segdoctor.stats.downsample import strided_sample

#: float images: relative spread (sample std / nominal full scale) below which an image counts as
#: near-constant; 0.004 is one grey level of 8 bits. Integer images: a std below one stored level.
#: Real photographs, EM and endoscopy images measure 0.05-0.3 of full scale.
NEAR_CONSTANT_STD = 0.004
#: long side of the strided sample the per-channel moments are estimated on (16k samples for 512x512)
MOMENT_SIDE = 128

RANGE_KINDS = ("uint8 0-255", "uint16 with 8-bit content", "uint16 12-bit", "uint16 16-bit", "float 0-1",
               "float -1-1", "float 0-255", "float other", "signed integer", "integer other")


def content_range_kind(dtype: np.dtype, vmin: float, vmax: float) -> str:
    """Which value convention an image follows, from its dtype and actual min/max."""
    dt = np.dtype(dtype)
    if dt == np.uint8 or dt == np.bool_:
        return "uint8 0-255"
    if dt.kind == "u" and dt.itemsize == 2:
        if vmax <= 255:
            return "uint16 with 8-bit content"
        if vmax <= 4095:
            return "uint16 12-bit"
        return "uint16 16-bit"
    if dt.kind == "f":
        eps = 1e-6
        if vmin >= -eps and vmax <= 1 + eps:
            return "float 0-1"
        if vmin >= -1 - eps and vmax <= 1 + eps:
            return "float -1-1"
        if vmin >= -eps and vmax <= 255 + eps:
            return "float 0-255"
        return "float other"
    if dt.kind == "i" and vmin < 0:
        return "signed integer"
    return "integer other"


def nominal_scale(kind: str, vmin: float, vmax: float) -> float:
    """The full scale an image of this kind is meant to span (used to judge 'near-constant')."""
    if kind in ("uint8 0-255", "uint16 with 8-bit content", "float 0-255"):
        return 255.0
    if kind == "uint16 12-bit":
        return 4095.0
    if kind == "uint16 16-bit":
        return 65535.0
    if kind == "float 0-1":
        return 1.0
    if kind == "float -1-1":
        return 2.0
    if kind == "integer other" and vmax > 0:
        return float(2 ** math.ceil(math.log2(vmax + 1)) - 1)
    return max(abs(vmin), abs(vmax), 1e-12)


def channel_moments(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of a (small) sample, ignoring non-finite values."""
    x = np.asarray(sample)
    if x.ndim == 2:
        x = x[..., None]
    if x.dtype == np.uint8:
        # 256-bin histograms: an order of magnitude faster than float moments on strided data. The compiled
        # helper counts all channels of the strided sample in one pass; without it, Pillow's C histogram of a
        # contiguous copy of each channel (faster than np.bincount, which first widens every value to intp).
        # The counts are the same either way.
        hists = None
        if speedups.native is not None:
            hists = np.zeros((x.shape[2], 256), dtype=np.int64)
            speedups.native.u8_histograms(x, hists)
        v = np.arange(256, dtype=np.float64)
        means, stds = [], []
        for c in range(x.shape[2]):
            if hists is not None:
                h = hists[c].astype(np.float64)
            else:
                from PIL import Image

                h = np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).histogram(), dtype=np.float64)
            n = h.sum()
            m = float(h @ v / n)
            means.append(m)
            stds.append(float(np.sqrt(max(h @ (v - m) ** 2 / n, 0.0))))
        return np.asarray(means), np.asarray(stds)
    flat = x.reshape(-1, x.shape[2]).astype(np.float64)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        flat = np.where(np.isfinite(flat), flat, np.nan)
        # an all-NaN channel has no moments: report 0 (SD202 reports the NaNs) without a RuntimeWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.nanmean(flat, axis=0)), np.nan_to_num(np.nanstd(flat, axis=0))
    return flat.mean(axis=0), flat.std(axis=0)


def image_value_statistics(image: np.ndarray) -> dict[str, Any]:
    """Range, moments and defects of one image array (H, W) or (H, W, C)."""
    a = np.asarray(image)
    out: dict[str, Any] = {"dtype": str(a.dtype)}
    nonfinite = 0
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        nonfinite = int(a.size - int(finite.sum()))
        vals = a[finite] if nonfinite else a
        vmin, vmax = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 0.0)
    elif a.dtype == np.uint8 and a.flags.c_contiguous and speedups.native is not None:
        vmin, vmax = map(float, speedups.native.u8_minmax(a))  # one pass instead of two
    else:
        vmin, vmax = float(a.min()), float(a.max())
    out["nonfinite"] = nonfinite
    out["min"], out["max"] = vmin, vmax
    mean, std = channel_moments(strided_sample(a, MOMENT_SIDE))
    out["channel_mean"] = [round(float(x), 6) for x in mean]
    out["channel_std"] = [round(float(x), 6) for x in std]
    kind = content_range_kind(a.dtype, vmin, vmax)
    out["range_kind"] = kind
    scale = nominal_scale(kind, vmin, vmax)
    spread = float(np.max(std)) / scale if scale > 0 else 0.0
    out["relative_std"] = spread
    out["constant"] = bool(vmax == vmin)
    if a.dtype.kind in "biu":
        # integers: less than one quantisation level of spread. A fraction of the nominal scale would call
        # dim 12/16-bit fluorescence images (std of 10-20 counts of 4095) constant.
        near = float(np.max(std)) < 1.0
    else:
        near = spread < NEAR_CONSTANT_STD
    out["near_constant"] = bool(vmax == vmin or near)
    return out


def image_statistics(data, rec: dict) -> None:
    """Extractor: ``rec["image_stats"]``."""
    if data.image is None:
        return
    rec["image_stats"] = image_value_statistics(data.image.array)
