"""The learning-rate range test (Smith 2017) as numbers: the sweep's learning rates, its stopping rule,
and what a recorded loss-vs-LR curve says (where the loss falls fastest, where it blows up, a good range).

Pure numpy. The sweep itself (training a copy of the model one batch per step) is in
``segdoctor.io.lr_sweep``; the judgement (SD451) in ``segdoctor.checks.lr_range``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the sweep stops once the smoothed loss exceeds this multiple of the best smoothed loss (Smith 2017; fastai)
BLOWUP_FACTOR = 4.0
#: weight of the past in the running (exponential) smoothing that decides when to stop
STOP_SMOOTHING = 0.9
#: the stopping rule waits for this many steps: the first batches' losses are too few to compare
STOP_MIN_STEPS = 5
#: width of the centred smoothing used to read the curve, in decades of learning rate
SMOOTHING_DECADES = 0.4
#: the sweep has found a working range when the smoothed loss falls this much (relative) below where it started ...
FALL_MIN = 0.05
#: ... and the model has learned from the images: its loss on the true pairs is this much (relative) below its loss
#: on the same images with the masks shuffled between them (a model that only learns the class prior scores both
#: alike). Without that test, the loss must fall this far below the best constant prediction (the prior)
CONTENT_MARGIN = 0.05
PRIOR_MARGIN = 0.03
#: probes in a row that must agree before the model counts as having learned from the images, or as having stopped
CONFIRM_PROBES = 2
#: a model that already uses the images before the sweep counts as trained unless the sweep cuts its loss this much
TRAINED_FALL = 0.5
#: the loss counts as starting to fall once it has covered this share of its total fall
ONSET_SHARE = 0.05
#: the good range starts a decade below the onset of the fall (the sweep shows progress only once the steps at
#: lower rates have added up) and ends at the larger of the steepest-descent LR and a tenth of the minimum's LR,
#: at most a third of the blow-up LR; for an already trained model (no fall) it spans 1/100 to 1/3 of the blow-up
ONSET_DIVISOR = 10.0
MINIMUM_DIVISOR = 10.0
BLOWUP_DIVISOR = 3.0
TRAINED_SUGGESTION_DIVISOR = 10.0
TRAINED_LOW_DIVISOR = 100.0
#: the peak of a warm-up + cosine schedule: this multiple of the suggested constant LR, within the good range
PEAK_FACTOR = 3.0


def sweep_learning_rates(min_lr: float, max_lr: float, steps: int) -> np.ndarray:
    """``steps`` learning rates growing exponentially (equal ratios) from ``min_lr`` to ``max_lr``."""
    if steps < 2:
        return np.array([float(min_lr)])
    return np.geomspace(float(min_lr), float(max_lr), int(steps))


class StopRule:
    """Online rule of the sweep: an exponential moving average of the losses (bias-corrected), and a stop
    when it exceeds ``BLOWUP_FACTOR`` times its best value, or when a loss is not finite.

    There is no stop on a settled minimum: a loss that floors at the class prior often falls again at higher
    rates once the model starts to use the images, and a trained model's range comes from its blow-up."""

    def __init__(self, *, beta: float = STOP_SMOOTHING, factor: float = BLOWUP_FACTOR, min_steps: int = STOP_MIN_STEPS) -> None:
        self.beta, self.factor, self.min_steps = beta, factor, min_steps
        self._avg = 0.0
        self.n = 0
        self.first: float | None = None
        self.best = math.inf
        self.blew_up = False  # the sweep stopped on a blow-up (a NaN, or 4x the best), not at --max-lr
        self.smoothed: list[float] = []

    def update(self, loss: float) -> str | None:
        """Record one batch loss; return why the sweep must stop, or None."""
        if not math.isfinite(loss):
            self.smoothed.append(math.nan)
            self.blew_up = True
            return "the loss became NaN or infinite"
        self.n += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        value = self._avg / (1 - self.beta ** self.n)
        self.smoothed.append(value)
        if self.first is None:
            self.first = value
        self.best = min(self.best, value)
        if self.n > self.min_steps and value > self.limit:
            self.blew_up = True
            return f"the smoothed loss exceeded {self.factor:g}x its best value"
        return None

    @property
    def limit(self) -> float:
        """The smoothed loss at which the sweep stops. ``factor`` x the best for a positive loss; for a loss that
        reaches zero or below (e.g. -Dice) the same distance above the best, measured against the starting loss."""
        if self.best > 0:
            return self.factor * self.best
        first = self.first if self.first is not None else self.best
        return first + (self.factor - 1) * max(first - self.best, abs(self.best), 1e-12)


