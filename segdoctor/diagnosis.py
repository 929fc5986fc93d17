"""The diagnosis: which findings of one run explain the others, and which root cause to fix first.

Causal links are data. ``LINKS`` says "a finding of code A can explain a finding of code B, through
this mechanism, when this condition holds in the run"; ``CONDITIONS`` reads what the run measured (the
findings' evidence and the report's facts: the compiled loss, the foreground share, the log's learning
rate) and never re-derives it. ``diagnose`` evaluates the table on one run. ``segdoctor explain``
prints it, and the tests cover every link. Sits between the checks and the report; imports neither.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segdoctor.findings import Finding, Severity

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


# --- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """A finding of ``cause`` can explain a finding of ``effect`` through ``via``, when ``when`` holds.

    ``when`` names conditions in ``CONDITIONS``, joined by " and "; empty means always.
    """

    cause: str
    effect: str
    via: str
    when: str = ""

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(CONDITIONS[n.strip()] for n in self.when.split(" and ") if n.strip())

    def state(self, run: Run, cause: Finding, effect: Finding) -> tuple[State, tuple[Condition, ...]]:
        """(False if a condition fails, else None if one cannot be checked, else True; the unchecked ones)."""
        unknown = []
        for c in self.conditions:
            s = c.test(run, cause, effect)
            if s is False:
                return False, ()
            if s is None:
                unknown.append(c)
        return (None if unknown else True), tuple(unknown)

    def describe(self) -> str:
        when = " and ".join(c.text for c in self.conditions)
        return self.via + (f"; only when {when}" if when else "")


# One row per link: cause, effect, what happens in between, and the conditions (names joined by " and ").
# A new check's links are one line each; tests require every code here to be registered and the graph acyclic.
LINKS: tuple[Link, ...] = tuple(Link(*row) for row in (
    # mask encoding: labels the loss cannot read
    ("SD101", "SD107", "255 is not one of the class ids 0..K-1"),
    ("SD102", "SD107", "ids shifted to 1..K leave K outside 0..K-1"),
    ("SD103", "SD107", "the void value lies outside the class ids"),
    ("SD104", "SD107", "colour values are read as class ids"),
    ("SD105", "SD107", "compression adds values that are no class"),
    ("SD106", "SD107", "interpolation adds values between the classes"),
    ("SD105", "SD106", "compression smears values across the class boundaries", "same-files"),
    ("SD102", "SD403", "ids 1..K need K+1 output channels"),
    ("SD103", "SD403", "the void id is counted as a class"),
    ("SD104", "SD403", "colour masks do not match the head's channels"),
    ("SD107", "SD403", "the masks hold ids the head has no channel for"),
    ("SD101", "SD601", "class id 255 indexes past the output channels", "sparse-loss"),
    ("SD102", "SD601", "class id K indexes past the output channels", "sparse-loss"),
    ("SD103", "SD601", "the void id indexes past the output channels", "sparse-loss"),
    ("SD107", "SD601", "ids outside the classes index past the output channels", "sparse-loss"),
    ("SD403", "SD601", "ids beyond the output channels make the loss undefined", "sparse-loss"),
    ("SD202", "SD601", "one NaN or Inf pixel makes the loss NaN", "nan-images"),
    # 0/255 masks through a binary loss
    ("SD101", "SD609", "targets of 255 push the loss below 0 and the IoU above 1"),
    ("SD101", "SD508", "targets of 255 reward predicting foreground everywhere", "binary-loss"),
    ("SD609", "SD508", "targets above 1 reward predicting foreground everywhere", "binary-loss"),
    ("SD101", "SD605", "the metric compares the predictions with targets of 255"),
    ("SD101", "SD606", "accuracy compares the predictions with targets of 255"),
    ("SD609", "SD605", "the metrics are computed against targets outside [0, 1]"),
    ("SD609", "SD606", "accuracy is computed against targets outside [0, 1]"),
    ("SD609", "SD610", "a metric computed against targets outside [0, 1] stops moving"),
    ("SD609", "SD601", "targets outside [0, 1] make the loss undefined", "nan-from-start"),
    # rare foreground with a loss that ignores it
    ("SD151", "SD505", "plain cross-entropy is lowest when every pixel gets the class prior", "plain-ce-loss and class-prior-output"),
    ("SD151", "SD501", "plain cross-entropy on rare foreground settles on background", "plain-ce-loss"),
    ("SD151", "SD502", "plain cross-entropy on rare foreground settles on background", "plain-ce-loss and not-everywhere"),
    ("SD151", "SD506", "plain cross-entropy barely pays for the rare classes", "plain-ce-loss"),
    ("SD151", "SD604", "plain cross-entropy stalls at the loss of the class prior", "plain-ce-loss and plateau-at-prior"),
    ("SD151", "SD605", "plain cross-entropy on rare foreground settles on background", "plain-ce-loss and collapse-blank"),
    ("SD151", "SD610", "plain cross-entropy settles on background: the same accuracy every epoch", "plain-ce-loss and frozen-accuracy"),
    ("SD151", "SD503", "with this much background, predicting none of it scores high accuracy"),
    ("SD151", "SD606", "with this much background, predicting none of it scores high accuracy", "high-accuracy"),
    ("SD108", "SD151", "empty masks lower the foreground share", "most-masks-empty"),
    ("SD108", "SD605", "an empty mask has no foreground to overlap", "most-masks-empty"),
    ("SD408", "SD501", "downsampling without skip connections erases objects this small", "tiny-objects"),
    # geometry and pairing
    ("SD004", "SD251", "a mask of another size cannot follow its image's edges", "same-files"),
    ("SD203", "SD252", "viewers apply the EXIF rotation to the image, readers leave the mask as stored", "same-files"),
    ("SD203", "SD251", "viewers apply the EXIF rotation to the image, readers leave the mask as stored", "same-files"),
    ("SD252", "SD251", "flipped masks do not follow their images' edges", "same-files"),
    ("SD251", "SD502", "masks that belong to other images teach noise", "many-pairs"),
    ("SD252", "SD502", "a convolutional network cannot learn a flipped mapping"),
    ("SD252", "SD604", "a convolutional network cannot learn a flipped mapping"),
    ("SD153", "SD607", "validation images unlike the training images score worse"),
    # image values
    ("SD201", "SD507", "images come in several value ranges, the model learned one"),
    # the head, the loss, the metrics
    ("SD401", "SD508", "softmax over one channel outputs 1.0 everywhere"),
    ("SD401", "SD505", "softmax over one channel outputs 1.0 whatever the input"),
    ("SD401", "SD604", "softmax over one channel has no gradient"),
    ("SD401", "SD610", "the metrics see the same all-foreground output every epoch"),
    ("SD401", "SD605", "foreground everywhere scores Dice 2f/(1+f)", "collapse-all-foreground"),
    ("SD402", "SD604", "the loss sees the wrong kind of output and its gradient vanishes"),
    ("SD402", "SD505", "with flattened gradients the output drifts to the class prior"),
    ("SD402", "SD501", "with flattened gradients the output drifts to the class prior"),
    ("SD403", "SD506", "a class without an output channel is never predicted"),
    ("SD403", "SD502", "the output does not fit the labels"),
    ("SD407", "SD605", "the metric itself is computed wrongly", "metric-defect"),
    ("SD407", "SD609", "the metric itself is computed wrongly", "metric-defect"),
    ("SD407", "SD610", "the metric itself is computed wrongly", "metric-defect"),
    ("SD407", "SD604", "the defective loss does not reward overlap", "loss-defect"),
    ("SD407", "SD501", "the defective loss does not reward overlap", "loss-defect"),
    ("SD407", "SD502", "the defective loss does not reward overlap", "loss-defect"),
    ("SD504", "SD501", "the probabilities rank the objects but stay below the threshold"),
    ("SD507", "SD505", "inputs scaled unlike at training saturate the network"),
    ("SD507", "SD501", "inputs scaled unlike at training saturate the network"),
    ("SD507", "SD502", "inputs scaled unlike at training saturate the network"),
    # learning rate and optimisation
    ("SD404", "SD602", "steps this large overshoot the minimum", "lr-high-in-log"),
    ("SD404", "SD601", "steps this large blow the loss up", "lr-high-in-log and nan-after-training"),
    ("SD404", "SD603", "steps this large jump across the minimum", "lr-high-in-log"),
    ("SD404", "SD604", "steps this small barely move the weights", "lr-low-in-log"),
    ("SD404", "SD405", "steps this large blow the weights up", "lr-high"),
    ("SD404", "SD505", "steps this large kill the ReLU units", "lr-high"),
    ("SD602", "SD601", "a diverging loss ends in NaN", "nan-after-training"),
    ("SD602", "SD605", "the model lost what it had learned", "collapse-after-rise"),
    ("SD602", "SD405", "a diverging loss blows the weights up"),
    ("SD602", "SD505", "the blow-up killed the units"),
    ("SD601", "SD405", "a NaN loss writes NaN into the weights"),
    ("SD601", "SD605", "NaN predictions threshold to blank"),
    ("SD601", "SD610", "NaN outputs give the metrics nothing to change"),
    ("SD405", "SD505", "NaN weights give the same output for every image"),
    ("SD405", "SD501", "NaN probabilities threshold to blank"),
    # symptoms that explain other symptoms
    ("SD505", "SD501", "a constant map below the threshold is blank everywhere"),
    ("SD505", "SD610", "a constant output gives the metrics nothing to change"),
    ("SD501", "SD502", "blank masks have Dice 0"),
    ("SD501", "SD503", "blank predictions score the background share in accuracy"),
    ("SD508", "SD502", "foreground everywhere scores Dice 2f/(1+f)"),
    ("SD604", "SD605", "a loss that never moves leaves the model predicting background", "collapse-throughout"),
    ("SD605", "SD610", "blank predictions score the same accuracy every epoch", "collapse-blank and frozen-accuracy"),
    ("SD605", "SD606", "blank predictions score the background share in accuracy", "collapse-blank and high-accuracy"),
))

#: outcomes: they say something upstream is wrong, so they are never named as the root cause themselves
SYMPTOMS = frozenset({"SD501", "SD502", "SD503", "SD505", "SD506", "SD508", "SD604", "SD605", "SD606", "SD610"})

#: properties of the data that the fix answers in training (the loss, the sampling): they stay after it
ANSWERED_IN_TRAINING = frozenset({"SD108", "SD151", "SD152"})

#: short names for chains; a code not listed here uses its check name
LABELS = {
    "SD001": "unreadable files", "SD002": "images without masks", "SD003": "masks without images",
    "SD004": "image and mask sizes differ", "SD005": "mixed image modes", "SD101": "masks store 255 for foreground",
    "SD102": "class ids start at 1", "SD103": "void label in the masks", "SD104": "colour masks",
    "SD105": "JPEG-compressed masks", "SD106": "interpolated masks", "SD107": "unexpected label values",
    "SD108": "empty masks", "SD109": "palette masks", "SD151": "rare foreground", "SD152": "tiny objects",
    "SD153": "train/validation shift", "SD154": "images shared between splits", "SD201": "mixed image value ranges",
    "SD202": "blank or NaN images", "SD203": "EXIF-rotated images", "SD251": "masks that do not fit their images",
    "SD252": "flipped masks", "SD401": "softmax over one channel", "SD402": "loss does not match the head",
    "SD403": "output does not fit the labels", "SD404": "learning rate out of range", "SD405": "NaN weights",
    "SD406": "custom objects missing", "SD407": "defective Dice/IoU function", "SD408": "no skip connections",
    "SD501": "blank predictions", "SD502": "Dice near 0", "SD503": "accuracy trap", "SD504": "threshold too high",
    "SD505": "constant output", "SD506": "classes never predicted", "SD507": "wrong input scaling",
    "SD508": "foreground predicted far beyond the objects", "SD601": "NaN loss", "SD602": "diverging loss",
    "SD603": "oscillating loss", "SD604": "flat loss", "SD605": "Dice/IoU collapse in the log",
    "SD606": "accuracy trap in the log", "SD607": "overfitting", "SD608": "stopped while improving",
    "SD609": "negative loss or Dice/IoU > 1 in the log", "SD610": "frozen metric",
}

#: what the verdict says about a run whose root cause explains these symptoms (first match wins)
HEADLINES = {
    "SD501": "The model predicts blank masks",
    "SD508": "The model predicts foreground far beyond the objects",
    "SD505": "The model gives the same output for every image",
    "SD506": "The model never predicts some classes",
    "SD502": "The model's masks barely overlap the objects",
    "SD602": "The training loss diverged",
    "SD601": "The loss became NaN",
    "SD605": "The Dice/IoU collapsed during training",
    "SD604": "The loss did not move during training",
    "SD603": "The loss oscillated",
    "SD607": "The model overfits",
    "SD610": "A metric froze during training",
    "SD405": "The weights hold NaN",
    "SD503": "Pixel accuracy hides a failing model",
    "SD606": "Pixel accuracy hides a failing model",
}

_WEIGHT = {Severity.ERROR: 3, Severity.WARNING: 2, Severity.INFO: 1}
_SCOPE_ORDER = {"data": 0, "model": 1, "history": 2, "predictions": 3}


def label(code: str) -> str:
    if code in LABELS:
        return LABELS[code]
    try:
        from segdoctor.registry import get_check

        return get_check(code).name.replace("-", " ")
    except Exception:
        return code


def _scope(code: str) -> str:
    try:
        from segdoctor.registry import get_check

        return get_check(code).scope
    except Exception:
        return "data"


def links_from(code: str) -> list[Link]:
    return [link for link in LINKS if link.cause == code]


def links_to(code: str) -> list[Link]:
    return [link for link in LINKS if link.effect == code]


# --- the result -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One explained finding of a cause: who explains it directly (the longest chain from the root)."""

    finding: Finding
    parent: Finding
    link: Link
    depth: int
    confirmed: bool  # every condition of this link was checked and holds


