"""Report sections of check-data for class balance, image values, alignment and splits.

Drawn from the same aggregates the checks use (cached on the context), so they cost no extra pass.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from segdoctor.findings import Figure, Section, Table
from segdoctor.stats.objects import SIZE_BINS


def _pct(x: float) -> str:
    return f"{x * 100:.3g}%"


def balance_section(ctx) -> Section | None:
    from segdoctor.stats.balance import class_balance

    b = class_balance(ctx)
    if b is None:
        return None
    inv, med = b.inverse_frequency_weights(), b.median_frequency_weights()
    rows = tuple((n, _pct(float(s)), int(p), f"{wi:.3g}", f"{wm:.3g}")
                 for n, s, p, wi, wm in zip(b.names, b.shares, b.present_in, inv, med))
    tables = [Table("Classes", ("class", "pixel share", "masks containing it", "inverse-frequency weight",
                                "median-frequency weight"), rows,
                    caption=(f"Void value {b.names[b.classes.index(b.void)] if b.void in b.classes else b.void} left out."
                             if b.void is not None else ""))]
    figures = [Figure("bar", "Pixel share per class", {"labels": b.names, "values": [float(s) for s in b.shares],
                                                        "ylabel": "share of labelled pixels (log)", "log": True})]
    if b.background is not None:
        counts, edges = np.histogram(b.per_mask_foreground_share(), bins=20, range=(0.0, 1.0))
        figures.append(Figure("histogram", "Foreground share per mask",
                              {"edges": edges.tolist(), "counts": counts.tolist(),
                               "xlabel": "share of non-background pixels", "ylabel": "masks"}))
    if b.objects:
        last = int(np.max(np.nonzero(b.object_hist)[0])) + 2
        edges = [float(2 ** k) for k in range(min(last, SIZE_BINS) + 1)]
        figures.append(Figure("histogram", "Object sizes (connected components, foreground classes)",
                              {"edges": edges, "counts": b.object_hist[: len(edges) - 1].tolist(),
                               "xlabel": "pixels (log2 bins)", "ylabel": "objects"}))
    text = (f"{b.n_masks} masks, {b.k} classes; {len(b.empty_masks)} masks hold only background; "
            f"{b.objects} objects, {b.tiny_objects} of them tiny.")
    return Section("Class balance", text=text, tables=tuple(tables), figures=tuple(figures))


def image_section(ctx) -> Section | None:
    kinds: Counter = Counter()
    means, stds, channels = [], [], Counter()
    for _, rec in ctx.items():
        s = rec.get("image_stats")
        if s is None:
            continue
        kinds[s["range_kind"]] += 1
        channels[len(s["channel_mean"])] += 1
        means.append(s["channel_mean"])
        stds.append(s["channel_std"])
    if not kinds:
        return None
    rows = [(k, n) for k, n in kinds.most_common()]
    tables = [Table("Value conventions", ("convention", "images"), tuple(rows))]
    ch = channels.most_common(1)[0][0]
    m = np.asarray([x for x in means if len(x) == ch], dtype=np.float64)
    sd = np.asarray([x for x in stds if len(x) == ch], dtype=np.float64)
    if len(m):
        # pooled over images: total variance = mean within-image variance + variance of the image means
        pooled = np.sqrt((sd**2).mean(axis=0) + m.var(axis=0))
        tables.append(Table("Dataset mean and standard deviation per channel (raw values)",
                            ("channel", "mean", "std"),
                            tuple((str(c), f"{mu:.4g}", f"{s:.4g}") for c, (mu, s) in enumerate(zip(m.mean(axis=0), pooled))),
                            caption=f"Over the {len(m)} images with {ch} channel(s)."))
    return Section("Image values", tables=tuple(tables))


def alignment_section(ctx) -> Section | None:
    from segdoctor.checks.alignment import Z_SIGNAL, _score_figure, alignment_study

    study = alignment_study(ctx)
    if study is None:
        return None
    res = study.result
    signal = res["signal"]
    verdict = ("the masks trace the image edges clearly" if signal >= Z_SIGNAL else
               "the masks' boundaries barely stand out from mismatched pairs here, so misaligned pairs could only be "
               "found when another mask fits clearly better")
    text = (f"{len(study.indices)} of {study.eligible} eligible pairs studied against {res['null'].size} mismatched "
            f"pairs; median alignment z {signal:.1f}: {verdict}.")
    return Section("Image/mask alignment", text=text, figures=(_score_figure(study, "Alignment vs mismatched pairs"),))


def split_section(ctx) -> Section | None:
    splits = ctx.dataset.splits
    if len(splits) < 2:
        return None
    from segdoctor.stats.balance import class_balance

    b = class_balance(ctx)
    fg = {}
    if b is not None and b.background is not None:
        shares = b.per_mask_foreground_share()
        for row, i in enumerate(b.per_mask_index):
            fg.setdefault(ctx.dataset.pairs[i].split, []).append(shares[row])
    rows = []
    for sp in splits:
        n = sum(1 for p in ctx.dataset.pairs if p.split == sp)
        v = fg.get(sp)
        rows.append((sp, n, _pct(float(np.mean(v))) if v else "-"))
    return Section("Splits", tables=(Table("Pairs per split", ("split", "pairs", "mean foreground share"), tuple(rows)),))


def data_sections(ctx) -> list[Section]:
    """The sections that exist for this dataset, in report order."""
    out = []
    for make in (balance_section, image_section, alignment_section, split_section):
        s = make(ctx)
        if s is not None:
            out.append(s)
    return out