def centred_smooth(values: np.ndarray, window: int) -> np.ndarray:
    """A centred running median then mean (``window`` points, shrinking at the ends): no lag, robust to one bad batch."""
    y = np.asarray(values, dtype=np.float64)
    n = y.size
    if n == 0 or window <= 1:
        return y.copy()
    half = window // 2
    med = np.array([np.median(y[max(0, i - half): i + half + 1]) for i in range(n)])
    return np.array([med[max(0, i - half): i + half + 1].mean() for i in range(n)])


def learned_content(content: tuple[float, float] | None) -> bool | None:
    """From (loss on the true pairs, loss on shuffled pairs): True when the model uses the images, None if unknown."""
    if content is None:
        return None
    true, shuffled = content
    if not (math.isfinite(true) and math.isfinite(shuffled)):
        return None
    return true <= shuffled - CONTENT_MARGIN * max(abs(shuffled), 1e-12)


@dataclass(frozen=True)
class RangeResult:
    """What a loss-vs-LR curve says. LRs are None where the curve does not show them.

    ``state`` is ``falls`` (a working range was measured), ``trained`` (the model already fits the data: the loss
    cannot fall much, only the blow-up bounds the range) or ``never-falls`` (no LR makes it learn from the images).
    """

    learning_rates: tuple[float, ...]  # the LRs swept up to the first non-finite loss
    losses: tuple[float, ...]  # raw batch losses
    smoothed: tuple[float, ...]  # centred smoothing, for reading and plotting
    state: str
    start_loss: float
    min_loss: float
    min_lr: float  # LR at the smoothed minimum (before a collapse)
    onset_lr: float | None  # where the loss starts to fall
    steepest_lr: float | None  # where the smoothed loss falls fastest per decade
    steepest_slope: float | None  # loss change per decade there (negative)
    blowup_lr: float | None  # first LR after the minimum where the loss is back above its start, or the network
    #                          stopped using the images (collapse to the prior), or the sweep stopped
    collapse_lr: float | None  # the LR from which the model no longer used the images (a dead network)
    good_low: float | None
    good_high: float | None
    suggested_lr: float | None  # a constant LR to train with
    peak_lr: float | None  # the peak of a warm-up + cosine (one-cycle style) schedule
    constant_loss: float | None  # the loss of the best constant prediction on the same batches, when known
    content_start: tuple[float, float] | None  # (true-pair loss, shuffled-pair loss) of the model before the sweep
    content_curve: tuple[tuple[float, float, float], ...]  # (LR, true-pair loss, shuffled-pair loss) during the sweep

    @property
    def falls(self) -> bool:
        return self.state == "falls"

    @property
    def fall(self) -> float:
        """How far the smoothed loss fell below its start, relative to the start (0..1 for positive losses)."""
        return (self.start_loss - self.min_loss) / max(abs(self.start_loss), 1e-12)

    @property
    def learned_images(self) -> bool | None:
        """Whether the model used the images at some point of the sweep (None when not measured)."""
        marks = [(lr, learned_content((t, u))) for lr, t, u in self.content_curve]
        marks = [(lr, bool(m)) for lr, m in marks if m is not None]
        return _learned(marks) if marks else None

    def position(self, lr: float | None) -> str | None:
        """Where ``lr`` sits: 'below', 'inside', 'above' the good range, or 'beyond-blowup'; None without a range."""
        if lr is None or not math.isfinite(lr):
            return None
        if self.blowup_lr is not None and lr >= self.blowup_lr and self.state != "never-falls":
            return "beyond-blowup"
        if self.good_low is None or self.good_high is None:
            return None
        if lr < self.good_low:
            return "below"
        if lr > self.good_high:
            return "above"
        return "inside"


