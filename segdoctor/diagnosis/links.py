"""The causal links, declared once: "a finding of code A can explain a finding of code B, through this mechanism,
when these conditions hold". Adding a check's links is one line each in ``LINKS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from segdoctor.diagnosis.conditions import CONDITIONS, Condition, Run, State
from segdoctor.findings import Finding

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
    ("SD101", "SD505", "targets of 255 reward saturating every output at 1: the same output for every image",
     "binary-loss and output-near-one"),
    ("SD609", "SD505", "targets above 1 reward saturating every output at 1: the same output for every image",
     "binary-loss and output-near-one"),
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
    ("SD451", "SD602", "steps above the measured range overshoot the minimum", "measured-lr-high"),
    ("SD451", "SD601", "steps above the measured range blow the loss up", "measured-lr-high and nan-after-training"),
    ("SD451", "SD603", "steps above the measured range jump across the minimum", "measured-lr-high"),
    ("SD451", "SD604", "steps below the measured range barely move the weights", "measured-lr-low"),
    ("SD602", "SD601", "a diverging loss ends in NaN", "nan-after-training"),
    ("SD602", "SD605", "the model lost what it had learned", "collapse-after-rise"),
    ("SD602", "SD405", "a diverging loss blows the weights up"),
    ("SD602", "SD505", "the blow-up killed the units"),
    ("SD601", "SD405", "a NaN loss writes NaN into the weights"),
    ("SD601", "SD605", "NaN predictions threshold to blank"),
    ("SD601", "SD610", "NaN outputs give the metrics nothing to change"),
    ("SD405", "SD505", "NaN weights give the same output for every image"),
    ("SD405", "SD501", "NaN probabilities threshold to blank"),
    # fine-tuning
    ("SD409", "SD509", "BN layers that keep updating inside a frozen backbone leave statistics that do not describe the data"),
    ("SD409", "SD603", "BN statistics that move under frozen features make the loss oscillate at any learning rate"),
    ("SD509", "SD501", "in inference mode the stale BN statistics push the output below the threshold"),
    ("SD509", "SD502", "in inference mode the stale BN statistics distort every prediction"),
    ("SD410", "SD604", "a second activation squeezes the outputs into a narrow band and flattens the gradient"),
    ("SD410", "SD508", "a sigmoid of a sigmoid is never below 0.5: every pixel crosses the threshold", "double-sigmoid"),
    # the loader (check-pipeline)
    ("SD101", "SD303", "tf.one_hot of the id 255 is a row of zeros: the foreground vanishes from the targets", "one-hot-zero-rows"),
    ("SD102", "SD303", "tf.one_hot of the id K is a row of zeros: that class vanishes from the targets", "one-hot-zero-rows"),
    ("SD103", "SD303", "tf.one_hot of the void id is a row of zeros", "one-hot-zero-rows"),
    ("SD303", "SD108", "the pixels one-hot encoded as rows of zeros read as background: the masks look empty",
     "one-hot-zero-rows"),
    ("SD302", "SD108", "class ids divided by 255 (and cast to integers) become 0: the masks look empty"),
    ("SD302", "SD305", "class ids divided by 255 leave the batches without foreground"),
    ("SD303", "SD305", "the foreground encoded as rows of zeros leaves the batches without foreground", "one-hot-zero-rows"),
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
    "SD301": "image and mask out of step in the loader", "SD302": "masks rescaled in the loader",
    "SD303": "targets the loss cannot read", "SD304": "implausible input scale", "SD305": "batches starved of foreground",
    "SD306": "train and val preprocessed differently", "SD307": "batches that do not fit the model's input",
    "SD409": "BatchNorm updating in a frozen backbone", "SD410": "activation applied twice",
    "SD451": "learning rate outside the measured range", "SD509": "inference mode far worse than training mode",
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



def label(code: str) -> str:
    if code in LABELS:
        return LABELS[code]
    try:
        from segdoctor.registry import get_check

        return get_check(code).name.replace("-", " ")
    except Exception:
        return code


def scope_of(code: str) -> str:
    """The scope of a registered check (data, model, predictions, history)."""
    try:
        from segdoctor.registry import get_check

        return get_check(code).scope
    except Exception:
        return "data"


def links_from(code: str) -> list[Link]:
    return [link for link in LINKS if link.cause == code]


def links_to(code: str) -> list[Link]:
    return [link for link in LINKS if link.effect == code]