@dataclass(frozen=True)
class Cause:
    """A root cause: a finding nothing else in the run explains, and what it explains."""

    finding: Finding
    steps: tuple[Step, ...]  # every finding it explains, in chain order
    rank: int
    score: int
    confidence: str  # high | medium | low
    unchecked: tuple[str, ...]  # conditions this run could not check (why the confidence is medium)
    chain: str
    confirm: str

    @property
    def code(self) -> str:
        return self.finding.code

    @property
    def explains(self) -> list[Finding]:
        return [s.finding for s in self.steps]

    @property
    def explained_codes(self) -> list[str]:
        return list(dict.fromkeys(s.finding.code for s in self.steps))

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "cause": f.code, "name": f.name, "severity": f.severity.label, "title": f.title,
            "explains": self.explained_codes, "confidence": self.confidence, "score": self.score,
            "chain": self.chain, "fix": f.fix, "confirm": self.confirm,
            "unchecked_conditions": list(self.unchecked),
            "links": [{"cause": s.parent.code, "effect": s.finding.code, "via": s.link.via} for s in self.steps],
        }


@dataclass(frozen=True)
class Diagnosis:
    """Root causes ranked by how much of the run they explain, and the findings ordered cause-first."""

    causes: tuple[Cause, ...]
    findings: tuple[Finding, ...]  # cause-first: each cause, then what it explains; then the findings no cause explains
    explained_by: Mapping[int, tuple[str, ...]]  # id(finding) -> codes of the findings that directly explain it
    group: Mapping[int, Cause]  # id(finding) -> the cause it is shown under
    unexplained: tuple[Finding, ...]  # errors no cause of this run explains

    def __bool__(self) -> bool:
        return bool(self.causes)

    def cause_of(self, finding: Finding) -> Cause | None:
        return self.group.get(id(finding))

    def explainers(self, finding: Finding) -> tuple[str, ...]:
        return self.explained_by.get(id(finding), ())


