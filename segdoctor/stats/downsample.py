"""Cheap fixed-size copies of images and label maps, shared by the per-pair statistics.

Everything content-based (alignment, perceptual hashes) works on these copies, never on full
resolution, so that the scan stays close to plain decoding speed. The copies are cached on
``Decoded.extra`` so that several extractors of one pair pay for them once.
"""

from __future__ import annotations

import numpy as np

from segdoctor import speedups

#: long side of the strided working copy of an image (before area reduction)
WORK_SIDE = 256
#: side of the square grid on which alignment is computed (aspect ratio is squashed on purpose:
#: every pair then lives on the same grid, so masks of one pair can be laid over images of another)
GRID = 128


def area_reduce(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Mean over rectangular blocks: (H, W[, C]) -> (out_h, out_w[, C]) float32. Blocks may differ by one pixel."""
    x = np.asarray(a, dtype=np.float32)
    h, w = x.shape[:2]
    out_h, out_w = min(out_h, h), min(out_w, w)
    rows = np.linspace(0, h, out_h + 1).astype(np.int64)
    cols = np.linspace(0, w, out_w + 1).astype(np.int64)
    s = np.add.reduceat(x, rows[:-1], axis=0)
    s = np.add.reduceat(s, cols[:-1], axis=1)
    area = np.outer(np.diff(rows), np.diff(cols)).astype(np.float32)
    if s.ndim == 3:
        area = area[..., None]
    return s / area


def strided_sample(a: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Every k-th pixel so that the long side is at most about ``side`` (a view, no copy)."""
    step = max(1, int(max(a.shape[:2]) // side))
    return a[::step, ::step]


def gray_float(a: np.ndarray) -> np.ndarray:
    """(H, W[, C]) -> (H, W) float32, channels summed (alpha dropped; a constant factor is irrelevant to
    every use here), non-finite values set to the mean."""
    x = np.asarray(a)
    if x.ndim == 3:
        x = x[..., :3] if x.shape[2] >= 3 else x[..., :1]
        if x.dtype == np.uint8 and speedups.native is not None:
            # the same integer sums in one compiled pass over the strided pixels
            g = np.empty(x.shape[:2], dtype=np.float32)
            speedups.native.u8_gray(x, g)
            return g
        if x.dtype == np.uint8 or x.dtype == np.uint16:
            # integer sums are several times faster than a float mean on strided data
            acc = np.uint16 if x.dtype == np.uint8 else np.uint32
            g = x[..., 0].astype(acc)
            for c in range(1, x.shape[2]):
                g += x[..., c]
            return g.astype(np.float32)
        x = x.astype(np.float32).sum(axis=2)
    else:
        x = x.astype(np.float32)
    if not np.isfinite(x).all():
        finite = np.isfinite(x)
        x = np.where(finite, x, float(x[finite].mean()) if finite.any() else 0.0).astype(np.float32)
    return x


def pool_to(g: np.ndarray, size: int) -> np.ndarray:
    """Area-average a 2-D float array to (size, size); exact 2x2 pooling by slicing when it fits (fast path)."""
    if g.shape == (2 * size, 2 * size):
        return (g[::2, ::2] + g[1::2, ::2] + g[::2, 1::2] + g[1::2, 1::2]) * np.float32(0.25)
    if g.shape == (size, size):
        return g
    return area_reduce(g, size, size)


def small_gray(dec, size: int = GRID) -> np.ndarray:
    """The image as a (size, size) float32 gray grid (area-averaged from a strided copy); cached per decode."""
    key = f"small_gray_{size}"
    cached = dec.extra.get(key)
    if cached is None:
        cached = gray_grid(dec.array, size)
        dec.extra[key] = cached
    return cached


def gray_grid(image: np.ndarray, size: int = GRID) -> np.ndarray:
    """Any image -> (size, size) float32 gray: strided to about 2*size, then area-averaged."""
    s = strided_sample(image, 2 * size)
    if s.dtype == np.uint8 and s.ndim == 3 and s.shape[:2] == (2 * size, 2 * size) and speedups.native is not None:
        g = np.empty((size, size), dtype=np.float32)  # gray_float + pool_to in one compiled pass, the same values
        speedups.native.u8_gray(s, g, True)
        return g
    g = pool_to(gray_float(s), size)
    if g.shape != (size, size):  # images smaller than the grid: nearest upsampling keeps the maths uniform
        g = nearest_resize(g, size, size)
    return g


def nearest_resize(label: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resampling of a 2-D map by index selection (exact values, no interpolation)."""
    h, w = label.shape[:2]
    if h % out_h == 0 and w % out_w == 0:
        # whole factors: the selected indices below are exactly k*i + k//2, a strided slice (several times faster)
        kh, kw = h // out_h, w // out_w
        return np.ascontiguousarray(label[kh // 2::kh, kw // 2::kw])
    r = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.int64), h - 1)
    c = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.int64), w - 1)
    return label[r[:, None], c[None, :]]
