"""Small display copies of images and masks for the report (a bounded number, read late)."""

from __future__ import annotations

import numpy as np

from segdoctor.io.readers import UnreadableFile, read_file

THUMB = 192

# Distinct colours for label ids; id 0 (background) is black.
_COLOURS = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
     [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128]],
    dtype=np.uint8,
)


def _shrink(a: np.ndarray, size: int = THUMB) -> np.ndarray:
    """Nearest-neighbour downsampling by striding: exact for label maps, good enough for a thumbnail."""
    h, w = a.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / size)))
    return a[::step, ::step]


def to_display_rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] >= 3:
        a = a[..., :3]
    elif a.ndim == 3:
        a = a[..., 0]
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        a = np.zeros(a.shape)
    else:
        lo, hi = np.percentile(a[finite], [0.5, 99.5])
        a = np.where(finite, a, lo)
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a


def colourise(label: np.ndarray) -> np.ndarray:
    """RGB colours for a label map; colour masks are shown as they are."""
    if label.ndim == 3:
        return to_display_rgb(label)
    lab = np.asarray(label)
    if lab.dtype.kind == "f":
        lab = np.nan_to_num(lab)
        return np.repeat(np.clip(lab / max(float(lab.max()), 1e-9) * 255, 0, 255).astype(np.uint8)[..., None], 3, 2)
    values, counts = np.unique(lab, return_counts=True)
    out = np.zeros((*lab.shape, 3), np.uint8)
    # the most frequent values get the first colours, so a class keeps its colour whatever stray
    # (compression or resize) values sit beside it; background 0 stays black
    order = [v for _, v in sorted(zip(-counts, values.tolist())) if v != 0]
    for rank, v in enumerate(order):
        out[lab == v] = _COLOURS[1 + rank % (len(_COLOURS) - 1)]
    return out


def mask_display(mask: np.ndarray) -> np.ndarray:
    """Stretch a mask so that a {0,1} label map is visible (white foreground), colour masks unchanged."""
    if mask.ndim == 3:
        return to_display_rgb(mask)
    m = np.nan_to_num(mask.astype(np.float64))
    hi = float(m.max()) if m.size else 0.0
    return (m / hi * 255).astype(np.uint8) if hi > 0 else m.astype(np.uint8)


def load_thumbnail_pair(image_path: str | None, mask_path: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    image = mask = None
    try:
        if image_path:
            image = _shrink(read_file(image_path).array)
    except (UnreadableFile, OSError):
        image = None
    try:
        if mask_path:
            mask = _shrink(read_file(mask_path).array)
    except (UnreadableFile, OSError):
        mask = None
    if image is not None and mask is not None and image.shape[:2] != mask.shape[:2]:
        # different sizes (SD004): show both, skip the overlay by leaving shapes unequal
        pass
    return image, mask
