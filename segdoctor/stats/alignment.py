"""Content-based image/mask alignment (SD251, SD252): do the mask's class boundaries follow the image's edges?

Per pair the scan stores two small maps on a fixed GRIDxGRID grid (the aspect ratio is squashed on
purpose so that any mask can be laid over any image):

- ``edges``: the image's gradient magnitude (on a 128x128 area-averaged gray copy, at two scales:
  as is and smoothed), pooled 2x2, divided by its local mean and normalised to mean 1, so that a score
  of 1 means "boundaries sit on average image edges";
- ``boundary``: how many of the 4 cells of each pooled block lie on a class boundary of the mask.

The alignment score of image i with mask j is the boundary-weighted mean of image i's edge map:
``sum(edges_i * boundary_j) / sum(boundary_j)``. Correct pairs score well above 1 when the annotator
traced visible edges; a mask laid over the wrong image, or shifted, or flipped, scores near 1. The
scores of deliberately mismatched pairs of the same dataset form the null distribution the checks
judge each pair against.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from segdoctor.stats.downsample import GRID, nearest_resize, small_gray
from segdoctor.stats.objects import region_values, snap_to_values

#: side of the stored maps (GRID pooled 2x2): 64x64 -> 4 KiB of edges + 4 KiB of boundary counts per pair
MAP_SIDE = GRID // 2
#: neighbourhood (in map cells, 1/9 of the side) and floor (in units of the mean edge energy) of the local
#: contrast normalisation; chosen on ../shared/realdata: on the fine scale alone it raised the separation of
#: correct pairs from the null from 7 to 13 robust z on ISBI membranes and from 0.4 to 3.5 on Kvasir polyps
LOCAL_WINDOW = 7
LOCAL_FLOOR = 0.05
# The second, coarse edge scale is smoothed with a 5-tap binomial kernel (sigma 1 grid pixel). Measured on
# ../shared/realdata and on blurred synthetic blobs (sigma 4 px under noise 8): the two-scale average kept ISBI
# membranes at z >= 11.1 (12.7 with the fine scale alone), raised Pascal VOC from 12 to 17 and the soft blobs
# from z ~1 to >= 7.9.


def _pool2(a: np.ndarray) -> np.ndarray:
    """2x2 block sums by slicing (much faster than a reshape-sum on small arrays)."""
    h, w = a.shape
    a = a[: h - h % 2, : w - w % 2]
    out = a[::2, ::2] + a[1::2, ::2]
    out += a[::2, 1::2]
    out += a[1::2, 1::2]
    return out


def _local_edges(g: np.ndarray) -> np.ndarray | None:
    """Gradient magnitude pooled 2x2, divided by its local mean; None for a flat image."""
    # forward differences assigned to the left/upper pixel; the 2x2 pooling makes the half-pixel offset moot
    # (in-place arithmetic throughout: the same operations in the same order as the plain expressions,
    # without a temporary array per step)
    e = np.empty_like(g)
    h = e[:, :-1]
    np.subtract(g[:, 1:], g[:, :-1], out=h)
    np.abs(h, out=h)
    e[:, -1] = 0
    v = np.subtract(g[1:, :], g[:-1, :])
    np.abs(v, out=v)
    e[:-1, :] += v
    pooled = _pool2(e)
    m = float(pooled.mean())
    if not np.isfinite(m) or m <= 0:
        return None
    pooled /= m
    # Local contrast: edges relative to their neighbourhood (LOCAL_WINDOW cells). Without it any mask whose
    # boundary lies in the busy centre of a photo beats one near a dark border (endoscopy vignettes,
    # letterboxing), and the null cannot tell correct pairs from swapped ones.
    from scipy.ndimage import uniform_filter

    local = uniform_filter(pooled, LOCAL_WINDOW, mode="reflect")
    local += LOCAL_FLOOR
    np.divide(pooled, local, out=local)
    local /= float(local.mean())
    return local


def binomial_smooth(g: np.ndarray) -> np.ndarray:
    """Separable [1, 4, 6, 4, 1] / 16 smoothing (a Gaussian of sigma exactly 1), edges repeated.

    Five shifted slices per axis: several times faster than a generic filter call on a 128x128 grid."""
    def along(a: np.ndarray, axis: int) -> np.ndarray:
        # edge padding by concatenation: the same array as np.pad(mode="edge"), without its overhead
        first, last = np.take(a, [0, 0], axis=axis), np.take(a, [-1, -1], axis=axis)
        p = np.concatenate([first, a, last], axis=axis)
        n = a.shape[axis]
        sl = [slice(None), slice(None)]

        def take(k):
            sl[axis] = slice(k, k + n)
            return p[tuple(sl)]

        out = take(0) + take(4)
        mid = take(1) + take(3)
        mid *= 4.0
        out += mid
        np.multiply(take(2), 6.0, out=mid)
        out += mid
        out *= np.float32(1 / 16)
        return out

    return along(along(np.asarray(g, dtype=np.float32), 0), 1)


def edge_map(gray: np.ndarray) -> np.ndarray:
    """(GRID, GRID) gray -> (MAP_SIDE, MAP_SIDE) float32 gradient energy with mean 1 (all ones for a flat image).

    Two scales averaged: the raw gradient keeps thin sharp structures (membranes, 1-2 px at this
    grid) and a copy smoothed with sigma 1 keeps soft boundaries that pixel noise would
    otherwise drown (out-of-focus cells, polyps)."""
    g = np.asarray(gray, dtype=np.float32)
    fine = _local_edges(g)
    if fine is None:
        return np.ones((g.shape[0] // 2, g.shape[1] // 2), dtype=np.float32)
    coarse = _local_edges(binomial_smooth(g))
    if coarse is None:
        return fine.astype(np.float32)
    fine += coarse
    fine *= 0.5
    return fine.astype(np.float32, copy=False)


def boundary_map(label: np.ndarray, *, ignore: np.ndarray | None = None) -> np.ndarray:
    """2-D label map -> (MAP_SIDE, MAP_SIDE) uint8: cells (of 4 per block) whose 4-neighbours hold another value.
    ``ignore`` (GRID x GRID bool) marks cells that hold no boundary whatever their neighbours."""
    m = nearest_resize(np.asarray(label), GRID, GRID)
    b = np.zeros(m.shape, dtype=np.uint8)
    # mark the pixel on either side of a class change, like the edge map's differences
    b[:, :-1] = m[:, 1:] != m[:, :-1]
    b[:-1, :] |= m[1:, :] != m[:-1, :]
    if ignore is not None:
        b[ignore] = 0
    return _pool2(b)


def alignment_score(edges: np.ndarray, boundary: np.ndarray) -> float:
    """Boundary-weighted mean edge energy (1 = chance level); NaN when the mask has no boundary."""
    w = np.asarray(boundary, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        return float("nan")
    return float((np.asarray(edges, dtype=np.float64) * w).sum() / total)


def score_matrix(edges: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(N, S, S) edge maps x (M, S, S) boundary maps -> (N, M) scores (NaN for masks without boundary)."""
    e = np.asarray(edges, dtype=np.float32).reshape(len(edges), -1)
    b = np.asarray(boundaries, dtype=np.float32).reshape(len(boundaries), -1)
    total = b.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (e @ b.T) / total[None, :]
    s[:, total <= 0] = np.nan
    return s


