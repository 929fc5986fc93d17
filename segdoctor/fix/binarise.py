"""SD101 repair: binary masks stored as {0, k} become {0, 1}."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def binarise(mask: np.ndarray, *, threshold: float, keep: Iterable[float] = ()) -> np.ndarray:
    """Pixels above ``threshold`` become 1, the others 0; pixels holding a value in ``keep`` (a void label)
    keep it. The dtype stays the mask's own (a bool mask becomes uint8), so that the file keeps its storage."""
    m = np.asarray(mask)
    dtype = np.uint8 if m.dtype == np.bool_ else m.dtype
    out = (m > threshold).astype(dtype)
    for v in keep:
        out[m == v] = v
    return out
