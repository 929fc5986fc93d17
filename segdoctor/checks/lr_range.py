"""SD451 learning-rate-range: what the learning-rate range test measured, against the LR the model trains with.

The sweep runs in ``segdoctor.io.lr_sweep`` and is read by ``segdoctor.stats.lr_range``; the check reads the
result from the model context (``ModelContext.lr_range``), so ``check-model --lr-find`` and ``segdoctor lr-find``
report it alike. It is skipped when no range test ran.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from segdoctor.findings import Figure, Finding, Severity
from segdoctor.registry import Check, register
from segdoctor.stats.lr_range import RangeResult, round_lr

#: optimizer classes of ``keras.optimizers`` a fix snippet may name (a saved custom class falls back to Adam)
KERAS_OPTIMIZERS = frozenset({"Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb", "Lion",
                              "LossScaleOptimizer", "Muon", "Nadam", "RMSprop", "SGD"})
#: optimizer settings a fix snippet carries over from the saved optimizer (numbers and booleans only)
_CARRIED_SETTINGS = ("momentum", "nesterov", "weight_decay", "beta_1", "beta_2", "clipnorm", "clipvalue", "global_clipnorm")


@dataclass
class LRFindResult:
    """A range test as run and read, plus the learning rates the user trains with (saved optimizer, history)."""

    sweep: Any  # segdoctor.io.lr_sweep.Sweep
    range: RangeResult
    history_lrs: tuple[float, ...] = ()  # the log's LR column (finite values), when --history was given
    history_source: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One clause for other findings to quote (the SD6xx learning-rate advice)."""
        r = self.range
        if r.state == "never-falls":
            return (f"lr-find measured no learning rate at which this model learns from the data: the loss never fell "
                    f"below a constant prediction between {_g(r.learning_rates[0] if r.learning_rates else None)} and "
                    f"{_g(r.learning_rates[-1] if r.learning_rates else None)}")
        return "lr-find measured on this model and data: " + self.measurement()

    def measurement(self) -> str:
        """What the curve showed: fastest fall, blow-up, good range."""
        r = self.range
        parts = []
        if r.steepest_lr is not None:
            parts.append(f"the loss falls fastest at {_g(r.steepest_lr)}")
        if r.blowup_lr is not None:
            parts.append(f"blows up from {_g(r.blowup_lr)}")
        elif r.learning_rates:
            parts.append(f"no blow-up up to {_g(r.learning_rates[-1])}")
        if r.good_low is not None and r.good_high is not None:
            parts.append(f"good range {_g(r.good_low)}–{_g(r.good_high)}")
        return ", ".join(parts)

    @property
    def suggestion(self) -> float | None:
        return round_lr(self.range.suggested_lr) if self.range.suggested_lr is not None else None


def _g(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.2g}"


def optimizer_expression(sweep: Any, lr: float | str) -> str:
    """``keras.optimizers.<Class>(learning_rate=..., <saved settings>)`` for the optimizer type the sweep used."""
    name = str(sweep.optimizer)
    known = name in KERAS_OPTIMIZERS and name != "LossScaleOptimizer"
    cls = name if known else "Adam"
    args = [f"learning_rate={lr}"]
    if known:
        for key in _CARRIED_SETTINGS:
            value = sweep.optimizer_settings.get(key)
            if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
                args.append(f"{key}={value!r}")
    return f"keras.optimizers.{cls}({', '.join(args)})"


def _loss_expression(sweep: Any) -> str:
    from segdoctor.io.lr_sweep import LOSS_NAMES

    name = str(sweep.loss)
    if sweep.loss_source == "--loss" and name in LOSS_NAMES:
        return repr(name)
    if sweep.loss_source == "--loss" and name.isidentifier() and not keyword.iskeyword(name):
        return name  # the function the user named, from their --custom-objects file
    return "model.loss"


def schedule_snippet(result: LRFindResult) -> str:
    """Copy-paste Keras 3 code: the measured constant LR, then warm-up + cosine decay to the measured peak."""
    r, sweep = result.range, result.sweep
    lr = round_lr(r.suggested_lr)
    peak = round_lr(r.peak_lr if r.peak_lr is not None else r.suggested_lr)
    start = float(f"{peak / 25:.2g}")
    lines = [
        f"# measured by segdoctor lr-find on this model and data: {result.measurement()}",
        f"optimizer = {optimizer_expression(sweep, f'{lr:g}')}",
        "",
        "# or warm up to the peak, then cosine-decay (one-cycle style); set epochs and steps_per_epoch to your training",
        "epochs = 50",
        "steps_per_epoch = 100  # len(train_dataset): batches per epoch",
        "total_steps = epochs * steps_per_epoch",
        "warmup_steps = max(1, total_steps // 10)",
        "schedule = keras.optimizers.schedules.CosineDecay(",
        f"    initial_learning_rate={start:g}, decay_steps=total_steps - warmup_steps, alpha=0.01,",
        f"    warmup_target={peak:g}, warmup_steps=warmup_steps)",
        f"optimizer = {optimizer_expression(sweep, 'schedule')}",
        f"model.compile(optimizer=optimizer, loss={_loss_expression(sweep)})  # and your metrics",
    ]
    return "\n".join(lines)


