"""Do the masks in the batches still fit their images? The content study behind SD301.

Built on the edge-alignment statistics of SD251 (``segdoctor.stats.alignment``): per sample, the
image's edge energy on the mask's class boundaries, as a robust z above a null of deliberately
mismatched pairs of the same batches (image i with mask j, masks shifted by 1/8 of the side). A loader
defect shows per sample, not across the dataset: random flips drawn separately for image and mask
leave about half the samples flipped against their mask, shuffled lists give every image another
image's mask. So each sample gets its own explanation, tried in this order of specificity:

- a flip, rotation or transpose of its own mask fits far better (separate random draws): the transform
  is named;
- its own mask moved by an offset fits far better (a random shift or crop applied to one side); the
  best offset is searched up to a quarter of the side and judged against the best offsets of
  mismatched pairs, which a search over a thousand offsets inflates;
- another sample's mask fits far better (lists shuffled or sorted separately, generators out of step);
- none fits, and its own mask looks like a mismatched pair while the batches as a whole show that
  masks trace their images' edges.

"Far better" is SD251's rule: z >= max(6, sqrt(2 ln n_null) + 2) and at least 4 above the sample's own
mask. When almost nothing fits (the batches' median z stays near the null), the pairs are either all
mismatched or the masks do not follow visible edges; the files (``--data``) tell which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segdoctor.stats.alignment import MAP_SIDE, MAX_SHIFT, TRANSFORMS, content_groups, shift_scores, study_alignment

#: as SD251 (checks/alignment.py): the batches "show signal" at this median z; a pair below Z_NULL looks mismatched
Z_SIGNAL = 6.0
Z_NULL = 2.5
Z_BETTER = 6.0
Z_GAIN = 4.0
#: below this median z (after the explanations) the batches' pairs fit no better than mismatched pairs
Z_NO_SIGNAL = 1.0
#: smallest offset (in map cells) that counts as a shift: a cell or so is the blur of the boundary itself
MIN_SHIFT_CELLS = 2
#: a transform (or shift) of the sample's own mask is preferred over another sample's mask unless that one scores more
#: than twice as high: a repeated dataset holds the same mask transformed in another sample, which fits exactly, while
#: the transformed boundary map is off by half a cell (boundaries are marked on one side of each class change) and
#: scores about 30% lower (blobs: 25 vs 37; ISBI membranes similar)
TRANSFORM_PREFERENCE = 0.5
#: the best offset of a mismatched pair must be beaten by this many robust spreads of those bests
SHIFT_NULL_SPREADS = 4.0
MIN_SAMPLES = 3


def _z_better(n_null: int) -> float:
    return max(Z_BETTER, float(np.sqrt(2 * np.log(max(n_null, 2)))) + 2.0)


def _window() -> np.ndarray:
    """Mask of the (S, S) offset grid (np.roll order) searched for shifts: 2..MAX_SHIFT cells in either axis."""
    off = np.arange(MAP_SIDE)
    off = np.where(off > MAP_SIDE // 2, off - MAP_SIDE, off)
    dy, dx = np.meshgrid(off, off, indexing="ij")
    reach = np.maximum(np.abs(dy), np.abs(dx))
    return (reach >= MIN_SHIFT_CELLS) & (np.abs(dy) <= MAX_SHIFT) & (np.abs(dx) <= MAX_SHIFT)


def _best_shift(edges: np.ndarray, bounds: np.ndarray, med: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the best z over the shift window and its (dy, dx) in cells."""
    corr = shift_scores(edges, bounds)
    window = _window()
    z = (corr - med) / scale
    z = np.where(window[None], z, -np.inf)
    z = np.where(np.isfinite(z), z, -np.inf)
    flat = z.reshape(len(z), -1)
    k = np.argmax(flat, axis=1)
    best = flat[np.arange(len(z)), k]
    dy, dx = np.divmod(k, MAP_SIDE)
    dy = np.where(dy > MAP_SIDE // 2, dy - MAP_SIDE, dy)
    dx = np.where(dx > MAP_SIDE // 2, dx - MAP_SIDE, dx)
    return best, np.stack([dy, dx], axis=1)


@dataclass
class PairStudy:
    """The outcome per studied sample (positions refer to ``indices``) and for the batches as a whole."""

    indices: list[int]
    distinct: int  # samples that are not exact repeats of another
    z_own: np.ndarray
    z_fit: np.ndarray  # z after the sample's explanation (its own z when there is none)
    explanation: list[str | None]  # a TRANSFORMS name, "shift", "other", "null" or None
    other: np.ndarray  # position of the best other mask
    offset: np.ndarray  # (n, 2) best shift in map cells
    signal: float  # median z_fit
    z_better: float
    shift_threshold: float
    null: np.ndarray
    null_median: float
    null_scale: float
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.indices)

    def affected(self) -> list[int]:
        """Positions of samples with an explanation (the mask does not fit its image)."""
        return [k for k, e in enumerate(self.explanation) if e is not None]


def study_pipeline_pairs(edges: np.ndarray, bounds: np.ndarray, square: np.ndarray, indices: list[int],
                         *, seed: int = 0) -> PairStudy | None:
    """Explain, per sample, why its mask does not fit its image (see the module docstring); None below 3 samples."""
    n = len(edges)
    # samples that differ in image edges or mask boundaries (exact repeats count once)
    distinct = int(np.unique(content_groups(edges, bounds)).size) if n >= MIN_SAMPLES else n
    if distinct < MIN_SAMPLES:
        return None  # a repeated sample (overfitting one batch) has no other pairs to compare with
    res = study_alignment(edges, bounds, square, seed=seed)
    med, scale = res["null_median"], res["null_scale"]
    zb = _z_better(res["n_cross"] + res["n_shifted"])
    z_own = res["z_own"]
    best_shift, offset = _best_shift(edges, bounds, med, scale)
    # the null of the best offset: the same search for mismatched pairs (each image with another sample's mask)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    perm = np.where(perm == np.arange(n), np.roll(perm, 1), perm)
    null_best, _ = _best_shift(edges, bounds[perm], med, scale)
    null_best = null_best[np.isfinite(null_best)]
    if null_best.size:
        centre = float(np.median(null_best))
        spread = max(float(np.median(np.abs(null_best - centre))) * 1.4826, 1.0)
        shift_thr = max(zb, centre + SHIFT_NULL_SPREADS * spread)
    else:
        shift_thr = zb
    explanation: list[str | None] = [None] * n
    z_fit = z_own.copy()
    for k in range(n):
        own = z_own[k] if np.isfinite(z_own[k]) else -np.inf
        t_name, t_z = None, -np.inf
        for name, zt in res["z_transforms"].items():
            if np.isfinite(zt[k]) and zt[k] >= zb and zt[k] - own >= Z_GAIN and zt[k] > t_z:
                t_name, t_z = name, float(zt[k])
        o_z = float(res["z_best_other"][k])
        other_ok = np.isfinite(o_z) and o_z >= zb and o_z - own >= Z_GAIN
        s_z = float(best_shift[k])
        shift_ok = np.isfinite(s_z) and s_z >= shift_thr and s_z - own >= Z_GAIN
        if t_name is not None and (not other_ok or t_z >= TRANSFORM_PREFERENCE * o_z):
            explanation[k], z_fit[k] = t_name, t_z
        elif shift_ok and (not other_ok or s_z >= TRANSFORM_PREFERENCE * o_z):
            explanation[k], z_fit[k] = "shift", s_z
        elif other_ok:
            explanation[k], z_fit[k] = "other", o_z
    finite = z_fit[np.isfinite(z_fit)]
    signal = float(np.median(finite)) if finite.size else 0.0
    if signal >= Z_SIGNAL:
        for k in range(n):
            if explanation[k] is None and np.isfinite(z_own[k]) and z_own[k] < Z_NULL:
                explanation[k] = "null"
    counts: dict[str, int] = {}
    for e in explanation:
        if e is not None:
            counts[e] = counts.get(e, 0) + 1
    return PairStudy(indices=list(indices), distinct=distinct, z_own=z_own, z_fit=z_fit, explanation=explanation,
                     other=np.asarray(res["best_other"]), offset=offset, signal=signal, z_better=zb,
                     shift_threshold=float(shift_thr), null=res["null"], null_median=med, null_scale=scale,
                     counts=counts)


#: how the report names a transform that makes the mask fit (the mask must be transformed this way to fit)
TRANSFORM_WORDS = {
    "horizontal flip": "flipped left-right",
    "vertical flip": "flipped upside down",
    "rotation by 180 degrees": "rotated by 180 degrees",
    "transpose": "transposed (rows and columns swapped)",
    "rotation by 90 degrees counter-clockwise": "rotated by 90 degrees",
    "rotation by 90 degrees clockwise": "rotated by 90 degrees",
    "anti-transpose": "anti-transposed",
}

assert set(TRANSFORM_WORDS) == set(TRANSFORMS)
