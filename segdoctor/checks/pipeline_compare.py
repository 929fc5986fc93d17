"""Pipeline checks that compare the batches with something else: SD306 (the val pipeline) and SD307 (the model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from segdoctor.checks.pipeline_context import (
    PipelineContext,
    PipelineSource,
    figures,
    fmt_values,
    pipeline_phrase,
    sample_figure,
)
from segdoctor.checks.pipeline_fixes import pipeline_snippet
from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.pipeline_summary import TargetSummary

#: SD306: train and val typical image scales (median max |value|) differing by this factor
SCALE_RATIO = 8.0
#: SD307: input scaling scores (Dice) that make another scaling clearly better
MIN_BEST_DICE, MIN_DICE_GAIN, DICE_RATIO = 0.3, 0.1, 1.5
#: SD307: under that scaling the model must be trained: its loss at most this share of a constant prior prediction's
TRAINED_LOSS_RATIO = 0.5


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
            rows.append(("image channels", fmt_values(ca), fmt_values(cb)))
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
            figures=figures(sample_figure(tr, [(0, "train")], "Train samples"), sample_figure(va, [(0, "val")], "Val samples")),
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
        ev: dict[str, Any] = {"pipeline": src.label, "model": probe.name, "model_input_shape": str(spec.input_shape),
                              "model_input_dtype": probe.input_dtype, "batch_dtype": probe.batch_x_dtype}
        want = spec.input_shape
        sizes = sorted(s.sizes)
        channels = sorted(s.channels)
        if len(want) == 4:
            h, w, c = want[1], want[2], want[3]
            bad_size = [hw for hw in sizes if (h is not None and hw[0] != h) or (w is not None and hw[1] != w)]
            if bad_size:
                ev["batch_sizes"] = ", ".join(f"{a}x{b}" for a, b in sizes[:4])
                yield self.finding(
                    title=(f"The model {probe.name!r} takes {h}x{w} inputs but {pipeline_phrase(src)} yields "
                           f"{', '.join(f'{a}x{b}' for a, b in bad_size[:3])} images"),
                    evidence=ev,
                    why="A model with a fixed input size refuses other sizes at fit (or, for some layers, misaligns them).",
                    fix=f"Resize the images (nearest-neighbour for the masks) to {h}x{w} in the pipeline.",
                    snippet=(f"image = tf.image.resize(image, ({int(h)}, {int(w)}))\n"
                             f"mask = tf.image.resize(mask, ({int(h)}, {int(w)}), method=\"nearest\")"
                             if h is not None and w is not None else None),
                )
            if c is not None and channels and any(ch != c for ch in channels):
                ev["batch_channels"] = fmt_values(channels)
                yield self.finding(
                    title=f"The model {probe.name!r} takes {c}-channel inputs but {pipeline_phrase(src)} yields {fmt_values(channels)}-channel images",
                    evidence=ev,
                    why="The first layer's weights are built for one channel count: other inputs fail or are broadcast.",
                    fix=f"Decode the images with {c} channel(s).",
                    snippet=f"image = tf.io.decode_png(tf.io.read_file(path), channels={int(c)})",
                )
        scale = probe.input_rescaling
        if scale is not None and 0 < scale <= 0.01 and s.vmax <= 1.0 + 1e-6 and s.vmax > 0 and any(
                d.startswith("float") for d in s.dtypes):
            yield self.finding(
                title=(f"The model {probe.name!r} rescales its input by {scale:.4g} itself, but {pipeline_phrase(src)} already "
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
            # A model compiled but never fitted (optimizer at step 0: check_pipeline(ds, model=model) before fit) says
            # nothing about the scaling it expects, however well a random head happens to threshold the images
            trained = (probe.optimizer_steps != 0 and prior is not None and best_loss is not None and 0 < prior
                       and best_loss <= TRAINED_LOSS_RATIO * prior)
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