def lr_range_figure(result: LRFindResult, current: float | None) -> Figure:
    """Loss vs LR on a log axis: batch losses, the smoothed curve, the good range, the suggestion and the LRs in use."""
    r = result.range
    marks = []
    if result.suggestion is not None:
        marks.append({"x": result.suggestion, "label": f"suggested {result.suggestion:g}", "color": "#2e7d32"})
    if r.blowup_lr is not None:
        marks.append({"x": r.blowup_lr, "label": f"blows up {_g(r.blowup_lr)}", "color": "#777777"})
    if current is not None:
        marks.append({"x": current, "label": f"in use {_g(current)}", "color": "#b22222"})
    if result.history_lrs:
        lo, hi = min(result.history_lrs), max(result.history_lrs)
        marks.append({"x": hi, "label": f"log {_g(lo)}–{_g(hi)}" if hi > lo else f"log {_g(hi)}", "color": "#c77c02"})
    data = {
        "lrs": list(r.learning_rates), "losses": list(r.losses), "smoothed": list(r.smoothed), "marks": marks,
        "span": [r.good_low, r.good_high] if r.good_low is not None and r.good_high is not None else None,
        "constant_loss": r.constant_loss, "start_loss": r.start_loss,
        "xlabel": "learning rate (log scale)", "ylabel": f"batch loss ({result.sweep.loss})",
    }
    caption = (f"One batch of {result.sweep.batch_size} per step on a copy of the model ({result.sweep.optimizer}); grey: batch losses, "
               "blue: smoothed; shaded: the good range." + (" Dashed: the loss of the best constant prediction." if r.constant_loss is not None else ""))
    return Figure(kind="lr_range", title="Learning-rate range test", data=data, caption=caption)


_POSITION_TEXT = {
    "below": "below the range",
    "above": "above the range",
    "beyond-blowup": "beyond the blow-up of the range",
    "inside": "inside the range",
}


