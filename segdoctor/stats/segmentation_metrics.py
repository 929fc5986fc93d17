"""Segmentation metrics in pure numpy: Dice/IoU per image and class, ROC AUC by ranks, threshold curves,
and rank-based (RankSEG-style) decoding. Inputs are probability maps in [0, 1] and boolean truths.

Everything is per image and mergeable: the prediction accumulator keeps a few numbers and two small
histograms per image, never the probability maps, so memory stays bounded on any dataset size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: thresholds on a logit-spaced grid: dense near 0 and 1, where a collapsed model's probabilities live,
#: and containing 0.5 exactly (logit 0)
THRESHOLDS = 1.0 / (1.0 + np.exp(-np.linspace(-12.0, 12.0, 241)))
THRESHOLDS[120] = 0.5

#: a fine logit-spaced grid (step 0.01 from -16 to 16) for the pooled ROC AUC and rank-based decoding;
#: every 10th of its edges from logit -12 on is an edge of THRESHOLDS, so the coarse histogram is a sum of fine bins
FINE_STEP = 0.01
FINE_LOGITS = np.round(np.arange(-1600, 1601) * FINE_STEP, 10)
AUC_EDGES = 1.0 / (1.0 + np.exp(-FINE_LOGITS))
_COARSE_STARTS = np.concatenate(([0], 401 + 10 * np.arange(241)))


def fine_histograms(prob: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground counts, background counts and probability sums per bin of the fine logit grid.

    Binning by the logit (one floor per pixel) instead of a search over the edges keeps the per-image
    cost linear and small next to the model's own inference. Bin 0 holds logits below -16, bin j holds
    ``FINE_LOGITS[j-1] <= logit < FINE_LOGITS[j]``.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    nb = FINE_LOGITS.size + 1
    with np.errstate(divide="ignore"):
        z = np.log(p) - np.log1p(-p)
    idx = np.clip(np.floor((np.nan_to_num(z, nan=0.0, posinf=1e9, neginf=-1e9) + 16.0) / FINE_STEP + 1e-9), -1, nb - 2).astype(np.int64) + 1
    counts = np.bincount(idx + nb * t, minlength=2 * nb)
    psum = np.bincount(idx, weights=p, minlength=nb)
    return counts[nb:], counts[:nb], psum


def coarse_from_fine(fine: np.ndarray) -> np.ndarray:
    """Counts per bin of ``THRESHOLDS`` (as ``threshold_histograms`` returns them) from fine-grid counts."""
    return np.add.reduceat(np.asarray(fine), _COARSE_STARTS)


def rank_counts_from_histograms(fg: np.ndarray, bg: np.ndarray, psum: np.ndarray, log_empty: float) -> tuple[int, int]:
    """RankSEG-style decoding on the fine histogram: (pixels kept, foreground pixels among them).

    Same objective as ``rank_decode`` (expected Dice 2 * sum(p[:k]) / (k + S) over the top k), evaluated at
    the bin boundaries of the fine grid instead of after a full sort.
    """
    n = (fg + bg)[::-1]
    k = np.cumsum(n)
    top = np.cumsum(psum[::-1])
    total = top[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(k > 0, 2.0 * top / (k + total), -1.0)
    j = int(np.argmax(expected))
    if expected[j] < np.exp(log_empty):
        return 0, 0
    return int(k[j]), int(np.cumsum(fg[::-1])[j])


def dice_score(pred: np.ndarray, truth: np.ndarray, *, empty: float = 1.0) -> float:
    """Dice of two boolean maps, in [0, 1]; ``empty`` when both are empty (nothing to find, nothing found)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return float(empty)
    return 2.0 * int(np.logical_and(p, t).sum()) / denom


def iou_score(pred: np.ndarray, truth: np.ndarray, *, empty: float = 1.0) -> float:
    """Intersection over union of two boolean maps, in [0, 1]."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    union = int(np.logical_or(p, t).sum())
    if union == 0:
        return float(empty)
    return int(np.logical_and(p, t).sum()) / union


def dice_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, empty: float = 1.0) -> np.ndarray:
    """Elementwise Dice from confusion counts; ``empty`` where there is neither truth nor prediction."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1e-300), empty)


