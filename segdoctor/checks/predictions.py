"""Checks on the model's predictions over the data (SD5xx): blank output, Dice collapse, accuracy trap,
threshold calibration, constant output, missing classes, input scaling, over-segmentation.

They read a ``PredictionContext``: per-image records from ``segdoctor.io.inference`` plus the findings of
the static model checks and the data checks, so a failure can point at its likely cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.segmentation_metrics import THRESHOLDS, best_threshold

#: data and model findings that explain a failing prediction, most direct first
CAUSE_CODES = ("SD101", "SD105", "SD106", "SD107", "SD104", "SD102", "SD251", "SD252", "SD201", "SD202",
               "SD401", "SD402", "SD403", "SD405", "SD407", "SD404", "SD151", "SD152", "SD108", "SD507")


@dataclass
class PredictionContext:
    """Predictions over the data, reduced to per-image records, plus what else the run found."""

    spec: Any
    result: Any  # segdoctor.io.inference.InferenceResult
    threshold: float = 0.5
    preprocess: str = "unit"
    preprocess_fixed: bool = False  # the user chose --preprocess (not auto)
    candidate_dice: dict[str, float] = field(default_factory=dict)
    other_findings: list[Finding] = field(default_factory=list)
    data_root: str | None = None  # file names in findings are shown relative to it, as check-data shows them
    mode_gap: Any = None  # segdoctor.io.mode_gap.ModeGap: inference vs training-mode Dice (SD509)

    @cached_property
    def a(self) -> dict[str, np.ndarray]:
        return self.result.binary.arrays()

    @property
    def n(self) -> int:
        return len(self.result.binary)

    @property
    def has_fg(self) -> np.ndarray:
        return self.a["true_fg"] > 0

    @property
    def mean_dice(self) -> float:
        m = self.has_fg
        return float(self.a["dice"][m].mean()) if m.any() else float("nan")

    @property
    def true_share(self) -> float:
        return float(self.a["true_fg"].sum() / max(self.a["n_pixels"].sum(), 1))

    @property
    def pred_share(self) -> float:
        return float(self.a["pred_fg"].sum() / max(self.a["n_pixels"].sum(), 1))

    @cached_property
    def curve(self) -> np.ndarray:
        return self.result.binary.dice_curve()

    @cached_property
    def auc(self) -> float:
        return self.result.binary.pooled_auc()

    def causes(self) -> list[Finding]:
        by_code = {f.code: f for f in self.other_findings}
        return [by_code[c] for c in CAUSE_CODES if c in by_code]

    def files(self, mask: np.ndarray) -> list[str]:
        return [self._display(n) for n, m in zip(self.result.binary.names, mask) if m]

    def _display(self, name: str) -> str:
        if self.data_root:
            try:
                return str(Path(name).relative_to(self.data_root))
            except ValueError:
                pass
        return name


def _loss_prescription(spec: Any, fg_share: float) -> str:
    """Dice + cross-entropy for this head, with the foreground weight from the measured share."""
    from segdoctor.checks.model import compile_line
    from segdoctor.stats.loss_probes import corrected_dice_snippet

    c = spec.out_channels or 1
    if c == 1:
        ce = "keras.losses.binary_crossentropy(y_true, y_pred)"
    else:
        ce = "keras.losses.categorical_crossentropy(y_true, y_pred)"
    return (corrected_dice_snippet(c) + "\n\ndef dice_ce_loss(y_true, y_pred):\n"
            f"    # cross-entropy keeps gradients early on; Dice ignores the {1 - fg_share:.0%} background\n"
            f"    return {ce} + dice_loss(y_true, y_pred)\n\n"
            + compile_line(spec, "dice_ce_loss"))


def _cause_text(ctx: PredictionContext) -> tuple[str, tuple[str, ...]]:
    causes = ctx.causes()
    if not causes:
        return "", ()
    # the diagnosis at the top of the report explains the chain; here, only which findings to look at
    text = " Findings of this run that can cause it: " + ", ".join(f.code for f in causes[:6]) + " (see the diagnosis)."
    return text, tuple(f.code for f in causes)


@register
class BlankPredictions(Check):
    """Images whose ground truth has foreground get an empty prediction at the threshold.

    *Why it matters:* a model that predicts nothing on most images has collapsed to the background
    class, the usual outcome of plain cross-entropy on masks with a few percent foreground, 0/255
    masks, or a learning rate that killed the network.

    *How to fix:* train with Dice + cross-entropy (the snippet has this model's head), check the
    threshold (SD504) and the data findings linked here.

    Thresholds: error when at least 50% of the images with foreground get an empty prediction,
    warning from 25%. Images whose mask is empty are not counted.
    """

    code = "SD501"
    name = "blank-predictions"
    severity = Severity.ERROR
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        a = ctx.a
        has = ctx.has_fg
        n_fg = int(has.sum())
        if n_fg == 0:
            return
        blank = has & (a["pred_fg"] == 0)
        share = blank.sum() / n_fg
        if share < 0.25:
            return
        causes, related = _cause_text(ctx)
        max_p = float(np.nanmedian(a["max_prob"][blank])) if blank.any() and np.isfinite(a["max_prob"][blank]).any() else float("nan")
        ranked_well = ctx.auc >= 0.8
        fix = ("The pixels are still ranked (AUC {:.2f}): lower the threshold or use rank-based decoding (SD504), and retrain with Dice + cross-entropy."
               .format(ctx.auc) if ranked_well else "Retrain with Dice + cross-entropy so the rare foreground carries weight, after fixing the data findings linked here.")
        ranking = ""
        if np.isfinite(ctx.auc) and ctx.auc < 0.5:
            ranking = (f" Its probabilities even rank the objects below the background (pixel AUC {ctx.auc:.2f}): "
                       "it has not learned the objects at all, so no threshold can help.")
        yield self.finding(
            title=f"{int(blank.sum())} of {n_fg} images with foreground get a blank prediction at threshold {ctx.threshold:g}",
            evidence={"blank_images": int(blank.sum()), "images_with_foreground": n_fg, "blank_share": round(float(share), 4),
                      "median_max_probability_on_blank": round(max_p, 4), "true_foreground_share": round(ctx.true_share, 5),
                      "predicted_foreground_share": round(ctx.pred_share, 5), "pixel_auc": round(ctx.auc, 4), "threshold": ctx.threshold},
            why="The model outputs background everywhere on these images: it has learned the class prior, not the objects." + ranking + causes,
            fix=fix,
            snippet=_loss_prescription(ctx.spec, ctx.true_share),
            files=ctx.files(blank),
            severity=Severity.ERROR if share >= 0.5 else Severity.WARNING,
            related=related,
        )


@register
class DiceCollapse(Check):
    """The mean per-image Dice on the data is near zero.

    *Why it matters:* whatever the loss or accuracy say, the masks the model produces do not overlap
    the objects.

    *How to fix:* work through the ranked causes listed in the finding (data encoding, head/loss
    mismatch, loss defects, imbalance), then retrain.

    Threshold: mean Dice below 0.1 over the images with foreground (per class for multi-class heads:
    the mean of the per-class Dice over images containing the class). Images with an empty mask are
    left out, since any Dice convention for them hides the failure.
    """

    code = "SD502"
    name = "dice-collapse"
    severity = Severity.ERROR
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        if not ctx.has_fg.any():
            return
        dice = ctx.mean_dice
        per_class = None
        if ctx.result.multiclass is not None and len(ctx.result.multiclass):
            pc = ctx.result.multiclass.per_class()
            present = pc["true"] > 0
            with np.errstate(invalid="ignore"):
                per_class = np.array([np.nanmean(np.where(present[:, c], pc["dice"][:, c], np.nan)) if present[:, c].any() else np.nan
                                      for c in range(pc["dice"].shape[1])])
            fg = per_class[1:]
            if np.isfinite(fg).any():
                dice = float(np.nanmean(fg))
        if not dice < 0.1:
            return
        causes, related = _cause_text(ctx)
        evidence = {"mean_dice": round(dice, 4), "images_with_foreground": int(ctx.has_fg.sum()), "threshold": ctx.threshold,
                    "mean_iou": round(float(ctx.a["iou"][ctx.has_fg].mean()), 4), "dice_best_threshold": round(best_threshold(ctx.curve)[1], 4)}
        if per_class is not None:
            evidence["per_class_dice"] = [None if not np.isfinite(x) else round(float(x), 4) for x in per_class]
        yield self.finding(
            title=f"Mean per-image Dice is {dice:.3f} on {int(ctx.has_fg.sum())} images with foreground",
            evidence=evidence,
            why="The predicted masks barely overlap the true objects." + (causes or " No data or model defect was found in this run; check the training history (--history) and the loss."),
            fix="Fix the causes listed (most direct first), then retrain with a loss that measures overlap (Dice + cross-entropy).",
            snippet=_loss_prescription(ctx.spec, ctx.true_share),
            related=related,
        )


@register
class AccuracyTrap(Check):
    """Pixel accuracy looks high only because the background is large, while Dice is low.

    *Why it matters:* with 95% background a model that predicts nothing is 95% accurate; monitoring
    accuracy hides the failure.

    *How to fix:* monitor Dice or IoU (``keras.metrics.BinaryIoU`` / ``MeanIoU``) and select
    checkpoints on it.

    Thresholds: pixel accuracy >= 0.85, within 0.05 of the background share (or below it), and
    mean Dice < 0.5.
    """

    code = "SD503"
    name = "accuracy-trap"
    severity = Severity.WARNING
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        if not ctx.has_fg.any():
            return
        acc = float((ctx.a["tp"].sum() + ctx.a["tn"].sum()) / max(ctx.a["n_pixels"].sum(), 1))
        bg = 1.0 - ctx.true_share
        dice = ctx.mean_dice
        if not (acc >= 0.85 and acc - bg < 0.05 and dice < 0.5):
            return
        from segdoctor.checks.model import compile_line

        c = ctx.spec.out_channels or 1
        yield self.finding(
            title=f"Pixel accuracy {acc:.3f} is close to the background share {bg:.3f} while mean Dice is {dice:.3f}",
            evidence={"pixel_accuracy": round(acc, 4), "background_share": round(bg, 4), "mean_dice": round(dice, 4),
                      "accuracy_of_all_background": round(bg, 4)},
            why=f"Predicting background everywhere already scores {bg:.1%} accuracy here, so accuracy says nothing about the objects.",
            fix="Monitor Dice/IoU instead of accuracy and pick checkpoints on validation IoU.",
            snippet=compile_line(ctx.spec, "keras.losses.BinaryCrossentropy()" if c == 1 else "keras.losses.SparseCategoricalCrossentropy()")
            + "\ncallbacks = [keras.callbacks.ModelCheckpoint(\"best.keras\", monitor=\"val_" + ("binary_io_u" if c == 1 else "mean_io_u") + "\", mode=\"max\", save_best_only=True)]",
        )


@register
class ThresholdMiscalibrated(Check):
    """The pixels are ranked well but the fixed threshold is far from the one that maximises Dice.

    *Why it matters:* a model trained on imbalanced masks often outputs foreground probabilities of
    0.1-0.3; thresholding at 0.5 throws away a model that is actually good.

    *How to fix:* use the best global threshold found here, or decode each image with rank-based
    selection (keep the top-k pixels that maximise the expected Dice, the RankSEG idea).

    Thresholds: binary heads only; pixel ROC AUC >= 0.8, the best global threshold gains at least 0.05
    Dice over the threshold used, and lies outside 0.27-0.73 (more than one logit unit from 0.5).
    """

    code = "SD504"
    name = "threshold-miscalibrated"
    severity = Severity.WARNING
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        if (ctx.spec.out_channels or 1) > 2 or not ctx.has_fg.any():
            return
        t_best, d_best = best_threshold(ctx.curve)
        d_used = ctx.mean_dice
        d_rank = float(ctx.a["rank_dice"][ctx.has_fg].mean())
        gain = d_best - d_used
        logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
        far = abs(logit(t_best) - logit(min(max(ctx.threshold, 1e-6), 1 - 1e-6))) > 1.0
        if not (ctx.auc >= 0.8 and gain >= 0.05 and far):
            return
        yield self.finding(
            title=f"Threshold {ctx.threshold:g} gives Dice {d_used:.3f}; threshold {t_best:.3g} gives {d_best:.3f} (AUC {ctx.auc:.3f})",
            evidence={"dice_at_threshold": round(d_used, 4), "threshold": ctx.threshold, "best_threshold": round(t_best, 4),
                      "dice_at_best_threshold": round(d_best, 4), "dice_rank_based": round(d_rank, 4), "pixel_auc": round(ctx.auc, 4)},
            why="The model ranks foreground above background (high AUC) but its probabilities are shifted, so the fixed threshold cuts in the wrong place.",
            fix=f"Threshold at {t_best:.3g} (chosen on validation data), or decode per image with rank-based selection.",
            snippet=(f"mask = probs >= {t_best:.3g}\n\n"
                     "# or per image, RankSEG-style: keep the top-k pixels maximising the expected Dice\n"
                     "def rank_decode(p):\n"
                     "    flat = p.ravel(); order = np.argsort(-flat); s = flat[order]\n"
                     "    k = np.argmax(2 * np.cumsum(s) / (np.arange(1, s.size + 1) + s.sum())) + 1\n"
                     "    out = np.zeros(flat.size, bool); out[order[:k]] = True\n"
                     "    return out.reshape(p.shape)"),
        )


@register
class ConstantOutput(Check):
    """The predictions barely change from one input to the next: a dead network or one that outputs the class prior.

    *Why it matters:* the model ignores its input; no threshold can rescue it.

    *How to fix:* retrain with a lower learning rate, normalised inputs (see SD507 and SD201) and
    He initialisation; check that the images actually differ after preprocessing.

    Threshold: the per-pixel standard deviation of the foreground probability across images, averaged
    over pixels, below 0.02 and below a tenth of the same statistic for the masks (what a perfect model
    would show: about sqrt(s) for foreground share s, 0.1 at 1%). At least 2 images, inputs that vary,
    and masks that vary. The trained-to-blank sample U-Net scores 0.0007 against 0.10 for its masks; the
    healthy one 0.09.
    """

    code = "SD505"
    name = "constant-output"
    severity = Severity.ERROR
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        across = ctx.result.binary.across_image_std()
        truth_across = ctx.result.binary.truth_across_image_std()
        if not np.isfinite(across) or not truth_across > 0 or across >= 0.02 or across >= 0.1 * truth_across:
            return
        if not (ctx.result.input_std > 1e-6):
            return
        mean_p = float(np.nanmean(ctx.a["mean_prob"]))
        causes, related = _cause_text(ctx)
        # an output near the foreground share is the prior of an imbalanced training set; anything else a dead network
        prior = abs(mean_p - ctx.true_share) <= 0.5 * ctx.true_share + 0.01
        if prior:
            why = (f"The network gives (almost) the same map whatever the image, with a mean probability {mean_p:.3f} close to the "
                   f"foreground share {ctx.true_share:.3f}: it has converged to the class prior, the minimum of cross-entropy "
                   "for a model that ignores its input.")
            fix = "Train with Dice + cross-entropy (or class weights) and for more epochs, so that finding the objects lowers the loss."
            snippet = _loss_prescription(ctx.spec, ctx.true_share)
        else:
            why = (f"The network gives (almost) the same map whatever the image (mean probability {mean_p:.3f}, foreground share "
                   f"{ctx.true_share:.3f}): its units are dead or saturated, typically after too large a learning rate.")
            fix = "Retrain from scratch with a 10x lower learning rate, inputs scaled like at training time, and He initialisation."
            snippet = ("optimizer = keras.optimizers.Adam(learning_rate=1e-4, clipnorm=1.0)\n"
                       "layers.Conv2D(filters, 3, padding=\"same\", activation=\"relu\", kernel_initializer=\"he_normal\")")
        yield self.finding(
            title=f"The output barely changes across {ctx.n} inputs (mean per-pixel std {across:.4f}; mean probability {mean_p:.3f}, true foreground share {ctx.true_share:.3f})",
            evidence={"across_image_std": round(across, 6), "mask_across_image_std": round(truth_across, 6), "within_image_std": round(float(ctx.a["std_prob"].mean()), 6),
                      "mean_probability": round(mean_p, 5), "true_foreground_share": round(ctx.true_share, 5),
                      "input_across_image_std": round(float(ctx.result.input_std), 6), "images": ctx.n,
                      "output_is_class_prior": prior},
            why=why + causes,
            fix=fix,
            snippet=snippet,
            related=related,
        )


@register
class ClassNeverPredicted(Check):
    """Multi-class: classes present in the ground truth that the model (almost) never predicts.

    *Why it matters:* a rare class that is never predicted has Dice 0 and pulls the mean IoU down;
    the loss is dominated by the frequent classes.

    *How to fix:* weight the rare classes (sample weights from the class frequencies, given here),
    or use a Dice/focal loss.

    Threshold: predicted pixels below 0.1% of the class's true pixel count (heads with 3+ channels;
    foreground classes only: never predicting the background is over-segmentation, SD508).
    """

    code = "SD506"
    name = "class-never-predicted"
    severity = Severity.WARNING
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        mc = ctx.result.multiclass
        if mc is None or not len(mc):
            return
        pc = mc.per_class()
        true = pc["true"].sum(0)
        pred = pc["pred"].sum(0)
        # class 0 is background: a model that never predicts it over-segments, which SD508 reports
        missing = [c for c in range(1, len(true)) if true[c] > 0 and pred[c] < 0.001 * true[c]]
        if not missing:
            return
        k = len(true)
        freq = true / max(true.sum(), 1)
        weights = np.where(true > 0, 1.0 / (k * np.maximum(freq, 1e-12)), 0.0)
        weights = weights / weights[true > 0].min()
        wlist = ", ".join(f"{w:.3g}" for w in weights)
        yield self.finding(
            title=f"{len(missing)} of {int((true[1:] > 0).sum())} foreground classes in the masks are never predicted: {', '.join(str(c) for c in missing)}",
            evidence={"never_predicted": missing, "true_pixels": [int(x) for x in true], "predicted_pixels": [int(x) for x in pred],
                      "class_share": [round(float(x), 5) for x in freq]},
            why="The loss is dominated by the frequent classes; the model gets a low loss without ever outputting the rare ones.",
            fix="Weight each pixel by the inverse frequency of its class (weights below), or switch to a Dice/focal loss.",
            snippet=(f"class_weights = tf.constant([{wlist}])  # inverse class frequency, measured on these masks\n"
                     "def add_sample_weights(image, mask):\n"
                     "    return image, mask, tf.gather(class_weights, tf.cast(mask, tf.int32))\n"
                     "train_ds = train_ds.map(add_sample_weights)"),
        )


@register
class InputScaleMismatch(Check):
    """The model scores much better under another input scaling than the one used.

    *Why it matters:* a network trained on /255 inputs sees saturated activations on raw 0-255 values
    (and the reverse: near-zero inputs); the predictions look blank or constant although the weights
    are fine.

    *How to fix:* feed the images exactly as at training time, or put a ``Rescaling`` layer inside the
    model so the scaling travels with it.

    Threshold: only when ``--preprocess`` was given; on a probe subset another scaling (none, unit,
    symmetric, standardize) reaches a mean Dice at least 0.1 higher and 1.5x the Dice of the chosen one.
    """

    code = "SD507"
    name = "input-scale-mismatch"
    severity = Severity.WARNING
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        if not ctx.preprocess_fixed or not ctx.candidate_dice:
            return
        used = ctx.candidate_dice.get(ctx.preprocess)
        if used is None:
            return
        best_mode, best = max(((m, d) for m, d in ctx.candidate_dice.items() if np.isfinite(d)), key=lambda md: md[1], default=(None, float("nan")))
        if best_mode is None or best_mode == ctx.preprocess or not (best >= used + 0.1 and best >= 1.5 * used):
            return
        code = {
            "none": "x = image.astype(\"float32\")  # raw values, as the model was trained",
            "unit": "x = image.astype(\"float32\") / 255.0",
            "symmetric": "x = image.astype(\"float32\") / 127.5 - 1.0",
            "standardize": "x = (image - image.mean()) / (image.std() + 1e-6)",
        }[best_mode]
        yield self.finding(
            title=f"Input scaling '{best_mode}' gives mean Dice {best:.3f}, against {used:.3f} with the chosen '{ctx.preprocess}'",
            evidence={"chosen": ctx.preprocess, "dice_chosen": round(used, 4), "best": best_mode, "dice_best": round(best, 4),
                      **{f"dice_{m}": round(d, 4) for m, d in ctx.candidate_dice.items()}},
            why="The weights expect inputs in another range; under the wrong one the activations saturate or vanish.",
            fix=f"Preprocess the images with '{best_mode}' (rerun with --preprocess {best_mode}), or add a Rescaling layer to the model.",
            snippet=code + "\n# or inside the model: inputs = keras.Input(shape); x = layers.Rescaling(1 / 255.0)(inputs)",
        )


@register
class OverSegmentation(Check):
    """The model predicts far more foreground than the masks contain.

    *Why it matters:* over-segmentation gives many false positives: Dice drops and downstream counts or
    areas are inflated. Common causes are a too-high foreground class weight, a threshold that is too
    low, or a softmax/activation bug that saturates to 1.

    *How to fix:* lower the foreground weight or raise the threshold (SD504 gives the Dice-optimal one).

    Threshold: pooled predicted foreground share at least 2x the true share and at least 5 percentage
    points above it.
    """

    code = "SD508"
    name = "over-segmentation"
    severity = Severity.WARNING
    scope = "predictions"

    def run(self, ctx: PredictionContext) -> Iterator[Finding]:
        pred, true = ctx.pred_share, ctx.true_share
        if not (pred >= 2 * true and pred - true >= 0.05):
            return
        t_best, d_best = best_threshold(ctx.curve) if ctx.has_fg.any() else (float("nan"), float("nan"))
        over = ctx.a["pred_share"] >= 2 * ctx.a["true_share"] + 0.05
        causes, related = _cause_text(ctx)
        yield self.finding(
            title=f"Predicted foreground covers {pred:.1%} of the pixels, against {true:.1%} in the masks",
            evidence={"predicted_foreground_share": round(pred, 5), "true_foreground_share": round(true, 5),
                      "images_over_segmented": int(over.sum()), "images": ctx.n, "best_threshold": round(t_best, 4),
                      "dice_at_best_threshold": round(d_best, 4)},
            why="Most predicted foreground is false positive." + causes,
            fix=f"Raise the threshold (Dice-optimal here: {t_best:.3g}) or reduce the foreground weight in the loss.",
            snippet=f"mask = probs >= {t_best:.3g}" if np.isfinite(t_best) else None,
            files=ctx.files(over),
            related=related,
        )


__all__ = ["PredictionContext", "THRESHOLDS"]