#: the seven non-identity symmetries of the square, with the exact numpy code that applies them to a mask;
#: when T(mask) fits the image, `mask = T(mask)` is the repair. Each acts on the first two axes, so the same code
#: serves (H, W) and (H, W, C) masks and stacks moved to (S, S, N).
TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, bool]] = {
    # name: (function on a 2-D map, code, keeps a non-square shape)
    "horizontal flip": (lambda a: a[:, ::-1], "mask = mask[:, ::-1]  # np.fliplr", True),
    "vertical flip": (lambda a: a[::-1, :], "mask = mask[::-1, :]  # np.flipud", True),
    "rotation by 180 degrees": (lambda a: a[::-1, ::-1], "mask = np.rot90(mask, 2)", True),
    "transpose": (lambda a: np.swapaxes(a, 0, 1), "mask = np.swapaxes(mask, 0, 1)  # rows <-> columns", False),
    "rotation by 90 degrees counter-clockwise": (lambda a: np.rot90(a, 1), "mask = np.rot90(mask, 1)", False),
    "rotation by 90 degrees clockwise": (lambda a: np.rot90(a, -1), "mask = np.rot90(mask, -1)", False),
    "anti-transpose": (lambda a: np.swapaxes(np.rot90(a, 2), 0, 1), "mask = np.swapaxes(np.rot90(mask, 2), 0, 1)",
                       False),
}

