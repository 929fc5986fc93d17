"""Pipeline checks (SD301-SD307): defects the user's loading code puts into the batches.

They read a ``PipelineContext``: the records of the samples the pipeline yielded (the same records as the
file scan, see ``segdoctor.stats.pipeline``), their thumbnails, and optionally the files (``--data``), the
validation pipeline (``--val``) and the model (``--model``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from segdoctor.checks._common import of
from segdoctor.checks.pipeline_fixes import framework, one_hot_snippet, pipeline_snippet
from segdoctor.context import DataContext, DataOptions
from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.pipeline import (
    ImageSummary,
    TargetSummary,
    foreground_shares,
    image_summary,
    target_summary,
)
from segdoctor.stats.pipeline_alignment import (
    TRANSFORM_WORDS,
    Z_NO_SIGNAL,
    Z_SIGNAL,
    PairStudy,
    study_pipeline_pairs,
)

#: samples shown in a finding's figure
EXAMPLES = 4
#: SD301: samples whose mask fits only after a transform, shift or as another sample's mask must reach this count and share
MIN_AFFECTED, MIN_AFFECTED_SHARE = 2, 0.05
#: SD301: samples that look mismatched (no explanation) while the batches show signal
MIN_NULL, MIN_NULL_SHARE = 3, 0.1
#: SD301: samples needed to judge "no sample fits" at all
MIN_NO_SIGNAL_SAMPLES = 8
#: SD304: all values of the float images within this of 0 (a second / 255), or a range this small
TWICE_SCALED_REACH = 1.0 / 255.0 * 1.01
TINY_SPAN = 0.02
#: SD304: an offset this many times the content's spread (caffe means subtracted from [0, 1] data)
OFFSET_RATIO = 20.0
#: SD305: the share of empty samples at or above which batches are starved without reference
STARVED_EMPTY_SHARE = 0.8
#: SD305: against the files, the share of samples with foreground must fall to this fraction and by this much
FILES_RATIO, FILES_DROP = 0.6, 0.25
MIN_SD305_SAMPLES = 16
#: SD306: train and val typical image scales (median max |value|) differing by this factor
SCALE_RATIO = 8.0
#: SD307: input scaling scores (Dice) that make another scaling clearly better
MIN_BEST_DICE, MIN_DICE_GAIN, DICE_RATIO = 0.3, 0.1, 1.5
#: SD307: under that scaling the model must be trained: its loss at most this share of a constant prior prediction's
TRAINED_LOSS_RATIO = 0.5


@dataclass
class PipelineSource:
    """One pipeline (train or val): how it was read and the per-sample records of its batches."""

    split: str
    label: str  # what the user named, for messages
    kind: str  # the kind of object (tf.data.Dataset, generator ...)
    ctx: DataContext  # the samples as a data context: ctx.records[i] is sample ids[i]
    ids: list[str]
    thumbs: dict[str, tuple[np.ndarray, np.ndarray | None]]
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    x_shapes: dict = field(default_factory=dict)
    y_shapes: dict = field(default_factory=dict)
    w_shapes: dict = field(default_factory=dict)

    @property
    def records(self) -> list[dict]:
        return self.ctx.records

    @property
    def framework(self) -> str:
        return framework(self.kind)

    @cached_property
    def targets(self) -> TargetSummary:
        return target_summary(self.records)

    @cached_property
    def images(self) -> ImageSummary:
        return image_summary(self.records)

    @cached_property
    def foreground(self) -> np.ndarray:
        return foreground_shares(self.records)

    @cached_property
    def pair_study(self) -> PairStudy | None:
        from segdoctor.stats.alignment import stored_edges

        idx = []
        for i, rec in enumerate(self.records):
            a = rec.get("align")
            if a is None or a.get("dropped") or not np.any(a["boundary"]):
                continue
            if (rec.get("image_stats") or {}).get("near_constant"):
                continue
            idx.append(i)
        if len(idx) < 3:
            return None
        edges = stored_edges(np.stack([self.records[i]["align"]["edges"] for i in idx]))
        bounds = np.stack([self.records[i]["align"]["boundary"] for i in idx])
        square = np.array([self.records[i]["align"]["square"] for i in idx])
        return study_pipeline_pairs(edges, bounds, square, idx)

    def name(self, i: int) -> str:
        return self.ids[i]


@dataclass
class PipelineContext:
    """What the pipeline checks read."""

    train: PipelineSource
    val: PipelineSource | None = None
    files: DataContext | None = None
    model: Any = None  # segdoctor.io.pipeline_model.ModelProbe
    options: DataOptions = field(default_factory=DataOptions)

    @property
    def sources(self) -> list[PipelineSource]:
        return [s for s in (self.train, self.val) if s is not None]

    @cached_property
    def files_signal(self) -> float | None:
        """Median alignment z of the files' own pairs (``--data``), or None."""
        if self.files is None:
            return None
        from segdoctor.checks.alignment import alignment_study

        study = alignment_study(self.files)
        return None if study is None else float(study.result["signal"])


def _where(src: PipelineSource) -> str:
    return f"the {src.split} pipeline"


def _samples(src: PipelineSource, idx: list[int]) -> list[str]:
    return [src.ids[i] for i in idx]


def sample_figure(src: PipelineSource, items: list[tuple[int, str]], title: str) -> Figure | None:
    """Image | mask | overlay rows for the given (record index, caption), drawn from the kept thumbnails."""
    rows = []
    for i, caption in items:
        thumb = src.thumbs.get(src.ids[i])
        if thumb is None:
            continue
        rows.append({"image": thumb[0], "label": thumb[1], "caption": f"{src.ids[i]}: {caption}"})
        if len(rows) >= EXAMPLES:
            break
    return Figure("samples", title, {"items": rows}) if rows else None


def _figures(*figs: Figure | None) -> list[Figure]:
    return [f for f in figs if f is not None]


def _fmt_values(values, limit: int = 8) -> str:
    vals = sorted(values)
    return "{" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals[:limit]) + \
        (", …" if len(vals) > limit else "") + "}"


def files_value_set(ctx: DataContext | None) -> str | None:
    """The files' mask values (``--data``) as a set, for "files {0, 1}; batches {0, 0.0039}"."""
    if ctx is None:
        return None
    s = ctx.labels
    vals = s.class_values or sorted(s.value_table)
    return _fmt_values([int(v) if float(v).is_integer() else float(v) for v in vals]) if vals else None


# ---------------------------------------------------------------------------------------------- SD301