def _runs(curve: list[tuple[float, bool]], value: bool) -> list[int]:
    """Indices where ``CONFIRM_PROBES`` probes in a row (or the last ones) have ``value``."""
    out = []
    for i in range(len(curve)):
        window = [flag for _, flag in curve[i: i + CONFIRM_PROBES]]
        if window and all(flag == value for flag in window) and (len(window) == CONFIRM_PROBES or i == len(curve) - 1):
            out.append(i)
    return out


def _learned(curve: list[tuple[float, bool]]) -> bool:
    return bool(_runs(curve, True))


def _collapse(curve: list[tuple[float, bool]]) -> float | None:
    """The first LR after the model had learned from the images (confirmed) at which it stopped doing so (confirmed,
    or at the last probe): the network died or collapsed to the class prior."""
    learned = _runs(curve, True)
    if not learned:
        return None
    lost = [i for i in _runs(curve, False) if i > learned[0]]
    return curve[lost[0]][0] if lost else None


def analyse_range(learning_rates: np.ndarray, losses: np.ndarray, *, constant_loss: float | None = None,
                  stopped_early: bool = False, content_start: tuple[float, float] | None = None,
                  content_curve: tuple[tuple[float, float, float], ...] | list = ()) -> RangeResult:
    """Read a range test: ``losses[i]`` is the batch loss at ``learning_rates[i]`` (increasing).

    The curve is smoothed with a centred window of ``SMOOTHING_DECADES`` (no lag, unlike the running
    average that decides when to stop). ``content_curve`` holds probes taken during the sweep: (LR, loss on
    the true pairs, loss on the same predictions scored against shuffled masks). A model that uses the
    images scores the true pairs ``CONTENT_MARGIN`` better; one that learned only the class prior (random
    masks, a dead network) scores both alike. From the LR where a model that had learned stops doing so
    (a *collapse*) the sweep is blown up even when the loss, now that of a constant prediction, did not rise.

    The loss *falls* when its smoothed minimum (before any collapse) lies ``FALL_MIN`` below the start and
    the model learned from the images (without probes: a minimum ``PRIOR_MARGIN`` below ``constant_loss``).
    A model that already uses the images before the sweep (``content_start``) and whose loss the sweep does
    not cut by ``TRAINED_FALL`` is ``trained``: judged against its blow-up. Anything else ``never-falls``. ``stopped_early`` says the sweep ended on its blow-up rule, so the last LR
    swept is where it blew up if the curve does not show it earlier.
    """
    lrs = np.asarray(learning_rates, dtype=np.float64)
    raw = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(raw) & np.isfinite(lrs) & (lrs > 0)
    # a non-finite loss ends the usable curve: later points (if any) are not trusted
    stop = int(np.argmin(finite)) if not finite.all() else raw.size
    lrs, raw = lrs[:stop], raw[:stop]
    nan_end = stop < len(losses)
    curve = tuple((float(lr), float(t), float(u)) for lr, t, u in content_curve)
    if raw.size < 3:
        first = float(raw[0]) if raw.size else math.nan
        return RangeResult(tuple(lrs.tolist()), tuple(raw.tolist()), tuple(raw.tolist()), "never-falls", first, first,
                           float(lrs[0]) if lrs.size else math.nan, None, None, None,
                           float(lrs[-1]) if (nan_end or stopped_early) and lrs.size else None, None,
                           None, None, None, None, constant_loss, content_start, curve)
    x = np.log10(lrs)
    per_decade = (raw.size - 1) / max(x[-1] - x[0], 1e-9)
    window = max(3, int(round(SMOOTHING_DECADES * per_decade)) | 1)
    smooth = centred_smooth(raw, window)
    start = float(np.median(raw[: max(3, window)]))
    marks = [(lr, learned_content((t, u))) for lr, t, u in curve]
    marks = [(lr, bool(m)) for lr, m in marks if m is not None]
    collapse = _collapse(marks)
    usable = int(np.searchsorted(lrs, collapse, side="left")) if collapse is not None else raw.size
    usable = max(usable, 1)
    m = int(np.argmin(smooth[:usable]))
    lowest = float(smooth[m])
    fall = (start - lowest) / max(abs(start), 1e-12)
    has_prior = constant_loss is not None and math.isfinite(constant_loss)
    beats_prior = has_prior and lowest <= constant_loss - PRIOR_MARGIN * max(abs(constant_loss), 1e-12)
    learned = _learned(marks) if marks else (beats_prior if has_prior else fall >= 2 * FALL_MIN)
    learned_start = learned_content(content_start)
    if learned_start is None:
        learned_start = bool(has_prior and start <= constant_loss - PRIOR_MARGIN * max(abs(constant_loss), 1e-12))
    if learned_start and fall < TRAINED_FALL:
        state = "trained"  # its loss is near its floor already: what a sweep shows is noise and the blow-up
    elif fall >= FALL_MIN and learned:
        state = "falls"
    elif learned_start:
        state = "trained"
    else:
        state = "never-falls"
    # blow-up: the smoothed loss back above where it started (4x the minimum when the start is far above it);
    # for a trained model, a clear rise above the start
    if state == "trained":
        level = start + FALL_MIN * max(abs(start), 1e-12)
    else:
        level = min(start, BLOWUP_FACTOR * lowest) if lowest > 0 else start
    blow = None
    after = np.flatnonzero(smooth[m + 1:] > level)
    if after.size:
        blow = float(lrs[m + 1 + after[0]])
    elif nan_end or stopped_early:
        blow = float(lrs[-1])
    if collapse is not None and state != "never-falls" and (blow is None or collapse < blow):
        blow = float(collapse)
    onset = steepest_lr = slope = good_low = good_high = suggested = peak = None
    if state == "falls" and m >= 1:
        grad = np.gradient(smooth[: m + 1], x[: m + 1])
        i = int(np.argmin(grad))
        steepest_lr, slope = float(lrs[i]), float(grad[i])
        covered = (start - smooth[: m + 1]) / max(start - lowest, 1e-12)
        onset = float(lrs[int(np.argmax(covered >= ONSET_SHARE))])
        good_low = min(onset, steepest_lr) / ONSET_DIVISOR
        good_high = max(steepest_lr, float(lrs[m]) / MINIMUM_DIVISOR)
        if blow is not None:
            good_high = min(good_high, blow / BLOWUP_DIVISOR)
        good_low = min(good_low, good_high)
        # the middle (in log scale) of the descent from its onset to the minimum, like fastai's "valley"
        suggested = float(np.clip(math.sqrt(onset * float(lrs[m])), good_low, good_high))
    elif state == "trained" and blow is not None:
        good_high = blow / BLOWUP_DIVISOR
        good_low = blow / TRAINED_LOW_DIVISOR
        suggested = blow / TRAINED_SUGGESTION_DIVISOR
    if suggested is not None:
        peak = float(min(good_high, PEAK_FACTOR * suggested))
    return RangeResult(
        learning_rates=tuple(float(v) for v in lrs), losses=tuple(float(v) for v in raw),
        smoothed=tuple(float(v) for v in smooth), state=state, start_loss=start, min_loss=lowest,
        min_lr=float(lrs[m]), onset_lr=onset, steepest_lr=steepest_lr, steepest_slope=slope, blowup_lr=blow,
        collapse_lr=collapse, good_low=good_low, good_high=good_high, suggested_lr=suggested, peak_lr=peak,
        constant_loss=constant_loss, content_start=content_start, content_curve=curve,
    )


def round_lr(lr: float) -> float:
    """An LR rounded to a number a person would type: 1, 2 or 5 times a power of ten (log-nearest)."""
    if not lr > 0 or not math.isfinite(lr):
        return lr
    exponent = math.floor(math.log10(lr))
    mantissa = lr / 10 ** exponent
    best = min((1, 2, 5, 10), key=lambda c: abs(math.log10(mantissa / c)))
    return float(f"{best * 10 ** exponent:.3g}")
