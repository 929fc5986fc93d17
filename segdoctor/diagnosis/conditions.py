"""What a causal link can require of a run: named conditions on the findings' evidence and the report's facts.

A condition reads what the run measured (the compiled loss, the foreground share, the log's learning rate) and
never re-derives it. It answers True, False (the link is off) or None (this run cannot tell).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segdoctor.findings import Finding

# --- the run a diagnosis reads --------------------------------------------------------------------


class Run:
    """The findings and facts of one run, as the conditions read them."""

    def __init__(self, findings: Sequence[Finding], facts: Mapping[str, Any] | None = None) -> None:
        self.findings = list(findings)
        self.facts = dict(facts or {})

    def first(self, code: str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def present(self, code: str) -> bool:
        return self.first(code) is not None


#: a condition's answer: True (holds), False (does not: the link is off), None (this run cannot tell)
State = bool | None


@dataclass(frozen=True, slots=True)
class Condition:
    """A named test on the run that a link needs; ``text`` completes "... when <text>"."""

    name: str
    text: str
    test: Callable[[Run, Finding, Finding], State]
    detail: Callable[[Run], str | None] | None = None  # e.g. the loss's name, shown after the text
    short: str = ""  # the clause a verdict uses ("the loss is plain cross-entropy"); empty: ``text``


CONDITIONS: dict[str, Condition] = {}


def _condition(name: str, text: str, detail: Callable[[Run], str | None] | None = None, short: str = ""):
    def register(test: Callable[[Run, Finding, Finding], State]) -> Callable[[Run, Finding, Finding], State]:
        if name in CONDITIONS:
            raise ValueError(f"duplicate diagnosis condition {name!r}")
        CONDITIONS[name] = Condition(name, text, test, detail, short)
        return test
    return register


def _get(key: str, cause: Finding, effect: Finding, *, first: str = "effect") -> Any:
    """Evidence ``key`` of the link's effect, else of its cause (``first="cause"``: the other way round): a
    condition reads the finding that measured it."""
    a, b = (effect, cause) if first == "effect" else (cause, effect)
    return a.evidence[key] if key in a.evidence else b.evidence.get(key)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# the compiled loss (facts of check-model: loss, loss_family) or, without a model, the loss column of the log
_CE_FAMILIES = ("binary_ce", "categorical_ce", "sparse_ce")
_OVERLAP_WORDS = ("dice", "iou", "jaccard", "tversky", "lovasz", "f1", "fscore", "overlap")
_LOG_OVERLAP_FORMS = ("negative-overlap", "one-minus-overlap")


def _loss_name(run: Run) -> str | None:
    name = run.facts.get("loss")
    return str(name) if name else None


def _loss_words(run: Run) -> str:
    return (_loss_name(run) or "").lower().replace("-", "").replace("_", "")


@_condition("plain-ce-loss", "the loss is plain cross-entropy (no Dice, IoU, Tversky or focal term)", detail=_loss_name,
            short="the loss is plain cross-entropy")
def _plain_ce_loss(run: Run, cause: Finding, effect: Finding) -> State:
    family = run.facts.get("loss_family")
    words = _loss_words(run)
    if family is not None:
        if "focal" in words or any(w in words for w in _OVERLAP_WORDS) or family == "dice":
            return False
        return True if family in _CE_FAMILIES else None
    if run.facts.get("log_loss_form") in _LOG_OVERLAP_FORMS:
        return False  # the log's loss is -Dice or 1 - Dice: it has an overlap term
    return None


@_condition("binary-loss", "the loss reads the targets as probabilities (binary cross-entropy or Dice)", detail=_loss_name,
            short="the loss reads them as probabilities")
def _binary_loss(run: Run, cause: Finding, effect: Finding) -> State:
    family = run.facts.get("loss_family")
    if family in ("binary_ce", "dice"):
        return True
    if family in ("sparse_ce", "categorical_ce"):
        return False
    return None


@_condition("sparse-loss", "the loss is sparse categorical cross-entropy (class ids index the output channels)", detail=_loss_name,
            short="the loss is sparse categorical cross-entropy")
def _sparse_loss(run: Run, cause: Finding, effect: Finding) -> State:
    family = run.facts.get("loss_family")
    if family == "sparse_ce":
        return True
    if family in ("binary_ce", "categorical_ce", "dice"):
        return False
    return None


@_condition("class-prior-output", "the constant output equals the foreground share (the class prior)")
def _class_prior_output(run: Run, cause: Finding, effect: Finding) -> State:
    value = _get("output_is_class_prior", cause, effect)
    return bool(value) if isinstance(value, bool) else None


def _collapse_fit(cause: Finding, effect: Finding) -> str | None:
    fit = _get("fits", cause, effect)
    return fit if fit in ("blank", "everything-foreground") else None


@_condition("collapse-blank", "the collapsed Dice/IoU fits blank predictions (near 0, not 2f/(1+f))")
def _collapse_blank(run: Run, cause: Finding, effect: Finding) -> State:
    fit = _collapse_fit(cause, effect)
    return None if fit is None else fit == "blank"


@_condition("collapse-all-foreground", "the collapsed Dice/IoU fits foreground predicted everywhere (Dice 2f/(1+f), IoU f)")
def _collapse_all_foreground(run: Run, cause: Finding, effect: Finding) -> State:
    fit = _collapse_fit(cause, effect)
    return None if fit is None else fit == "everything-foreground"


@_condition("collapse-after-rise", "the Dice/IoU fell after it had risen")
def _collapse_after_rise(run: Run, cause: Finding, effect: Finding) -> State:
    kind = _get("kind", cause, effect)
    return None if kind is None else kind == "fell"


@_condition("collapse-throughout", "the Dice/IoU stayed low for the whole run")
def _collapse_throughout(run: Run, cause: Finding, effect: Finding) -> State:
    kind = _get("kind", cause, effect)
    return None if kind is None else kind != "fell"


def _lr_side(cause: Finding, effect: Finding) -> str | None:
    lr, low, high = (_number(_get(k, cause, effect, first="cause")) for k in ("learning_rate", "range_low", "range_high"))
    if lr is None or low is None or high is None:
        return None
    return "high" if lr > high else "low" if lr < low else "inside"


def _log_lr(run: Run) -> str | None:
    value = _number(run.facts.get("log_learning_rate_max"))
    return None if value is None else f"the log's learning rate reached {value:.3g}"


@_condition("lr-high", "the optimizer's learning rate is above the range that trains")
def _lr_high(run: Run, cause: Finding, effect: Finding) -> State:
    side = _lr_side(cause, effect)
    return None if side is None else side == "high"


@_condition("lr-high-in-log", "the optimizer's learning rate is above its range, and so is the training log's", detail=_log_lr,
            short="training ran at that rate")
def _lr_high_in_log(run: Run, cause: Finding, effect: Finding) -> State:
    if _lr_side(cause, effect) != "high":
        return False if _lr_side(cause, effect) else None
    logged = _number(run.facts.get("log_learning_rate_max"))
    high = _number(_get("range_high", cause, effect, first="cause"))
    if logged is None or high is None:
        return None  # the log has no learning-rate column: it may have trained at another rate
    return logged > high


@_condition("lr-low-in-log", "the optimizer's learning rate is below its range, and so is the training log's", detail=_log_lr,
            short="training ran at that rate")
def _lr_low_in_log(run: Run, cause: Finding, effect: Finding) -> State:
    if _lr_side(cause, effect) != "low":
        return False if _lr_side(cause, effect) else None
    logged = _number(run.facts.get("log_learning_rate_max"))
    low = _number(_get("range_low", cause, effect, first="cause"))
    if logged is None or low is None:
        return None
    return logged < low


@_condition("nan-images", "some images hold NaN or Inf pixels")
def _nan_images(run: Run, cause: Finding, effect: Finding) -> State:
    n = _number(_get("with_nonfinite", cause, effect, first="cause"))
    return None if n is None else n > 0


@_condition("same-files", "both findings name some of the same files")
def _same_files(run: Run, cause: Finding, effect: Finding) -> State:
    return bool(set(cause.files) & set(effect.files))


@_condition("most-masks-empty", "at least half of the masks are empty")
def _most_masks_empty(run: Run, cause: Finding, effect: Finding) -> State:
    share = _number(_get("share", cause, effect, first="cause"))
    return None if share is None else share >= 0.5


@_condition("many-pairs", "at least a quarter of the checked pairs are suspect")
def _many_pairs(run: Run, cause: Finding, effect: Finding) -> State:
    bad, checked = _number(_get("suspect_pairs", cause, effect, first="cause")), _number(_get("pairs_checked", cause, effect, first="cause"))
    return None if bad is None or not checked else bad / checked >= 0.25


@_condition("nan-from-start", "the loss is NaN from the first epoch")
def _nan_from_start(run: Run, cause: Finding, effect: Finding) -> State:
    value = _get("from_first_epoch", cause, effect)
    return bool(value) if isinstance(value, bool) else None


@_condition("nan-after-training", "the loss turned NaN after finite epochs")
def _nan_after_training(run: Run, cause: Finding, effect: Finding) -> State:
    value = _get("from_first_epoch", cause, effect)
    return (not value) if isinstance(value, bool) else None


def _defect_kind(cause: Finding, effect: Finding) -> str | None:
    kind = _get("treated_as", cause, effect, first="cause") or _get("role", cause, effect, first="cause")
    return str(kind) if kind else None


@_condition("metric-defect", "the defective function is a metric")
def _metric_defect(run: Run, cause: Finding, effect: Finding) -> State:
    kind = _defect_kind(cause, effect)
    return None if kind is None else kind == "metric"


@_condition("loss-defect", "the defective function is the loss")
def _loss_defect(run: Run, cause: Finding, effect: Finding) -> State:
    kind = _defect_kind(cause, effect)
    return None if kind is None else kind == "loss"


@_condition("not-everywhere", "the model does not predict foreground everywhere (no over-segmentation, SD508)")
def _not_everywhere(run: Run, cause: Finding, effect: Finding) -> State:
    return not run.present("SD508")


@_condition("high-accuracy", "the accuracy is high (at least 0.5): it counts the background pixels")
def _high_accuracy(run: Run, cause: Finding, effect: Finding) -> State:
    value = _number(_get("accuracy", cause, effect))
    return None if value is None else value >= 0.5


@_condition("frozen-accuracy", "the frozen metric is a pixel accuracy")
def _frozen_accuracy(run: Run, cause: Finding, effect: Finding) -> State:
    kind = _get("kind", cause, effect)
    return None if kind is None else kind == "accuracy"


@_condition("tiny-objects", "most objects are tiny (SD152 in this run)")
def _tiny_objects(run: Run, cause: Finding, effect: Finding) -> State:
    return run.present("SD152")


@_condition("plateau-at-prior", "the flat loss sits at the cross-entropy of predicting the foreground share everywhere")
def _plateau_at_prior(run: Run, cause: Finding, effect: Finding) -> State:
    value = _get("at_constant_predictor", cause, effect)
    return bool(value) if isinstance(value, bool) else None


def _measured_lr_side(cause: Finding, effect: Finding) -> str | None:
    """Where the LR-range test put the learning rate training used: the log's highest LR when the log has one, else
    the saved optimizer's ('below', 'inside', 'above', 'beyond-blowup'), from SD451's evidence."""
    side = _get("history_lr_highest_position", cause, effect, first="cause") or _get("saved_lr_position", cause, effect, first="cause")
    return str(side) if side else None


@_condition("measured-lr-high", "the LR range test puts the learning rate in use above the range where the loss falls",
            short="the measured range lies below the learning rate in use")
def _measured_lr_high(run: Run, cause: Finding, effect: Finding) -> State:
    side = _measured_lr_side(cause, effect)
    return None if side is None else side in ("above", "beyond-blowup")


@_condition("measured-lr-low", "the LR range test puts the learning rate in use below the range where the loss falls",
            short="the measured range lies above the learning rate in use")
def _measured_lr_low(run: Run, cause: Finding, effect: Finding) -> State:
    side = _measured_lr_side(cause, effect)
    return None if side is None else side == "below"


@_condition("double-sigmoid", "the activation applied twice is a sigmoid (its output never falls below 0.5)")
def _double_sigmoid(run: Run, cause: Finding, effect: Finding) -> State:
    low = _number(_get("output_range_low", cause, effect, first="cause"))
    return None if low is None else low >= 0.5


@_condition("one-hot-zero-rows", "the targets hold one-hot rows of zeros")
def _one_hot_zero_rows(run: Run, cause: Finding, effect: Finding) -> State:
    rows = _number(_get("zero_row_pixels", cause, effect))
    return None if rows is None else rows > 0


@_condition("output-near-one", "the constant output is a probability near 1 (foreground everywhere)")
def _output_near_one(run: Run, cause: Finding, effect: Finding) -> State:
    p = _number(_get("mean_probability", cause, effect))
    return None if p is None else p >= 0.9