@register
class PipelinePairMismatch(Check):
    """In the batches the mask no longer fits its image: one-sided or separately drawn augmentation, mismatched pairs.

    Augmentation applied to one side only or with separate random draws, generators out of step, image and
    mask lists shuffled or sorted separately.

    *Why it matters*: every mismatched sample teaches the network to draw boundaries where its image shows
    none. Random flips drawn separately for image and mask corrupt about half the samples of every epoch;
    shuffled lists corrupt all of them. The files on disk are fine, so nothing else notices.

    *How to fix*: transform image and mask in one call with one random draw (stack them and transform the
    stack, one stateless seed for both, ``aug(image=x, mask=y)`` in albumentations, the same arguments and
    seed for two ``ImageDataGenerator`` flows, never ``flow(X, Y)`` with masks as ``Y``); zip image and mask
    paths before shuffling and pair them by name.

    How it is judged: the content score of SD251 on the batches. Per sample, the image's edge energy on its
    mask's class boundaries (64x64 maps) as a robust z above a null of deliberately mismatched pairs of the
    same batches (each image with the other samples' masks, and masks shifted by 1/8 of the side). A sample's
    mask does not fit when one of these fits far better (z >= max(6, sqrt(2 ln n_null) + 2) and >= 4 above
    its own): its own mask flipped, rotated or transposed (the transform is named, with the share of samples
    it explains), its own mask moved by an offset (best of offsets up to 1/4 of the side, judged against the
    best offsets of mismatched pairs), another sample's mask; or, when the batches otherwise show that masks
    trace edges (median z >= 6), its own mask scores like a mismatched pair (z < 2.5). Error when at least 2
    samples and 5% are explained this way, or 3 samples and 10% look mismatched. When no sample's mask fits
    at all (median z < 1 over >= 8 samples): error if the files (``--data``) show that their masks trace
    edges (median z >= 6), else a warning (the masks may not follow visible edges).
    Calibrated on blob images and ../shared/realdata ISBI membranes (64 samples, 64-128 px): correct
    pipelines with joint flips have median z 15-38 and no sample flagged; independent flips flag 45-52% of
    samples, independent 90-degree rotations 75%, separately shuffled or lexically sorted lists 90-100%.
    """

    code = "SD301"
    name = "pipeline-pair-mismatch"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            yield from self._run(ctx, src)

    def _run(self, ctx: PipelineContext, src: PipelineSource) -> Iterator[Finding]:
        study = src.pair_study
        if study is None:
            return
        n = study.n
        affected = study.affected()
        explained = [k for k in affected if study.explanation[k] != "null"]
        nulls = [k for k in affected if study.explanation[k] == "null"]
        fires = (len(explained) >= max(MIN_AFFECTED, MIN_AFFECTED_SHARE * n)
                 or len(nulls) >= max(MIN_NULL, MIN_NULL_SHARE * n))
        files_signal = ctx.files_signal
        median_own = float(np.nanmedian(study.z_own)) if np.isfinite(study.z_own).any() else 0.0
        no_signal = n >= MIN_NO_SIGNAL_SAMPLES and study.signal < Z_NO_SIGNAL
        evidence: dict[str, Any] = {
            "pipeline": src.label, "samples_studied": n, "samples_affected": len(affected),
            "median_alignment_z": round(median_own, 2), "median_z_after_explanations": round(study.signal, 2),
            "null_pairs": int(study.null.size), "z_better": round(study.z_better, 2),
        }
        if files_signal is not None:
            evidence["files_median_alignment_z"] = round(files_signal, 2)
        for name, count in sorted(study.counts.items(), key=lambda kv: -kv[1]):
            evidence[f"samples[{name}]"] = count
        if fires:
            yield self._mismatch(src, study, affected, explained, evidence)
        elif no_signal:
            strong_files = files_signal is not None and files_signal >= Z_SIGNAL
            if files_signal is not None and not strong_files:
                return  # the files' masks do not trace edges either: nothing to compare against
            yield self._no_fit(src, study, evidence, strong_files, files_signal)

    def _mismatch(self, src: PipelineSource, study: PairStudy, affected: list[int], explained: list[int],
                  evidence: dict[str, Any]) -> Finding:
        n = study.n
        by_kind: dict[str, list[int]] = {}
        for k in affected:
            by_kind.setdefault(study.explanation[k], []).append(k)
        transforms = {t: ks for t, ks in by_kind.items() if t in TRANSFORM_WORDS}
        parts = []
        for t, ks in sorted(transforms.items(), key=lambda kv: -len(kv[1])):
            parts.append(f"the image {TRANSFORM_WORDS[t]} against its mask in {of(len(ks), n)} samples ({len(ks) / n:.0%})")
        if "shift" in by_kind:
            ks = by_kind["shift"]
            dy, dx = np.median(study.offset[ks], axis=0)
            parts.append(f"the mask offset from its image in {of(len(ks), n)} samples ({len(ks) / n:.0%}, median "
                         f"{abs(int(dy)) + abs(int(dx))} map cells of {64})")
        if "other" in by_kind:
            ks = by_kind["other"]
            parts.append(f"another sample's mask fits the image far better in {of(len(ks), n)} samples ({len(ks) / n:.0%})")
        if "null" in by_kind:
            ks = by_kind["null"]
            parts.append(f"the mask scores like a mismatched pair in {of(len(ks), n)} samples")
        title = f"In {_where(src)}, masks no longer fit their images: " + "; ".join(parts)
        topics = []
        if transforms or "shift" in by_kind:
            topics.append("joint")
        if "other" in by_kind or "null" in by_kind:
            topics.append("pairing")
        snippet = "\n\n".join(pipeline_snippet(t, src.kind) for t in topics)
        causes = []
        if transforms:
            causes.append("random flips/rotations drawn separately for image and mask (or applied to one of them)")
        if "shift" in by_kind:
            causes.append("a random shift or crop applied to one side only")
        if "other" in by_kind or "null" in by_kind:
            causes.append("image and mask lists shuffled or sorted separately, or two generators out of step")
        order = sorted(affected, key=lambda k: study.z_own[k])
        evidence["samples"] = [src.ids[study.indices[k]] for k in order]

        def caption(k: int) -> str:
            e = study.explanation[k]
            what = {"shift": "fits after a shift", "other": "another sample's mask fits",
                    "null": "fits like a mismatched pair"}.get(e, f"fits after a {e}")
            return f"z {study.z_own[k]:.1f}; {what} (z {study.z_fit[k]:.1f})"

        return self.finding(
            title=title,
            evidence=evidence,
            why=("Each of these samples trains the network on a mask that is not its image's: it learns to draw "
                 "boundaries where the image has none. Likely cause: " + "; ".join(causes) + "."),
            fix=("Transform image and mask in one call with one random draw, and pair them before any shuffle."
                 if transforms or "shift" in by_kind else
                 "Pair images and masks by name and shuffle the pairs, never the two lists separately."),
            snippet=snippet,
            figures=_figures(sample_figure(src, [(study.indices[k], caption(k)) for k in order], "Mismatched samples"),
                             alignment_figure(study)),
            related=("SD251", "SD252"),
        )

    def _no_fit(self, src: PipelineSource, study: PairStudy, evidence: dict[str, Any], strong_files: bool,
                files_signal: float | None) -> Finding:
        n = study.n
        evidence["samples"] = [src.ids[i] for i in study.indices]
        if strong_files:
            title = (f"In {_where(src)}, no mask fits its image better than other images' masks (median alignment z "
                     f"{study.signal:.1f} over {n} samples) while the files' masks trace their images (median z "
                     f"{files_signal:.1f}): the pipeline mismatches the pairs")
            severity = Severity.ERROR
        else:
            title = (f"In {_where(src)}, the masks fit their images no better than masks laid over other images "
                     f"(median alignment z {study.signal:.1f} over {n} samples): the pairs look mismatched")
            severity = Severity.WARNING
        return self.finding(
            title=title,
            severity=severity,
            evidence=evidence,
            why=("Masks normally follow visible edges of their images; these do not, as if every image got another "
                 "image's mask (lists shuffled or sorted separately, generators out of step)."
                 + ("" if strong_files else " Run with --data DIR to compare with the files: if their masks do "
                    "trace edges, the loader mismatches the pairs.")),
            fix="Pair images and masks by name and shuffle the pairs, never the two lists separately.",
            snippet=pipeline_snippet("pairing", src.kind),
            figures=_figures(sample_figure(src, [(i, f"z {z:.1f}") for i, z in zip(study.indices, study.z_own)],
                                           "Samples as the pipeline pairs them"), alignment_figure(study)),
            related=("SD251",),
        )


