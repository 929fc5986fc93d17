"""Split checks: SD153 split-shift (train and val/test differ in class shares or image statistics) and
SD154 split-leakage (identical or near-identical images in two splits)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from segdoctor.checks._common import py_str
from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.balance import class_balance
from segdoctor.stats.hashing import MAX_COMPARISONS, NEAR_DUPLICATE_BITS, hash_words, near_duplicates

#: SD153: a class's pixel share differs between two splits by this factor ...
SHARE_RATIO = 2.0
#: ... and by at least this much absolute share (tiny classes jitter by large factors)
SHARE_DIFF = 0.02
#: SD153: standardised mean difference (Cohen's d) of per-image brightness or foreground share
EFFECT_SIZE = 1.0
#: ... and an absolute difference of the means of at least this (share of pixels / of full scale): a
#: tight distribution makes d large for differences nobody would act on
MEAN_DIFF = 0.05
#: median image area ratio between splits (a resolution change alters apparent object sizes)
AREA_RATIO = 2.0
#: splits smaller than this are not compared
MIN_SPLIT = 5


def _reference(splits: list[str]) -> str:
    return "train" if "train" in splits else splits[0]


def _cohen_d(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2:
        return 0.0
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    diff = float(a.mean() - b.mean())
    if pooled <= 1e-12:
        return 0.0 if abs(diff) <= 1e-12 else float(np.sign(diff) * np.inf)
    return diff / float(pooled)


def _no_splits(dataset) -> str | None:
    n = len(getattr(dataset, "splits", ()) or ())
    if n >= 2:
        return None
    return ("the dataset has no splits to compare (train/val/test folders)" if n == 0
            else "the dataset has one split only; there is nothing to compare it with")


@register
class SplitShift(Check):
    """The train split and the val/test splits differ in class shares or image statistics.

    *Why it matters*: validation then measures a different problem from the one trained on: scores
    are over- or under-estimated, early stopping and thresholds are tuned on the wrong distribution,
    and a class that is rare in train but common in val looks like a model failure.

    *How to fix*: re-split stratified by foreground share (and by source: patient, scanner, video),
    or, if the shift is real (a new site), report it and keep it as a deliberate test.

    Thresholds (each split with >= 5 masks): a class whose pixel share differs by a factor >= 2 and by
    >= 2 percentage points; per-image foreground share, mean brightness or contrast (std) differing by
    a standardised mean difference (Cohen's d) >= 1 (a large effect) *and* by >= 5 points (of pixel
    share / of full scale) in the means, since tight distributions make d large for differences
    nobody would act on; or median image areas differing by a factor >= 2. Real data in
    ../shared/realdata has no labelled second split; calibrated on splits of the 30 ISBI membrane
    slices: random 22/8 splits stay quiet (20 seeds), a contiguous split of the stack has d = 1.5 but
    only 3 points of foreground share (quiet), a split by brightness fires.
    """

    code = "SD153"
    name = "split-shift"
    severity = Severity.WARNING
    scope = "data"

    @classmethod
    def skip_reason(cls, dataset) -> str | None:
        return _no_splits(dataset)

    def run(self, ctx) -> Iterator[Finding]:
        splits = ctx.dataset.splits
        if _no_splits(ctx.dataset):  # run() called directly; the runner skips it before
            return
        ref = _reference(splits)
        split_of = [p.split for p in ctx.dataset.pairs]
        b = class_balance(ctx)
        brightness: dict[str, list[float]] = defaultdict(list)
        contrast: dict[str, list[float]] = defaultdict(list)
        area: dict[str, list[float]] = defaultdict(list)
        for i, (_, rec) in enumerate(ctx.items()):
            s, info = rec.get("image_stats"), rec.get("image_info")
            if s is not None and split_of[i]:
                scale = 255.0 if s["range_kind"] in ("uint8 0-255", "uint16 with 8-bit content", "float 0-255") else (
                    max(abs(s["max"]), abs(s["min"]), 1e-12))
                brightness[split_of[i]].append(float(np.mean(s["channel_mean"])) / scale)
                contrast[split_of[i]].append(float(s["relative_std"]))
            if info is not None and split_of[i]:
                area[split_of[i]].append(float(info["height"]) * float(info["width"]))
        shares: dict[str, np.ndarray] = {}
        fg: dict[str, np.ndarray] = {}
        files: dict[str, list[str]] = defaultdict(list)
        if b is not None:
            per_split = defaultdict(list)
            for row, i in enumerate(b.per_mask_index):
                if split_of[i]:
                    per_split[split_of[i]].append(row)
            fgs = b.per_mask_foreground_share()
            for sp, rows in per_split.items():
                c = b.per_mask_counts[rows].sum(axis=0)
                shares[sp] = c / max(c.sum(), 1)
                fg[sp] = fgs[rows]
        problems, evidence = [], {}
        for other in splits:
            if other == ref:
                continue
            n_ref = len(fg.get(ref, ())) or len(brightness.get(ref, ()))
            n_oth = len(fg.get(other, ())) or len(brightness.get(other, ()))
            if n_ref < MIN_SPLIT or n_oth < MIN_SPLIT:
                continue
            if ref in shares and other in shares:
                for k, name in enumerate(b.names):
                    a, c = float(shares[ref][k]), float(shares[other][k])
                    hi, lo = max(a, c), min(a, c)
                    if hi - lo >= SHARE_DIFF and (lo == 0 or hi / lo >= SHARE_RATIO):
                        problems.append(f"class {name}: {a:.1%} of {ref} pixels vs {c:.1%} of {other}")
                        evidence[f"share[{name}] {ref}/{other}"] = f"{a:.4f} / {c:.4f}"
                if b.background is not None:
                    d = _cohen_d(fg[ref], fg[other])
                    evidence[f"foreground_share_d {ref}/{other}"] = round(d, 2)
                    if abs(d) >= EFFECT_SIZE and abs(fg[ref].mean() - fg[other].mean()) >= MEAN_DIFF:
                        problems.append(f"per-image foreground share: mean {fg[ref].mean():.1%} in {ref} vs "
                                        f"{fg[other].mean():.1%} in {other} (d = {d:.1f})")
            for label, values in (("image brightness", brightness), ("image contrast (std)", contrast)):
                if values.get(ref) and values.get(other):
                    x, y = np.asarray(values[ref]), np.asarray(values[other])
                    d = _cohen_d(x, y)
                    evidence[f"{label.split()[1]}_d {ref}/{other}"] = round(d, 2)
                    if abs(d) >= EFFECT_SIZE and abs(x.mean() - y.mean()) >= MEAN_DIFF:
                        problems.append(f"{label}: mean {x.mean():.2f} in {ref} vs {y.mean():.2f} in {other} "
                                        f"(of full scale, d = {d:.1f})")
            if area.get(ref) and area.get(other):
                a_ref, a_oth = float(np.median(area[ref])), float(np.median(area[other]))
                evidence[f"median_pixels {ref}/{other}"] = f"{a_ref:.0f} / {a_oth:.0f}"
                if max(a_ref, a_oth) >= AREA_RATIO * min(a_ref, a_oth):
                    problems.append(f"image size: median {a_ref:,.0f} px in {ref} vs {a_oth:,.0f} px in {other}")
        if not problems:
            return
        for sp in splits:
            files[sp] = [ctx.display(p) for p in ctx.dataset.pairs if p.split == sp]
        figures = []
        if b is not None and len(shares) >= 2:
            series = []
            edges = np.linspace(0, 1, 21)
            for sp in splits:
                if sp in fg and len(fg[sp]):
                    c, _ = np.histogram(fg[sp], bins=edges)
                    series.append({"label": f"{sp} ({len(fg[sp])})", "edges": edges.tolist(),
                                   "counts": (c / max(c.sum(), 1)).tolist()})
            if b.background is not None and series:
                figures.append(Figure("histogram", "Foreground share per mask, by split",
                                      {"series": series, "xlabel": "share of non-background pixels",
                                       "ylabel": "share of masks"}))
        evidence.update({f"masks[{sp}]": len(files[sp]) for sp in splits})
        evidence["differences"] = "; ".join(problems)
        snippet = (
            "import numpy as np\n\n"
            "# fg_share[i] = np.mean(mask_i != 0) for every pair of the pooled dataset\n"
            "def stratified_split(fg_share, val_fraction=0.2, bins=4, seed=0):\n"
            "    fg_share = np.asarray(fg_share)\n"
            "    edges = np.quantile(fg_share, np.linspace(0, 1, bins + 1)[1:-1])\n"
            "    strata = np.digitize(fg_share, edges)\n"
            "    rng = np.random.default_rng(seed)\n"
            "    val = [rng.permutation(np.flatnonzero(strata == s))[: int(round(val_fraction * np.sum(strata == s)))]\n"
            "           for s in np.unique(strata)]\n"
            "    val = np.sort(np.concatenate(val))\n"
            "    return np.setdiff1d(np.arange(len(fg_share)), val), val  # train indices, val indices\n"
        )
        yield self.finding(
            title="Splits differ: " + "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""),
            evidence=evidence,
            why=("Validation then measures a different problem from the one trained on: scores, early stopping "
                 "and thresholds are tuned on the wrong distribution."),
            fix=("Re-split stratified by foreground share (and grouped by source: patient, scanner, video); if the "
                 "shift is deliberate (a new site), keep it as a separate test set and say so."),
            snippet=snippet,
            files=[f for sp in splits if sp != ref for f in files[sp]],
            figures=figures,
        )


@register
class SplitLeakage(Check):
    """The same image (or a re-encoded, resized or brightness-shifted copy) appears in two splits.

    *Why it matters*: the model is evaluated on images it trained on, so validation and test scores
    are optimistic and model selection rewards memorisation.

    *How to fix*: keep each image (and its near-copies) in exactly one split; remove the listed
    duplicates from val/test (or from train), then re-evaluate.

    How it is judged: a 256-bit difference hash (16x16 gradient signs of a gray thumbnail) per image;
    pairs from different splits within 24 differing bits are near-identical, with equal content
    digests identical. Measured on ../shared/realdata: JPEG re-encoding, halving the size, brightness
    +-20 and sensor noise change 0-11 bits; unrelated images differ by >= 60 bits (even consecutive
    ISBI EM slices) and 78-129 (Kvasir). Crops with re-scaling are not detected. At most 100M
    cross-split comparisons (a seeded subsample of the larger split beyond).
    """

    code = "SD154"
    name = "split-leakage"
    severity = Severity.ERROR
    scope = "data"
    uses = ("image_hashes",)

    @classmethod
    def skip_reason(cls, dataset) -> str | None:
        return _no_splits(dataset)

    def run(self, ctx) -> Iterator[Finding]:
        splits = ctx.dataset.splits
        if _no_splits(ctx.dataset):  # run() called directly; the runner skips it before
            return
        by_split: dict[str, list[int]] = defaultdict(list)
        for i, (pair, rec) in enumerate(ctx.items()):
            if pair.split and rec.get("image_hash") is not None:
                by_split[pair.split].append(i)
        recs = ctx.records
        pairs = ctx.dataset.pairs
        hits = []
        compared = possible = 0
        rng = np.random.default_rng(0)
        names = sorted(by_split)
        for x in range(len(names)):
            for y in range(x + 1, len(names)):
                ia, ib = by_split[names[x]], by_split[names[y]]
                possible += len(ia) * len(ib)
                if len(ia) * len(ib) > MAX_COMPARISONS:
                    if len(ia) >= len(ib):
                        ia = sorted(rng.choice(ia, max(1, MAX_COMPARISONS // len(ib)), replace=False).tolist())
                    else:
                        ib = sorted(rng.choice(ib, max(1, MAX_COMPARISONS // len(ia)), replace=False).tolist())
                compared += len(ia) * len(ib)
                wa = hash_words([recs[i]["image_hash"] for i in ia])
                wb = hash_words([recs[i]["image_hash"] for i in ib])
                for a, c, d in near_duplicates(wa, wb):
                    i, j = ia[a], ib[c]
                    identical = d == 0 and recs[i].get("image_digest") == recs[j].get("image_digest")
                    hits.append((i, j, d, identical))
        if not hits:
            return
        n_identical = sum(1 for h in hits if h[3])
        involved = sorted({k for i, j, _, _ in hits for k in (i, j)})
        ref = _reference(splits)
        files = [ctx.display(pairs[k], "image") for k in involved]
        examples = []
        for i, j, d, ident in hits[:3]:
            for k in (i, j):
                examples.append({"image": str(pairs[k].image), "mask": str(pairs[k].mask) if pairs[k].mask else None,
                                 "caption": f"{pairs[k].split}: {ctx.display(pairs[k], 'image')} ({d} bits)"})
        drop = sorted({ctx.display(pairs[j] if pairs[j].split != ref else pairs[i], "image") for i, j, _, _ in hits})
        sampled = f" (compared {compared:,} of {possible:,} cross-split pairs)" if compared < possible else ""
        n_images = sum(len(v) for v in by_split.values())
        yield self.finding(
            title=(f"{len(hits)} image pairs are shared between splits ({n_identical} identical, "
                   f"{len(hits) - n_identical} near-identical); {len(involved)} of {n_images} images involved{sampled}"),
            evidence={"duplicate_pairs": len(hits), "identical": n_identical, "near_identical": len(hits) - n_identical,
                      "images_involved": len(involved), "comparisons": compared, "possible_comparisons": possible,
                      "max_bits": NEAR_DUPLICATE_BITS,
                      **{f"images[{s}]": len(v) for s, v in sorted(by_split.items())}},
            why=("The model is evaluated on images it was trained on: validation and test scores are optimistic and "
                 "model selection rewards memorisation."),
            fix=f"Keep each image and its near-copies in one split: remove the listed copies outside '{ref}' and re-evaluate.",
            snippet="# copies outside the reference split, to remove (or move into it):\n"
                    + "\n".join(f"#   {py_str(f)}" for f in drop[:50]) + ("\n#   ..." if len(drop) > 50 else "") + "\n",
            files=files,
            figures=[Figure("pairs", "Shared images (each pair of rows is one match)", {"items": examples})],
        )
