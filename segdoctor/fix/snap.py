"""SD105/SD106 repair: every pixel snapped to the nearest class value (or class colour).

JPEG scatters values a few levels around each class value and bilinear resizing invents values between
two classes along every edge; the nearest class value restores a label map. Ties go to the lower value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def snap_to_values(mask: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """Each element replaced by the nearest of ``values`` (ties: the lower one), in the mask's own dtype.

    Acts element by element, so a 3-channel mask with equal channels is snapped channel by channel."""
    m = np.asarray(mask)
    keep = np.unique(np.asarray(values, dtype=np.float64))
    if keep.size == 0:
        return m.copy()
    if m.dtype in (np.uint8, np.uint16):
        levels = np.arange(np.iinfo(m.dtype).max + 1, dtype=np.float64)
        lut = keep[_nearest(levels, keep)]
        return lut.astype(m.dtype)[m]
    uniq, inverse = np.unique(m, return_inverse=True)
    snapped = keep[_nearest(uniq.astype(np.float64), keep)]
    out = snapped.astype(m.dtype) if m.dtype.kind == "f" or np.all(snapped == np.round(snapped)) else snapped
    return out[inverse.reshape(m.shape)]


def _nearest(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Index into sorted ``keep`` of the nearest value to each of ``x`` (ties: the lower)."""
    hi = np.clip(np.searchsorted(keep, x), 0, len(keep) - 1)
    lo = np.clip(hi - 1, 0, len(keep) - 1)
    return np.where(np.abs(x - keep[lo]) <= np.abs(keep[hi] - x), lo, hi)


def snap_to_colours(mask: np.ndarray, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """A colour mask (H, W, 3 or 4) with every pixel replaced by the nearest class colour (RGB Euclidean);
    returns (H, W, 3) uint8. Distances are computed once per distinct colour."""
    m = np.asarray(mask)
    rgb = np.clip(m[..., :3], 0, 255).astype(np.uint8)
    table = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
    if table.size == 0:
        return rgb.copy()
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(packed, return_inverse=True)
    u = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1).astype(np.float64)
    nearest = ((u[:, None, :] - table[None, :, :]) ** 2).sum(-1).argmin(axis=1)
    return table[nearest].astype(np.uint8)[inverse.reshape(packed.shape)]