def alignment_figure(study: PairStudy) -> Figure:
    null_z = (study.null - study.null_median) / study.null_scale
    own = study.z_own[np.isfinite(study.z_own)]
    hi = float(max(np.max(own, initial=0), np.percentile(null_z, 99.9) if null_z.size else 0, Z_SIGNAL)) + 1
    lo = float(min(np.min(own, initial=0), np.percentile(null_z, 0.1) if null_z.size else 0)) - 1
    edges = np.linspace(lo, hi, 41)
    c_null, _ = np.histogram(null_z, bins=edges)
    c_own, _ = np.histogram(own, bins=edges)
    return Figure("histogram", "Alignment of each sample vs mismatched pairs of the same batches", {
        "series": [
            {"label": f"mismatched pairs (null, {null_z.size})", "edges": edges.tolist(),
             "counts": (c_null / max(c_null.sum(), 1)).tolist()},
            {"label": f"the batches' pairs ({own.size})", "edges": edges.tolist(),
             "counts": (c_own / max(c_own.sum(), 1)).tolist()},
        ],
        "xlabel": "alignment score (robust z above the null median)", "ylabel": "share",
    }, caption="Image edge strength on the mask's class boundaries (64x64 maps), relative to masks laid over other "
               "images of the same batches or shifted.")


# ---------------------------------------------------------------------------------------------- SD302


@register
class MaskRescaled(Check):
    """Target values scaled into (0, 1) that are not probabilities: {0, 1/255}, {0, k/255}, class ids divided by 255.

    *Why it matters*: dividing the mask by 255 "like the image" turns class 1 into 0.0039. Binary
    cross-entropy then asks for a foreground probability of 0.4%, Dice sees almost no foreground, and the
    model learns to predict blank masks; class ids divided by 255 lose the classes altogether (and a later
    cast to integers makes every mask empty).

    *How to fix*: never rescale masks. With ``ImageDataGenerator``, give ``rescale=1/255`` to the image
    generator only; in tf.data, divide the image, not the mask.

    Fires when the values that fill regions in the targets are fractional and become integers again when
    multiplied by one constant (255, 65535, or 1 / the smallest non-zero value): class ids divided by that
    constant. Label smoothing ({0.05, 0.95}: a + b = 1) and soft values on class boundaries only
    (interpolation, SD106) are not rescaled ids. The record behind every mask check sees the ids recovered
    (x 255), so SD101/SD106 judge the ids themselves.
    """

    code = "SD302"
    name = "mask-rescaled"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            t = src.targets
            if not t.rescaled:
                continue
            divisor, idx = max(t.rescaled.items(), key=lambda kv: len(kv[1]))
            affected = sorted({i for ks in t.rescaled.values() for i in ks})
            ids = sorted(t.rescaled_ids)
            scaled = _fmt_values([round(i / divisor, 6) for i in ids])
            div = "255" if divisor == 255 else ("65535" if divisor == 65535 else f"{divisor:g}")
            files = files_value_set(ctx.files)
            evidence: dict[str, Any] = {"pipeline": src.label, "divisor": divisor, "batch_values": t.value_set(),
                                        "class_ids": _fmt_values(ids), "samples_affected": len(affected),
                                        "samples": [src.ids[i] for i in affected]}
            if files is not None:
                evidence["file_values"] = files
            where = f"files {files}; batches {t.value_set()}" if files else f"batches {t.value_set()}"
            yield self.finding(
                title=(f"In {_where(src)}, {of(len(affected), t.samples)} targets hold class ids divided by {div}: "
                       f"{scaled} instead of {_fmt_values(ids)} ({where}): the masks are rescaled like the images"),
                evidence=evidence,
                why=(f"A foreground target of {1 / divisor:.4g} asks the model for a {1 / divisor:.2%} foreground "
                     "probability: the loss pushes every prediction to background (blank masks); multi-class ids "
                     "lose their classes."),
                fix=f"Do not divide the masks by {div}; rescale the images only.",
                snippet=pipeline_snippet("rescale", src.kind),
                figures=_figures(sample_figure(src, [(i, f"values x {div} = {_fmt_values(ids)}") for i in affected],
                                               "Rescaled targets")),
                related=("SD101", "SD108"),
            )


# ---------------------------------------------------------------------------------------------- SD303


