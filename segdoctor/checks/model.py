"""Static model checks (SD4xx): the head, the compiled loss and optimizer, the weights, custom loss probes.

They read a ``ModelContext`` (the loaded model and its ``ModelSpec``); with ``--data`` the context also
carries the class ids found in the masks, for SD403.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from segdoctor.checks._common import py_identifier
from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register

_BOUNDED = ("sigmoid", "softmax", "hard_sigmoid")
_PROBE_NAME = re.compile(r"loss|dice|iou|jaccard|f1|score|coef|metric|tversky|focal|crossentropy|overlap", re.IGNORECASE)

#: learning rates beyond which training is known to diverge or stall, per optimizer family
ADAPTIVE_OPTIMIZERS = {"adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad", "adafactor", "lamb", "ftrl", "adadelta", "lion"}
LR_RANGES = {"adaptive": (1e-7, 1e-2), "lion": (1e-7, 1e-3), "sgd": (1e-6, 1.0)}


@dataclass
class ModelContext:
    """What the static checks read: the loaded model, its summary, the functions to probe, data facts."""

    loaded: Any  # segdoctor.io.model.LoadedModel
    spec: Any  # segdoctor.io.model_spec.ModelSpec
    functions: dict[str, tuple[Callable[..., Any], str]] = field(default_factory=dict)
    data_num_classes: int | None = None
    data_class_ids: tuple[int, ...] = ()
    data_num_classes_declared: bool = False
    data_mask_channels: int | None = None
    evaluate: Callable[[Any, Any, Any], float] | None = None  # calls a user function on numpy tensors
    lr_range: Any = None  # segdoctor.checks.lr_range.LRFindResult when a learning-rate range test ran (SD451)
    graph: Any = None  # segdoctor.io.model_graph.ModelGraph: the saved architecture with trainable flags (SD409, SD410)

    @property
    def channels(self) -> int:
        return self.spec.out_channels or 1


#: the optimizer classes of keras.optimizers, by lower-case name: a snippet names one of these, never a string
#: read from the model file (its ``class_name`` could hold code)
KERAS_OPTIMIZERS = {n.lower(): n for n in ("Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "Ftrl", "Lamb",
                                           "Lion", "Muon", "Nadam", "RMSprop", "SGD")}


def optimizer_class(name: Any, default: str = "Adam") -> str:
    """The keras.optimizers class for a saved optimizer name (``adam``, ``Adam``), or ``default`` when unknown."""
    return KERAS_OPTIMIZERS.get(str(name or "").lower(), default)


def _opt_expr(spec: Any) -> str:
    name = spec.optimizer or "Adam"
    cls = optimizer_class(name)
    lo, hi = LR_RANGES["sgd" if str(name).lower() == "sgd" else "adaptive"]
    lr = spec.learning_rate
    if lr is None or not lo <= lr <= hi:  # never copy a learning rate SD404 would flag into the fix
        lr = 0.01 if str(name).lower() == "sgd" else 1e-3
    return f"keras.optimizers.{cls}(learning_rate={lr:g})"


def compile_line(spec: Any, loss_expr: str, *, optimizer: str | None = None) -> str:
    """A ``model.compile(...)`` line for this model with the given loss and a metric that suits its head."""
    c = spec.out_channels or 1
    metric = ("keras.metrics.BinaryIoU(target_class_ids=[1], threshold=0.5)" if c == 1
              else f"keras.metrics.MeanIoU(num_classes={c}, sparse_y_true=True, sparse_y_pred=False)")
    return f"model.compile(optimizer={optimizer or _opt_expr(spec)}, loss={loss_expr}, metrics=[{metric}])"


def _loss_describe(loss: Any) -> str:
    if loss is None:
        return "no compiled loss"
    logits = "" if loss.from_logits is None else f"(from_logits={loss.from_logits})"
    return f"{loss.name}{logits}"


def _keras3_recovers_logits(ctx: ModelContext) -> bool:
    """Keras 3 (TensorFlow backend) passes the pre-activation logits to a from_logits=True loss when the
    model's output *is* the sigmoid/softmax activation; a reshape or other layer after it hides them."""
    version = str(getattr(ctx.loaded, "keras_version", "") or "")
    if not version.startswith("3"):
        return False
    model = ctx.loaded.model
    try:
        out_layer = model.outputs[ctx.spec.output_index]._keras_history[0]
    except Exception:
        return False
    return getattr(out_layer, "name", None) == ctx.spec.head_layer