def _headline_step(steps: Sequence[Step]) -> Step | None:
    for code in HEADLINES:
        for s in steps:
            if s.finding.code == code:
                return s
    return None


def _chain_text(root: Finding, steps: Sequence[Step]) -> str:
    """One line: the longest chain from the root (with the first mechanism), then the other findings it explains."""
    if not steps:
        return f"{label(root.code)} ({root.code})"
    # the chain ends at the symptom the verdict names, else at the deepest finding
    end = _headline_step(steps) or max(steps, key=lambda s: (s.depth, int(s.finding.severity)))
    parent = {id(s.finding): s for s in steps}
    path = [end]
    while id(path[-1].parent) in parent:
        path.append(parent[id(path[-1].parent)])
    path.reverse()
    text = f"{label(root.code)} ({root.code}) → {path[0].link.via}"
    for s in path:
        text += f" → {label(s.finding.code)} ({s.finding.code})"
    on_path = {id(s.finding) for s in path}
    others = list(dict.fromkeys(f"{label(s.finding.code)} ({s.finding.code})" for s in steps if id(s.finding) not in on_path))
    if others:
        text += "; also " + ", ".join(others)
    return text


def _command_line(command: str, inputs: Mapping[str, str]) -> str | None:
    q = shlex.quote
    if command == "check-data" and inputs.get("data"):
        return f"segdoctor check-data {q(inputs['data'])}"
    if command == "check-model" and inputs.get("model"):
        line = f"segdoctor check-model {q(inputs['model'])}"
        for flag in ("data", "history"):
            if inputs.get(flag):
                line += f" --{flag} {q(inputs[flag])}"
        return line
    if command == "check-history" and inputs.get("history"):
        line = f"segdoctor check-history {q(inputs['history'])}"
        if inputs.get("data"):
            line += f" --data {q(inputs['data'])}"
        return line
    return None


