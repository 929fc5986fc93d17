"""SD303 target-encoding: targets the loss cannot read (one-hot rows, extra axes, depth), and with ``--model`` the
targets against the model's output and compiled loss."""

from __future__ import annotations

from collections.abc import Iterator

from segdoctor.checks._common import of
from segdoctor.checks.pipeline_context import (
    PipelineContext,
    PipelineSource,
    figures,
    files_value_set,
    pipeline_phrase,
    sample_figure,
    samples_of,
)
from segdoctor.checks.pipeline_fixes import one_hot_snippet, pipeline_snippet
from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register


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
        where = pipeline_phrase(src)
        depth = t.depths.most_common(1)[0][0] if t.depths else None
        files = files_value_set(ctx.files)
        if t.zero_row_samples and t.zero_rows >= 1e-3 * max(t.onehot_pixels, 1):
            share = t.zero_rows / max(t.onehot_pixels, 1)
            binary = files is not None and ctx.files is not None and 255 in set(ctx.files.labels.class_values)
            ev = {"pipeline": src.label, "depth": depth, "zero_row_pixels": t.zero_rows, "one_hot_pixels": t.onehot_pixels,
                  "zero_row_share": round(share, 4), "samples_affected": len(t.zero_row_samples),
                  "samples": samples_of(src, t.zero_row_samples)}
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
                figures=figures(sample_figure(src, [(i, "zero rows") for i in t.zero_row_samples], "One-hot targets with zero rows")),
                related=("SD101", "SD108"),
            )
        if t.multi_row_samples:
            yield self.finding(
                title=(f"In {where}, one-hot target rows sum to values other than 1 in {of(len(t.multi_row_samples), t.samples)} "
                       f"samples ({t.multi_rows + t.partial_rows:,} pixels)"),
                evidence={"pipeline": src.label, "depth": depth, "rows_over_one": t.multi_rows, "rows_partial": t.partial_rows,
                          "samples": samples_of(src, t.multi_row_samples)},
                why="Categorical cross-entropy reads each row as a probability distribution over the classes; rows that "
                    "do not sum to 1 ask for several classes, or a fraction of one, at the same pixel.",
                fix="Build the one-hot targets from integer ids (one class per pixel).",
                snippet=one_hot_snippet(depth or 2, binary_threshold=False),
            )
        if t.soft_onehot_samples:
            yield self.finding(
                title=(f"In {where}, one-hot targets hold fractional values in {of(len(t.soft_onehot_samples), t.samples)} "
                       "samples: resized or warped with interpolation after one_hot"),
                evidence={"pipeline": src.label, "depth": depth, "samples": samples_of(src, t.soft_onehot_samples)},
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
                          "samples": samples_of(src, t.extra_axis)},
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
                evidence={"pipeline": src.label, "target_shape": str(shape), "samples": samples_of(src, t.unreadable)},
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
