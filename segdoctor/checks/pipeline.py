"""Pipeline checks on the batches themselves: SD301 pair mismatch, SD302 rescaled masks, SD304 implausible image
scale, SD305 foreground-starved batches. SD303 (target encoding) is in ``pipeline_encoding``, SD306/SD307
(train vs val, batches vs model) in ``pipeline_compare``; all read a ``PipelineContext`` (``pipeline_context``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from segdoctor.checks._common import of
from segdoctor.checks.pipeline_context import (
    EXAMPLES,
    PipelineContext,
    PipelineSource,
    alignment_figure,
    figures,
    files_value_set,
    fmt_values,
    pipeline_phrase,
    sample_figure,
)
from segdoctor.checks.pipeline_fixes import pipeline_snippet
from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.pipeline_alignment import TRANSFORM_WORDS, Z_NO_SIGNAL, Z_SIGNAL, PairStudy
from segdoctor.stats.pipeline_summary import foreground_shares

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
        no_signal = study.distinct >= MIN_NO_SIGNAL_SAMPLES and study.signal < Z_NO_SIGNAL
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
        title = f"In {pipeline_phrase(src)}, masks no longer fit their images: " + "; ".join(parts)
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
            figures=figures(sample_figure(src, [(study.indices[k], caption(k)) for k in order], "Mismatched samples"),
                             alignment_figure(study)),
            related=("SD251", "SD252"),
        )

    def _no_fit(self, src: PipelineSource, study: PairStudy, evidence: dict[str, Any], strong_files: bool,
                files_signal: float | None) -> Finding:
        n = study.n
        evidence["samples"] = [src.ids[i] for i in study.indices]
        if strong_files:
            title = (f"In {pipeline_phrase(src)}, no mask fits its image better than other images' masks (median alignment z "
                     f"{study.signal:.1f} over {n} samples) while the files' masks trace their images (median z "
                     f"{files_signal:.1f}): the pipeline mismatches the pairs")
            severity = Severity.ERROR
        else:
            title = (f"In {pipeline_phrase(src)}, the masks fit their images no better than masks laid over other images "
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
            figures=figures(sample_figure(src, [(i, f"z {z:.1f}") for i, z in zip(study.indices, study.z_own)],
                                           "Samples as the pipeline pairs them"), alignment_figure(study)),
            related=("SD251",),
        )


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
    (x 255), so SD101/SD106 judge the ids themselves. With ``--data``, multi-class ids divided by 255 and then cast
    to integers (the batches hold only 0, and 1 exactly where the files hold 255) fire too.
    """

    code = "SD302"
    name = "mask-rescaled"
    severity = Severity.ERROR
    scope = "pipeline"

    def run(self, ctx: PipelineContext) -> Iterator[Finding]:
        for src in ctx.sources:
            t = src.targets
            if not t.rescaled:
                collapsed = self._cast_to_int(ctx, src)
                if collapsed is not None:
                    yield collapsed
                continue
            divisor, idx = max(t.rescaled.items(), key=lambda kv: len(kv[1]))
            affected = sorted({i for ks in t.rescaled.values() for i in ks})
            ids = sorted(t.rescaled_ids)
            scaled = fmt_values([round(i / divisor, 6) for i in ids])
            div = "255" if divisor == 255 else ("65535" if divisor == 65535 else f"{divisor:g}")
            files = files_value_set(ctx.files)
            evidence: dict[str, Any] = {"pipeline": src.label, "divisor": divisor, "batch_values": t.value_set(),
                                        "class_ids": fmt_values(ids), "samples_affected": len(affected),
                                        "samples": [src.ids[i] for i in affected]}
            if files is not None:
                evidence["file_values"] = files
            where = f"files {files}; batches {t.value_set()}" if files else f"batches {t.value_set()}"
            yield self.finding(
                title=(f"In {pipeline_phrase(src)}, {of(len(affected), t.samples)} targets hold class ids divided by {div}: "
                       f"{scaled} instead of {fmt_values(ids)} ({where}): the masks are rescaled like the images"),
                evidence=evidence,
                why=(f"A foreground target of {1 / divisor:.4g} asks the model for a {1 / divisor:.2%} foreground "
                     "probability: the loss pushes every prediction to background (blank masks); multi-class ids "
                     "lose their classes."),
                fix=f"Do not divide the masks by {div}; rescale the images only.",
                snippet=pipeline_snippet("rescale", src.kind),
                figures=figures(sample_figure(src, [(i, f"values x {div} = {fmt_values(ids)}") for i in affected],
                                               "Rescaled targets")),
                related=("SD101", "SD108"),
            )

    def _cast_to_int(self, ctx: PipelineContext, src: PipelineSource) -> Finding | None:
        """With ``--data``: multi-class ids divided by 255 and then cast to integers leave floor(id / 255), so the
        batches hold 0 wherever the files hold an id below 255 and 1 where they hold 255 (void). Fires when the files
        hold two or more ids in 1..254, the batches hold only {0} or {0, 1}, and the batches' share of 1 matches the
        files' share of 255 (a deliberate binarisation such as ``mask > 0`` marks far more pixels)."""
        if ctx.files is None:
            return None
        files, batch = ctx.files.labels, src.ctx.labels
        ids = [v for v in files.class_values if isinstance(v, (int, np.integer))]
        if len([v for v in ids if 0 < v < 255]) < 2 or not batch.value_table:
            return None
        values = set(batch.value_table)
        if not values <= {0, 1} or files.value_table and max(files.value_table) > 255:
            return None
        f_total = sum(row[0] for row in files.value_table.values()) or 1
        b_total = sum(row[0] for row in batch.value_table.values()) or 1
        void = files.value_table.get(255, [0])[0] / f_total
        ones = batch.value_table.get(1, [0])[0] / b_total
        if abs(ones - void) > max(0.02, 0.5 * void):
            return None
        samples = [src.ids[i] for i, rec in enumerate(src.records) if "values" in (rec.get("mask_info") or {})]
        return self.finding(
            title=(f"In {pipeline_phrase(src)}, the class ids are divided by 255 and cast to integers: the files hold "
                   f"{fmt_values(ids)}, the batches {fmt_values(sorted(values))}: every id below 255 became 0"),
            evidence={"pipeline": src.label, "file_values": fmt_values(ids), "batch_values": fmt_values(sorted(values)),
                      "file_share_255": round(void, 4), "batch_share_1": round(ones, 4), "samples": samples},
            why=("floor(id / 255) is 0 for every class id below 255: the classes vanish from the targets and the model "
                 "learns background everywhere" + (" (only the void label 255 survives, as 1)" if ones else "") + "."),
            fix="Do not divide the masks; keep the class ids as they are in the files (cast to int32 for a sparse loss).",
            snippet=pipeline_snippet("rescale", src.kind),
            related=("SD108",),
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
            where = pipeline_phrase(src)
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
                    figures=figures(sample_figure(src, [(0, "constant")], "Constant images")),
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
                               figures=figures(sample_figure(src, [(i, f"values {src.records[i]['image_stats']['min']:.3g}"
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
                title=f"In {pipeline_phrase(src)}, the batches are starved of foreground: {detail}",
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
                figures=figures(sample_figure(src, [(i, "no foreground") for i in empty], "Empty samples")),
                related=("SD108", "SD151", "SD152"),
            )


def _empty(rec: dict) -> bool:
    v = ((rec.get("mask_info") or {}).get("values"))
    return v is not None and set(v["values"].tolist()) <= {0}