@register
class SoftmaxSingleChannel(Check):
    """Softmax over an axis of size 1: the output is always exactly 1.0.

    *Why it matters:* softmax normalises over the last axis; with one channel every pixel gets
    probability 1, the gradient is zero and the model can never learn (after thresholding every
    pixel is foreground).

    *How to fix:* use ``sigmoid`` for one output channel, or give the head one channel per class
    (2 for binary) and keep ``softmax``.

    Detection is structural (no threshold): the last activation of the output path is softmax and the
    axis it normalises has size 1, including a separate ``Activation("softmax")`` after a reshape.
    """

    code = "SD401"
    name = "softmax-single-channel"
    severity = Severity.ERROR
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        s = ctx.spec
        if s.head_activation != "softmax" or s.activation_axis_size != 1:
            return
        yield self.finding(
            title=f"Softmax over a single channel in layer '{s.head_layer}': every output is exactly 1.0",
            evidence={"head_layer": s.head_layer, "activation": "softmax", "axis_size": 1, "output_shape": str(s.output_shape),
                      "loss": _loss_describe(s.loss)},
            why="Softmax divides each value by the sum over its axis; over one channel that is x/x = 1 for every pixel, "
                "so the loss has no gradient and the prediction is all foreground.",
            fix="Use a sigmoid on the single output channel (binary segmentation), or output 2 channels with softmax.",
            snippet=("outputs = layers.Conv2D(1, 1, activation=\"sigmoid\")(x)\n"
                     + compile_line(s, "keras.losses.BinaryCrossentropy()")),
        )


