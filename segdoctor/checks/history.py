"""Training-history checks (SD6xx): NaN and divergence, oscillation, plateaus, metric collapse and
the accuracy trap, overfitting, early stops, out-of-range and frozen metrics.

Each check reads a ``HistoryContext`` (the log plus what every column means) and judges curves in the
direction the log means them: a loss defined as ``-Dice`` is negative by design.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdoctor.checks._common import py_str
from segdoctor.findings import Figure, Finding, Severity
from segdoctor.io.history import History
from segdoctor.registry import Check, register
from segdoctor.stats import curves
from segdoctor.stats.curves import ColumnRole, LossForm

# --- thresholds (documented in the check docstrings) ---------------------------------------------

#: a Dice/IoU/F1 below this is "near 0": under 1% overlap means the foreground is essentially unpredicted
NEAR_ZERO_OVERLAP = 0.01
#: with one or two epochs only, a value this small is already a collapse (the smooth term alone, e.g. 4e-11)
ESSENTIALLY_ZERO_OVERLAP = 1e-3
#: a metric that once reached this much overlap had learned something before it fell ...
RISEN_OVERLAP = 0.1
#: ... and has collapsed when it ends below this and below a tenth of its peak
COLLAPSED_AFTER_PEAK = 0.05
#: a Dice/IoU that stays below this for the whole run (>= 3 epochs), flat within FLAT_SPREAD of its median
#: (plus rounding), has collapsed whatever its value: 0.1 is also SD502's collapse line for the mean Dice
SMALL_OVERLAP = 0.1
FLAT_SPREAD = 0.2
#: with the foreground share f known, a collapsed Dice within this share of 2f/(1+f) (IoU: of f) is the score of
#: predicting foreground everywhere; per-batch averaging keeps a metric a little below the pooled value
ALL_FOREGROUND_MATCH = 0.25
#: the accuracy trap: accuracy at least this high while the overlap metric is below TRAP_OVERLAP
HIGH_ACCURACY = 0.9
TRAP_OVERLAP = 0.05
#: accuracy within this distance of the data's background share is what a constant prediction scores
BACKGROUND_SHARE_MATCH = 0.01
#: SD601: a loss this many times its first value has exploded
EXPLOSION_FACTOR = 1e3
#: SD602: loss rising to this multiple of its (smoothed) minimum, as a trend, or this many rising steps
DIVERGENCE_RATIO = 2.0
DIVERGENCE_RISING_STEPS = 5
DIVERGENCE_MIN_RISE = 0.10
DIVERGENCE_TREND_TAU = 0.5
#: SD603: smoothness below this, total variation this many times the net change, steps this large against the level
OSCILLATION_SMOOTHNESS = 0.5
OSCILLATION_VARIATION_RATIO = 3.0
OSCILLATION_STEP_TO_LEVEL = 0.20
OSCILLATION_MIN_COMPARISONS = 4
#: long segments are also scanned in windows of this many epochs, so a wild start is not averaged away
OSCILLATION_WINDOW = 20
#: SD604: every early step under this relative change, and the log never gains more than PLATEAU_TOTAL
PLATEAU_STEP = 0.05
PLATEAU_TOTAL = 0.10
PLATEAU_MIN_STEPS = 4
PLATEAU_WINDOW = 10
#: a loss that moves less than this after the schedule took the LR to USELESS_LR or below has stalled
PLATEAU_AFTER_DROP = 0.01
USELESS_LR = 1e-6
#: SD607: val loss this much above its best (as a trend) while the train loss still falls; metric gap
OVERFIT_RISE = 0.10
OVERFIT_TREND_TAU = 0.3
OVERFIT_METRIC_GAP = 0.15
#: SD608: still improving by this much over the last steps when the log ends
STILL_IMPROVING = 0.05
STILL_IMPROVING_TAU = -0.6
#: SD609: tolerance for rounding before a Dice/IoU/accuracy counts as outside [0, 1]
RANGE_TOLERANCE = 1e-3
#: SD610: the same value repeated for this many epochs (2 suffice for a 2-epoch log at full precision: a live
#: metric never repeats to 5 significant digits) while the loss moves by MOVING_LOSS
FROZEN_EPOCHS = 3
FULL_PRECISION_DIGITS = 5
MOVING_LOSS = 0.05
#: what one curve figure draws at most: columns, points per curve (a plot is ~620 px wide), shaded
#: episodes and LR-change lines; wide and long logs would otherwise make figures of megabytes
FIGURE_SERIES = 8
FIGURE_POINTS = 1000
FIGURE_MARKS = 20


def _g(x: float) -> str:
    """A short human number: 0.0001, 0.21, 3.84, 1.2e+03."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    if abs(x) < 1e-3 or abs(x) >= 1e4:
        return f"{x:.2g}"
    return f"{x:.3g}"