@register
class TargetEncoding(Check):
    """The targets are encoded in a way the loss cannot read: one-hot zero rows, an extra axis, a wrong depth or format.

    One-hot rows that do not sum to 1, an extra axis, a depth that is not the class count, targets that fit
    neither the model's output nor its loss.

    *Why it matters*: ``tf.one_hot`` of an id at or above ``depth`` (255 in a {0, 255} mask) gives a row of
    zeros, silently: those pixels ask for no class at all and the foreground disappears from the loss.
    ``tf.one_hot`` of an (H, W, 1) mask gives (H, W, 1, C); sparse ids with a categorical loss (or one-hot
    with a sparse loss) are broadcast or refused; a loss whose value at the perfect prediction is not its
    smallest value cannot be minimised towards the targets.

    *How to fix*: remap ids to 0..K-1 before ``one_hot`` (binarise {0, 255} masks first), squeeze the channel
    axis first, use the real class count as depth, and pair sparse ids with ``SparseCategoricalCrossentropy``
    and one-hot targets with ``CategoricalCrossentropy``.

    Rules: one-hot targets (values in [0, 1], rows summing to 1 or 0) with zero rows on >= 0.1% of their
    pixels, or rows summing to other values; fractional one-hot values that are not label smoothing
    (interpolated after one_hot); 5-D targets (B, H, W, 1, C); depth != ``--num-classes``; targets that are
    neither ids, one-hot nor a colour mask. With ``--model``: depth != output channels, ids >= output
    channels, targets that cannot be laid over the output, a compiled loss that fails on the targets, or
    whose value at y_pred = y_true is above its value at another prediction (a 10% blend towards uniform,
    the class prior, the model's own prediction), or negative for a built-in cross-entropy/Dice loss.
    Soft targets from label smoothing ({eps/C, 1 - eps + eps/C}) are expected and not reported (the report
    lists the smoothing).
    """

    code = "SD303"
    name = "target-encoding"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            yield from self._encoding(ctx, src)
        if ctx.model is not None:
            yield from self._model(ctx, ctx.train)

    def _encoding(self, ctx: PipelineContext, src: PipelineSource) -> Iterator[Finding]:
        t = src.targets
        where = _where(src)
        depth = t.depths.most_common(1)[0][0] if t.depths else None
        files = files_value_set(ctx.files)
        if t.zero_row_samples and t.zero_rows >= 1e-3 * max(t.onehot_pixels, 1):
            share = t.zero_rows / max(t.onehot_pixels, 1)
            binary = files is not None and ctx.files is not None and 255 in set(ctx.files.labels.class_values)
            ev = {"pipeline": src.label, "depth": depth, "zero_row_pixels": t.zero_rows, "one_hot_pixels": t.onehot_pixels,
                  "zero_row_share": round(share, 4), "samples_affected": len(t.zero_row_samples),
                  "samples": _samples(src, t.zero_row_samples)}
            if files:
                ev["file_values"] = files
            yield self.finding(
                title=(f"In {where}, {share:.1%} of the one-hot target pixels are rows of zeros ({of(len(t.zero_row_samples), t.samples)} "
                       f"samples, depth {depth}): ids outside 0..{(depth or 1) - 1} were one-hot encoded"
                       + (f" (the files hold {files})" if files else "")),
                evidence=ev,
                why=("tf.one_hot gives a row of zeros for an id at or above its depth (255 in a {0, 255} mask): those "
                     "pixels ask for no class, so the foreground silently vanishes from the loss."),
                fix="Binarise or remap the mask to ids 0..K-1 before one_hot.",
                snippet=one_hot_snippet(depth or 2, binary_threshold=binary or depth == 2),
                figures=_figures(sample_figure(src, [(i, "zero rows") for i in t.zero_row_samples], "One-hot targets with zero rows")),
                related=("SD101", "SD108"),
            )
        if t.multi_row_samples:
            yield self.finding(
                title=(f"In {where}, one-hot target rows sum to values other than 1 in {of(len(t.multi_row_samples), t.samples)} "
                       f"samples ({t.multi_rows + t.partial_rows:,} pixels)"),
                evidence={"pipeline": src.label, "depth": depth, "rows_over_one": t.multi_rows, "rows_partial": t.partial_rows,
                          "samples": _samples(src, t.multi_row_samples)},
                why="Categorical cross-entropy reads each row as a probability distribution over the classes; rows that "
                    "do not sum to 1 ask for several classes, or a fraction of one, at the same pixel.",
                fix="Build the one-hot targets from integer ids (one class per pixel).",
                snippet=one_hot_snippet(depth or 2, binary_threshold=False),
            )
        if t.soft_onehot_samples:
            yield self.finding(
                title=(f"In {where}, one-hot targets hold fractional values in {of(len(t.soft_onehot_samples), t.samples)} "
                       "samples: resized or warped with interpolation after one_hot"),
                evidence={"pipeline": src.label, "depth": depth, "samples": _samples(src, t.soft_onehot_samples)},
                why="Interpolating one-hot maps blends the classes along every boundary: the model is trained on "
                    "mixtures that are no class.",
                fix="Resize and warp the integer mask with nearest-neighbour, then one-hot encode it (or one-hot last).",
                snippet=pipeline_snippet("interpolated", src.kind),
                related=("SD106",),
            )
        if t.extra_axis:
            yield self.finding(
                title=(f"In {where}, the targets have an extra axis: {of(len(t.extra_axis), t.samples)} samples are "
                       f"(H, W, 1, {depth}) instead of (H, W, {depth})"),
                evidence={"pipeline": src.label, "target_shape": str(t.shapes.most_common(1)[0][0]),
                          "samples": _samples(src, t.extra_axis)},
                why="tf.one_hot of an (H, W, 1) mask adds the class axis after the channel axis; the loss then "
                    "broadcasts (H, W, 1, C) against the (H, W, C) output and computes nonsense, or fails.",
                fix="Squeeze the channel axis before one_hot.",
                snippet=one_hot_snippet(depth or 2, binary_threshold=False),
            )
        k = ctx.options.num_classes
        if k and depth and depth != k and t.main_encoding == "one-hot":
            yield self.finding(
                title=f"In {where}, the one-hot targets have depth {depth} but --num-classes is {k}",
                evidence={"pipeline": src.label, "depth": depth, "num_classes": k},
                why="Each one-hot channel is one class: a different depth drops classes or adds phantom ones.",
                fix=f"One-hot encode with depth={k} (or correct --num-classes).",
                snippet=one_hot_snippet(k, binary_threshold=False),
            )
        if t.unreadable:
            shape = src.records[t.unreadable[0]]["pipeline"]["target_shape"]
            yield self.finding(
                title=(f"In {where}, {of(len(t.unreadable), t.samples)} targets of shape {shape} are neither class ids, "
                       "one-hot rows nor a colour mask"),
                evidence={"pipeline": src.label, "target_shape": str(shape), "samples": _samples(src, t.unreadable)},
                why="No segmentation loss can read these targets as labels per pixel.",
                fix="Yield (H, W) or (H, W, 1) integer ids for a sparse loss, or (H, W, C) one-hot rows for a categorical loss.",
                snippet=one_hot_snippet(depth or 2, binary_threshold=False),
            )

    def _model(self, ctx: PipelineContext, src: PipelineSource) -> Iterator[Finding]:
        from segdoctor.io.pipeline_model import loss_not_minimal

        probe = ctx.model
        spec = probe.spec
        c = probe.out_channels
        t = src.targets
        enc = t.main_encoding
        depth = t.depths.most_common(1)[0][0] if t.depths else None
        loss = spec.loss
        loss_name = loss.name if loss is not None else "no compiled loss"
        ev = {"pipeline": src.label, "model": probe.name, "output_shape": str(spec.output_shape), "loss": loss_name,
              "target_shape": str(t.shapes.most_common(1)[0][0]) if t.shapes else "", "target_encoding": enc}
        ids = sorted({int(v) for r in src.records for v in ((r.get("mask_info") or {}).get("values") or {}).get("values", [])
                      if float(v).is_integer()})
        problems: list[tuple[str, str, str, str]] = []  # title, why, fix, snippet
        if enc == "one-hot" and depth and depth != c:
            problems.append((f"the targets are one-hot with depth {depth} but the model outputs {c} channel(s)",
                             "Each output channel must match one target channel; the loss broadcasts or fails.",
                             f"Make the head output {depth} channels, or one-hot encode with depth={c}.",
                             f"outputs = layers.Conv2D({int(depth)}, 1, activation=\"softmax\")(x)"))
        if enc == "sparse" and ids:
            hi = max(ids)
            if (c == 1 and hi > 1) or (c > 1 and hi >= c):
                problems.append((f"the targets hold ids up to {hi} but the model outputs {c} channel(s)",
                                 "A sparse loss reads an id at or above the channel count out of range (NaN, or garbage).",
                                 "Remap the ids to 0..C-1 or give the head one channel per class.",
                                 f"outputs = layers.Conv2D({int(hi) + 1}, 1, activation=\"softmax\")(x)"))
        if loss is not None and c > 1:
            if enc == "sparse" and loss.family == "categorical_ce":
                problems.append((f"the targets are sparse ids (H, W[, 1]) but the loss is {loss.name} (one-hot targets)",
                                 "CategoricalCrossentropy expects one-hot targets; sparse ids broadcast against the output.",
                                 "Use SparseCategoricalCrossentropy with integer ids (or one-hot encode in the pipeline).",
                                 "loss = keras.losses.SparseCategoricalCrossentropy()"))
            if enc == "one-hot" and loss.family == "sparse_ce":
                problems.append((f"the targets are one-hot but the loss is {loss.name} (integer ids)",
                                 "SparseCategoricalCrossentropy expects one id per pixel, not a one-hot row.",
                                 "Use CategoricalCrossentropy with one-hot targets, or yield the ids.",
                                 "loss = keras.losses.CategoricalCrossentropy()"))
        if probe.loss_error and probe.compiled:
            problems.append((f"the compiled loss cannot be evaluated on these targets ({probe.loss_error})",
                             "model.fit will fail on these batches, or compute a loss from misaligned tensors.",
                             "Make the targets' shape match the output (and the loss's target format).", ""))
        worse = loss_not_minimal(probe)
        builtin = loss is not None and loss.family in ("binary_ce", "categorical_ce", "sparse_ce", "dice")
        perfect = probe.loss_values.get("perfect")
        if worse is not None:
            names = {"blend": "a 10% blend towards a uniform prediction", "prior": "a constant prediction of the class "
                     "shares", "model": "the model's own prediction"}
            problems.append((f"the loss at a perfect prediction ({perfect:.4g}) is higher than at {names.get(worse[0], worse[0])} "
                             f"({worse[1]:.4g})",
                             "Training minimises the loss: if predicting the targets exactly is not its minimum, the "
                             "model is pushed away from the targets (targets outside [0, 1], wrong format, or a loss bug).",
                             "Check the target values and the loss together (targets in [0, 1], the format the loss expects).",
                             ""))
        elif builtin and perfect is not None and perfect < -1e-3:
            problems.append((f"{loss.name} is negative ({perfect:.4g}) at a perfect prediction",
                             "A cross-entropy or Dice loss is never negative for targets in [0, 1]: these targets are "
                             "outside it (e.g. masks left at 0/255).",
                             "Bring the targets into [0, 1] (binarise 0/255 masks).",
                             "mask = tf.cast(mask > 127, tf.float32)"))
        if not problems:
            return
        ev["loss_values"] = {k: round(v, 6) for k, v in probe.loss_values.items()}
        if probe.perfect:
            ev["perfect_prediction"] = probe.perfect
        titles = "; ".join(p[0] for p in problems)
        yield self.finding(
            title=f"The batches' targets do not fit the model {probe.name!r}: {titles}",
            evidence=ev,
            why=" ".join(dict.fromkeys(p[1] for p in problems)),
            fix=" ".join(dict.fromkeys(p[2] for p in problems)),
            snippet="\n".join(p[3] for p in problems if p[3]) or None,
            related=("SD403",),
        )