def _codes_text(codes: Sequence[str]) -> str:
    codes = list(codes)
    return codes[0] if len(codes) == 1 else ", ".join(codes[:-1]) + " and " + codes[-1]


def _confirm_text(root: Finding, steps: Sequence[Step], command: str, inputs: Mapping[str, str]) -> str:
    """What to re-run after the fix, and what should be gone then."""
    line = _command_line(command, inputs)
    retrain = any(_scope(s.finding.code) in ("predictions", "history") for s in steps) or (
        command != "check-data" and _scope(root.code) in ("model", "history"))
    gone = [s.finding.code for s in steps if s.finding.code not in ANSWERED_IN_TRAINING]
    stays = root.code in ANSWERED_IN_TRAINING
    if not stays:
        gone.insert(0, root.code)
    gone = list(dict.fromkeys(gone))
    run = f"re-run `{line}`" if line else "re-run segdoctor on the same inputs"
    text = ("Apply the fix, retrain, then " if retrain else "Apply the fix, then ") + run
    if gone:
        text += f": {_codes_text(gone)} should be gone"
    if stays:
        text += f" ({root.code} stays: it describes the data, and the fix answers it in training)"
    return text + "."


def diagnose(findings: Sequence[Finding], facts: Mapping[str, Any] | None = None, *,
             command: str = "", inputs: Mapping[str, str] | None = None) -> Diagnosis:
    """Evaluate ``LINKS`` on the findings and facts of one run."""
    run = Run(findings, facts)
    items = run.findings
    n = len(items)
    by_code: dict[str, list[int]] = {}
    for i, f in enumerate(items):
        by_code.setdefault(f.code, []).append(i)
    # active edges between the findings of this run: (cause index, effect index, link, confirmed, unchecked conditions)
    edges: list[tuple[int, int, Link, bool, tuple[Condition, ...]]] = []
    for link in LINKS:
        for i in by_code.get(link.cause, ()):
            for j in by_code.get(link.effect, ()):
                state, unknown = link.state(run, items[i], items[j])
                if state is not False:
                    edges.append((i, j, link, state is True, unknown))
    out: dict[int, list] = {i: [] for i in range(n)}
    explainers: dict[int, list[int]] = {i: [] for i in range(n)}
    for e in edges:
        out[e[0]].append(e)
        explainers[e[1]].append(e[0])

    def can_lead(i: int) -> bool:
        f = items[i]
        return f.code not in SYMPTOMS and (f.severity >= Severity.ERROR or bool(out[i]))

    def reach(i: int) -> list[Step]:
        """Every finding reachable from i, each with its parent on the longest chain of checked links (else the longest
        chain); the graph is acyclic."""
        best: dict[int, tuple[bool, int, int, Link]] = {}  # k -> (chain fully checked, depth, parent, link)
        order: list[int] = []

        def visit(k: int, checked: bool, d: int, parent: int, link: Link) -> None:
            if k in best and best[k][:2] >= (checked, d):
                return
            if k not in best:
                order.append(k)
            best[k] = (checked, d, parent, link)
            for _, j, lk, ok, _ in out[k]:
                visit(j, checked and ok, d + 1, k, lk)

        for _, j, lk, ok, _ in out[i]:
            visit(j, ok, 1, i, lk)
        steps = [Step(items[k], items[best[k][2]], best[k][3], best[k][1], best[k][0]) for k in order]
        steps.sort(key=lambda s: (s.depth, -int(s.finding.severity), s.finding.code))
        return steps

    roots = [i for i in range(n) if not explainers[i] and can_lead(i)]
    reached = {id(s.finding) for r in roots for s in reach(r)}
    # a cause explained only by symptoms that no cause explains would otherwise be lost
    roots += [i for i in range(n) if i not in roots and id(items[i]) not in reached and can_lead(i)]

    index = {id(f): i for i, f in enumerate(items)}
    scored = []
    for i in roots:
        steps = reach(i)
        score = sum(_WEIGHT[s.finding.severity] for s in steps)
        f = items[i]
        key = (-score, -int(f.severity), -len(f.files), _SCOPE_ORDER.get(_scope(f.code), 9), f.code)
        scored.append((key, i, steps, score))
    scored.sort(key=lambda t: t[0])

    causes: list[Cause] = []
    seen: set[int] = set()
    for rank, (_, i, steps, score) in enumerate(scored, start=1):
        root = items[i]
        # a finding is confirmed when some chain of checked links leads to it; the others say what was not checked
        confirmed = {i}
        grew = True
        while grew:
            grew = False
            for k, j, _, ok, _ in edges:
                if ok and k in confirmed and j not in confirmed:
                    confirmed.add(j)
                    grew = True
        members = {i} | {index[id(s.finding)] for s in steps}
        unchecked = list(dict.fromkeys(
            c.text for k, j, _, ok, unknown in edges
            if not ok and k in members and j in members and j not in confirmed for c in unknown))
        ids = {id(s.finding) for s in steps}
        if steps and ids <= seen:
            confidence = "low"
        elif unchecked:
            confidence = "medium"
        else:
            confidence = "high"
        seen |= ids
        causes.append(Cause(root, tuple(steps), rank, score, confidence, tuple(unchecked),
                            _chain_text(root, steps), _confirm_text(root, steps, command, inputs or {})))

    ordered: list[Finding] = []
    group: dict[int, Cause] = {}
    placed: set[int] = set()
    for cause in causes:
        for f in (cause.finding, *cause.explains):
            if id(f) not in placed:
                placed.add(id(f))
                ordered.append(f)
                group[id(f)] = cause
    rest = sorted((f for f in items if id(f) not in placed), key=lambda f: (-int(f.severity), f.code))
    ordered.extend(rest)
    explained_by = {id(items[j]): tuple(dict.fromkeys(items[k].code for k in explainers[j])) for j in range(n) if explainers[j]}
    unexplained = tuple(f for f in rest if f.severity >= Severity.ERROR)
    return Diagnosis(tuple(causes), tuple(ordered), explained_by, group, unexplained)


