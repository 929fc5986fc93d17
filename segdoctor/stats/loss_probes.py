"""Probe inputs for custom losses and metrics, the reference Dice they are compared with, and the verdict.

A probe is a pair (y_true, y_pred) of the model's output shape whose correct Dice is known: a perfect
prediction, an all-background prediction on sparse masks, half the object, everything foreground, an
empty mask with and without false positives, a tiny object missed. A sound Dice/IoU loss or metric
must rank these like the reference (a per-image Dice over the spatial axes, foreground classes only).
Pure numpy: evaluating the user's function is the caller's job (it needs Keras).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

#: names that announce an overlap score; their absolute values are checked, not only their ranking
DICE_LIKE = re.compile(r"dice|iou|jaccard|f1|f_?score|tversky|overlap|sorensen", re.IGNORECASE)

#: a perfect prediction must score at least this Dice (the smooth term may shave a little off)
PERFECT_MIN = 0.9
#: a prediction whose reference Dice is 0 must score below this
ZERO_MAX = 0.5


@dataclass(frozen=True)
class Probe:
    name: str
    description: str
    y_true_ids: np.ndarray  # (N, H, W) integer class ids
    y_pred_ids: np.ndarray  # (N, H, W) integer class ids of the prediction (hard, so the reference is exact)
    reference: float  # mean per-image Dice over foreground classes
    group: str  # probes sharing a truth: "sparse", "empty", "tiny"


def _square(h: int, w: int, cy: int, cx: int, side: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    y0, x0 = max(0, cy - side // 2), max(0, cx - side // 2)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def reference_dice(true_ids: np.ndarray, pred_ids: np.ndarray, num_classes: int) -> float:
    """Mean over images of the mean over foreground classes present in truth or prediction; 1 when none is."""
    scores = []
    for t, p in zip(true_ids, pred_ids):
        per = []
        for c in range(1, max(num_classes, 2)):
            tc, pc = t == c, p == c
            denom = int(tc.sum()) + int(pc.sum())
            if denom:
                per.append(2.0 * int(np.logical_and(tc, pc).sum()) / denom)
        scores.append(float(np.mean(per)) if per else 1.0)
    return float(np.mean(scores))


def build_probes(height: int, width: int, channels: int, *, n_images: int = 4) -> list[Probe]:
    """The probe set for an output of shape (height, width, channels)."""
    h, w = height, width
    k = max(channels, 2)
    side = max(2, int(round(np.sqrt(0.04 * h * w))))  # objects covering about 4% of the image, as in sparse masks
    tiny = max(2, int(round(np.sqrt(0.001 * h * w))))
    centres = [(h // 3, w // 3), (2 * h // 3, 2 * w // 3), (h // 3, 2 * w // 3), (2 * h // 3, w // 3)]
    truth = np.zeros((n_images, h, w), np.int64)
    half = np.zeros_like(truth)
    shifted = np.zeros_like(truth)
    tiny_truth = np.zeros_like(truth)
    for i in range(n_images):
        cls = 1 + i % (k - 1)
        cy, cx = centres[i % len(centres)]
        obj = _square(h, w, cy, cx, side)
        truth[i][obj] = cls
        rows = np.flatnonzero(obj.any(axis=1))
        top = obj.copy()
        top[rows[len(rows) // 2] :, :] = False  # the upper half of the object
        half[i][top] = cls
        other = centres[(i + 2) % len(centres)]
        shifted[i][_square(h, w, other[0], other[1], side) & ~obj] = cls
        tiny_truth[i][_square(h, w, cy, cx, tiny)] = cls
    # per-image vs pooled: one image with a large object (found), three with small objects (missed)
    mixed_truth = np.zeros_like(truth)
    mixed_pred = np.zeros_like(truth)
    big = _square(h, w, h // 2, w // 2, max(2, int(round(np.sqrt(0.25 * h * w)))))
    mixed_truth[0][big] = 1
    mixed_pred[0][big] = 1
    small = max(2, int(round(np.sqrt(0.01 * h * w))))
    for i in range(1, n_images):
        cy, cx = centres[i % len(centres)]
        mixed_truth[i][_square(h, w, cy, cx, small)] = 1
    all_fg = np.ones_like(truth)
    empty = np.zeros_like(truth)
    fp = np.zeros_like(truth)
    for i in range(n_images):
        cy, cx = centres[i % len(centres)]
        fp[i][_square(h, w, cy, cx, side)] = 1 + i % (k - 1)

    def probe(name: str, description: str, t: np.ndarray, p: np.ndarray, group: str) -> Probe:
        return Probe(name, description, t, p, reference_dice(t, p, k), group)

    return [
        probe("perfect", "prediction equal to the sparse masks", truth, truth, "sparse"),
        probe("all_background", "all-background prediction on sparse masks", truth, np.zeros_like(truth), "sparse"),
        probe("half_object", "upper half of each object found", truth, half, "sparse"),
        probe("all_foreground", "everything predicted as class 1", truth, all_fg, "sparse"),
        probe("wrong_place", "objects of the right size in the wrong place", truth, shifted, "sparse"),
        probe("empty_perfect", "empty masks, empty prediction", empty, empty, "empty"),
        probe("empty_false_positive", "empty masks, one false object predicted", empty, fp, "empty"),
        probe("tiny_perfect", "tiny objects (0.1% of the image) found", tiny_truth, tiny_truth, "tiny"),
        probe("tiny_missed", "tiny objects missed", tiny_truth, np.zeros_like(truth), "tiny"),
        probe("big_found_small_missed", "one large object found, three small ones missed", mixed_truth, mixed_pred, "mixed"),
    ]


def encode(ids: np.ndarray, channels: int, *, sparse: bool = False) -> np.ndarray:
    """The tensor a loss receives: (N,H,W,1) binary for one channel, one-hot (N,H,W,C), or sparse (N,H,W,1) ids."""
    if channels == 1:
        return (ids > 0).astype(np.float32)[..., None]
    if sparse:
        return ids.astype(np.float32)[..., None]
    return np.eye(channels, dtype=np.float32)[np.clip(ids, 0, channels - 1)]


# --- the usual wrong implementations, to name what a defective function computes -------------------

def _variant_values(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    t = y_true.astype(np.float64)
    p = y_pred.astype(np.float64)
    out = {}
    for smooth in (1e-6, 1.0):
        inter = (t * p).sum(-1)
        denom = (t * t).sum(-1) + (p * p).sum(-1)
        out[f"a Dice reduced over the last (channel) axis only, i.e. one score per pixel (smooth={smooth:g})"] = float(((2 * inter + smooth) / (denom + smooth)).mean())
        out[f"a Dice reduced over the last (channel) axis only, i.e. one score per pixel (epsilon={smooth:g} in the denominator)"] = float(((2 * inter) / (denom + smooth)).mean())
        out[f"a Dice over the whole batch flattened, background channel included (smooth={smooth:g})"] = float((2 * (t * p).sum() + smooth) / (t.sum() + p.sum() + smooth))
        if t.shape[-1] > 1:
            tf, pf = t[..., 1:], p[..., 1:]
            out[f"a Dice over the whole batch flattened, foreground channels only (smooth={smooth:g})"] = float((2 * (tf * pf).sum() + smooth) / (tf.sum() + pf.sum() + smooth))
        axes = (1, 2)
        d = (2 * (t * p).sum(axis=axes) + smooth) / (t.sum(axis=axes) + p.sum(axis=axes) + smooth)
        out[f"a per-image Dice averaged over every channel, background included (smooth={smooth:g})"] = float(d.mean())
    return out


@dataclass
class ProbeVerdict:
    name: str
    kind: str  # "loss" | "metric"
    values: dict[str, float]
    references: dict[str, float]
    defects: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # machine-readable defect kinds
    matches: list[str] = field(default_factory=list)
    similarity: dict[str, float] | None = None

    @property
    def defective(self) -> bool:
        return bool(self.defects)

    @property
    def only_batch_pooled(self) -> bool:
        """The one defect is pooling over the batch: misleading for reporting, not wrong to optimise."""
        return bool(self.kinds) and set(self.kinds) == {"batch-pooled"}


def judge(name: str, values: dict[str, float], probes: list[Probe], channels: int,
          *, variants: dict[str, dict[str, float]] | None = None, declared_kind: str | None = None) -> ProbeVerdict:
    """Compare a function's values on the probes with the reference Dice and list what is wrong."""
    refs = {p.name: p.reference for p in probes}
    v = values
    if declared_kind:
        kind = declared_kind
    elif "loss" in name.lower():
        kind = "loss"
    else:
        kind = "metric" if v["perfect"] >= v["all_background"] else "loss"
    verdict = ProbeVerdict(name, kind, dict(values), refs)

    bad = [k for k, x in v.items() if not np.isfinite(x)]
    if bad:
        verdict.defects.append(f"returns NaN/Inf on: {', '.join(bad)} (a division by zero without a smooth term)")
        verdict.kinds.append("non-finite")
    finite = {k: x for k, x in v.items() if np.isfinite(x)}
    if len(finite) < 3:
        return verdict
    sign = 1.0 if kind == "loss" else -1.0
    badness = {k: sign * x for k, x in finite.items()}
    spread = max(badness.values()) - min(badness.values())
    tol = 1e-6 + 1e-3 * spread
    by_group: dict[str, list[Probe]] = {}
    for p in probes:
        by_group.setdefault(p.group, []).append(p)
    best_of = {"sparse": "perfect", "empty": "empty_perfect", "tiny": "tiny_perfect"}
    for group, members in by_group.items():
        anchor = best_of.get(group)
        if anchor not in badness:
            continue
        for p in members:
            if p.name == anchor or p.name not in badness or p.reference > 0.5:
                continue
            if badness[p.name] <= badness[anchor] + tol:
                verdict.defects.append(
                    f"not minimal at y_pred = y_true: '{p.description}' (reference Dice {p.reference:.2f}) scores "
                    f"{finite[p.name]:.4g}, as good as or better than the correct prediction ({finite[anchor]:.4g})"
                )
                verdict.kinds.append("not-minimal")
    if {"all_background", "half_object"} <= badness.keys() and badness["all_background"] <= badness["half_object"] + tol:
        verdict.defects.append(
            f"ranks an all-background prediction ({finite['all_background']:.4g}) at least as well as half of the objects found "
            f"({finite['half_object']:.4g}): the background dominates the score"
        )
        verdict.kinds.append("background-dominated")

    # Absolute values: only for overlap scores, mapped to a similarity in [0, 1].
    if not DICE_LIKE.search(name):
        return verdict
    vals = np.array(list(finite.values()))
    if kind == "metric":
        sim = dict(finite)
    elif vals.max() <= 0.01 and vals.min() >= -1.01:
        sim = {k: -x for k, x in finite.items()}  # loss = -dice
    elif vals.min() >= -0.01 and vals.max() <= 1.01:
        sim = {k: 1.0 - x for k, x in finite.items()}  # loss = 1 - dice
    else:
        return verdict  # a compound loss (e.g. BCE + Dice): only its ranking can be judged
    verdict.similarity = sim
    if kind == "metric" and (vals.min() < -1e-3 or vals.max() > 1 + 1e-3):
        verdict.defects.append(f"values out of [0, 1]: from {vals.min():.4g} to {vals.max():.4g}")
        verdict.kinds.append("out-of-range")
    if "perfect" in sim and sim["perfect"] < PERFECT_MIN:
        verdict.defects.append(
            f"a perfect prediction scores Dice {sim['perfect']:.3f} instead of 1: the reduction runs over the wrong axes"
        )
        verdict.kinds.append("wrong-axis")
    if "all_background" in sim and sim["all_background"] >= ZERO_MAX:
        verdict.defects.append(
            f"an all-background prediction on sparse masks scores Dice {sim['all_background']:.3f} (reference 0): "
            "background pixels or the background channel dominate"
        )
        verdict.kinds.append("background-dominated")
    fitted = _fit_smooth(sim, probes, channels) if "background-dominated" in verdict.kinds else None
    if fitted is not None:
        # a correct per-image Dice whose smooth term is as large as the objects: the smooth, not the background, is at fault
        keep = [(k, d) for k, d in zip(verdict.kinds, verdict.defects) if k != "background-dominated"]
        verdict.kinds = [k for k, _ in keep]
        verdict.defects = [d for _, d in keep]
        verdict.defects.append(
            f"the smooth term dominates: the values match a per-image Dice with smooth = {fitted:.3g}, so predicting nothing on "
            f"sparse masks already scores {sim['all_background']:.3f} (reference 0)"
        )
        verdict.kinds.append("smooth-dominates")
    smooth_hits = [p for p in ("empty_false_positive", "tiny_missed") if p in sim and sim[p] >= ZERO_MAX]
    if fitted is not None:
        smooth_hits = []
    if smooth_hits and sim.get("all_background", 1.0) < ZERO_MAX:
        verdict.defects.append(
            "the smooth term dominates: " + ", ".join(f"'{refs_desc(probes, p)}' scores {sim[p]:.3f} (reference 0)" for p in smooth_hits)
        )
        verdict.kinds.append("smooth-dominates")
    pooled = sim.get("big_found_small_missed")
    # pooling over the batch is a legitimate loss design (stable gradients); it only misleads as a reported metric
    if kind == "metric" and fitted is None and pooled is not None and pooled - refs["big_found_small_missed"] >= ZERO_MAX:
        verdict.defects.append(
            f"pools pixels over the batch: one large object found and three small ones missed scores {pooled:.3f} "
            f"where the per-image Dice is {refs['big_found_small_missed']:.2f}"
        )
        verdict.kinds.append("batch-pooled")
    order = ["non-finite", "wrong-axis", "background-dominated", "batch-pooled", "smooth-dominates", "out-of-range", "not-minimal"]
    ranked = sorted(zip(verdict.kinds, verdict.defects), key=lambda kd: order.index(kd[0]))
    verdict.kinds = [k for k, _ in ranked]
    verdict.defects = [d for _, d in ranked]
    if variants and verdict.defects:
        for label, series in variants.items():
            diffs = [abs(series[k] - sim[k]) for k in sim if k in series]
            if diffs and max(diffs) < 0.02:
                verdict.matches.append(label)
    return verdict