# ---------------------------------------------------------------------------------------------- SD304


@register
class ImageScaleImplausible(Check):
    """The batch images are in a range no normalisation produces: scaled twice, a mean at the wrong scale, constant.

    *Why it matters*: images divided by 255 twice (values below 0.004) or 0-255 channel means subtracted from
    [0, 1] data (values near -100 with a spread of 1) reach the network as near-constant inputs; the model
    learns the class prior and predicts blank masks. Every input constant (an integer division, a cast)
    leaves nothing to learn.

    *How to fix*: normalise exactly once, in one place, with constants for the scale the data has at that
    point (``x / 255`` for uint8; ImageNet means 0.485/0.456/0.406 on [0, 1] data, 123.7/116.3/103.5 on 0-255).

    Rules (float images, pooled over the batches): every value within 1/255 of 0 (scaled twice); a typical
    per-sample range below 0.02 (divided by a wrong constant); an offset (median mean) more than 20 times the
    typical spread and above 1 (a mean subtracted at another scale); every image constant. Standardised
    inputs (mean 0, std 1), [0, 1], [-1, 1] and 0-255 are all plausible and quiet.
    """

    code = "SD304"
    name = "image-scale-implausible"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            s = src.images
            if not s.samples:
                continue
            where = _where(src)
            ev = {"pipeline": src.label, "samples": s.samples, "min": s.vmin, "max": s.vmax,
                  "median_max_abs": round(s.reach, 6), "median_range": round(s.span, 6), "median_mean": round(s.mean, 6),
                  "median_std": round(s.std, 6), "dtypes": ", ".join(f"{k} ({n})" for k, n in s.dtypes.most_common())}
            floats = any(d.startswith("float") for d in s.dtypes)
            snippet = pipeline_snippet("rescale", src.kind)
            if s.constant == s.samples:
                yield self.finding(
                    title=f"In {where}, all {s.samples} batch images are constant (every pixel {s.vmin:.4g})",
                    evidence=ev,
                    why="Constant inputs carry nothing to learn from: the model can only output the class prior.",
                    fix="Find the step that zeroes the images (an integer division or a cast before scaling, an empty "
                        "decode) and normalise once, in floats.",
                    snippet="image = tf.cast(image, tf.float32) / 255.0  # cast first, then divide (never integer division)",
                    figures=_figures(sample_figure(src, [(0, "constant")], "Constant images")),
                )
                continue
            if not floats or s.vmax == s.vmin:
                continue
            reach_all = max(abs(s.vmin), abs(s.vmax))
            if reach_all <= TWICE_SCALED_REACH:
                title = (f"In {where}, every image value lies within {reach_all:.3g} of 0 (max {s.vmax:.3g}): the images are "
                         "divided by 255 twice")
                why = ("After a second / 255 the images span less than 0.4% of the range the network expects: nearly "
                       "constant inputs, so it learns the class prior and predicts blank masks.")
                fix = "Divide by 255 once (drop the second division, or the Rescaling layer if the pipeline already scales)."
            elif s.span < TINY_SPAN:
                title = (f"In {where}, the images span only {s.span:.3g} (median range per sample; values {s.vmin:.3g} to "
                         f"{s.vmax:.3g}): scaled by a wrong constant")
                why = "Inputs that differ by less than 2% of their scale look constant to a freshly initialised network."
                fix = "Normalise once, with the constant for the scale the data has at that point."
            elif abs(s.mean) > OFFSET_RATIO * max(s.std, s.span / 4, 1e-12) and abs(s.mean) > 1.0:
                title = (f"In {where}, the images sit at {s.mean:.4g} with a spread of only {s.std:.3g}: a mean for another "
                         "scale was subtracted (e.g. 0-255 channel means from [0, 1] data)")
                why = ("The offset dwarfs the content: the network sees a huge constant and a faint image, trains slowly "
                       "and unstably, or not at all.")
                fix = "Subtract means (and divide by stds) given at the data's scale: 0.485/0.456/0.406 on [0, 1] data."
                snippet = ("image = tf.cast(image, tf.float32) / 255.0\n"
                           "image = (image - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]  # constants for [0, 1] data\n"
                           "# or keras.applications.<model>.preprocess_input(image_0_255), once")
            else:
                continue
            idx = list(range(min(len(src.ids), EXAMPLES)))
            yield self.finding(title=title, evidence=ev, why=why, fix=fix, snippet=snippet,
                               figures=_figures(sample_figure(src, [(i, f"values {src.records[i]['image_stats']['min']:.3g}"
                                                                    f"..{src.records[i]['image_stats']['max']:.3g}")
                                                                   for i in idx if src.records[i].get('image_stats')],
                                                              "Batch images (contrast-stretched for display)")),
                               related=("SD201", "SD507"))