@register
class ActivationLossMismatch(Check):
    """The compiled loss does not match the final activation (logits vs probabilities, sigmoid vs softmax).

    *Why it matters:* ``from_logits=True`` after a sigmoid/softmax squashes twice and flattens the
    gradient; a probability loss on a linear head takes logs of values outside [0, 1]; sigmoid on C>1
    channels with categorical cross-entropy does not make the classes compete; categorical
    cross-entropy on one channel is identically 0.

    *How to fix:* the corrected ``model.compile(...)`` line (or head) is given for this model.

    Rules (structural): from_logits=True with a sigmoid/softmax head; a built-in cross-entropy (without
    from_logits) or the built-in Dice/Tversky loss with a linear/relu head; sigmoid with C>1 and (sparse) categorical CE; softmax with
    C>1 and binary CE; (sparse) categorical CE on a single channel.
    """

    code = "SD402"
    name = "activation-loss-mismatch"
    severity = Severity.ERROR
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        s, loss, c = ctx.spec, ctx.spec.loss, ctx.channels
        act = s.head_activation
        if loss is None or act == "unknown" or loss.family in ("custom", "other"):
            return
        if act == "softmax" and s.activation_axis_size == 1:
            return  # SD401 reports it
        ev = {"head_activation": act, "head_layer": s.head_layer, "output_channels": c, "loss": _loss_describe(loss)}
        if loss.family == "dice":
            if act not in _BOUNDED:
                yield self.finding(
                    title=f"{loss.name} expects probabilities but the output layer '{s.head_layer}' is {act}",
                    evidence=ev,
                    why="A Dice loss on unbounded outputs is minimised by making them large, not by overlapping the masks; "
                        "it has no from_logits option.",
                    fix=f"Put a {'sigmoid' if c == 1 else 'softmax'} on the output layer.",
                    snippet=f"outputs = layers.Conv2D({c}, 1, activation=\"{'sigmoid' if c == 1 else 'softmax'}\")(x)",
                )
            return
        cls = {"binary_ce": "BinaryCrossentropy", "categorical_ce": "CategoricalCrossentropy", "sparse_ce": "SparseCategoricalCrossentropy"}[loss.family]
        if loss.from_logits and act in _BOUNDED:
            recovered = _keras3_recovers_logits(ctx)
            yield self.finding(
                severity=Severity.WARNING if recovered else Severity.ERROR,
                title=(f"{loss.name}(from_logits=True) after a {act} output: only Keras 3 on TensorFlow undoes the double {act}"
                       if recovered else f"{loss.name}(from_logits=True) after a {act} output: the loss squashes the probabilities a second time"),
                evidence=ev,
                why=f"from_logits=True applies {'sigmoid' if loss.family == 'binary_ce' else 'softmax'} inside the loss; fed {act} "
                    "outputs in [0, 1] it sees nearly flat logits, so gradients shrink and predictions drift to the prior.",
                fix="Keep the head and compile with from_logits=False (or remove the head activation and keep from_logits=True)."
                    + (" Keras 3 on TensorFlow detects this case and recovers the logits (with a warning), so this file trained correctly there, "
                       "but the same code applies the activation twice under Keras 2, JAX or PyTorch." if recovered else ""),
                snippet=compile_line(s, f"keras.losses.{cls}(from_logits=False)"),
            )
            return
        if loss.expects_probabilities and act not in _BOUNDED:
            yield self.finding(
                title=f"{loss.name} expects probabilities but the output layer '{s.head_layer}' is {act}",
                evidence=ev,
                why="Cross-entropy on probabilities clips its input to [1e-7, 1-1e-7]; unbounded outputs are clipped, "
                    "their gradient is zero over most of the range and training stalls or collapses.",
                fix="Tell the loss the outputs are logits (from_logits=True), and apply sigmoid/softmax only at prediction time.",
                snippet=compile_line(s, f"keras.losses.{cls}(from_logits=True)"),
            )
            return
        if c == 1 and loss.family in ("categorical_ce", "sparse_ce"):
            yield self.finding(
                title=f"{loss.name} on a single output channel: the loss is {'identically 0' if loss.family == 'categorical_ce' else 'undefined for label 1'}",
                evidence=ev,
                why="Categorical cross-entropy normalises over the channel axis; with one channel the normalised probability is 1 and the loss 0. "
                    "Sparse categorical cross-entropy with one channel has no output for class 1.",
                fix="For binary masks use a sigmoid head with binary cross-entropy (or 2 channels with softmax and sparse categorical CE).",
                snippet=compile_line(s, "keras.losses.BinaryCrossentropy()"),
            )
            return
        if act == "sigmoid" and c > 1 and loss.family in ("categorical_ce", "sparse_ce"):
            yield self.finding(
                title=f"Sigmoid on {c} channels with {loss.name}: the class probabilities do not sum to 1",
                evidence=ev,
                why="Categorical cross-entropy assumes one distribution over classes per pixel; independent sigmoids let every "
                    "class be high at once and the loss rescales them, so the classes never compete.",
                fix=f"Use softmax on the {c}-channel head.",
                snippet=(f"outputs = layers.Conv2D({c}, 1, activation=\"softmax\")(x)\n"
                         + compile_line(s, f"keras.losses.{cls}()")),
            )
            return
        if act == "softmax" and c > 1 and loss.family == "binary_ce":
            yield self.finding(
                title=f"Softmax on {c} channels with {loss.name}: a multi-class head trained as independent binary outputs",
                evidence=ev,
                why="Binary cross-entropy scores every channel as its own yes/no question, while softmax ties them together; "
                    "the background channel dominates the averaged loss on imbalanced masks.",
                fix="Use sparse categorical cross-entropy with integer masks (or categorical with one-hot masks).",
                snippet=compile_line(s, "keras.losses.SparseCategoricalCrossentropy()"),
            )


