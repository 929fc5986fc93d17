"""SD252 / SD004 / SD203 repairs: geometric transforms of whole masks or images.

SD252 names the flip, rotation or transpose after which the masks fit their images; SD004 says when a
mask is its image's transpose; SD203 images carry an EXIF orientation that the pixels do not.
"""

from __future__ import annotations

import numpy as np

from segdoctor.stats.alignment import TRANSFORMS


def apply_transform(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` (H, W) or (H, W, C) after the transform SD252 names (one of its eight symmetries)."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; expected one of {', '.join(TRANSFORMS)}")
    return np.ascontiguousarray(TRANSFORMS[name][0](np.asarray(array)))


def transpose(array: np.ndarray) -> np.ndarray:
    """Rows and columns swapped (H and W), channels kept."""
    return np.ascontiguousarray(np.swapaxes(np.asarray(array), 0, 1))


#: EXIF orientation -> what a viewer does to the stored pixels (as Pillow's ImageOps.exif_transpose)
EXIF_TRANSFORMS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180 degrees
    4: lambda a: a[::-1, :],  # mirrored vertically
    5: lambda a: np.swapaxes(a, 0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # rotated 90 degrees clockwise
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),  # rotated 90 degrees counter-clockwise
}

#: orientations that swap height and width
SWAPS_AXES = frozenset({5, 6, 7, 8})


def apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as a viewer shows an image tagged with ``orientation`` (1-8; other values: unchanged)."""
    fn = EXIF_TRANSFORMS.get(int(orientation), EXIF_TRANSFORMS[1])
    return np.ascontiguousarray(fn(np.asarray(array)))