# ---------------------------------------------------------------------------------------------- SD305


@register
class ForegroundStarvedBatches(Check):
    """The batches hold far fewer samples with foreground than the files, or almost none at all.

    *Why it matters*: random crops of images whose objects are small, or a filter on the wrong condition, feed
    the network mostly empty masks; it learns that predicting background is nearly always right and the
    foreground never trains.

    *How to fix*: sample crops that contain foreground for a share of the samples (e.g. half: centre the
    crop on a random foreground pixel), use larger crops, or fix the filter.

    Rules: with ``--data``, the share of samples with foreground in the batches is at most 0.6 of the files'
    share and at least 25 points below it, or the mean foreground share per sample is at most 0.6 of the
    files' (over >= 16 samples); without files, >= 80% of the samples are empty.
    """

    code = "SD305"
    name = "foreground-starved-batches"
    severity = Severity.WARNING
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            fg = src.foreground
            n = len(fg)
            if n < MIN_SD305_SAMPLES:
                continue
            with_fg = float((fg > 0).mean())
            mean_fg = float(fg.mean())
            empty = [i for i, r in enumerate(src.records) if _empty(r)]
            ev: dict[str, Any] = {"pipeline": src.label, "samples": n, "samples_with_foreground": round(with_fg, 4),
                                  "mean_foreground_share": round(mean_fg, 5)}
            files = ctx.files
            starved = False
            detail = ""
            if files is not None:
                f_fg = foreground_shares(files.records)
                if len(f_fg):
                    f_with, f_mean = float((f_fg > 0).mean()), float(f_fg.mean())
                    ev.update({"files_with_foreground": round(f_with, 4), "files_mean_foreground_share": round(f_mean, 5)})
                    if with_fg <= FILES_RATIO * f_with and f_with - with_fg >= FILES_DROP:
                        starved = True
                        detail = f"{with_fg:.0%} of the samples hold foreground against {f_with:.0%} of the files"
                    elif f_mean > 0 and mean_fg <= FILES_RATIO * f_mean and f_mean - mean_fg >= 0.01:
                        starved = True
                        detail = f"foreground is {mean_fg:.2%} of the pixels against {f_mean:.2%} in the files"
            if not starved and 1 - with_fg >= STARVED_EMPTY_SHARE:
                starved = True
                detail = f"{1 - with_fg:.0%} of the samples hold no foreground at all"
            if not starved:
                continue
            ev["samples_empty"] = [src.ids[i] for i in empty]
            yield self.finding(
                title=f"In {_where(src)}, the batches are starved of foreground: {detail}",
                evidence=ev,
                why="Mostly empty batches teach the network that background is nearly always right; the foreground "
                    "barely contributes to the loss and the model drifts towards blank predictions.",
                fix="Sample crops around foreground for a share of the samples (about half), use larger crops, or fix "
                    "the filter that drops positive samples.",
                snippet=("def crop_with_foreground(image, mask, size, p_object=0.5):\n"
                         "    # centre the crop on a random foreground pixel with probability p_object\n"
                         "    fg = tf.where(mask[..., 0] > 0)\n"
                         "    use_fg = tf.logical_and(tf.shape(fg)[0] > 0, tf.random.uniform([]) < p_object)\n"
                         "    h, w = tf.shape(mask)[0], tf.shape(mask)[1]\n"
                         "    centre = tf.cond(use_fg,\n"
                         "                     lambda: tf.cast(tf.random.shuffle(fg)[0], tf.int32),\n"
                         "                     lambda: tf.stack([tf.random.uniform([], 0, h, tf.int32), tf.random.uniform([], 0, w, tf.int32)]))\n"
                         "    y0 = tf.clip_by_value(centre[0] - size // 2, 0, h - size)\n"
                         "    x0 = tf.clip_by_value(centre[1] - size // 2, 0, w - size)\n"
                         "    return (tf.image.crop_to_bounding_box(image, y0, x0, size, size),\n"
                         "            tf.image.crop_to_bounding_box(mask, y0, x0, size, size))"),
                figures=_figures(sample_figure(src, [(i, "no foreground") for i in empty], "Empty samples")),
                related=("SD108", "SD151", "SD152"),
            )