def _per_image_dice(y_true: np.ndarray, y_pred: np.ndarray, smooth: float) -> float:
    t, p = y_true.astype(np.float64), y_pred.astype(np.float64)
    d = (2 * (t * p).sum(axis=(1, 2)) + smooth) / (t.sum(axis=(1, 2)) + p.sum(axis=(1, 2)) + smooth)
    return float((d if d.shape[-1] == 1 else d[:, 1:]).mean())


def _fit_smooth(sim: dict[str, float], probes: list[Probe], channels: int) -> float | None:
    """The smooth term s for which a per-image spatial Dice reproduces ``sim`` on every probe, if any (s >= 1)."""
    encoded = {p.name: (encode(p.y_true_ids, channels), encode(p.y_pred_ids, channels)) for p in probes if p.name in sim}
    if "all_background" not in encoded:
        return None
    target = sim["all_background"]
    grid = np.logspace(0, 5, 101)
    values = np.array([_per_image_dice(*encoded["all_background"], s) for s in grid])
    s_hat = float(grid[int(np.argmin(np.abs(values - target)))])
    diffs = [abs(_per_image_dice(t, p, s_hat) - sim[name]) for name, (t, p) in encoded.items()]
    return s_hat if max(diffs) < 0.03 else None


def refs_desc(probes: list[Probe], name: str) -> str:
    for p in probes:
        if p.name == name:
            return p.description
    return name