#: ignore labels: 255 and 65535 above small class ids, -1 below ids from 0, and the Pascal VOC void colour
#: (224, 224, 192) packed as r << 16 | g << 8 | b (colour masks are aligned on their packed colours)
VOID_LABELS = (255, 65535, -1, (224 << 16) | (224 << 8) | 192)
#: half-width, in GRID cells, of a void band that still stands for the boundary it covers (VOC draws void
#: bands about 5 px wide across object outlines; 3 cells is 6-12 px of a 256-512 px image)
VOID_BAND_CELLS = 3


def void_label(values: np.ndarray, counts: np.ndarray) -> int | None:
    """The mask's ignore label, by the rule of SD103 applied to one mask: a void candidate present beside at
    least two classes, 255/65535 above ids below half of it, -1 below ids from 0 covering under half of the
    pixels (a -1 that covers most of the mask is a background coded as -1, SD107), the VOC void colour beside
    two colours. None otherwise."""
    present = {int(v): int(c) for v, c in zip(np.asarray(values).tolist(), np.asarray(counts).tolist()) if c > 0}
    total = sum(present.values())
    for v in VOID_LABELS:
        if v not in present:
            continue
        others = [u for u in present if u != v]
        if len(others) < 2:
            continue
        if v == -1:
            if min(others) >= 0 and present[v] < 0.5 * total:
                return v
        elif v == VOID_LABELS[3] or max(others) < v / 2:
            return v
    return None


