"""SD104 repair: 3-channel masks to one channel; colour-coded masks to class ids with the inferred table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the id that colours outside the table get: the ignore label of sparse losses (ignore_class=255)
UNKNOWN_ID = 255


def single_channel(mask: np.ndarray) -> np.ndarray:
    """A mask whose channels hold the same label, stored once: channel 0 (the one segdoctor analysed)."""
    m = np.asarray(mask)
    return np.ascontiguousarray(m[..., 0]) if m.ndim == 3 else m.copy()


def colours_to_ids(mask: np.ndarray, table: Sequence[Sequence[int]], *, max_distance: float = 0.0,
                   unknown: int = UNKNOWN_ID) -> np.ndarray:
    """An (H, W) id map from an RGB(A) colour mask, with ``table`` rows [r, g, b, id].

    ``max_distance`` 0: a pixel takes the id of its exact colour, any other colour becomes ``unknown``.
    Above 0 (masks shifted by compression or blended by resizing): the id of the nearest class colour,
    or ``unknown`` when even that is further than ``max_distance`` (RGB Euclidean). Computed once per
    distinct colour. The result is uint8 when every id fits, else uint16.
    """
    m = np.asarray(mask)
    rgb = np.clip(m[..., :3], 0, 255).astype(np.int32)
    rows = np.asarray(table, dtype=np.int64).reshape(-1, 4)
    ids = rows[:, 3]
    dtype = np.uint8 if max(int(ids.max(initial=0)), unknown) <= 255 else np.uint16
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    uniq, inverse = np.unique(packed, return_inverse=True)
    if len(rows) == 0:
        return np.full(packed.shape, unknown, dtype)
    u = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=-1).astype(np.float64)
    d = np.sqrt(((u[:, None, :] - rows[None, :, :3].astype(np.float64)) ** 2).sum(-1))
    nearest = d.argmin(axis=1)
    out = ids[nearest].copy()
    out[d[np.arange(len(uniq)), nearest] > max_distance] = unknown
    return out.astype(dtype)[inverse.reshape(packed.shape)]
