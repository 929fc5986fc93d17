"""SD102 repair: class ids mapped to 0..K-1 with the table of the finding."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def remap_ids(mask: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    """Each id that is a key of ``table`` becomes its value; every other value (void, say 255) stays.

    All replacements are read from the original values, so a table such as {1: 0, 2: 1} never maps a
    pixel twice. Integer masks of up to 16 bits go through a lookup table; others are compared value by value.
    """
    m = np.asarray(mask)
    table = {int(k): int(v) for k, v in table.items()}
    if not table:
        return m.copy()
    new_max = max(table.values())
    dtype = m.dtype if m.dtype.kind == "f" or new_max <= np.iinfo(m.dtype).max else np.result_type(m.dtype, new_max)
    if m.dtype in (np.uint8, np.uint16):
        lut = np.arange(np.iinfo(m.dtype).max + 1, dtype=np.int64)
        for old, new in table.items():
            if 0 <= old < len(lut):
                lut[old] = new
        return lut[m].astype(dtype)
    out = m.astype(dtype, copy=True)
    for old, new in table.items():
        out[m == old] = new
    return out