# --- words --------------------------------------------------------------------------------------------


#: names that keep their capital inside a sentence
_PROPER = frozenset({"Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "Adafactor", "Nadam", "Lion", "Lamb", "Ftrl",
                     "Dice", "Jaccard", "Tversky", "Keras", "TensorFlow", "Cityscapes"})


def lower_first(text: str) -> str:
    """``text`` with its first word in lower case when it is an ordinary capitalised word ("All", not "IoU" or "Adam")."""
    word = text.split(" ", 1)[0]
    if word.strip(",.:;()") in _PROPER:
        return text
    if len(word) > 1 and word[0].isupper() and (word[1:].islower() or not any(c.isalpha() for c in word[1:])):
        return text[0].lower() + text[1:]
    return text


def headline(cause: Cause) -> Step | None:
    """The explained finding the verdict names: the most telling symptom of what went wrong."""
    return _headline_step(cause.steps)


def _condition_words(cause: Cause, step: Step, run: Run) -> str:
    """The confirmed conditions on the way from the root to ``step``, as a clause ("the loss is plain cross-entropy")."""
    parent = {id(s.finding): s for s in cause.steps}
    path = [step]
    while id(path[-1].parent) in parent:
        path.append(parent[id(path[-1].parent)])
    first = path[-1]
    direct = next((lk for lk in LINKS if lk.cause == cause.code and lk.effect == step.finding.code), None)
    link = direct if direct is not None and direct.state(run, cause.finding, step.finding)[0] is True else first.link
    words = []
    for c in link.conditions:
        if c.name in ("class-prior-output", "collapse-blank", "collapse-throughout", "collapse-after-rise",
                      "nan-after-training", "nan-from-start", "same-files"):
            continue  # these describe the symptom, which the verdict already names
        if c.test(run, cause.finding, step.finding) is not True:
            continue
        detail = c.detail(run) if c.detail else None
        words.append((c.short or c.text) + (f" ({detail})" if detail else ""))
    return " and ".join(words)