def _empty(rec: dict) -> bool:
    v = ((rec.get("mask_info") or {}).get("values"))
    return v is not None and set(v["values"].tolist()) <= {0}


# ---------------------------------------------------------------------------------------------- SD306


@register
class TrainValPipelineMismatch(Check):
    """The val batches differ from the train batches in image scale, channels, size or target encoding.

    The two pipelines preprocess differently.

    *Why it matters*: the model is validated (and early-stopped, and checkpointed) on inputs it was not trained
    on: a val loader that forgets ``/ 255`` feeds values 255 times larger, a different resize changes the
    object scale, a different target encoding makes the val loss meaningless. Val metrics then say the model
    fails when it does not, or the other way round.

    *How to fix*: one preprocessing function used by both pipelines; only augmentation differs.

    Rules: typical image scale (median max |value|) differing by >= 8x, or a float pipeline beside an
    integer one on another scale; different channel counts; different target encodings (sparse vs one-hot,
    one-hot depth) or target value sets (e.g. {0, 1} vs {0, 255}) : error. Different image sizes: warning
    (a fully convolutional model accepts them, but the object scale differs).
    """

    code = "SD306"
    name = "train-val-pipeline-mismatch"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        tr, va = ctx.train, ctx.val
        if va is None:
            return
        a, b = tr.images, va.images
        ta, tb = tr.targets, va.targets
        rows: list[tuple[str, str, str]] = []  # what, train, val
        errors = []
        if a.reach > 0 and b.reach > 0:
            ratio = max(a.reach, b.reach) / min(a.reach, b.reach)
            if ratio >= SCALE_RATIO:
                rows.append(("image scale (median max |value|)", f"{a.reach:.4g}", f"{b.reach:.4g}"))
                errors.append("scale")
        elif (a.reach > 0) != (b.reach > 0):
            rows.append(("image scale (median max |value|)", f"{a.reach:.4g}", f"{b.reach:.4g}"))
            errors.append("scale")
        ca, cb = set(a.channels), set(b.channels)
        if ca and cb and ca != cb:
            rows.append(("image channels", _fmt_values(ca), _fmt_values(cb)))
            errors.append("channels")
        da, db = set(a.dtypes), set(b.dtypes)
        if da != db and "scale" in errors:
            rows.append(("image dtype", ", ".join(sorted(da)), ", ".join(sorted(db))))
        if ta.main_encoding != tb.main_encoding or (ta.depths and tb.depths and set(ta.depths) != set(tb.depths)):
            rows.append(("target encoding", _encoding(ta), _encoding(tb)))
            errors.append("encoding")
        if _scaled_ids(_label_values(tr), _label_values(va)) or _scaled_sets(ta, tb):
            rows.append(("target values", ta.value_set(), tb.value_set()))
            errors.append("values")
        sa, sb = set(a.sizes), set(b.sizes)
        size_rows = []
        if sa and sb and not (sa & sb):
            size_rows.append(("image size (H x W)", ", ".join(f"{h}x{w}" for h, w in sorted(sa)[:4]),
                              ", ".join(f"{h}x{w}" for h, w in sorted(sb)[:4])))
        if not rows and not size_rows:
            return
        all_rows = rows + size_rows
        ev: dict[str, Any] = {"train_pipeline": tr.label, "val_pipeline": va.label}
        for what, x, y in all_rows:
            ev[f"train {what}"] = x
            ev[f"val {what}"] = y
        summary = "; ".join(f"{what}: train {x}, val {y}" for what, x, y in all_rows)
        hint = ""
        if "scale" in errors:
            hint = (" (the val pipeline does not divide by 255)" if b.reach > a.reach else
                    " (the train pipeline does not divide by 255)") if max(a.reach, b.reach) > 30 >= min(a.reach, b.reach) else ""
        yield self.finding(
            title=f"The train and val pipelines preprocess differently: {summary}{hint}",
            evidence=ev,
            severity=Severity.ERROR if errors else Severity.WARNING,
            why="The model is validated on inputs (or targets) it was not trained on: val loss, val Dice, early "
                "stopping and checkpoints all measure the difference in preprocessing, not the model.",
            fix="Use one preprocessing function for both pipelines; only the augmentation may differ.",
            snippet=pipeline_snippet("shared", tr.kind),
            figures=_figures(sample_figure(tr, [(0, "train")], "Train samples"), sample_figure(va, [(0, "val")], "Val samples")),
        )


def _encoding(t: TargetSummary) -> str:
    depth = t.depths.most_common(1)[0][0] if t.depths else None
    return t.main_encoding + (f" (depth {depth})" if depth and t.main_encoding == "one-hot" else "")


def _label_values(src: PipelineSource) -> set:
    out: set = set()
    for r in src.records:
        v = (r.get("mask_info") or {}).get("values")
        if v is not None:
            out.update(v["values"].tolist())
    return out