@register
class LearningRateRange(Check):
    """A learning-rate range test measured where the loss falls fastest and where it blows up; the LR in use lies outside.

    *Why it matters:* the learning rate decides whether a network trains at all: far below the range the
    loss barely moves for many epochs (SD604), above it the loss oscillates (SD603), diverges (SD602) or
    turns NaN (SD601), and ReLU units die. Rules of thumb ("Adam 1e-3") can be off by orders of magnitude
    for a given model, loss and data; a range test measures it.

    *How to fix:* train with the measured learning rate, or a warm-up + cosine (one-cycle style) schedule
    peaking at the measured value; the finding gives both as Keras 3 code for this model's optimizer.

    How it is measured (Smith 2017, as in fastai's ``lr_find``): a copy of the model, with its compiled loss
    and a fresh optimizer of the saved type and settings, trains one batch per step while the LR grows
    exponentially (default 100 steps from 1e-7 to 10); it stops when the running loss exceeds 4x its best or
    turns NaN. The user's model and file are never changed. The curve is read with a centred smoothing
    (0.4 decade). Every ~5 steps the copy's loss on held-out samples is compared with its loss on the same
    predictions scored against shuffled masks: a model that uses the images scores the true pairs at least
    5% better (two probes in a row); one that learns only the class prior (random masks, a dead network)
    scores both alike. The loss *falls* when its smoothed minimum is 5% below the start and the model
    learned from the images; the LR where a model stops using the images counts as a blow-up even if the
    loss (now the prior's) did not rise. Good range: from a decade below the onset of the fall (5% of it
    covered: the sweep shows progress only once the steps at lower rates have added up) to the larger of
    the steepest-descent LR and a tenth of the minimum's LR, at most a third of the blow-up LR.
    Suggestion: the middle (log scale) of the descent from its onset to the minimum, like fastai's
    "valley". Warm-up + cosine peak: three times the suggestion, within the range. A
    model that already fits the data (before the sweep) is judged against its blow-up (range: 1/100 to 1/3
    of it), unless the sweep halves its loss. Severity: warning when the saved optimizer's LR (or the training log's, ``--history``) lies
    outside the range, or when no LR makes the loss fall; info when it lies inside.
    """

    code = "SD451"
    name = "learning-rate-range"
    severity = Severity.WARNING
    scope = "model"

    @classmethod
    def skip_reason(cls, subject: Any) -> str | None:
        if getattr(subject, "lr_range", None) is None:
            return "needs a learning-rate range test: segdoctor lr-find MODEL --data DIR, or check-model --data DIR --lr-find"
        return None

    def run(self, ctx: Any) -> Iterator[Finding]:
        result: LRFindResult | None = getattr(ctx, "lr_range", None)
        if result is None:
            return
        r, sweep = result.range, result.sweep
        spec = ctx.spec
        current = spec.learning_rate if spec.learning_rate is not None and spec.learning_rate > 0 else None
        evidence: dict[str, Any] = {
            "state": r.state, "steps_run": len(r.losses), "steps_planned": sweep.steps_planned, "batch_size": sweep.batch_size,
            "lr_swept": f"{_g(sweep.min_lr)}–{_g(r.learning_rates[-1] if r.learning_rates else sweep.max_lr)}",
            "stopped": sweep.stop_reason, "optimizer": f"{sweep.optimizer} ({sweep.optimizer_source})", "loss": sweep.loss,
            "start_loss": round(r.start_loss, 5), "min_loss": round(r.min_loss, 5), "min_loss_lr": r.min_lr,
        }
        if r.constant_loss is not None:
            evidence["constant_prediction_loss"] = round(r.constant_loss, 5)
        if r.content_curve:
            best = max(r.content_curve, key=lambda c: (c[2] - c[1]) / max(abs(c[2]), 1e-12))
            evidence["best_true_vs_shuffled_masks"] = f"{best[1]:.4g} vs {best[2]:.4g} at LR {_g(best[0])}"
        for key, value in (("steepest_lr", r.steepest_lr), ("blowup_lr", r.blowup_lr), ("good_range_low", r.good_low),
                           ("good_range_high", r.good_high), ("suggested_lr", result.suggestion), ("collapse_lr", r.collapse_lr)):
            if value is not None:
                evidence[key] = value
        if current is not None:
            evidence["saved_learning_rate"] = float(f"{current:.6g}")  # float32 storage: 1e-6 reads 9.99999997e-07
            if spec.lr_schedule:
                evidence["saved_schedule"] = spec.lr_schedule
        figure = lr_range_figure(result, current)
        if r.state == "never-falls":
            yield self._never_falls(result, evidence, figure)
            return
        if r.suggested_lr is None:  # trained, but no blow-up within the sweep: nothing to bound the range
            yield self.finding(
                severity=Severity.INFO,
                title=(f"The model already fits these data and its loss does not rise up to LR {_g(r.learning_rates[-1])} (lr-find)"),
                evidence=evidence,
                why="A trained model's loss cannot fall much further; only a blow-up would bound the useful range, and none occurred.",
                fix=f"Keep the learning rate in use{f' ({_g(current)})' if current else ''}; for fine-tuning, rerun with a larger --max-lr to find the blow-up.",
                figures=[figure],
            )
            return
        positions: dict[str, tuple[float, str | None]] = {}
        if current is not None:
            positions["saved optimizer"] = (current, r.position(current))
            evidence["saved_lr_position"] = positions["saved optimizer"][1]
        if result.history_lrs:
            lo, hi = min(result.history_lrs), max(result.history_lrs)
            positions["training log (highest)"] = (hi, r.position(hi))
            evidence["history_lr_first"] = result.history_lrs[0]
            evidence["history_lr_last"] = result.history_lrs[-1]
            evidence["history_lr_highest_position"] = positions["training log (highest)"][1]
            if lo < hi:
                positions["training log (lowest)"] = (lo, r.position(lo))
                evidence["history_lr_lowest_position"] = positions["training log (lowest)"][1]
        outside = [(label, value, pos) for label, (value, pos) in positions.items() if pos not in (None, "inside")]
        lr = result.suggestion
        range_text = f"{_g(r.good_low)}–{_g(r.good_high)}"
        measured = "Measured on this model and data: " + result.measurement()
        schedule = schedule_snippet(result)
        if not outside:
            where = (f"the {', '.join(positions)} LR {', '.join(_g(v) for v, _ in positions.values())} lies inside it"
                     if positions else "the model file saves no learning rate to compare")
            yield self.finding(
                severity=Severity.INFO,
                title=(f"Learning rate {_g(current)} is inside the measured range {range_text} ("
                       + (f"the loss falls fastest at {_g(r.steepest_lr)})" if r.steepest_lr is not None else f"the loss blows up from {_g(r.blowup_lr)})")
                       if current is not None and positions.get("saved optimizer", (0, ""))[1] == "inside"
                       else f"Learning-rate range test: good range {range_text}, suggested {lr:g}"),
                evidence=evidence,
                why=f"{measured}; {where}.",
                fix=f"Keep it, or train with {optimizer_expression(sweep, f'{lr:g}')} and a warm-up + cosine schedule peaking at {round_lr(r.peak_lr):g}.",
                snippet=schedule,
                figures=[figure],
            )
            return
        label, value, pos = outside[0]
        factor = value / lr if lr else float("nan")
        direction = f"{factor:.0f}x the suggestion" if factor >= 1 else f"1/{1 / factor:.0f} of the suggestion"
        consequences = {
            "below": "at this rate the weights barely move: the loss stays flat for many epochs (SD604) and training stops before it converges",
            "above": "at this rate the updates overshoot: the loss oscillates (SD603) or creeps up, and the model settles worse than it could",
            "beyond-blowup": "at this rate the sweep's loss blew up: training diverges (SD602), turns NaN (SD601) or kills the network",
        }
        yield self.finding(
            title=(f"The {label} learning rate {_g(value)} is {_POSITION_TEXT[pos]} lr-find measured for this model ({range_text}; "
                   f"{'the loss blows up from ' + _g(r.blowup_lr) if r.blowup_lr is not None and (pos == 'beyond-blowup' or r.steepest_lr is None) else 'the loss falls fastest at ' + _g(r.steepest_lr)})"),
            evidence=evidence,
            why=f"{measured}. The {label} uses {_g(value)} ({direction}): {consequences[pos]}.",
            fix=f"Train with {optimizer_expression(sweep, f'{lr:g}')}, or warm up to {round_lr(r.peak_lr):g} and decay with a cosine schedule.",
            snippet=schedule,
            figures=[figure],
            related=("SD404", "SD601", "SD602", "SD603", "SD604"),
        )

    def _never_falls(self, result: LRFindResult, evidence: dict[str, Any], figure: Figure) -> Finding:
        r, sweep = result.range, result.sweep
        lo, hi = _g(r.learning_rates[0] if r.learning_rates else sweep.min_lr), _g(r.learning_rates[-1] if r.learning_rates else sweep.max_lr)
        if getattr(sweep, "trainable_params", 1) == 0:
            title = f"The loss never falls at any learning rate from {lo} to {hi} (lr-find): the model has no trainable weights"
            why = "Every layer is frozen (trainable=False), so no learning rate can change the model."
            fix = "Unfreeze the head (and the layers you mean to train) before compiling."
        elif abs(r.fall) < 0.01:
            title = f"The loss never falls at any learning rate from {lo} to {hi} (lr-find): it stays at {r.start_loss:.4g}"
            why = ("The loss does not move at all while the learning rate grows by "
                   f"{math.log10(max(r.learning_rates[-1] / r.learning_rates[0], 1.0)) if r.learning_rates else 0:.0f} decades: "
                   "the gradients do not reach the weights (dead ReLUs, saturated outputs, NaN or zero weights: SD405, SD505).")
            fix = "Retrain from a fresh initialisation (He init, inputs scaled like at training time); check SD405/SD505 in check-model."
        else:
            prior = f" (a constant prediction reaches {r.constant_loss:.4g})" if r.constant_loss is not None else ""
            title = (f"The loss never falls below what a constant prediction reaches, at any learning rate from {lo} to {hi} "
                     f"(lr-find): it went from {r.start_loss:.4g} to {r.min_loss:.4g}{prior}")
            why = ("The copy of the model learned the share of foreground pixels (the class prior), not where the objects are: on "
                   "held-out images it scored the true masks no better than masks shuffled between images. Masks that do not belong "
                   "to their images (random, swapped, misaligned) do this, and so do weights stuck at the prior (a collapsed network, "
                   "SD505); lr-find therefore names no learning rate.")
            fix = (f"Check that each mask belongs to its image (segdoctor check-data: SD251 pair-misaligned, SD252 mask-flipped); if they "
                   "do and the model outputs a constant (SD505), retrain it from a fresh initialisation with Dice + cross-entropy; "
                   f"otherwise give the sweep more steps per learning rate (--steps {max(300, 3 * sweep.steps_planned)}).")
        return self.finding(title=title, evidence=evidence, why=why, fix=fix, figures=[figure], related=("SD251", "SD252", "SD505"))