@register
class OutputShapeMismatch(Check):
    """The output does not fit the labels: channels vs classes in the data, output size vs input size, label format vs loss.

    *Why it matters:* class ids at or above the channel count make sparse cross-entropy NaN or wrong; extra
    channels are phantom classes (e.g. trimaps 1..3 with 4 outputs); an output smaller than the input is
    compared with a resized mask or fails.

    *How to fix:* set the head's channels to the real class count, remap labels to 0..K-1, or use the loss
    that matches the label format.

    Rules: output H x W differs from input H x W (both fixed, not a flattened H*W head); with data, the
    number of classes K (``--num-classes``, else the ids found: {0,1} or {0,255} count as 2) must be
    <= 2 for one channel and equal to C otherwise (K > C is an error, K < C a warning); integer
    masks with ``CategoricalCrossentropy`` are a warning (the pipeline may one-hot encode them).
    """

    code = "SD403"
    name = "output-shape-mismatch"
    severity = Severity.ERROR
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        s, c = ctx.spec, ctx.channels
        if s.input_size and s.output_size and s.input_size != s.output_size:
            yield self.finding(
                title=f"Output {s.output_size[0]}x{s.output_size[1]} differs from input {s.input_size[0]}x{s.input_size[1]}",
                evidence={"input_shape": str(s.input_shape), "output_shape": str(s.output_shape)},
                why="Each output pixel must line up with a mask pixel; a smaller output is compared with a misaligned or resized mask.",
                fix="Add the missing upsampling (or use padding='same' in every convolution) so the output matches the input size.",
                snippet="x = layers.UpSampling2D(size=2, interpolation=\"bilinear\")(x)  # repeat until the output is H x W\n"
                        f"outputs = layers.Conv2D({c}, 1, activation=\"{'sigmoid' if c == 1 else 'softmax'}\")(x)",
            )
        k = ctx.data_num_classes
        if k is None:
            return
        ids = ", ".join(str(i) for i in ctx.data_class_ids[:12])
        source = "--num-classes" if ctx.data_num_classes_declared else f"mask values {{{ids}}}"
        ev = {"output_channels": c, "classes_in_data": k, "source": source, "loss": _loss_describe(s.loss)}
        if c == 1 and k > 2:
            yield self.finding(
                title=f"One output channel but {k} classes in the data ({source})",
                evidence=ev,
                why="A single sigmoid channel can only separate foreground from background; the other classes are merged or read as out-of-range targets.",
                fix=f"Give the head {k} channels with softmax and train with sparse categorical cross-entropy.",
                snippet=f"outputs = layers.Conv2D({k}, 1, activation=\"softmax\")(x)\n"
                        + compile_line(s, "keras.losses.SparseCategoricalCrossentropy()").replace(f"num_classes={c}", f"num_classes={k}").replace(
                            "BinaryIoU(target_class_ids=[1], threshold=0.5)", f"MeanIoU(num_classes={k}, sparse_y_true=True, sparse_y_pred=False)"),
            )
        elif c > 1 and k > c:
            yield self.finding(
                title=f"{c} output channels but {k} classes in the data ({source})",
                evidence=ev,
                why="Labels at or above the channel count have no output: sparse cross-entropy returns NaN or garbage for them.",
                fix=f"Set the head to {k} channels, or remap the labels to 0..{c - 1}.",
                snippet=f"outputs = layers.Conv2D({k}, 1, activation=\"softmax\")(x)",
            )
        elif c > 2 and k < c:
            yield self.finding(
                title=f"{c} output channels but only {k} classes in the data ({source}): {c - k} phantom class(es)",
                evidence=ev,
                why="Channels for classes that never occur waste capacity and, when the ids start at 1, mean the labels are offset (e.g. trimaps 1..3).",
                fix=f"Remap the labels to 0..{k - 1} and set the head to {k} channels.",
                snippet=f"outputs = layers.Conv2D({k}, 1, activation=\"softmax\")(x)",
                severity=Severity.WARNING,
            )
        if s.loss is not None and s.loss.family == "categorical_ce" and c > 1 and (ctx.data_mask_channels or 1) == 1:
            yield self.finding(
                title=f"Masks are integer class maps but the loss is {s.loss.name} (one-hot targets)",
                evidence={**ev, "mask_channels": ctx.data_mask_channels or 1},
                why="CategoricalCrossentropy expects one-hot targets of shape (H, W, C); integer masks of shape (H, W, 1) broadcast "
                    "against the output and give a meaningless loss, unless your pipeline one-hot encodes them.",
                fix="Use SparseCategoricalCrossentropy with integer masks (or one-hot encode the masks in the input pipeline).",
                snippet=compile_line(s, f"keras.losses.SparseCategoricalCrossentropy(from_logits={bool(s.loss.from_logits)})"),
                severity=Severity.WARNING,
            )