def _scaled_ids(a: set, b: set) -> bool:
    """Class values on different scales ({0, 1} beside {0, 255}): the largest ids differ by SCALE_RATIO or more."""
    ma, mb = max(a, default=0), max(b, default=0)
    return ma > 0 and mb > 0 and max(ma, mb) / min(ma, mb) >= SCALE_RATIO


def _scaled_sets(a: TargetSummary, b: TargetSummary) -> bool:
    """One pipeline rescales its targets (divides the ids) and the other does not."""
    return bool(a.rescaled) != bool(b.rescaled)


# ---------------------------------------------------------------------------------------------- SD307


@register
class PipelineModelInput(Check):
    """The batch images do not fit the model's input: shape, channels, or the input scaling the model expects.

    *Why it matters*: a fixed-size model refuses other sizes at ``fit``; a 1-channel batch for a 3-channel
    model (or the reverse) fails or is silently broadcast; a model that divides by 255 itself (a
    ``Rescaling(1/255)`` first layer) fed images already in [0, 1] sees values below 0.004; a trained model
    that scores far better when the batches are scaled differently was trained with another preprocessing.

    *How to fix*: resize to the model's input size, decode with the model's channel count, normalise exactly
    once (in the pipeline or in the model, not both), and use the preprocessing the model was trained with.

    Rules (``--model``): input height/width fixed by the model and different in the batches, or a different
    channel count (error); a ``Rescaling`` layer with scale <= 1/100 and batches already within [0, 1]
    (error); Dice of the model on the first batches under the input scalings x, x/255, 255x, 2x-1, (x+1)/2
    (those that apply to the batches' range): another scaling reaches >= 0.3, beats the batches' own by
    >= 0.1 and by 1.5x, and under it the compiled loss is at most half the loss of a constant class-prior
    prediction (a trained model: an untrained one's Dice under a scaling is chance) (warning, as SD507).
    """

    code = "SD307"
    name = "pipeline-model-input"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        probe = ctx.model
        if probe is None:
            return
        src = ctx.train
        spec = probe.spec
        s = src.images
        ev: dict[str, Any] = {"pipeline": src.label, "model": probe.name, "model_input_shape": str(spec.input_shape)}
        want = spec.input_shape
        sizes = sorted(s.sizes)
        channels = sorted(s.channels)
        if len(want) == 4:
            h, w, c = want[1], want[2], want[3]
            bad_size = [hw for hw in sizes if (h is not None and hw[0] != h) or (w is not None and hw[1] != w)]
            if bad_size:
                ev["batch_sizes"] = ", ".join(f"{a}x{b}" for a, b in sizes[:4])
                yield self.finding(
                    title=(f"The model {probe.name!r} takes {h}x{w} inputs but {_where(src)} yields "
                           f"{', '.join(f'{a}x{b}' for a, b in bad_size[:3])} images"),
                    evidence=ev,
                    why="A model with a fixed input size refuses other sizes at fit (or, for some layers, misaligns them).",
                    fix=f"Resize the images (nearest-neighbour for the masks) to {h}x{w} in the pipeline.",
                    snippet=(f"image = tf.image.resize(image, ({h}, {w}))\n"
                             f"mask = tf.image.resize(mask, ({h}, {w}), method=\"nearest\")"),
                )
            if c is not None and channels and any(ch != c for ch in channels):
                ev["batch_channels"] = _fmt_values(channels)
                yield self.finding(
                    title=f"The model {probe.name!r} takes {c}-channel inputs but {_where(src)} yields {_fmt_values(channels)}-channel images",
                    evidence=ev,
                    why="The first layer's weights are built for one channel count: other inputs fail or are broadcast.",
                    fix=f"Decode the images with {c} channel(s).",
                    snippet=f"image = tf.io.decode_png(tf.io.read_file(path), channels={int(c)})",
                )
        scale = probe.input_rescaling
        if scale is not None and 0 < scale <= 0.01 and s.vmax <= 1.0 + 1e-6 and s.vmax > 0 and any(
                d.startswith("float") for d in s.dtypes):
            yield self.finding(
                title=(f"The model {probe.name!r} rescales its input by {scale:.4g} itself, but {_where(src)} already "
                       f"yields images within [{s.vmin:.3g}, {s.vmax:.3g}]: they are scaled twice"),
                evidence={**ev, "model_rescaling": scale, "batch_min": s.vmin, "batch_max": s.vmax},
                why="After the model's own Rescaling the network sees values below 0.004: nearly constant inputs.",
                fix="Normalise once: drop the / 255 from the pipeline (the model does it) or remove the Rescaling layer.",
                snippet="image = tf.cast(image, tf.float32)  # no / 255 here: the model's Rescaling(1/255) does it",
                related=("SD304",),
            )
        dice = {k: v for k, v in probe.scaling_dice.items() if np.isfinite(v)}
        cur = dice.get("as is")
        if cur is not None and len(dice) > 1:
            best = max(dice, key=lambda k: dice[k])
            prior = probe.loss_values.get("prior")
            best_loss = probe.scaling_loss.get(best)
            # an untrained model's Dice under a scaling is chance (a random 1x1 head can threshold bright blobs): only
            # a model that is trained under that scaling (loss far below the class prior's) says which one it expects
            trained = prior is not None and best_loss is not None and 0 < prior and best_loss <= TRAINED_LOSS_RATIO * prior
            if (trained and best != "as is" and dice[best] >= MIN_BEST_DICE and dice[best] >= cur + MIN_DICE_GAIN
                    and dice[best] >= DICE_RATIO * cur):
                yield self.finding(
                    title=(f"The model {probe.name!r} scores mean Dice {dice[best]:.2f} on the batches scaled as {best} but "
                           f"{cur:.2f} on them as the pipeline yields them: it was trained with another input scaling"),
                    severity=Severity.WARNING,
                    evidence={**ev, **{f"dice[{k}]": round(v, 4) for k, v in dice.items()}},
                    why="A model only works on inputs scaled as in its training; this pipeline scales them differently.",
                    fix=f"Apply the scaling the model was trained with ({best}) in the pipeline, once.",
                    snippet={"x / 255": "image = tf.cast(image, tf.float32) / 255.0",
                             "x * 255": "image = image * 255.0  # or drop the / 255 the pipeline applies",
                             "2x - 1": "image = image * 2.0 - 1.0  # [0, 1] -> [-1, 1]",
                             "(x + 1) / 2": "image = (image + 1.0) / 2.0  # [-1, 1] -> [0, 1]"}.get(best),
                    related=("SD507",),
                )