def fill_void(label: np.ndarray, void: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(GRID x GRID map whose void cells hold the label of the nearest labelled cell, cells deeper than
    VOID_BAND_CELLS inside a void region or None).

    A void band drawn across a boundary (Pascal VOC) has two outlines, each a few pixels off the edge it
    covers: counted as boundaries, they miss the image's edges on small images (a correct pair looked
    misaligned). Filled from both sides, the band holds one boundary along its middle, where the edge is. A
    wide void region (an ignored car hood) holds no boundary: its filled middle is ignored."""
    from scipy import ndimage

    m = nearest_resize(np.asarray(label), GRID, GRID)
    void_cells = m == void
    if not void_cells.any() or void_cells.all():
        return m, None
    dist, (iy, ix) = ndimage.distance_transform_edt(void_cells, return_indices=True)
    deep = dist > VOID_BAND_CELLS
    return m[iy, ix], (deep if deep.any() else None)


def class_map_for_alignment(label: np.ndarray, info: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """A mask's label map with boundary artefacts snapped to region values (soft masks thresholded) and void
    bands filled (``fill_void``), and the GRID cells that hold no boundary (None: all may)."""
    if info.get("float_soft"):
        return (np.asarray(label) >= 128).astype(np.uint8), None
    v = info.get("values")
    if v is None:
        v = info.get("colours")  # colour masks: ``label`` holds the packed colours
    void = void_label(v["values"], v["counts"]) if v is not None else None
    if v is not None and v["n_distinct"] > 2 and "interior" in v and info.get("values") is not None:
        keep = region_values(v["values"], v["counts"], v["interior"])
        if void is not None and void not in keep.tolist():
            keep = np.sort(np.append(keep, void))  # a thin void band is void, not an artefact of a class
        if 0 < len(keep) < len(v["values"]):
            label = snap_to_values(np.asarray(label), keep)
    if void is not None:
        return fill_void(label, void)
    return label, None


#: stored edge maps are uint8 in steps of 1/EDGE_STEPS of the mean (values above 255/EDGE_STEPS = 8x the mean are
#: clipped): 4 KiB per pair, and the boundary-weighted mean the scores use moves by < 0.5%
EDGE_STEPS = 32.0


def quantise_edges(edges: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(edges) * EDGE_STEPS), 0, 255).astype(np.uint8)


def stored_edges(stored: np.ndarray) -> np.ndarray:
    """The float edge map back from its stored uint8 form."""
    return np.asarray(stored, dtype=np.float32) / np.float32(EDGE_STEPS)


def alignment_maps(data, rec: dict) -> None:
    """Extractor: ``rec["align"] = {"edges": uint8 (see ``quantise_edges``), "boundary": uint8, "square": bool,
    "score": float}`` for pairs of equal size."""
    if data.image is None or data.mask is None:
        return
    ia, ma = data.image.array, data.mask.array
    if ia.shape[:2] != ma.shape[:2]:
        return
    info = rec.get("mask_info") or {}
    label = data.label
    if label is None:
        from segdoctor.stats.labels import pack_rgb

        label = pack_rgb(ma)
    label, ignore = class_map_for_alignment(label, info)
    edges = edge_map(small_gray(data.image))
    boundary = boundary_map(label, ignore=ignore)
    rec["align"] = {
        "edges": quantise_edges(edges),
        "boundary": boundary,
        "square": bool(ia.shape[0] == ia.shape[1]),
        "score": alignment_score(edges, boundary),
    }


#: pairs the dataset-wide study uses at most (seeded random subset beyond): bounds memory and the N x N scores
MAX_STUDY_PAIRS = 2000
#: pairs whose 64x64 maps the scan keeps (twice the study, so that pairs without a boundary still leave enough)
MAX_KEPT_MAPS = 2 * MAX_STUDY_PAIRS


def map_retention(n: int):
    """For a scan of ``n`` pairs: a function ``(index, record) -> record`` that drops the alignment maps of all
    but a seeded random ``MAX_KEPT_MAPS`` pairs as records arrive, so memory stays flat however many pairs
    there are. A dropped record keeps what the study counts (has a boundary, square)."""
    if n <= MAX_KEPT_MAPS:
        return lambda i, rec: rec
    keep = set(np.random.default_rng(0).choice(n, MAX_KEPT_MAPS, replace=False).tolist())

    def retain(i: int, rec: dict) -> dict:
        a = rec.get("align")
        if a is not None and i not in keep and "boundary" in a:
            rec["align"] = {"has_boundary": bool(np.any(a["boundary"])), "square": a["square"], "dropped": True}
        return rec

    return retain
#: cross-pair scores kept for the null at most
MAX_NULL_CROSS = 200_000
#: mask shifts (in map cells, 1/8 and 3/16 of the side) added to the null: a shifted mask is a wrong mask
NULL_SHIFTS = ((8, 0), (0, 8), (-12, 0), (0, -12))


def robust_location_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and MAD-based standard deviation of the finite values (scale floored at 0.005)."""
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0, 0.005
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return med, max(mad, 0.005)


def _row_chunks(n: int, fn: Callable[[slice], np.ndarray], *, min_rows: int = 128) -> np.ndarray:
    """``fn`` over row slices of ``range(n)``, in threads, concatenated in order.

    Every per-pair computation below is a chain of numpy calls on whole (rows, S, S) stacks, which
    release the GIL: on a multi-core machine the dataset-wide study runs that many times faster. Each
    row's arithmetic is the same whatever the chunking, so the results do not depend on it."""
    workers = max(1, min(os.cpu_count() or 1, 8, n // min_rows))
    if workers == 1:
        return fn(slice(0, n))
    bounds = np.linspace(0, n, workers + 1).astype(int)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(fn, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]))
    return np.concatenate(parts)