def iou_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, empty: float = 1.0) -> np.ndarray:
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denom = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / np.maximum(denom, 1e-300), empty)


def per_class_dice(pred_labels: np.ndarray, true_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice for each class id 0..K-1 of two label maps; NaN where the class is in neither map."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        p = pred_labels == c
        t = true_labels == c
        if p.any() or t.any():
            out[c] = dice_score(p, t)
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) identity, ties counted half; NaN if one class is absent."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_from_histograms(pos_counts: np.ndarray, neg_counts: np.ndarray) -> float:
    """AUC from positive/negative counts in the same ordered score bins (ties within a bin count half)."""
    pos = np.asarray(pos_counts, dtype=np.float64)
    neg = np.asarray(neg_counts, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.concatenate(([0.0], np.cumsum(neg)[:-1]))
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def threshold_histograms(prob: np.ndarray, truth: np.ndarray, *, thresholds: np.ndarray = THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Counts of foreground and background pixels in the bins between consecutive thresholds.

    Bin 0 holds p < thresholds[0], bin i holds thresholds[i-1] <= p < thresholds[i], the last bin p >= thresholds[-1],
    so ``counts[k:].sum()`` is the number of pixels at or above ``thresholds[k-1]``.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    t = np.asarray(truth, dtype=bool).ravel()
    idx = np.searchsorted(thresholds, p, side="right")
    nb = thresholds.size + 1
    return (np.bincount(idx[t], minlength=nb).astype(np.int64), np.bincount(idx[~t], minlength=nb).astype(np.int64))


def counts_at_thresholds(fg_hist: np.ndarray, bg_hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN at every threshold of the grid from per-image histograms of shape (..., len(THRESHOLDS)+1)."""
    fg = np.asarray(fg_hist, dtype=np.int64)
    bg = np.asarray(bg_hist, dtype=np.int64)
    # pixels >= thresholds[k] are those in bins k+1 and above
    tp = np.flip(np.cumsum(np.flip(fg, -1), -1), -1)[..., 1:]
    fp = np.flip(np.cumsum(np.flip(bg, -1), -1), -1)[..., 1:]
    fn = fg.sum(-1, keepdims=True) - tp
    return tp, fp, fn


def rank_decode(prob: np.ndarray) -> np.ndarray:
    """RankSEG-style decoding of one image: keep the top-k pixels that maximise the expected Dice.

    With p sorted in decreasing order and S = sum(p), predicting the top k pixels has expected Dice
    about 2 * sum(p[:k]) / (k + S) (the plug-in approximation of the RankSEG paper, Dai & Li, JMLR 2023);
    predicting nothing scores 1 only when the truth is empty, with probability prod(1 - p).
    """
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    flat = p.ravel()
    if flat.size == 0:
        return np.zeros(p.shape, dtype=bool)
    order = np.argsort(-flat, kind="stable")
    sorted_p = flat[order]
    total = sorted_p.sum()
    k = np.arange(1, flat.size + 1, dtype=np.float64)
    expected = 2.0 * np.cumsum(sorted_p) / (k + total)
    best_k = int(np.argmax(expected)) + 1
    with np.errstate(divide="ignore"):
        p_empty = float(np.exp(np.sum(np.log1p(-np.minimum(sorted_p, 1 - 1e-12)))))
    out = np.zeros(flat.size, dtype=bool)
    if expected[best_k - 1] >= p_empty:
        out[order[:best_k]] = True
    return out.reshape(p.shape)


@dataclass
class BinaryAccumulator:
    """Per-image records for a binary (foreground vs background) prediction, merged batch by batch."""

    threshold: float = 0.5
    names: list[str] = field(default_factory=list)
    n_pixels: list[int] = field(default_factory=list)
    true_fg: list[int] = field(default_factory=list)
    pred_fg: list[int] = field(default_factory=list)
    tp: list[int] = field(default_factory=list)
    rank_tp: list[int] = field(default_factory=list)
    rank_pred: list[int] = field(default_factory=list)
    mean_prob: list[float] = field(default_factory=list)
    std_prob: list[float] = field(default_factory=list)
    max_prob: list[float] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)  # per-image pixel ROC AUC (NaN without both classes)
    fg_hists: list[np.ndarray] = field(default_factory=list)
    bg_hists: list[np.ndarray] = field(default_factory=list)
    # running per-pixel sums over images of one output size, for how much the output changes with the input
    _shape: tuple[int, ...] | None = None
    _sum: np.ndarray | None = None
    _sumsq: np.ndarray | None = None
    _count: int = 0
    _truth_sum: np.ndarray | None = None
    _truth_sumsq: np.ndarray | None = None
    auc_fg: np.ndarray = field(default_factory=lambda: np.zeros(FINE_LOGITS.size + 1, np.int64))
    auc_bg: np.ndarray = field(default_factory=lambda: np.zeros(FINE_LOGITS.size + 1, np.int64))

    def add(self, name: str, prob: np.ndarray, truth: np.ndarray, *, valid: np.ndarray | None = None) -> None:
        """Record one image; pixels where ``valid`` is False (void labels) count for nothing."""
        full_p = np.asarray(prob, dtype=np.float32)
        full_t = np.asarray(truth, dtype=bool)
        if valid is not None:
            keep = np.asarray(valid, dtype=bool)
            p, t = full_p[keep], full_t[keep]
            full_t = full_t & keep
        else:
            p, t = full_p, full_t
        pred = p >= self.threshold
        fg_fine, bg_fine, psum = fine_histograms(p, t)
        with np.errstate(divide="ignore"):
            log_empty = float(np.sum(np.log1p(-np.minimum(p.astype(np.float64), 1 - 1e-12))))
        rank_pred, rank_tp = rank_counts_from_histograms(fg_fine, bg_fine, psum, log_empty)
        self.names.append(name)
        self.n_pixels.append(int(p.size))
        self.true_fg.append(int(t.sum()))
        self.pred_fg.append(int(pred.sum()))
        self.tp.append(int(np.logical_and(pred, t).sum()))
        self.auc.append(roc_auc_from_histograms(fg_fine, bg_fine))
        self.rank_pred.append(rank_pred)
        self.rank_tp.append(rank_tp)
        self.mean_prob.append(float(p.mean()) if p.size else float("nan"))
        self.std_prob.append(float(p.std()) if p.size else float("nan"))
        self.max_prob.append(float(p.max()) if p.size else float("nan"))
        self.fg_hists.append(coarse_from_fine(fg_fine))
        self.bg_hists.append(coarse_from_fine(bg_fine))
        self.auc_fg += fg_fine
        self.auc_bg += bg_fine
        if self._shape is None:
            self._shape = full_p.shape
            self._sum = np.zeros(full_p.shape, np.float64)
            self._sumsq = np.zeros(full_p.shape, np.float64)
            self._truth_sum = np.zeros(full_p.shape, np.float64)
            self._truth_sumsq = np.zeros(full_p.shape, np.float64)
        if full_p.shape == self._shape:
            self._sum += full_p
            self._sumsq += full_p.astype(np.float64) ** 2
            self._truth_sum += full_t
            self._truth_sumsq += full_t
            self._count += 1

    def __len__(self) -> int:
        return len(self.names)

    def last_dice(self) -> float:
        """Dice at the threshold of the most recently added image."""
        tp = self.tp[-1]
        return float(dice_from_counts(tp, self.pred_fg[-1] - tp, self.true_fg[-1] - tp))

    # --- aggregates -----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        a = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("n_pixels", "true_fg", "pred_fg", "tp", "rank_tp", "rank_pred", "mean_prob", "std_prob", "max_prob", "auc")}
        a["fp"] = a["pred_fg"] - a["tp"]
        a["fn"] = a["true_fg"] - a["tp"]
        a["tn"] = a["n_pixels"] - a["tp"] - a["fp"] - a["fn"]
        a["dice"] = dice_from_counts(a["tp"], a["fp"], a["fn"])
        a["iou"] = iou_from_counts(a["tp"], a["fp"], a["fn"])
        a["accuracy"] = (a["tp"] + a["tn"]) / np.maximum(a["n_pixels"], 1)
        a["rank_dice"] = dice_from_counts(a["rank_tp"], a["rank_pred"] - a["rank_tp"], a["true_fg"] - a["rank_tp"])
        a["true_share"] = a["true_fg"] / np.maximum(a["n_pixels"], 1)
        a["pred_share"] = a["pred_fg"] / np.maximum(a["n_pixels"], 1)
        return a

    def dice_curve(self) -> np.ndarray:
        """Mean per-image Dice at each threshold of ``THRESHOLDS`` (images with foreground in the truth)."""
        if not self.fg_hists:
            return np.full(THRESHOLDS.size, np.nan)
        tp, fp, fn = counts_at_thresholds(np.stack(self.fg_hists), np.stack(self.bg_hists))
        dice = dice_from_counts(tp, fp, fn)
        has_fg = np.asarray(self.true_fg) > 0
        rows = dice[has_fg] if has_fg.any() else dice
        return rows.mean(axis=0)

    def pooled_auc(self) -> float:
        """Pooled pixel ROC AUC over every image added (fine logit-spaced bins)."""
        return roc_auc_from_histograms(self.auc_fg, self.auc_bg)

    def pooled_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        return np.sum(self.fg_hists, axis=0), np.sum(self.bg_hists, axis=0)

    def across_image_std(self) -> float:
        """Mean over pixels of the standard deviation of the probability across images (0 = same output for every input)."""
        if self._count < 2 or self._sum is None:
            return float("nan")
        return _mean_std(self._sum, self._sumsq, self._count)

    def truth_across_image_std(self) -> float:
        """The same for the masks: how much a perfect model's output would change across these images."""
        if self._count < 2 or self._truth_sum is None:
            return float("nan")
        return _mean_std(self._truth_sum, self._truth_sumsq, self._count)


def _mean_std(total: np.ndarray, total_sq: np.ndarray, count: int) -> float:
    mean = total / count
    return float(np.sqrt(np.maximum(total_sq / count - mean**2, 0.0)).mean())


def best_threshold(curve: np.ndarray, *, thresholds: np.ndarray = THRESHOLDS) -> tuple[float, float]:
    """(threshold, Dice) maximising a Dice-vs-threshold curve; ties go to the threshold closest to 0.5."""
    c = np.nan_to_num(np.asarray(curve, dtype=np.float64), nan=-1.0)
    best = c.max()
    candidates = np.flatnonzero(c >= best - 1e-12)
    k = candidates[np.argmin(np.abs(thresholds[candidates] - 0.5))]
    return float(thresholds[k]), float(c[k])


@dataclass
class MultiClassAccumulator:
    """Per-image, per-class confusion counts of argmax predictions against a label map (ids >= K ignored)."""

    num_classes: int
    tp: list[np.ndarray] = field(default_factory=list)
    pred: list[np.ndarray] = field(default_factory=list)
    true: list[np.ndarray] = field(default_factory=list)
    valid: list[int] = field(default_factory=list)

    def add(self, pred_labels: np.ndarray, true_labels: np.ndarray) -> None:
        k = self.num_classes
        t = np.asarray(true_labels).ravel().astype(np.int64)
        p = np.asarray(pred_labels).ravel().astype(np.int64)
        keep = (t >= 0) & (t < k)
        t, p = t[keep], p[keep]
        self.true.append(np.bincount(t, minlength=k)[:k])
        self.pred.append(np.bincount(p, minlength=k)[:k])
        self.tp.append(np.bincount(t[p == t], minlength=k)[:k])
        self.valid.append(int(keep.sum()))

    def __len__(self) -> int:
        return len(self.tp)

    def per_class(self) -> dict[str, np.ndarray]:
        """Arrays of shape (images, classes): tp, fp, fn, Dice and IoU (NaN where the class is absent from both)."""
        tp = np.asarray(self.tp, dtype=np.float64).reshape(-1, self.num_classes)
        pred = np.asarray(self.pred, dtype=np.float64).reshape(-1, self.num_classes)
        true = np.asarray(self.true, dtype=np.float64).reshape(-1, self.num_classes)
        fp, fn = pred - tp, true - tp
        return {
            "tp": tp, "fp": fp, "fn": fn, "pred": pred, "true": true,
            "dice": dice_from_counts(tp, fp, fn, empty=np.nan),
            "iou": iou_from_counts(tp, fp, fn, empty=np.nan),
        }