def _names(names: Sequence[str], shown: int = 4) -> str:
    """Column names for a title: the first few and how many more (a wide log may name thousands)."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown:,} more"


def _times(x: float) -> str:
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


@dataclass
class HistoryContext:
    """A training log plus what every column means; built once, read by every SD6xx check."""

    history: History
    background_share: float | None = None
    data_findings: tuple[Finding, ...] = ()
    lr_range: Any = None  # segdoctor.checks.lr_range.LRFindResult when lr-find ran in the same run
    roles: dict[str, ColumnRole] = field(init=False)
    loss_forms: dict[str, LossForm] = field(init=False)
    # lookups every check repeats, computed once: a log may have thousands of columns
    _by_kind: dict[tuple, list[str]] = field(init=False, default_factory=dict, repr=False)
    _twins: dict[tuple[str, str, str], str] = field(init=False, default_factory=dict, repr=False)
    _lr_steps: list[tuple[int, float, float]] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.roles = {n: curves.column_role(n) for n in self.history.columns}
        for name, role in self.roles.items():
            self._twins.setdefault((role.base, role.kind, role.split), name)
        self.loss_forms = {}
        for name, role in self.roles.items():
            if role.kind != curves.LOSS:
                continue
            # the loss may be -Dice or -IoU: try each overlap column of its split before judging it alone
            partners = self.columns(curves.DICE, curves.IOU, split=role.split)
            self.loss_forms[name] = curves.loss_form_among(self.values(name), [(p, self.values(p)) for p in partners])

    # column access ---------------------------------------------------------------------------
    @property
    def epochs(self) -> np.ndarray:
        return self.history.epochs

    @property
    def n(self) -> int:
        return self.history.n_epochs

    def values(self, name: str) -> np.ndarray:
        return self.history.columns[name]

    def columns(self, *kinds: str, split: str | None = None) -> list[str]:
        """Names of the columns of these kinds (and split), in log order; the list is shared: do not modify it."""
        key = (kinds, split)
        found = self._by_kind.get(key)
        if found is None:
            found = [n for n, r in self.roles.items() if r.kind in kinds and (split is None or r.split == split)]
            self._by_kind[key] = found
        return found

    def _overlap_partner(self, split: str) -> str | None:
        for kind in (curves.DICE, curves.IOU):
            found = self.columns(kind, split=split)
            if found:
                return found[0]
        return None

    def overlap_partner(self, split: str) -> str | None:
        """The Dice (preferred) or IoU column of a split."""
        return self._overlap_partner(split)

    def main_loss(self, split: str) -> str | None:
        """``loss`` / ``val_loss`` when logged, else the first loss column of the split."""
        preferred = "loss" if split == "train" else "val_loss"
        if preferred in self.roles:
            return preferred
        found = self.columns(curves.LOSS, split=split)
        return found[0] if found else None

    def twin(self, name: str) -> str | None:
        """The same quantity on the other split (``val_dice_coef`` for ``dice_coef``), the first one logged."""
        role = self.roles[name]
        return self._twins.get((role.base, role.kind, "val" if role.split == "train" else "train"))

    def distance(self, name: str) -> np.ndarray | None:
        """A loss as distance from a perfect fit (>= 0), or None when its offset is unknown."""
        form = self.loss_forms.get(name)
        if form is None or form.offset is None:
            return None
        return self.values(name) + form.offset

    # learning rate ---------------------------------------------------------------------------
    @property
    def lr_name(self) -> str | None:
        found = self.columns(curves.LR)
        return found[0] if found else None

    def lr_at(self, index: int) -> float | None:
        name = self.lr_name
        if name is None or not 0 <= index < self.n:
            return None
        v = float(self.values(name)[index])
        return v if math.isfinite(v) else None

    def lr_steps(self) -> list[tuple[int, float, float]]:
        """Discrete LR changes (a step schedule or ReduceLROnPlateau); empty for a smooth per-epoch decay."""
        if self._lr_steps is None:
            name = self.lr_name
            changes = [] if name is None else curves.learning_rate_changes(self.values(name))
            self._lr_steps = [] if len(changes) > max(1, (self.n - 1) // 3) else changes
        return list(self._lr_steps)

    def epoch(self, index: int) -> int:
        return int(self.epochs[index])

    def epoch_range(self, i0: int, i1: int) -> str:
        a, b = self.epoch(i0), self.epoch(i1)
        return f"epoch {a}" if a == b else f"epochs {a}-{b}"

    # figures ---------------------------------------------------------------------------------
    def span(self, i0: int, i1: int, label: str) -> dict:
        return {"start": float(self.epochs[i0]) - 0.5, "end": float(self.epochs[i1]) + 0.5, "label": label}

    def curves_figure(self, names: Sequence[str], *, title: str, spans: Sequence[dict] = (), caption: str = "",
                      focus: Sequence[str] = ()) -> Figure:
        """Curves of ``names`` (train solid, val dashed, twins share a colour) with the LR on the right axis.

        What is drawn is capped, whatever the log: at most ``FIGURE_SERIES`` columns (``focus`` and their
        twins first, then in log order; the caption says how many were left out) and ``FIGURE_POINTS``
        points per curve (an envelope of each stretch of epochs, ``curves.envelope``).
        """
        palette = ["#3b6ea8", "#d1603d", "#5a9e6f", "#8e6bb8", "#c9a227", "#4aa3a3", "#b5527d"]
        wanted = set(names)
        shown = list(dict.fromkeys(n for f in focus if f in self.roles for n in (f, self.twin(f)) if n == f or n in wanted))
        total = len(wanted | set(shown))
        for n in names:
            if len(shown) >= FIGURE_SERIES:
                break
            if n not in shown:
                shown.append(n)
        shown = shown[:FIGURE_SERIES]
        if total > len(shown):
            note = f"{len(shown)} of {total} columns drawn (all are in the table of recognised columns)."
            caption = f"{caption} {note}".strip()
        x = self.epochs.astype(float)
        bases: list[str] = []
        series = []
        lows, highs, all_positive = [], [], True
        for name in shown:
            role = self.roles[name]
            if role.base not in bases:
                bases.append(role.base)
            y = self.values(name)
            finite = y[np.isfinite(y)]
            if finite.size:
                lows.append(float(finite.min()))
                highs.append(float(finite.max()))
                all_positive = all_positive and lows[-1] > 0
            xs, ys = curves.envelope(x, y, max_points=FIGURE_POINTS)
            entry = {"label": name, "y": ys.tolist(), "color": palette[bases.index(role.base) % len(palette)],
                     "style": "--" if role.split == "val" else "-"}
            if xs is not x:
                entry["x"] = xs.tolist()
            series.append(entry)
        lr = self.lr_name
        if lr is not None:
            xs, ys = curves.envelope(x, self.values(lr), max_points=FIGURE_POINTS)
            entry = {"label": "learning rate", "y": ys.tolist(), "axis": "right", "color": "#777777", "style": ":"}
            if xs is not x:
                entry["x"] = xs.tolist()
            series.append(entry)
        steps = self.lr_steps()
        vlines = [{"x": float(self.epochs[i]) - 0.5, "label": f"LR {_g(a)}→{_g(b)}"} for i, a, b in steps[:FIGURE_MARKS]]
        log = bool(lows) and all_positive and max(highs) / min(lows) >= 100
        return Figure(kind="lines", title=title, caption=caption, data={
            "x": x.tolist() if x.size <= FIGURE_POINTS else [float(x[0]), float(x[-1])],  # long logs: per-series x
            "series": series, "spans": list(spans)[:FIGURE_MARKS], "vlines": vlines,
            "xlabel": "epoch", "ylabel": "value (log scale)" if log else "value", "log": log,
            "y2label": "learning rate", "y2log": True,
        })

    def loss_figure(self, *, title: str = "Loss curves", spans: Sequence[dict] = (), caption: str = "",
                    focus: Sequence[str] = ()) -> Figure:
        return self.curves_figure(self.columns(curves.LOSS), title=title, spans=spans, caption=caption, focus=focus)

    def metric_figure(self, *, title: str = "Metric curves", spans: Sequence[dict] = (), caption: str = "",
                      focus: Sequence[str] = ()) -> Figure:
        names = self.columns(curves.DICE, curves.IOU, curves.ACCURACY)
        return self.curves_figure(names, title=title, spans=spans, caption=caption, focus=focus)

    # advice ----------------------------------------------------------------------------------
    def lr_advice(self, index: int | None = None, *, factor: str = "0.1") -> tuple[str, str]:
        """(sentence, learning-rate literal for snippets): concrete numbers when the log has an LR column, and the
        range lr-find measured when it ran in the same run (else a pointer to it)."""
        lr = self.lr_at(self.n - 1 if index is None else index)
        if lr is None or lr <= 0:
            sentence, literal = "Lower the learning rate to a tenth of what you use now (for Adam, 1e-3 → 1e-4)", "1e-4"
        elif factor == "0.1":
            sentence, literal = f"Lower the learning rate from {_g(lr)} to {_g(lr * 0.1)} (x0.1)", _g(lr * 0.1)
        else:
            sentence, literal = f"Lower the learning rate from {_g(lr)} to {_g(lr * 0.1)}–{_g(lr * 0.3)} (x0.1–0.3)", _g(lr * 0.3)
        measured = getattr(self.lr_range, "suggestion", None)
        if self.lr_range is None:
            note = "run `segdoctor lr-find MODEL.keras --data DIR` to measure the range for your model"
        elif measured is None:
            note = self.lr_range.describe()
        else:
            note = f"{self.lr_range.describe()}: train at {_g(measured)}"
            # the measured value goes into the code unless it is above an LR this log shows failing
            literal = _g(measured) if lr is None or lr <= 0 or measured < lr else literal
        return (sentence[:-1] + f"; {note})" if sentence.endswith(")") else f"{sentence} ({note})"), literal

    def lr_test_advice(self) -> str:
        """How to find the learning rate: the measured one when lr-find ran in the same run."""
        measured = getattr(self.lr_range, "suggestion", None)
        if self.lr_range is None:
            return ("Run a learning-rate range test (`segdoctor lr-find MODEL.keras --data DIR`) and train at the LR where the "
                    "loss falls fastest")
        if measured is None:
            return f"{self.lr_range.describe()}: fix the data or the loss before the learning rate"
        return f"Train at {_g(measured)}, the learning rate {self.lr_range.describe()}"

    def data_finding(self, code: str) -> Finding | None:
        return next((f for f in self.data_findings if f.code == code), None)

    def loss_prescription(self) -> str:
        """Dice + BCE (or class-balanced focal when the background share is known): a copy-paste Keras snippet."""
        imbalance = self.data_finding("SD151")
        if imbalance is not None and imbalance.snippet:
            return "# loss prescription from the data checks (SD151)\n" + imbalance.snippet
        if self.background_share is not None and 0 < self.background_share < 1:
            bg = self.background_share
            return (
                f"# {100 * bg:.1f}% of the mask pixels are background (from --data)\n"
                "dice = keras.losses.Dice(axis=(1, 2, 3))\n"
                f"focal = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha={bg:.2f}, gamma=2.0)\n"
                "def focal_dice(y_true, y_pred):\n"
                "    return focal(y_true, y_pred) + dice(y_true, y_pred)\n"
                "model.compile(optimizer=optimizer, loss=focal_dice, metrics=[keras.metrics.BinaryIoU(target_class_ids=[1])])"
            )
        return (
            "dice = keras.losses.Dice(axis=(1, 2, 3))  # per image, so empty backgrounds do not dominate\n"
            "bce = keras.losses.BinaryCrossentropy()\n"
            "def bce_dice(y_true, y_pred):\n"
            "    return bce(y_true, y_pred) + dice(y_true, y_pred)\n"
            "model.compile(optimizer=optimizer, loss=bce_dice, metrics=[keras.metrics.BinaryIoU(target_class_ids=[1])])"
        )


def _significant_digits(value: float) -> int:
    """Significant digits in the shortest repr of ``value``: 4 for a log rounded to 0.9881, 8 for 0.98812866."""
    text = repr(float(value)).lower().lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(text.rstrip("0"))


def _repeats_needed(value: float, n_epochs: int) -> int:
    """Epochs of exact repetition that make a metric frozen (SD610)."""
    if n_epochs == 2 and _significant_digits(value) >= FULL_PRECISION_DIGITS:
        return 2
    return FROZEN_EPOCHS


def _first(mask: np.ndarray) -> int:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else -1


_CLIP_SNIPPET = "optimizer = keras.optimizers.Adam(learning_rate={lr}, clipnorm=1.0)"
_WARMUP_SNIPPET = (
    "steps_per_epoch = len(train_dataset)  # batches per epoch\n"
    "schedule = keras.optimizers.schedules.CosineDecay(\n"
    "    initial_learning_rate={start}, decay_steps=steps_per_epoch * epochs,\n"
    "    warmup_target={lr}, warmup_steps=steps_per_epoch * 3)  # 3 epochs of warm-up, then cosine decay\n"
    "optimizer = keras.optimizers.Adam(learning_rate=schedule, clipnorm=1.0)"
)
_PLATEAU_SNIPPET = (
    "callbacks = [keras.callbacks.ReduceLROnPlateau(monitor={monitor}, factor=0.2, patience=5, min_lr=1e-6)]\n"
    "model.fit(..., callbacks=callbacks)"
)


def _warmup(lr: str) -> str:
    try:
        start = _g(float(lr) / 100)
    except ValueError:
        start = "1e-6"
    return _WARMUP_SNIPPET.format(lr=lr, start=start)


# --- SD601 -----------------------------------------------------------------------------------------


@register
class LossNan(Check):
    """A loss became NaN/Inf, or exploded to 1000x its first value.

    *Why it matters:* once a loss is NaN the weights are NaN too; every later epoch is wasted and
    the saved model predicts nothing.

    *How to fix:* NaN from the first epoch points at the labels or the loss (class ids >= the number
    of classes, 0/255 masks, ``log(0)`` or ``0/0`` in a custom loss); NaN after finite epochs points
    at the optimisation (learning rate too high, exploding gradients): lower the LR x0.1 and clip
    gradients (``clipnorm=1.0``).

    Thresholds: any non-finite value in a loss column (empty cells are not NaN), or a loss whose
    distance from a perfect fit reaches 1e3 x its first value. Calibrated on nan_loss (NaN in every
    epoch of loss and val_loss).
    """

    code = "SD601"
    name = "loss-nan"
    severity = Severity.ERROR
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        hits = []
        for name in ctx.columns(curves.LOSS):
            y = ctx.values(name)
            bad = ~np.isfinite(y) & ~ctx.history.is_missing(name)
            first_bad = _first(bad)
            kind = "NaN" if first_bad >= 0 and np.isnan(y[first_bad]) else "Inf"
            d = ctx.distance(name)
            if first_bad < 0 and d is not None:
                idx, dv = curves.finite_part(d)
                if dv.size >= 2 and dv[0] > 0:
                    exploded = np.flatnonzero(dv >= EXPLOSION_FACTOR * dv[0])
                    if exploded.size:
                        first_bad, kind = int(idx[exploded[0]]), f"{dv[exploded[0]] / dv[0]:.0f}x its first value"
            if first_bad >= 0:
                hits.append((name, first_bad, kind, int(bad.sum())))
        if not hits:
            return
        hits.sort(key=lambda h: (h[1], h[0]))
        name, first_bad, kind, count = hits[0]
        others = [h[0] for h in hits[1:]]
        from_start = bool(first_bad == 0)
        y = ctx.values(name)
        before = y[:first_bad][np.isfinite(y[:first_bad])]
        evidence: dict = {"column": name, "first_bad_epoch": ctx.epoch(first_bad), "bad_epochs": count,
                          "epochs": ctx.n, "value": kind, "other_columns": ", ".join(others) or "none",
                          "from_first_epoch": from_start}
        if before.size:
            evidence["last_finite_value"] = float(before[-1])
        lr = ctx.lr_at(first_bad)
        if lr is not None:
            evidence["learning_rate_then"] = lr
        when = "from the first epoch" if from_start else f"from epoch {ctx.epoch(first_bad)} after {first_bad} finite epoch(s)"
        title = f"{name} is {kind} {when}" + (f" ({count} of {ctx.n} epochs)" if kind in ("NaN", "Inf") else "")
        if others:
            title += f"; {', '.join(others[:3])} too"
        sentence, lr_literal = ctx.lr_advice(first_bad)
        train_losses_finite = all(np.isfinite(ctx.values(n)[~ctx.history.is_missing(n)]).all()
                                  for n in ctx.columns(curves.LOSS, split="train"))
        if ctx.roles[name].split == "val" and ctx.columns(curves.LOSS, split="train") and train_losses_finite:
            cause = ("Only the validation loss is non-finite while the training loss stays finite: the validation data "
                     "holds a broken sample (NaN/Inf pixels, a label outside the classes) or an empty batch.")
            fix = ("Run `segdoctor check-data` on the validation images and masks (SD202 NaN images, SD107 labels) and "
                   "check that the validation generator yields non-empty batches.")
        elif from_start:
            cause = ("A loss that is NaN from the first epoch usually comes from the labels or the loss itself: class ids "
                     "at or above the number of output channels, 0/255 masks, or log(0) / 0/0 in a custom loss.")
            fix = ("Run `segdoctor check-data` on the masks (SD101, SD107), keep a smooth term in custom Dice/IoU "
                   f"denominators, then {sentence[0].lower() + sentence[1:]} and clip gradients.")
        else:
            cause = ("A loss that turns NaN after finite epochs means the optimisation blew up: the learning rate is too "
                     "high for this model or the gradients exploded.")
            rising = [(i, a, b) for i, a, b in (curves.learning_rate_changes(ctx.values(ctx.lr_name)) if ctx.lr_name else [])
                      if b > a and first_bad - 3 <= i <= first_bad]
            if rising:
                cause += f" The learning rate rose from {_g(rising[-1][1])} to {_g(rising[-1][2])} at epoch {ctx.epoch(rising[-1][0])}, just before."
            fix = f"{sentence}, clip gradients with clipnorm=1.0, and stop on NaN with keras.callbacks.TerminateOnNaN()."
        snippet = (_CLIP_SNIPPET.format(lr=lr_literal) + "\nmodel.compile(optimizer=optimizer, loss=..., metrics=[...])\n"
                   "model.fit(..., callbacks=[keras.callbacks.TerminateOnNaN()])")
        last = ctx.n - 1 if kind in ("NaN", "Inf") else first_bad
        yield self.finding(
            title=title, evidence=evidence, why=cause + " Every epoch after it is wasted.", fix=fix, snippet=snippet,
            figures=[ctx.loss_figure(title="Loss curves", spans=[ctx.span(first_bad, last, kind if len(kind) < 12 else "explosion")], focus=(name,))],
            related=("SD101", "SD107", "SD407"),
        )


# --- SD602 -----------------------------------------------------------------------------------------


@register
class LossDivergence(Check):
    """The training loss rises over several epochs instead of falling (divergence).

    *Why it matters:* a rising training loss means the optimiser is moving away from a solution;
    the weights get worse with every epoch and often end in NaN.

    *How to fix:* lower the learning rate x0.1 (the finding gives the numbers from the log), add a
    warm-up, and clip gradients.

    Thresholds: the loss (as distance from a perfect fit, so a ``-Dice`` loss is judged as
    ``1 - Dice``) ends at >= 2x its smoothed minimum with a rising trend after it (Kendall tau >= 0.5),
    or rises for >= 5 consecutive epochs by >= 10% in all (more on logs over 36 epochs, so that
    noise alone would make such a run with < 5% chance: 6 steps up to 252 epochs, 7 up to 2016).
    The train loss is judged; the val loss only when no train loss is logged (then as a warning:
    it may be overfitting). Calibrated to stay
    quiet on val_loss_oscillation (a zig-zag without trend, tau 0.08) and on the negative loss of
    negative_loss_iou_above_1 (falling throughout).
    """

    code = "SD602"
    name = "loss-divergence"
    severity = Severity.ERROR
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        names = ctx.columns(curves.LOSS, split="train")
        severity = self.severity
        if not names:
            names, severity = ctx.columns(curves.LOSS, split="val"), Severity.WARNING
        for name in names:
            found = self._judge(ctx, name)
            if found is None:
                continue
            title, evidence, i0, i1 = found
            # advise from the highest LR of the rising episode: that is the one that diverged
            lrs = [(ctx.lr_at(i) or 0.0, i) for i in range(i0, i1 + 1)]
            sentence, lr_literal = ctx.lr_advice(max(lrs)[1])
            why = "A training loss that climbs means each update makes the model worse; it usually ends in NaN or a dead network."
            if ctx.lr_name:
                ups = [(i, a, b) for i, a, b in curves.learning_rate_changes(ctx.values(ctx.lr_name)) if b > a and i0 - 2 <= i <= i1]
                if ups:
                    i, a, b = ups[0]
                    why += f" It started when the learning rate rose from {_g(a)} to {_g(b)} (epoch {ctx.epoch(i)}): the warm-up target is too high."
                    evidence["learning_rate_rise"] = f"{_g(a)} → {_g(b)} at epoch {ctx.epoch(i)}"
            yield self.finding(
                title=title, evidence=evidence, why=why, severity=severity,
                fix=f"{sentence}, warm the learning rate up over the first epochs, and clip gradients (clipnorm=1.0).",
                snippet=_warmup(lr_literal),
                figures=[ctx.loss_figure(spans=[ctx.span(i0, i1, "rising")], focus=(name,))],
                related=("SD601", "SD404"),
            )

    @staticmethod
    def _judge(ctx: HistoryContext, name: str):
        y = ctx.values(name)
        idx, yv = curves.finite_part(y)
        if yv.size < 3:
            return None
        d = ctx.distance(name)
        if d is not None:
            dv = d[idx]
            smooth = curves.rolling_median(dv, 3) if dv.size >= 5 else dv
            best = int(np.argmin(smooth))
            floor = float(smooth[best])
            after = dv[best:]
            if floor > 1e-12 and after.size >= 3:
                tail = float(np.median(dv[-min(3, after.size - 1):]))
                tau = curves.trend_tau(after)
                if tail / floor >= DIVERGENCE_RATIO and tau >= DIVERGENCE_TREND_TAU:
                    i0, i1 = int(idx[best]), int(idx[-1])
                    title = (f"{name} rose to {tail / floor:.1f}x its minimum: from {_g(float(y[i0]))} "
                             f"({ctx.epoch_range(i0, i0)}) to {_g(float(y[i1]))} ({ctx.epoch_range(i1, i1)})")
                    return title, {"column": name, "minimum": float(y[i0]), "minimum_epoch": ctx.epoch(i0),
                                   "last": float(y[i1]), "ratio_to_minimum": round(tail / floor, 3),
                                   "trend_tau_after_minimum": round(tau, 3)}, i0, i1
        steps, s0, s1 = curves.longest_rising_run(y)
        if steps >= _rising_steps_needed(yv.size):
            if d is not None:
                rise = (d[s1] - d[s0]) / max(abs(d[s0]), 1e-12)
            else:
                rise = (y[s1] - y[s0]) / max(float(np.ptp(yv)), 1e-12)
            if rise >= DIVERGENCE_MIN_RISE:
                title = f"{name} rose for {steps} consecutive epochs ({ctx.epoch_range(s0, s1)}), from {_g(float(y[s0]))} to {_g(float(y[s1]))}"
                return title, {"column": name, "rising_steps": steps, "start": float(y[s0]), "end": float(y[s1]),
                               "relative_rise": round(float(rise), 3)}, s0, s1
        return None


def _rising_steps_needed(n: int) -> int:
    """Rising steps that count as divergence in a log of n epochs.

    Pure noise rises k times in a row with probability 1/(k+1)! at each epoch, so a long log holds
    such runs by chance (a 20000-epoch log about 28 runs of 5). The run asked for grows with the
    log until noise would produce one with under 5% chance; up to 36 epochs it stays at 5.
    """
    k = DIVERGENCE_RISING_STEPS
    while n / math.factorial(k + 1) > 0.05:
        k += 1
    return k


# --- SD603 -----------------------------------------------------------------------------------------


@register
class LossOscillation(Check):
    """The loss (or val loss) zig-zags from epoch to epoch instead of following a trend.

    *Why it matters:* a loss that keeps changing direction with swings large against its level is
    not converging; the weights you keep depend on which epoch happened to be last.

    *How to fix:* lower the learning rate x0.1–0.3, reduce it on plateaus
    (``ReduceLROnPlateau(factor=0.2, patience=5)``), or use a larger batch. When only the val loss
    zig-zags and the train loss is smooth, the validation set is too small or unrepresentative (or
    BatchNorm statistics differ between train and inference).

    Thresholds: over a segment of >= 6 epochs (split at discrete LR drops; segments over 40 epochs are
    also scanned in 20-epoch windows), smoothness (share of steps without a sign change of the
    differences) < 0.5, total variation >= 3x the net change, and a mean epoch-to-epoch step >= 20%
    of the loss level (the +-5-10% noise of a converged val loss on a small validation set is not an
    oscillation). Calibrated on val_loss_oscillation (smoothness 0.33: 62 direction changes in 93
    steps, steps 6.3x the median level, variation 1176x the net change); quiet on the val loss of
    negative_loss_iou_above_1 (smoothness 0.43, but variation only 1.09x the net change: a steep
    descent with small bumps) and on dice_zero's flat loss (steps 1.8% of the level).
    """

    code = "SD603"
    name = "loss-oscillation"
    severity = Severity.WARNING
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        cuts = [i for i, _, _ in ctx.lr_steps()]
        bounds = [0, *cuts, ctx.n]
        segments = [(a, b - 1) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 6]
        found = {}
        for name in ctx.columns(curves.LOSS):
            y = ctx.values(name)
            level_series = y + (ctx.loss_forms[name].offset or 0.0)
            results, bad = [], []
            for a, b in segments:
                stats = self._stats(y[a:b + 1], level_series[a:b + 1])
                results.append((a, b, stats))
                bad.extend(self._episodes(y, level_series, a, b, stats))
            if bad:
                found[name] = (max(bad, key=lambda r: r[2]["comparisons"]), results)
        if not found:
            return
        # one finding: the train loss leads when it oscillates too, the others are named in the title
        name = max(found, key=lambda n: (ctx.roles[n].split == "train", found[n][0][2]["comparisons"]))
        (a, b, s), results = found[name]
        others = [n for n in found if n != name]
        evidence = {"column": name, "direction_changes": s["changes"], "comparisons": s["comparisons"],
                    "smoothness": round(s["smoothness"], 3), "variation_to_net_change": round(s["variation_ratio"], 2),
                    "mean_step_to_level": round(s["step_to_level"], 3), "epochs": ctx.epoch_range(a, b),
                    "also_oscillating": ", ".join(others) or "none"}
        if math.isfinite(s["variation_ratio"]):
            swings = f"its swings add up to {_times(s['variation_ratio'])} its net change ({_g(s['net'])})"
        else:
            swings = "its swings cancel out (no net change)"
        title = (f"{name} changed direction in {s['changes']} of {s['comparisons']} steps ({ctx.epoch_range(a, b)}); "
                 f"{swings}, averaging {_pct(s['step_to_level'])} of its level")
        if others:
            title += f"; {_names(others)} too"
        why = "A loss that keeps reversing with swings this large against its trend is not converging."
        drop = next(((i, x, z) for i, x, z in ctx.lr_steps() if i > b and z < x), None)
        calm_after = drop is not None and any(
            r[0] >= drop[0] and r[2] is not None and not r[2]["oscillating"] for r in results)
        if calm_after:
            why += (f" It calmed down after the learning rate dropped from {_g(drop[1])} to {_g(drop[2])} at epoch "
                    f"{ctx.epoch(drop[0])}: the learning rate before the drop was too high.")
            evidence["learning_rate_drop"] = f"{_g(drop[1])} → {_g(drop[2])} at epoch {ctx.epoch(drop[0])}"
        elif ctx.lr_at(b) is not None:
            evidence["learning_rate"] = ctx.lr_at(b)
        twin = ctx.twin(name)
        train_calm = False
        if ctx.roles[name].split == "val" and twin is not None:
            tv = ctx.values(twin)
            ts = self._stats(tv[a:b + 1], (tv + (ctx.loss_forms[twin].offset or 0.0))[a:b + 1])
            train_calm = ts is not None and not ts["oscillating"]
        sentence, lr_literal = ctx.lr_advice(b, factor="0.1-0.3")
        if train_calm:
            why += (f" The train loss ({twin}) is smooth over the same epochs, so the validation set is the likely cause: "
                    "too few images, images unlike the training set, or BatchNorm statistics that differ at inference.")
            fix = (f"Enlarge or re-split the validation set (stratified), and select the model on a smoothed val metric; "
                   f"if the swings remain, {sentence[0].lower() + sentence[1:]}.")
        else:
            fix = f"{sentence} and reduce it on plateaus; a larger batch also steadies the updates."
        monitor = "val_loss" if "val_loss" in ctx.roles else name
        snippet = f"optimizer = keras.optimizers.Adam(learning_rate={lr_literal})\n" + _PLATEAU_SNIPPET.format(monitor=py_str(monitor))
        yield self.finding(title=title, evidence=evidence, why=why, fix=fix, snippet=snippet,
                           figures=[ctx.loss_figure(spans=[ctx.span(a, b, "oscillation")], focus=(name,))])

    @classmethod
    def _episodes(cls, y: np.ndarray, level_series: np.ndarray, a: int, b: int, whole: dict | None) -> list:
        """Oscillating stretches of the segment a..b: all of it, or merged windows of a long segment."""
        if whole is not None and whole["oscillating"]:
            return [(a, b, whole)]
        if b - a + 1 <= 2 * OSCILLATION_WINDOW:
            return []
        flagged = cls._window_flags(y, level_series, a, b)
        out = []
        for s0, s1 in curves.true_runs(flagged):
            st = cls._stats(y[a + s0:a + s1 + 1], level_series[a + s0:a + s1 + 1])
            if st is not None and st["oscillating"]:
                out.append((a + s0, a + s1, st))
        return out

    @classmethod
    def _window_flags(cls, y: np.ndarray, level_series: np.ndarray, a: int, b: int) -> np.ndarray:
        """Epochs of a..b covered by an oscillating window (``OSCILLATION_WINDOW`` epochs, every half window).

        The windows without NaN (nearly all) are judged together, row by row, with the same reductions as
        ``_stats`` (so the same numbers); the others one by one. A 200,000-epoch log has 20,000 windows.
        """
        width, step = OSCILLATION_WINDOW, OSCILLATION_WINDOW // 2
        flagged = np.zeros(b - a + 1, dtype=bool)
        starts = np.arange(0, b - a - width + 2, step)  # relative to a; every window is full (end <= b)
        if starts.size == 0:
            return flagged
        wy = np.lib.stride_tricks.sliding_window_view(y[a:b + 1], width)[starts]
        wl = np.lib.stride_tricks.sliding_window_view(level_series[a:b + 1], width)[starts]
        clean = np.isfinite(wy).all(axis=1) & np.isfinite(wl).all(axis=1)
        oscillating = np.zeros(starts.size, dtype=bool)
        if clean.any():
            oscillating[clean] = cls._windows_oscillate(wy[clean], wl[clean])
        for k in np.flatnonzero(~clean).tolist():
            st = cls._stats(wy[k], wl[k])
            oscillating[k] = st is not None and st["oscillating"]
        for start in starts[oscillating].tolist():
            flagged[start:start + width] = True
        return flagged

    @staticmethod
    def _windows_oscillate(wy: np.ndarray, wl: np.ndarray) -> np.ndarray:
        """``_stats(...)["oscillating"]`` for each row of finite windows (rows of ``wy`` values, ``wl`` levels)."""
        d = np.diff(wy, axis=1)
        sign = np.sign(d)
        moving = sign != 0
        cols = np.arange(d.shape[1])
        last = np.maximum.accumulate(np.where(moving, cols, -1), axis=1)  # last moving step at or before j
        before = np.concatenate([np.full((d.shape[0], 1), -1), last[:, :-1]], axis=1)  # ... strictly before j
        prev_sign = np.take_along_axis(sign, np.maximum(before, 0), axis=1)
        changes = np.count_nonzero(moving & (before >= 0) & (prev_sign != sign), axis=1)
        comparisons = np.count_nonzero(moving, axis=1) - 1
        level = np.median(np.abs(wl), axis=1)
        tiny = level <= 1e-12
        if tiny.any():
            level[tiny] = np.maximum(np.ptp(wl[tiny], axis=1), 1e-12)
        steps = np.abs(d)
        total = np.sum(steps, axis=1)
        net = np.abs(wy[:, -1] - wy[:, 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = 1.0 - changes / np.maximum(comparisons, 1)
            ratio = np.where(total == 0, 1.0, np.where(net > 0, total / np.where(net > 0, net, 1.0), np.inf))
            step = np.mean(steps, axis=1) / level
        return ((comparisons >= OSCILLATION_MIN_COMPARISONS) & (smooth < OSCILLATION_SMOOTHNESS)
                & (ratio >= OSCILLATION_VARIATION_RATIO) & (step >= OSCILLATION_STEP_TO_LEVEL))

    @staticmethod
    def _stats(y: np.ndarray, level_series: np.ndarray) -> dict | None:
        changes, comparisons = curves.direction_changes(y)
        if comparisons < OSCILLATION_MIN_COMPARISONS:
            return None
        _, lv = curves.finite_part(level_series)
        level = float(np.median(np.abs(lv))) if lv.size else 0.0
        if level <= 1e-12:
            level = max(float(np.ptp(lv)) if lv.size else 0.0, 1e-12)
        smooth = 1.0 - changes / comparisons
        ratio = curves.variation_to_net_change(y)
        step = curves.mean_step(y) / level
        _, yv = curves.finite_part(y)
        return {"changes": changes, "comparisons": comparisons, "smoothness": smooth, "variation_ratio": ratio,
                "step_to_level": step, "net": float(yv[-1] - yv[0]),
                "oscillating": smooth < OSCILLATION_SMOOTHNESS and ratio >= OSCILLATION_VARIATION_RATIO
                and step >= OSCILLATION_STEP_TO_LEVEL}


# --- SD604 -----------------------------------------------------------------------------------------


def _constant_predictor_bce(background_share: float) -> float:
    p = min(max(1.0 - background_share, 1e-7), 1 - 1e-7)
    return float(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


@register
class LossPlateau(Check):
    """The loss is flat from the start: the model is not learning.

    *Why it matters:* a loss that barely moves from the first epoch means the gradients do not reach
    a useful direction (LR far too low or too high, wrong labels, or a loss that a constant output
    already minimises).

    *How to fix:* run a learning-rate range test, check the labels with ``segdoctor check-data``,
    and use a loss that rewards the foreground (Dice + BCE).

    Thresholds: >= 5 epochs; every step of the first 10 epochs changes the loss (as distance from a
    perfect fit) by < 5%, and the best epoch is < 10% below the first. When ``--data`` gives the
    background share, a plateau within 10% of the BCE of a constant predictor is named as such.
    Related to the schedule: after the last discrete LR drop to <= 1e-6, a loss that moves < 1% over
    >= 5 epochs is reported as stalled (info: the epochs are wasted, the model is not harmed).
    Calibrated on dice_zero (loss 0.2007 → 0.1948 in 5 epochs: 2.9% in all, steps <= 2.7%).
    """

    code = "SD604"
    name = "loss-plateau"
    severity = Severity.WARNING
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        name = ctx.main_loss("train") or ctx.main_loss("val")
        if name is None:
            return
        d = ctx.distance(name)
        if d is None:
            return
        idx, dv = curves.finite_part(d)
        if dv.size < PLATEAU_MIN_STEPS + 1 or dv[0] <= 1e-12:
            return
        early = dv[:PLATEAU_WINDOW]
        steps = curves.relative_steps(early)
        gained = float((dv[0] - dv.min()) / dv[0])
        if steps.max() >= PLATEAU_STEP or gained >= PLATEAU_TOTAL:
            yield from self._stalled_after_drop(ctx, name, d)
            return
        y = ctx.values(name)
        i1 = int(idx[min(len(early), dv.size) - 1])
        level = float(np.median(y[idx]))
        evidence = {"column": name, "epochs": ctx.n, "first": float(y[idx[0]]), "best": float(np.min(y[idx])),
                    "best_gain": round(gained, 4), "largest_early_step": round(float(steps.max()), 4)}
        title = f"{name} is flat from the start: {_pct(gained) if gained >= 0.01 else f'{100 * gained:.1f}%'} lower at best over {dv.size} epochs (largest step {100 * steps.max():.1f}%)"
        why = "A loss that never moves means the model is not learning from the labels."
        form = ctx.loss_forms[name]
        if ctx.background_share is not None and form.form == curves.PLAIN:
            prior = _constant_predictor_bce(ctx.background_share)
            evidence["constant_predictor_bce"] = round(prior, 4)
            evidence["at_constant_predictor"] = bool(abs(level - prior) <= 0.1 * prior)
            if evidence["at_constant_predictor"]:
                title += f", at the BCE of a constant prediction ({_g(prior)})"
                why += (f" It sits at {_g(level)}, the cross-entropy of predicting the foreground share "
                        f"{100 * (1 - ctx.background_share):.1f}% everywhere: the model outputs a constant.")
        lr = ctx.lr_at(0)
        if lr is not None:
            evidence["learning_rate"] = lr
            why += f" The learning rate was {_g(lr)}."
        overlap = ctx.overlap_partner(ctx.roles[name].split)
        if overlap is not None:
            ov = ctx.values(overlap)
            if np.all(ov[np.isfinite(ov)] < NEAR_ZERO_OVERLAP):
                why += f" {overlap} stays near 0 meanwhile (SD605): the flat loss is the loss of blank predictions."
        yield self.finding(
            title=title, evidence=evidence, why=why,
            fix=(ctx.lr_test_advice() + "; "
                 "check the masks with `segdoctor check-data` and use a loss that rewards the foreground (Dice + BCE)."),
            snippet=("# learning-rate range test: x10 per epoch from 1e-6; pick ~1/10 of the LR where the loss falls fastest\n"
                     "lr_test = keras.callbacks.LearningRateScheduler(lambda epoch: 1e-6 * 10 ** epoch)\n"
                     "model.fit(..., epochs=6, callbacks=[lr_test])\n\n" + ctx.loss_prescription()),
            figures=[ctx.loss_figure(spans=[ctx.span(int(idx[0]), i1, "plateau")], focus=(name,))],
            related=("SD605", "SD151", "SD101"),
        )


    def _stalled_after_drop(self, ctx: HistoryContext, name: str, d: np.ndarray) -> Iterator[Finding]:
        """A flat loss since the schedule took the LR below what can still move the weights (info)."""
        drops = [(i, a, b) for i, a, b in ctx.lr_steps() if b < a]
        if not drops:
            return
        i, before, after = drops[-1]
        post_idx, post = curves.finite_part(d[i:])
        if after > USELESS_LR or post.size < PLATEAU_MIN_STEPS + 1 or post[0] <= 1e-12:
            return
        moved = float((post[0] - post.min()) / post[0])
        if moved >= PLATEAU_AFTER_DROP:
            return
        y = ctx.values(name)
        yield self.finding(
            severity=Severity.INFO,
            title=(f"{name} has not moved ({100 * moved:.1f}%) in the {post.size} epochs since the learning rate dropped "
                   f"from {_g(before)} to {_g(after)} at epoch {ctx.epoch(i)}"),
            evidence={"column": name, "drop_epoch": ctx.epoch(i), "learning_rate_before": before,
                      "learning_rate_after": after, "epochs_since": int(post.size), "relative_change_since": round(moved, 4),
                      "value": float(y[i + int(post_idx[-1])])},
            why=(f"At a learning rate of {_g(after)} the weights barely change: these epochs cost time without "
                 "improving the model."),
            fix="Stop when the LR reaches its floor (EarlyStopping), or keep a floor of about 1e-6 (min_lr) and use cosine decay instead of repeated drops.",
            snippet=("callbacks = [keras.callbacks.ReduceLROnPlateau(monitor=\"val_loss\", factor=0.2, patience=5, min_lr=1e-6),\n"
                     "             keras.callbacks.EarlyStopping(monitor=\"val_loss\", patience=12, restore_best_weights=True)]"),
            figures=[ctx.loss_figure(spans=[ctx.span(i, ctx.n - 1, "stalled")], focus=(name,))],
        )


# --- SD605 -----------------------------------------------------------------------------------------


@register
class MetricCollapse(Check):
    """A Dice/IoU/F1 metric stays near 0 or flat at a small value, or falls to near 0 after rising.

    *Why it matters:* an overlap near 0 means the model predicts (almost) no foreground pixel; one
    that sits still at a small non-zero value for the whole run means the model is not learning the
    objects either, often because it predicts foreground everywhere. It is what heavy class
    imbalance, 0/255 masks, a NaN loss, softmax on one channel or a loss that rewards background produce.

    *How to fix:* run ``segdoctor check-data`` on the masks (0/255 masks SD101, imbalance SD151),
    train with a loss that rewards the foreground (Dice + BCE, focal), and lower the LR if the metric
    fell after rising.

    Thresholds: every logged value below 0.01; with one or two epochs only, below 1e-3 for an error
    (4e-11 is the smooth term alone) and a warning otherwise. Every value below 0.1 over >= 3 epochs
    with a spread under 20% of the median (+0.002 for rounding), whatever the loss's sign convention.
    After a peak >= 0.1, the last two values below 0.05 and below a tenth of the peak (one such value:
    a warning). Values outside [0, 1] are left to SD609. With ``--data`` (foreground share f) the
    value is matched to blank predictions (Dice and IoU near 0) or to foreground predicted everywhere
    (Dice 2f/(1+f), IoU f, within 25%: per-batch averaging keeps a logged metric a little below the
    pooled value), and the finding says which one the numbers fit. Calibrated on dice_zero (0.0 in
    all 5 epochs) and nan_loss (val IoU 1.7e-7 while the loss is NaN); quiet on healthy_control
    (0.27–0.83).
    """

    code = "SD605"
    name = "metric-collapse"
    severity = Severity.ERROR
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        hits = []
        for name in ctx.columns(curves.DICE, curves.IOU):
            y = ctx.values(name)
            ok = np.isfinite(y) & (y >= -RANGE_TOLERANCE) & (y <= 1 + RANGE_TOLERANCE)
            idx = np.flatnonzero(ok)
            if idx.size == 0:
                continue
            v = y[idx]
            if np.all(v < NEAR_ZERO_OVERLAP):
                short = idx.size <= 2
                severity = Severity.ERROR if (not short or v.max() < ESSENTIALLY_ZERO_OVERLAP) else Severity.WARNING
                hits.append({"name": name, "kind": "throughout", "i0": int(idx[0]), "i1": int(idx[-1]),
                             "value": float(v.max()), "count": int(idx.size), "severity": severity})
                continue
            median = float(np.median(v))
            if idx.size >= 3 and v.max() < SMALL_OVERLAP and np.ptp(v) <= FLAT_SPREAD * median + 0.002:
                # flat at a small non-zero value for the whole run: no learning, whatever the loss does
                hits.append({"name": name, "kind": "flat", "i0": int(idx[0]), "i1": int(idx[-1]),
                             "value": median, "count": int(idx.size), "severity": Severity.ERROR})
                continue
            peak = int(np.argmax(v))
            if v[peak] >= RISEN_OVERLAP:
                tail = v[peak + 1:]
                k = 0
                floor = min(COLLAPSED_AFTER_PEAK, 0.1 * float(v[peak]))
                while k < tail.size and tail[tail.size - 1 - k] < floor:
                    k += 1
                if k >= 1:
                    hits.append({"name": name, "kind": "fell", "i0": int(idx[idx.size - k]), "i1": int(idx[-1]),
                                 "peak": float(v[peak]), "peak_index": int(idx[peak]), "value": float(v[-1]),
                                 "count": k, "severity": Severity.ERROR if k >= 2 else Severity.WARNING})
        if not hits:
            return
        hits.sort(key=lambda h: (-int(h["severity"]), ctx.roles[h["name"]].split != "train"))
        h = hits[0]
        name = h["name"]
        label = ctx.roles[name].label
        fit, expected = self._fit(ctx, name, h)
        if h["kind"] == "flat":
            span_text = f"all {h['count']} epochs" if h["count"] == ctx.n else f"the {h['count']} epochs with a value in [0, 1] (of {ctx.n})"
            title = f"{label} ({name}) stayed at {h['value']:.3g} for {span_text}: "
            title += {"everything-foreground": "the score of predicting foreground everywhere",
                      "blank": "blank predictions are likely"}.get(fit, "the model is not learning the objects")
        elif h["kind"] == "throughout":
            n_ep = h["count"]
            if n_ep == ctx.n:
                span_text = f"all {n_ep} epochs" if n_ep > 1 else "the only epoch"
            else:
                span_text = (f"the {n_ep} epochs" if n_ep > 1 else "the 1 epoch") + f" with a value in [0, 1] (of {ctx.n})"
            title = f"{label} ({name}) has been {h['value']:.2f} for {span_text}: blank predictions are likely"
            if 0 < h["value"] < 0.005:
                title = f"{label} ({name}) has been {_g(h['value'])} (≈0.00) for {span_text}: blank predictions are likely"
        else:
            title = (f"{label} ({name}) fell from {h['peak']:.2f} (epoch {ctx.epoch(h['peak_index'])}) to {h['value']:.2f} "
                     f"({ctx.epoch_range(h['i0'], h['i1'])}): the model stopped predicting foreground")
        if h["kind"] == "throughout" and fit == "everything-foreground":
            title = title.replace("blank predictions are likely", "the score of predicting foreground everywhere")
        elif h["kind"] != "fell" and ctx.data_finding("SD101") is not None:
            # measured against targets of 255, the value says nothing about what the model predicts
            title = title.replace("blank predictions are likely", "the masks it is measured against store 255 (SD101)")
            title = title.replace("the model is not learning the objects", "the masks it is measured against store 255 (SD101)")
        evidence = {"column": name, "value": h["value"], "kind": h["kind"], "near_zero_below": NEAR_ZERO_OVERLAP,
                    "epochs_near_zero": h["count"], "epochs": ctx.n, "fits": fit}
        if expected is not None:
            evidence[f"{label}_if_foreground_everywhere"] = round(expected, 5)
            evidence["foreground_share"] = round(1.0 - float(ctx.background_share), 5)
        if len(hits) > 1:
            evidence["also"] = ", ".join(x["name"] for x in hits[1:])
        f_share = None if ctx.background_share is None else 1.0 - float(ctx.background_share)
        article = "An" if label[:1] in "AEIOF" else "A"
        measured_on_255 = h["kind"] != "fell" and ctx.data_finding("SD101") is not None
        if measured_on_255:
            why = (f"The {label} is measured against masks that store 255: no prediction in [0, 1] overlaps such a target "
                   "as the metric counts it, so the value says nothing about what the model predicts.")
        elif fit == "everything-foreground":
            why = (f"With {100 * f_share:.1f}% foreground, predicting foreground on every pixel scores {label} "
                   f"{expected:.3g}, and the log sits at {h['value']:.3g}: the model marks everything as foreground, "
                   "it has not learned the objects.")
        elif h["kind"] == "flat":
            why = (f"{article} {label} that stays at {h['value']:.3g} for the whole run means the model is not learning the objects.")
            if fit == "blank":
                why += " With the foreground share of the data it fits blank predictions, not foreground everywhere."
            elif fit == "neither" and expected is not None:
                why += (f" It is neither blank predictions (0) nor foreground everywhere ({expected:.3g} for "
                        f"{100 * f_share:.1f}% foreground).")
            else:
                why += (" It may be blank predictions or foreground everywhere: with --data DIR (the foreground share) "
                        "the finding says which one the numbers fit.")
        else:
            why = (f"{article} {label} near 0 means (almost) no predicted foreground pixel overlaps the true foreground: "
                   "the model has settled on predicting background.")
            if fit == "blank" and expected is not None:
                why += f" Predicting foreground everywhere would score {expected:.3g} here, so the numbers fit blank predictions."
        related = ["SD101", "SD151", "SD501", "SD407"] + (["SD508", "SD401"] if fit == "everything-foreground" else [])
        nan_losses = [n for n in ctx.columns(curves.LOSS) if np.any(np.isnan(ctx.values(n)) & ~ctx.history.is_missing(n))]
        if nan_losses:
            why += f" The loss ({nan_losses[0]}) is NaN in this log, so the predictions are NaN and threshold to blank: fix SD601 first."
            related.insert(0, "SD601")
        if h["kind"] == "fell":
            lr = ctx.lr_at(h["i0"])
            if lr is not None:
                evidence["learning_rate_then"] = lr
                why += f" The learning rate was {_g(lr)} when it fell."
        for code, text in (("SD101", "the masks are stored as 0/255"), ("SD151", "the foreground is rare")):
            f = ctx.data_finding(code)
            if f is not None:
                why += f" The data checks found that {text} ({code}: {f.title})."
        if h["severity"] == Severity.WARNING:
            why += " With this few epochs it may still recover; watch the next epochs."
        if fit == "everything-foreground":
            fix = ("Check what makes every pixel foreground: masks stored as 0/255 (SD101, `segdoctor check-data`), a softmax "
                   "over one channel (SD401, `segdoctor check-model`), or targets outside [0, 1] in the loss (SD609); then retrain "
                   "with a loss that rewards overlap (Dice + BCE) and monitor the foreground IoU.")
        else:
            fix = ("Run `segdoctor check-data` on your masks (0/255 masks SD101, class imbalance SD151), then train with a "
                   "loss that rewards the foreground (Dice + BCE or focal) and monitor the foreground IoU.")
        if h["kind"] == "fell":
            fix += " " + ctx.lr_advice(h["i0"])[0] + ": the metric collapsed after the model had learned something."
        yield self.finding(
            title=title, evidence=evidence, why=why, fix=fix, snippet=ctx.loss_prescription(),
            severity=h["severity"], related=related,
            figures=[ctx.metric_figure(spans=[ctx.span(h["i0"], h["i1"], f"{label} ≈ 0")], focus=(name,))],
        )


    @staticmethod
    def _fit(ctx: HistoryContext, name: str, hit: dict) -> tuple[str, float | None]:
        """Which collapse the numbers fit, with the foreground share f of the data: "blank" (Dice and IoU near 0),
        "everything-foreground" (Dice 2f/(1+f), IoU f), "neither", or "unknown" (f not known, or 0/255 targets)."""
        if hit["kind"] == "fell" or ctx.background_share is None or ctx.data_finding("SD101") is not None:
            return "unknown", None
        f = 1.0 - float(ctx.background_share)
        if not 0.0 < f < 1.0:
            return "unknown", None
        expected = f if ctx.roles[name].kind == curves.IOU else 2 * f / (1 + f)
        value = float(hit["value"])
        if abs(value - expected) <= ALL_FOREGROUND_MATCH * expected:
            return "everything-foreground", expected
        if value < min(NEAR_ZERO_OVERLAP, 0.5 * expected):
            return "blank", expected
        return "neither", expected


# --- SD606 -----------------------------------------------------------------------------------------


@register
class AccuracyTrapHistory(Check):
    """Accuracy is high (or frozen, or equal to the background share) while Dice/IoU is near 0.

    *Why it matters:* pixel accuracy counts background pixels; when most pixels are background, a
    model that predicts nothing scores high accuracy. Monitoring it hides a dead model.

    *How to fix:* monitor and select on Dice/IoU of the foreground, and train with an
    imbalance-aware loss.

    Thresholds: in the same split, accuracy >= 0.9 while the Dice/IoU is < 0.05 (at the last epoch or
    in at least half the epochs; one row is enough: Dice 4e-11 at 99.8% accuracy); or accuracy frozen
    (within 0.002 over >= 3 epochs) while Dice/IoU < 0.05; or, with ``--data``, accuracy within 0.01
    of the background share (a constant prediction's score; 0.78 on the ISBI membrane labels).
    """

    code = "SD606"
    name = "accuracy-trap-history"
    severity = Severity.WARNING
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        for split in ("train", "val"):
            accs = ctx.columns(curves.ACCURACY, split=split)
            if not accs:
                continue
            acc_name = accs[0]
            acc = ctx.values(acc_name)
            overlap_name = ctx.overlap_partner(split)
            found = self._judge(ctx, acc, None if overlap_name is None else ctx.values(overlap_name))
            if found is None:
                continue
            reason, i_ref, epochs_trapped = found
            a_val = float(acc[i_ref])
            evidence = {"accuracy_column": acc_name, "accuracy": a_val, "epoch": ctx.epoch(i_ref),
                        "trapped_epochs": epochs_trapped, "epochs": ctx.n}
            if overlap_name is not None:
                o_val = float(ctx.values(overlap_name)[i_ref])
                evidence.update({"overlap_column": overlap_name, "overlap": o_val})
                label = ctx.roles[overlap_name].label
                shown = f"{o_val:.2f}" if o_val >= 0.005 or o_val == 0 else f"{_g(o_val)} (≈0.00)"
                title = f"{acc_name} is {a_val:.3f} while {label} is {shown} at epoch {ctx.epoch(i_ref)}: the score comes from background pixels"
            else:
                title = f"{acc_name} is {a_val:.4f}, the background share of the data: a constant prediction scores the same"
            if reason == "frozen":
                title = f"{acc_name} is frozen at {a_val:.4f} while {evidence.get('overlap_column', 'Dice')} stays near 0: the model predicts a constant"
            why = ("Pixel accuracy counts every background pixel as a success, so a model that predicts only background "
                   "scores the background share.")
            if ctx.background_share is not None:
                evidence["background_share"] = ctx.background_share
                why += f" Here {100 * ctx.background_share:.1f}% of the mask pixels are background (from --data)."
            yield self.finding(
                title=title, evidence=evidence, why=why,
                fix=("Monitor and select the model on the foreground IoU/Dice instead of accuracy, and train with an "
                     "imbalance-aware loss."),
                snippet=("metrics = [keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5, name=\"fg_iou\")]\n"
                         "checkpoint = keras.callbacks.ModelCheckpoint(\"best.keras\", monitor=\"val_fg_iou\", mode=\"max\", save_best_only=True)\n\n"
                         + ctx.loss_prescription()),
                figures=[ctx.metric_figure(spans=[ctx.span(i_ref, i_ref, "trap")] if ctx.n > 1 else [],
                                           focus=tuple(n for n in (acc_name, overlap_name) if n))],
                related=("SD605", "SD151", "SD503"),
            )
            return  # one accuracy trap per log: the val split repeats the train story

    @staticmethod
    def _judge(ctx: HistoryContext, acc: np.ndarray, overlap: np.ndarray | None):
        both = np.isfinite(acc) & (np.ones_like(acc, bool) if overlap is None else np.isfinite(overlap))
        idx = np.flatnonzero(both)
        if idx.size == 0:
            return None
        last = int(idx[-1])
        if overlap is not None:
            low = overlap < TRAP_OVERLAP
            high_bar = HIGH_ACCURACY
            if ctx.background_share is not None:
                high_bar = min(HIGH_ACCURACY, ctx.background_share - 0.02)
            trapped = both & low & (acc >= high_bar)
            if trapped[last] or trapped[idx].sum() * 2 >= idx.size:
                return "high", (last if trapped[last] else int(np.flatnonzero(trapped)[-1])), int(trapped.sum())
            frozen = [r for r in curves.frozen_runs(np.where(both, acc, np.nan), tolerance=0.002) if r[1] - r[0] >= 2]
            for a, b in frozen:
                if np.all(overlap[a:b + 1] < TRAP_OVERLAP):
                    return "frozen", b, b - a + 1
        if ctx.background_share is not None:
            near = both & (np.abs(acc - ctx.background_share) <= BACKGROUND_SHARE_MATCH)
            if overlap is not None:
                near &= overlap < RISEN_OVERLAP
            if near[last] or near[idx].sum() * 2 >= idx.size:
                return "background", (last if near[last] else int(np.flatnonzero(near)[-1])), int(near.sum())
        return None


# --- SD607 -----------------------------------------------------------------------------------------


@register
class Overfitting(Check):
    """The val loss rises while the train loss falls, or the train/val metric gap is large.

    *Why it matters:* the model memorises the training images; the weights of the last epoch are
    worse on new images than those of the best epoch.

    *How to fix:* augment the training data, regularise (dropout, weight decay), and stop early on
    the val metric with ``restore_best_weights=True``.

    Thresholds: >= 3 epochs after the best (3-epoch median) val loss, the val loss ends >= 10% above
    that best with a rising trend (Kendall tau >= 0.3) while the train loss ends lower than at that
    epoch; or the mean train-minus-val Dice/IoU over the last 3 epochs >= 0.15 with train >= 0.3.
    Quiet on healthy_control (val loss falls every epoch; val Dice above train Dice).
    """

    code = "SD607"
    name = "overfitting"
    severity = Severity.WARNING
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        tr, va = ctx.main_loss("train"), ctx.main_loss("val")
        found = None
        if tr is not None and va is not None:
            found = self._loss_divergence(ctx, tr, va)
        if found is None:
            found = self._metric_gap(ctx)
        if found is None:
            return
        title, evidence, best, end, monitor, mode = found
        yield self.finding(
            title=title, evidence=evidence,
            why=(f"The model keeps fitting the training images but gets worse on the validation images after epoch "
                 f"{ctx.epoch(best)}: it is memorising rather than generalising."),
            fix=(f"Keep the weights of epoch {ctx.epoch(best)} (restore_best_weights), augment the training images and masks "
                 "together (flips, crops, small rotations), and add dropout or weight decay."),
            snippet=(f"early_stop = keras.callbacks.EarlyStopping(monitor={py_str(monitor)}, mode={py_str(mode)}, patience=10,\n"
                     "                                           restore_best_weights=True)\n"
                     "optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-4)\n"
                     "model.fit(..., callbacks=[early_stop])"),
            figures=[ctx.curves_figure([n for n in (evidence.get("train"), evidence.get("val")) if n],
                                       title="Train vs validation", spans=[ctx.span(best, end, "overfitting")])],
        )

    @staticmethod
    def _loss_divergence(ctx: HistoryContext, tr: str, va: str):
        tv, vv = ctx.values(tr), ctx.values(va)
        both = np.isfinite(tv) & np.isfinite(vv)
        idx = np.flatnonzero(both)
        if idx.size < 5:
            return None
        vd = ctx.distance(va)
        vals = (vd if vd is not None else vv)[idx]
        smooth = curves.rolling_median(vals, 3)
        b = int(np.argmin(smooth))
        if idx.size - 1 - b < 3:
            return None
        best_val = float(smooth[b])
        tail = float(np.median(vals[-3:]))
        scale = abs(best_val) if vd is not None and best_val > 1e-12 else float(np.ptp(vals)) or 1e-12
        rise = (tail - best_val) / scale
        tau = curves.trend_tau(vals[b:])
        t_at_best, t_end = float(tv[idx[b]]), float(np.median(tv[idx[-3:]]))
        if rise >= OVERFIT_RISE and tau >= OVERFIT_TREND_TAU and t_end < t_at_best:
            bi, ei = int(idx[b]), int(idx[-1])
            title = (f"{va} rose {_pct(rise)} from its best ({_g(float(vv[bi]))} at epoch {ctx.epoch(bi)}) by epoch "
                     f"{ctx.epoch(ei)} while {tr} kept falling ({_g(t_at_best)} → {_g(float(tv[ei]))})")
            evidence = {"train": tr, "val": va, "best_epoch": ctx.epoch(bi), "best_val": float(vv[bi]),
                        "last_val": float(vv[ei]), "relative_rise": round(rise, 3), "trend_tau": round(tau, 3)}
            monitor, mode = "val_loss", "min"
            overlap = ctx.overlap_partner("val")
            if overlap is not None:
                monitor, mode = overlap, "max"
            return title, evidence, bi, ei, monitor, mode
        return None

    @staticmethod
    def _metric_gap(ctx: HistoryContext):
        for name in ctx.columns(curves.DICE, curves.IOU, split="train"):
            twin = ctx.twin(name)
            if twin is None:
                continue
            a, b = ctx.values(name), ctx.values(twin)
            both = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
            if both.size < 5:
                continue
            last = both[-3:]
            ta, va = float(np.mean(a[last])), float(np.mean(b[last]))
            if ta - va >= OVERFIT_METRIC_GAP and ta >= 0.3 and ta <= 1 + RANGE_TOLERANCE:
                label = ctx.roles[name].label
                title = f"train {label} {ta:.2f} vs validation {va:.2f} over the last 3 epochs: a gap of {ta - va:.2f}"
                evidence = {"train": name, "val": twin, "train_mean_last3": round(ta, 4), "val_mean_last3": round(va, 4),
                            "gap": round(ta - va, 4)}
                best = int(both[int(np.argmax(b[both]))])
                return title, evidence, best, int(both[-1]), twin, "max"
        return None


# --- SD608 -----------------------------------------------------------------------------------------


@register
class EarlyStopTooSoon(Check):
    """Training ended while the monitored loss was still improving.

    *Why it matters:* the model would likely have improved further; an EarlyStopping with a tiny
    patience or too few epochs leaves accuracy on the table.

    *How to fix:* train longer, and if EarlyStopping stopped it, raise ``patience`` and monitor the
    val Dice/IoU with ``restore_best_weights=True``.

    Thresholds: the monitored loss (val loss if logged) is best at the last epoch and fell >= 5%
    (of its distance from a perfect fit, or of its range) over the last 3 epochs, falling throughout
    them, and on logs of 25 epochs or more the last fifth trends down (Kendall tau <= -0.6), so that
    three lucky epochs of a noisy converged loss do not count. Info only: stopping may have been
    deliberate. Not judged on a loss below -1 (SD609: its values mean nothing). On healthy_control it notes that the val loss still fell 42% over the last 3
    epochs when the log ends at epoch 6.
    """

    code = "SD608"
    name = "early-stop-too-soon"
    severity = Severity.INFO
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        name = ctx.main_loss("val") or ctx.main_loss("train")
        if name is None or ctx.loss_forms[name].form == curves.NEGATIVE_UNEXPLAINED:
            return  # an impossible loss (SD609) says nothing about how far training got
        y = ctx.values(name)
        idx, yv = curves.finite_part(y)
        if yv.size < 2 or int(idx[-1]) != ctx.n - 1 or int(np.argmin(yv)) != yv.size - 1:
            return
        k = min(3, yv.size - 1)
        window = yv[-(k + 1):]
        if not np.all(np.diff(window) < 0):
            return
        # On a long log three falling epochs can be noise: the last fifth must trend down as well.
        recent = yv[-max(k + 1, yv.size // 5):]
        tau = curves.trend_tau(recent)
        if recent.size > k + 1 and not tau <= STILL_IMPROVING_TAU:
            return
        d = ctx.distance(name)
        if d is not None and d[idx[-(k + 1)]] > 1e-12:
            gain = float((d[idx[-(k + 1)]] - d[idx[-1]]) / d[idx[-(k + 1)]])
        else:
            gain = float((window[0] - window[-1]) / max(float(np.ptp(yv)), 1e-12))
        if gain < STILL_IMPROVING:
            return
        planned = ctx.history.params.get("epochs")
        title = f"{name} was still falling when training ended: {_pct(gain)} lower over the last {k} epoch(s), best at the last epoch ({ctx.epoch(int(idx[-1]))})"
        if isinstance(planned, int) and planned > ctx.n:
            title += f"; {ctx.n} of {planned} planned epochs ran"
        yield self.finding(
            title=title,
            evidence={"column": name, "last": float(yv[-1]), "gain_last_epochs": round(gain, 4), "epochs": ctx.n,
                      "planned_epochs": planned if planned is not None else "unknown"},
            why="The loss was still improving, so more epochs would likely give a better model.",
            fix="Train for more epochs; if EarlyStopping ended the run, give it a patience of about 10 epochs and restore the best weights.",
            snippet=("early_stop = keras.callbacks.EarlyStopping(monitor=\"val_loss\", patience=10, min_delta=1e-4,\n"
                     "                                           restore_best_weights=True)\n"
                     "model.fit(..., epochs=200, callbacks=[early_stop])"),
            figures=[ctx.loss_figure(spans=[ctx.span(int(idx[-(k + 1)]), int(idx[-1]), "still improving")], focus=(name,))],
        )


# --- SD609 -----------------------------------------------------------------------------------------


@register
class MetricOutOfRange(Check):
    """A Dice/IoU/accuracy outside [0, 1], or a loss below what any standard loss can reach.

    *Why it matters:* these values are impossible with targets in [0, 1]. They appear when masks are
    stored as 0/255 (or class ids) and fed to a binary loss: the cross-entropy turns negative and
    the "IoU" exceeds 1. Every number in the log is then meaningless.

    *How to fix:* binarise the masks to {0, 1} before training (``mask = (mask > 127)``); for
    class-index masks use a sparse categorical loss instead.

    Thresholds: Dice/IoU/accuracy above 1.001 or below -0.001; a loss below -1 (no CE, Dice,
    focal, Tversky, -Dice or their sums can go there); a loss named cross-entropy below 0. A loss
    recognised as ``-Dice`` (negative by design, within 0.02 of -Dice) is never flagged for its
    sign. Calibrated on negative_loss_iou_above_1 (IoU up to 7.13, loss down to -212).
    """

    code = "SD609"
    name = "metric-out-of-range"
    severity = Severity.ERROR
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        evidence, spans = {}, []
        metric_hits: dict[str, list[tuple[str, float]]] = {}
        first_metric_index = None
        for name in ctx.columns(curves.DICE, curves.IOU, curves.ACCURACY):
            y = ctx.values(name)
            bad = np.isfinite(y) & ((y > 1 + RANGE_TOLERANCE) | (y < -RANGE_TOLERANCE))
            if bad.any():
                worst = float(y[bad][np.argmax(np.abs(y[bad] - 0.5))])
                metric_hits.setdefault(ctx.roles[name].label, []).append((name, worst))
                evidence[f"{name}_extreme"] = worst
                evidence[f"{name}_epochs_out_of_range"] = int(bad.sum())
                i0 = _first(bad)
                first_metric_index = i0 if first_metric_index is None else min(first_metric_index, i0)
        loss_names = []
        for name in ctx.columns(curves.LOSS):
            y = ctx.values(name)
            form = ctx.loss_forms[name]
            key = ctx.roles[name].base.lower()
            crossentropy = any(w in key for w in ("crossentropy", "cross_entropy", "bce", "_ce"))
            finite = y[np.isfinite(y)]
            if finite.size == 0:
                continue
            lowest = float(finite.min())
            if form.form == curves.NEGATIVE_UNEXPLAINED or (crossentropy and lowest < -RANGE_TOLERANCE):
                evidence[f"{name}_lowest"] = lowest
                loss_names.append((name, lowest, crossentropy))
        parts = []
        for label, hits in metric_hits.items():
            names = _names([n for n, _ in hits])
            worst = max((w for _, w in hits), key=lambda w: abs(w - 0.5))
            parts.append(f"{label} reaches {_g(worst)} ({names}; it must lie in [0, 1])")
        if loss_names:
            lowest = min(v for _, v, _ in loss_names)
            names = _names([n for n, _, _ in loss_names])
            bound = "a cross-entropy cannot be negative" if any(c for _, _, c in loss_names) else "no standard loss goes below -1"
            parts.append(f"the loss reaches {_g(lowest)} ({names}; {bound})")
        if not parts:
            return
        if first_metric_index is not None:
            spans.append(ctx.span(first_metric_index, ctx.n - 1, "out of range"))
        title = "; ".join(parts) + ": the targets are not in [0, 1]"
        why = ("Dice/IoU above 1 and a negative cross-entropy are impossible with targets in [0, 1]: the masks reach the loss "
               "as 0/255 (or class ids) instead of 0/1, so every number in this log is meaningless.")
        mask_0_255 = ctx.data_finding("SD101")
        if mask_0_255 is not None:
            why += f" The data checks confirm it: {mask_0_255.title} (SD101)."
        figures = [ctx.metric_figure(spans=spans)] if spans else []
        if loss_names:
            figures.append(ctx.loss_figure())
        yield self.finding(
            title=title, evidence=evidence, why=why,
            fix="Binarise the masks to {0, 1} where you load them (threshold at 127 for 0/255 masks; never divide class-id masks by 255).",
            snippet=("mask = keras.ops.cast(mask > 127, \"float32\")   # 0/255 binary masks -> 0/1\n"
                     "# class-index masks (0..K-1): keep them as integers and use\n"
                     "# loss=keras.losses.SparseCategoricalCrossentropy() with a K-channel softmax head"),
            figures=figures, related=("SD101", "SD107"),
        )


# --- SD610 -----------------------------------------------------------------------------------------


@register
class MetricFrozen(Check):
    """A metric repeats exactly the same value, epoch after epoch, while the loss moves.

    *Why it matters:* a metric that cannot change while the loss does is not measuring the model:
    it is broken (wrong reduction axes, thresholding a constant) or the labels are degenerate
    (accuracy stuck at the background share, or at 1.0 with RGB masks treated as classes).

    *How to fix:* check the metric implementation (``segdoctor check-model --custom-objects``, SD407)
    and the labels (``segdoctor check-data``).

    Thresholds: judged by exact repetition, not by the length of the log: the same value (to the last
    digit logged) for >= 3 consecutive epochs, or for both epochs of a 2-epoch log when the values carry
    >= 5 significant digits (a live metric at full precision never repeats), while a loss of the same
    split changes by >= 5% over those epochs. A metric at its perfect value (1.0) while the loss falls
    is a model growing more confident, not a frozen metric. A Dice/IoU frozen near 0, or below 0.1 for
    the whole run, is reported by SD605 instead.
    """

    code = "SD610"
    name = "metric-frozen"
    severity = Severity.WARNING
    scope = "history"

    def run(self, ctx: HistoryContext) -> Iterator[Finding]:
        for name, role in ctx.roles.items():
            if role.kind in (curves.LOSS, curves.LR):
                continue
            y = ctx.values(name)
            finite = np.flatnonzero(np.isfinite(y))
            for a, b in curves.frozen_runs(y, tolerance=0.0):
                value = float(y[a])
                if b - a + 1 < _repeats_needed(value, ctx.n):
                    continue
                if role.is_overlap and value < NEAR_ZERO_OVERLAP:
                    continue
                if role.is_overlap and value < SMALL_OVERLAP and finite.size and (a, b) == (int(finite[0]), int(finite[-1])):
                    continue  # flat below 0.1 for the whole run: SD605
                loss = ctx.main_loss(role.split) or ctx.main_loss("train")
                if loss is None:
                    continue
                lv = ctx.values(loss)[a:b + 1]
                lv = lv[np.isfinite(lv)]
                if lv.size < 2:
                    continue
                level = max(float(np.median(np.abs(lv + (ctx.loss_forms[loss].offset or 0.0)))), 1e-12)
                moved = float(np.ptp(lv)) / level
                if moved < MOVING_LOSS:
                    continue
                if value >= 1.0 and role.kind in (curves.DICE, curves.IOU, curves.ACCURACY) and lv[-1] < lv[0]:
                    continue  # perfect on this split, and the loss falls as the model grows more confident
                why = "A metric that cannot move while the loss does is not measuring the model."
                if ctx.background_share is not None and role.kind == curves.ACCURACY and abs(value - ctx.background_share) <= BACKGROUND_SHARE_MATCH:
                    why += f" {value:.4f} is the background share of the data: the model outputs a constant."
                yield self.finding(
                    title=f"{name} stayed at {value:.4g} for {b - a + 1} epochs ({ctx.epoch_range(a, b)}) while {loss} moved {_pct(moved)}",
                    evidence={"column": name, "value": value, "frozen_epochs": b - a + 1, "loss": loss,
                              "loss_relative_range": round(moved, 4), "kind": role.kind},
                    why=why,
                    fix=("Check the metric implementation (`segdoctor check-model MODEL --custom-objects FILE`) and the labels "
                         "(`segdoctor check-data DIR`)."),
                    figures=[ctx.metric_figure(spans=[ctx.span(a, b, "frozen")], focus=(name,))],
                    related=("SD407", "SD606"),
                )
                break