def verdict(diagnosis: Diagnosis, *, command: str, facts: Mapping[str, Any] | None = None,
            findings: Sequence[Finding] = ()) -> str | None:
    """The first line of every report when a root cause was found: the symptom, and the cause that explains it."""
    if not diagnosis.causes:
        return None
    top = diagnosis.causes[0]
    f = top.finding
    more = len(diagnosis.causes) - 1
    tail = f" {more} more cause{'s' if more > 1 else ''} below." if more else ""
    step = headline(top)
    if step is not None:
        clause = _condition_words(top, step, Run(findings, facts))
        return (f"{HEADLINES[step.finding.code]} ({step.finding.code}) because {lower_first(f.title)} ({f.code})"
                + (f", and {clause}" if clause else "") + "." + tail)
    if command == "check-data":
        return f"Not ready to train. Root cause: {lower_first(f.title)} ({f.code})." + tail
    return f"Root cause: {lower_first(f.title)} ({f.code})." + tail


def missing_inputs_hint(command: str, inputs: Mapping[str, str]) -> str:
    """What to add to a run that found symptoms but not their cause."""
    if command == "check-history":
        if not inputs.get("data"):
            return "add --data DIR (the masks it trained on), or run `segdoctor check-model MODEL --data DIR --history LOG`"
        return "run `segdoctor check-model MODEL --data DIR --history LOG` to check the model too"
    if command == "check-model":
        missing = [flag for flag, name in (("--data DIR", "data"), ("--history LOG", "history")) if not inputs.get(name)]
        if missing:
            return f"add {' and '.join(missing)}"
        return "check the training code (augmentation, loss, preprocessing) against the findings below"
    return "run check-model with --data and --history"