@register
class OptimizerLearningRate(Check):
    """The saved optimizer's learning rate is outside the range that trains for that optimizer.

    *Why it matters:* too high and the loss diverges or the network dies into a constant output;
    too low and nothing moves within a normal number of epochs.

    *How to fix:* start in the usual range and decay it (a schedule or ``ReduceLROnPlateau``).

    Ranges (Keras defaults sit in the middle: Adam 1e-3, SGD 1e-2): adaptive optimizers (Adam,
    AdamW, Nadam, RMSprop, Adagrad...) 1e-7 to 1e-2; Lion 1e-7 to 1e-3; SGD 1e-6 to 1. For a schedule
    the initial rate is checked.
    """

    code = "SD404"
    name = "optimizer-lr"
    severity = Severity.WARNING
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        s = ctx.spec
        if s.learning_rate is None or not s.optimizer:
            return
        opt = str(s.optimizer).lower()
        family = "sgd" if opt == "sgd" else "lion" if opt == "lion" else "adaptive" if opt in ADAPTIVE_OPTIMIZERS else None
        if family is None:
            return
        lo, hi = LR_RANGES[family]
        lr = s.learning_rate
        if lo <= lr <= hi and lr == lr:
            return
        high = not (lr <= hi)
        good = 1e-3 if family == "adaptive" else 1e-4 if family == "lion" else 1e-2
        cls = optimizer_class(opt)
        yield self.finding(
            title=f"{s.optimizer} learning rate {lr:g} is {'above' if high else 'below'} the usual range {lo:g}–{hi:g}",
            evidence={"optimizer": s.optimizer, "learning_rate": lr, "range_low": lo, "range_high": hi, "schedule": s.lr_schedule or "none"},
            why=("A step this large overshoots: the loss oscillates or diverges and ReLU units die, which often ends in a constant prediction."
                 if high else "A step this small barely changes the weights: the loss stays flat for many epochs."),
            fix=f"Train with a learning rate near {good:g} and reduce it when the validation loss stops improving.",
            snippet=(f"optimizer = keras.optimizers.{cls}(learning_rate={good:g})\n"
                     "callbacks = [keras.callbacks.ReduceLROnPlateau(monitor=\"val_loss\", factor=0.2, patience=5, min_lr=1e-6)]"),
        )


@register
class NanWeights(Check):
    """NaN or Inf in the weights, or a layer whose kernel is entirely zero.

    *Why it matters:* one NaN weight turns every prediction into NaN; an all-zero kernel means the
    layer died (usually after a divergent step) and passes nothing on.

    *How to fix:* retrain from a checkpoint before the blow-up with a lower learning rate and gradient
    clipping, and look for log(0) or division by zero in custom losses.

    Detection is exact: any non-finite value in any float weight; kernels (ndim >= 2) whose every value is 0.
    """

    code = "SD405"
    name = "nan-weights"
    severity = Severity.ERROR
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        problems = ctx.spec.weight_problems
        if not problems:
            return
        nonfinite = [p for p in problems if p.n_nan or p.n_inf]
        zero = [p for p in problems if p.all_zero]
        parts = []
        if nonfinite:
            parts.append(f"{sum(p.n_nan for p in nonfinite):,} NaN and {sum(p.n_inf for p in nonfinite):,} Inf values in {len(nonfinite)} weight tensor(s)")
        if zero:
            parts.append(f"{len(zero)} all-zero kernel(s)")
        opt = ctx.spec.optimizer or "Adam"
        yield self.finding(
            title="Broken weights: " + "; ".join(parts) + f" (first: layer '{problems[0].layer}')",
            evidence={"nonfinite_tensors": len(nonfinite), "zero_kernels": len(zero),
                      "layers": ", ".join(sorted({p.layer for p in problems})[:10]),
                      "nan_values": sum(p.n_nan for p in nonfinite), "inf_values": sum(p.n_inf for p in nonfinite)},
            why="Non-finite weights make every output NaN; a zero kernel passes no signal, so the layers after it see a constant.",
            fix="Retrain from a checkpoint before the blow-up with a 10x lower learning rate and gradient clipping.",
            snippet=f"optimizer = keras.optimizers.{optimizer_class(opt)}(learning_rate=1e-4, clipnorm=1.0)\n"
                    "callbacks = [keras.callbacks.TerminateOnNaN()]",
        )


@register
class CustomObjectsMissing(Check):
    """The model references custom losses or metrics that could not be loaded; their checks are skipped.

    *Why it matters:* segdoctor (and ``keras.saving.load_model``) cannot rebuild a function it does not
    have: the model loads without its compile state, and the custom loss cannot be probed (SD407) or
    matched against the head (SD402).

    *How to fix:* pass the Python file that defines them with ``--custom-objects FILE.py`` (repeatable),
    or register them with ``@keras.saving.register_keras_serializable()``.
    """

    code = "SD406"
    name = "custom-objects-missing"
    severity = Severity.WARNING
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        missing = list(ctx.loaded.missing_objects)
        if not missing:
            return
        path = ctx.loaded.path
        stub = "\n".join(f"def {n}(y_true, y_pred):\n    ...  # your implementation"
                         for n in missing[:4] if py_identifier(n, "") == n)
        yield self.finding(
            title=f"{len(missing)} custom object(s) referenced by the compiled model could not be loaded: {', '.join(missing[:6])}",
            evidence={"missing": ", ".join(missing), "compiled": ctx.loaded.compiled, "model": str(path)},
            why="Without them the model loads uncompiled: the custom loss and metrics cannot be probed (SD407) and the loss/head match is only read from the stored configuration.",
            fix=(f"Put their definitions in a Python file and rerun: segdoctor check-model {path} --custom-objects losses.py "
                 "(losses.py:make_loss when a factory function makes the loss)."),
            snippet=f"# losses.py\nfrom keras import ops\n\n{stub}" if stub else None,
        )