def variant_table(probes: list[Probe], channels: int) -> dict[str, dict[str, float]]:
    """For each usual wrong implementation, its value on every probe (one-hot or one-channel targets)."""
    table: dict[str, dict[str, float]] = {}
    for p in probes:
        for label, value in _variant_values(encode(p.y_true_ids, channels), encode(p.y_pred_ids, channels)).items():
            table.setdefault(label, {})[p.name] = value
    return table


def corrected_dice_snippet(channels: int, *, function_name: str = "dice_coef", loss_name: str = "dice_loss") -> str:
    """A per-image, per-class Dice over the spatial axes for this output, and the matching loss."""
    if channels == 1:
        reduce_line = "    return ops.mean(dice)  # one foreground channel"
        target = "y_true: (batch, H, W, 1) in {0, 1}"
    else:
        reduce_line = (
            f"    # the {channels - 1} foreground classes (channel 0 is background), counting in each image only the\n"
            "    # classes present in the mask or the prediction: an absent class would add a free 1.0\n"
            "    present = ops.cast(denominator[:, 1:] >= 0.5, dice.dtype)\n"
            "    n_present = ops.sum(present, axis=-1)\n"
            "    per_image = ops.where(n_present > 0, ops.sum(dice[:, 1:] * present, axis=-1) / ops.maximum(n_present, 1.0), 1.0)\n"
            "    return ops.mean(per_image)"
        )
        target = f"y_true: one-hot (batch, H, W, {channels}); for integer masks use ops.one_hot(ops.squeeze(ops.cast(y_true, 'int32'), -1), {channels})"
    return (
        "import keras\nfrom keras import ops\n\n"
        f"def {function_name}(y_true, y_pred, smooth=1e-6):\n"
        f"    # {target}\n"
        "    # Dice per image and per class over the spatial axes (1, 2), then averaged.\n"
        "    y_true = ops.cast(y_true, y_pred.dtype)\n"
        "    intersection = ops.sum(y_true * y_pred, axis=(1, 2))\n"
        "    denominator = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))\n"
        "    dice = (2.0 * intersection + smooth) / (denominator + smooth)\n"
        f"{reduce_line}\n\n"
        f"def {loss_name}(y_true, y_pred):\n"
        f"    return 1.0 - {function_name}(y_true, y_pred)\n"
    )