def _weighted_means(edges: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Per pair: boundary-weighted mean of the edge map (NaN without boundary); boundaries may be any view."""
    total = boundaries.sum(axis=(1, 2), dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (np.asarray(edges, dtype=np.float32) * boundaries).sum(axis=(1, 2)) / total
    return np.where(total > 0, s, np.nan)


def shifted_scores(edges: np.ndarray, boundaries: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """Score of every image with its own mask rolled by ``shift`` cells."""
    b = np.roll(np.asarray(boundaries, dtype=np.float32), shift, axis=(1, 2))
    return _weighted_means(edges, b)


def _transformed_view(boundaries: np.ndarray, transform: str) -> np.ndarray:
    fn = TRANSFORMS[transform][0]
    # every transform in TRANSFORMS acts on the first two axes: give it the stack moved to (S, S, N); a view
    return np.moveaxis(fn(np.moveaxis(np.asarray(boundaries), 0, -1)), -1, 0)


def transformed_scores(edges: np.ndarray, boundaries: np.ndarray, transform: str) -> np.ndarray:
    """Score of every image with its own mask transformed (flip, rotation, transpose)."""
    return _weighted_means(edges, _transformed_view(np.asarray(boundaries, dtype=np.float32), transform))


#: boundary maps with at most this share of non-zero cells are scored from their non-zero cells alone
SPARSE_SCORING_SHARE = 0.1


def own_mask_scores(edges: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """(N, len(NULL_SHIFTS) + len(TRANSFORMS)) scores of each image with its own mask shifted by each of
    ``NULL_SHIFTS``, then transformed by each of ``TRANSFORMS`` (in their order).

    Boundaries are thin: usually a few percent of the cells. Then each variant is a gather of the edge
    map at the moved boundary cells (float64 sums); denser maps are multiplied whole, threaded over pairs.
    Both agree to float32 rounding."""
    e_all = np.asarray(edges, dtype=np.float32)
    b_all = np.asarray(boundaries)
    if b_all.size and np.count_nonzero(b_all) <= SPARSE_SCORING_SHARE * b_all.size:
        return _own_mask_scores_sparse(e_all, b_all)

    def rows(sl: slice) -> np.ndarray:
        e, b = e_all[sl], b_all[sl].astype(np.float32)
        cols = [shifted_scores(e, b, s) for s in NULL_SHIFTS]
        cols += [_weighted_means(e, _transformed_view(b, name)) for name in TRANSFORMS]
        return np.stack(cols, axis=1)

    return _row_chunks(len(e_all), rows)


def _own_mask_scores_sparse(e_all: np.ndarray, b_all: np.ndarray) -> np.ndarray:
    n, h, w = b_all.shape
    cells = h * w
    flat = np.flatnonzero(b_all)
    weight = b_all.reshape(-1)[flat].astype(np.float64)
    pair = flat // cells
    cell = flat - pair * cells
    y, x = np.divmod(cell, w)
    base = pair * cells
    total = np.bincount(pair, weights=weight, minlength=n)
    e_flat = e_all.reshape(-1)
    out = np.empty((n, len(NULL_SHIFTS) + len(TRANSFORMS)))

    def score(dest: np.ndarray) -> np.ndarray:
        return np.bincount(pair, weights=e_flat[base + dest] * weight, minlength=n)

    for k, (dy, dx) in enumerate(NULL_SHIFTS):  # np.roll(b, (dy, dx)) moves cell (y, x) to (y + dy, x + dx)
        out[:, k] = score(((y + dy) % h) * w + (x + dx) % w)
    grid = np.arange(cells).reshape(h, w)
    for k, (fn, _, _) in enumerate(TRANSFORMS.values(), len(NULL_SHIFTS)):
        moved = fn(grid)  # moved[y', x'] = the cell whose boundary lands on (y', x')
        if moved.shape != (h, w):  # a transpose of a non-square grid: never the case for the square maps
            out[:, k] = np.nan
            continue
        dest = np.empty(cells, np.int64)
        dest[moved.reshape(-1)] = np.arange(cells)
        out[:, k] = score(dest[cell])
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= total[:, None]
    out[total <= 0] = np.nan
    return out.astype(np.float32)


def content_groups(*maps: np.ndarray) -> np.ndarray:
    """(N,) int: one id per distinct content of row i across ``maps`` (equal ids: identical in every map)."""
    groups: dict[bytes, int] = {}
    return np.array([groups.setdefault(b"".join(np.ascontiguousarray(m[i]).tobytes() for m in maps), len(groups))
                     for i in range(len(maps[0]))], dtype=np.int64)


def study_alignment(edges: np.ndarray, boundaries: np.ndarray, square: np.ndarray, *, seed: int = 0) -> dict:
    """Judge every pair's own score against a null of mismatched pairs of the same dataset.

    ``edges`` (N, S, S), ``boundaries`` (N, S, S), ``square`` (N,) bool. Returns robust z-scores (in
    units of the null's spread above its median) of each pair's own score, of the best other mask for
    each image (and which), and of each pair's mask under each of the 7 transforms (NaN where the
    transform would change a non-square shape), plus the null itself.
    """
    n = len(edges)
    rng = np.random.default_rng(seed)
    scores = score_matrix(edges, boundaries)
    own = np.diag(scores).copy()
    # a pair whose two masks are identical is no mismatch (a repeated sample, augmented copies of one image):
    # it stays out of the null and is never "another mask that fits better"
    groups = content_groups(boundaries)
    off = groups[:, None] != groups[None, :]
    cross = scores[off]
    cross = cross[np.isfinite(cross)]
    if cross.size > MAX_NULL_CROSS:
        cross = rng.choice(cross, MAX_NULL_CROSS, replace=False)
    own_scores = own_mask_scores(edges, boundaries)
    shifted = own_scores[:, : len(NULL_SHIFTS)].T.ravel()  # all pairs for the first shift, then the next
    shifted = shifted[np.isfinite(shifted)]
    null = np.concatenate([cross, shifted])
    med, scale = robust_location_scale(null)
    z = (scores - med) / scale
    z_own = np.diag(z).copy()
    z_other = np.where(off, z, -np.inf)
    z_other = np.where(np.isfinite(z_other), z_other, -np.inf)
    best = np.argmax(z_other, axis=1) if n > 1 else np.zeros(n, np.int64)
    z_best = z_other[np.arange(n), best] if n > 1 else np.full(n, -np.inf)
    z_transforms = {}
    for k, (name, (_, _, keeps_shape)) in enumerate(TRANSFORMS.items()):
        t = (own_scores[:, len(NULL_SHIFTS) + k] - med) / scale
        if not keeps_shape:
            t = np.where(square, t, np.nan)
        z_transforms[name] = t
    return {
        "own": own, "z_own": z_own, "best_other": best, "z_best_other": z_best,
        "z_transforms": z_transforms, "null": null, "null_median": med, "null_scale": scale,
        "n_cross": int(cross.size), "n_shifted": int(shifted.size),
    }


#: largest mask offset searched, in map cells (a quarter of the side)
MAX_SHIFT = MAP_SIDE // 4


def shift_scores(edges: np.ndarray, boundaries: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """(N, S, S) float32: entry [n, dy, dx] is the score of image n with its own mask rolled by (dy, dx) cells
    (negative offsets wrap to the end of the axis, as ``np.roll`` does). One FFT cross-correlation per pair
    (single precision, relative error ~1e-7; scipy's FFT on all cores), in chunks so that the complex
    intermediates stay small."""
    from scipy import fft

    e_all = np.asarray(edges)
    b_all = np.asarray(boundaries)
    s = e_all.shape[-2:]
    workers = max(1, min(os.cpu_count() or 1, 8))
    out = np.empty(e_all.shape, dtype=np.float32)
    for k in range(0, len(e_all), chunk):
        e = e_all[k: k + chunk].astype(np.float32)
        b = b_all[k: k + chunk].astype(np.float32)
        spec = fft.rfft2(e, workers=workers)
        spec *= np.conj(fft.rfft2(b, workers=workers))
        corr = fft.irfft2(spec, s=s, workers=workers)
        total = b.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            corr /= total[:, None, None]
        corr[total <= 0] = np.nan
        out[k: k + chunk] = corr
    return out