@register
class LossFunctionDefect(Check):
    """A custom Dice/IoU loss or metric gives wrong values on probe inputs with a known Dice.

    *Why it matters:* a Dice reduced over the channel axis only (``axis=-1``) is a per-pixel score that
    background pixels dominate; a Dice flattened over the batch with the background channel reports
    0.9 while the model predicts only background; a missing smooth term gives NaN on empty masks, and a
    large one rewards predicting nothing. Training then optimises the wrong thing or the logs lie.

    *How to fix:* use a per-image, per-class Dice over the spatial axes (1, 2), foreground classes
    only, with a tiny smooth term (the corrected function for this output shape is given).

    Probes have the model's output shape and the target format the model trains with (one-hot for
    C>1, integer masks for metrics of a model compiled with a sparse loss; a function that is only
    right on one-hot targets is then reported): a perfect prediction, all-background on sparse masks (4% of
    the pixels), half the object, all foreground, the right object in the wrong place, empty masks with
    and without a false positive, tiny objects (0.1%) found and missed; one-hot targets for C>1.
    Defects: NaN/Inf; a wrong prediction scoring as well as the perfect one; all-background ranked at
    least as well as half found; for overlap scores (names with dice/iou/jaccard/f1/tversky), a perfect
    prediction below Dice 0.9, an all-background prediction at or above 0.5, values outside [0, 1], and
    a reference-0 probe on empty/tiny masks at or above 0.5 (smooth term). A metric that pools pixels
    over the batch (one large object found, three small ones missed scoring 0.5 above the per-image
    Dice of 0.25) is a warning only: it misleads as a reported number, but is a valid loss design.
    """

    code = "SD407"
    name = "loss-function-defect"
    severity = Severity.ERROR
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        from segdoctor.stats.loss_probes import build_probes, corrected_dice_snippet, encode, judge, variant_table

        if not ctx.functions or ctx.evaluate is None:
            return
        s = ctx.spec
        c = ctx.channels
        h, w = s.output_size or (64, 64)
        # the smooth term's weight depends on the real image size; cap the cost for very large outputs
        scale = max(1.0, max(h, w) / 256.0)
        h, w = max(16, int(h / scale)), max(16, int(w / scale))
        probes = build_probes(h, w, c)
        variants = variant_table(probes, c)
        # Keras hands metrics the targets the loss takes: integer masks when the loss is sparse
        sparse_targets = c > 1 and s.loss is not None and s.loss.family == "sparse_ce"

        def run_probes(fn: Any, sparse: bool) -> tuple[dict[str, float], str | None]:
            values: dict[str, float] = {}
            for p in probes:
                try:
                    values[p.name] = ctx.evaluate(fn, encode(p.y_true_ids, c, sparse=sparse), encode(p.y_pred_ids, c))
                except Exception as exc:  # the user's function may not accept our tensors: say so, do not crash
                    return values, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
            return values, None

        for name, (fn, role) in ctx.functions.items():
            if role == "custom object" and not _PROBE_NAME.search(name):
                continue
            sparse = sparse_targets and role != "loss"
            values, error = run_probes(fn, sparse)
            if sparse:
                onehot_values, onehot_error = run_probes(fn, False)
                onehot_ok = onehot_error is None and not judge(name, onehot_values, probes, c, variants=variants).defective
                sparse_bad = error is not None or judge(name, values, probes, c, variants=variants).defective
                if onehot_ok and sparse_bad:
                    yield self.finding(
                        title=f"Custom {role} '{name}' expects one-hot targets but the model's {s.loss.name} feeds it integer masks",
                        evidence={"function": name, "role": role, "loss": s.loss.name, "output_channels": c,
                                  "perfect_prediction_with_integer_masks": round(values.get("perfect", float("nan")), 5),
                                  "perfect_prediction_with_one_hot_masks": round(onehot_values["perfect"], 5),
                                  **({"error_with_integer_masks": error} if error else {})},
                        why="With a sparse loss, y_true reaches every metric as (batch, H, W, 1) class ids; multiplied with the "
                            f"{c}-channel prediction it broadcasts into a meaningless score.",
                        fix=f"One-hot encode y_true inside '{name}' before the Dice.",
                        snippet=(f"def {py_identifier(name, 'dice_coef')}(y_true, y_pred):\n"
                                 f"    y_true = ops.one_hot(ops.cast(ops.squeeze(y_true, -1), 'int32'), {c})\n"
                                 "    ...  # the rest of the function unchanged"),
                    )
                    continue
            if error is not None:
                yield self.finding(
                    title=f"Custom {role} '{name}' could not be called on probe tensors of shape (4, {h}, {w}, {c})",
                    evidence={"function": name, "role": role, "error": error},
                    why="The probes use the model's output shape; a function that fails on them may fail in training too, or expect another target format.",
                    fix="Make the function accept y_true and y_pred of the model's output shape (Keras 3: use keras.ops, not keras.backend).",
                    severity=Severity.INFO,
                )
                continue
            declared = "loss" if role == "loss" else None
            verdict = judge(name, values, probes, c, variants=variants, declared_kind=declared)
            if not verdict.defective:
                continue
            is_loss = verdict.kind == "loss"
            evidence: dict[str, Any] = {"function": name, "role": role, "treated_as": verdict.kind}
            for p in probes:
                evidence[f"{p.name} (reference Dice {p.reference:.2f})"] = round(values[p.name], 5)
            if verdict.matches:
                evidence["behaves_like"] = " or ".join(verdict.matches[:2])
            snippet = corrected_dice_snippet(c, function_name=py_identifier(name, "dice_coef") if not is_loss else "dice_coef",
                                             loss_name=py_identifier(name, "dice_loss") if is_loss else "dice_loss")
            yield self.finding(
                title=f"Custom {verdict.kind} '{name}' is defective: {verdict.defects[0]}",
                evidence=evidence,
                why=" ".join(d[0].upper() + d[1:] + "." for d in verdict.defects)
                + (f" On these probes it equals {' or '.join(verdict.matches[:2])}." if verdict.matches else ""),
                fix=f"Replace '{name}' with a per-image Dice over the spatial axes (1, 2){' of the foreground classes' if c > 1 else ''}.",
                snippet=snippet,
                severity=Severity.WARNING if verdict.only_batch_pooled else Severity.ERROR,
            )