def links_text() -> str:
    """The whole table, for ``segdoctor explain --links``."""
    lines = ["Causal links: a finding of the first code can explain a finding of the second.", ""]
    for link in LINKS:
        lines.append(f"{link.cause} → {link.effect}  {label(link.cause)} → {label(link.effect)}: {link.describe()}")
    lines += ["", "Codes that are only symptoms (never named as the root cause): " + ", ".join(sorted(SYMPTOMS)), "",
              "Conditions read the run's facts and evidence; one that this run cannot check lowers the confidence to medium:"]
    for c in CONDITIONS.values():
        lines.append(f"  {c.name}: {c.text}")
    return "\n".join(lines)


def links_of(code: str) -> str:
    """The links of one check, for ``segdoctor explain CODE``."""
    out, into = links_from(code), links_to(code)
    lines = ["Causal links (segdoctor explain --links lists them all):"]
    if code in SYMPTOMS:
        lines.append("  a symptom: never named as the root cause itself")
    if out:
        lines.append("  can explain:")
        lines += [f"    {lk.effect} {label(lk.effect)}: {lk.describe()}" for lk in out]
    if into:
        lines.append("  can be explained by:")
        lines += [f"    {lk.cause} {label(lk.cause)}: {lk.describe()}" for lk in into]
    if not out and not into:
        lines.append("  none: its findings stand on their own")
    return "\n".join(lines)


__all__ = ["CONDITIONS", "Cause", "Condition", "Diagnosis", "LINKS", "Link", "Run", "SYMPTOMS", "diagnose",
           "headline", "label", "links_of", "links_text", "verdict"]