@register
class NoSkipConnections(Check):
    """An encoder-decoder that downsamples and upsamples without any skip connection.

    *Why it matters:* the decoder must rebuild object boundaries from the coarsest feature map alone, so
    masks come out blobby and small objects vanish; U-Net style skips carry the fine detail across.

    *How to fix:* concatenate each encoder stage with the decoder stage of the same resolution.

    Rule: at least 2 downsampling steps (pooling or strided convolutions), at least one upsampling
    layer, and no Concatenate/Add/Average/Multiply layer anywhere.
    """

    code = "SD408"
    name = "no-skip-connections"
    severity = Severity.INFO
    scope = "model"

    def run(self, ctx: ModelContext) -> Iterator[Finding]:
        s = ctx.spec
        if not s.is_spatial or s.n_downsampling < 2 or s.n_transposed < 1 or s.n_merges > 0:
            return
        yield self.finding(
            title=f"Encoder-decoder with {s.n_downsampling} downsampling and {s.n_transposed} upsampling steps but no skip connections",
            evidence={"downsampling_layers": s.n_downsampling, "upsampling_layers": s.n_transposed, "merge_layers": 0},
            why="Without skips, boundaries are rebuilt from the coarsest features only; thin structures and small objects are lost.",
            fix="Concatenate each encoder feature map with the decoder feature map of the same size (U-Net).",
            snippet="skip = x                         # before each pooling step in the encoder\n"
                    "x = layers.MaxPooling2D()(x)\n"
                    "...\n"
                    "x = layers.UpSampling2D()(x)      # in the decoder, at the same resolution\n"
                    "x = layers.Concatenate()([x, skip])",
        )
