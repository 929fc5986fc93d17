"""Fine-tuning traps: BatchNormalization in frozen backbones (SD409), an activation applied twice (SD410), and
predictions that are worse in inference mode than in training mode (SD509, with --data).

SD409 and SD410 read the saved architecture (``segdoctor.io.model_graph``: classes, activations, trainable
flags as written, call arguments, nested models) and the BatchNormalization statistics of the loaded
model. SD509 reads the two prediction passes measured by ``segdoctor.io.mode_gap``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from segdoctor.findings import Finding, Severity
from segdoctor.registry import Check, register

#: layers shown by name in a title/evidence; JSON evidence lists up to this many
SHOWN = 12


def _names(nodes: list[Any]) -> str:
    names = ["/".join(n.path) for n in nodes[:SHOWN]]
    return ", ".join(names) + (f" … (+{len(nodes) - SHOWN})" if len(nodes) > SHOWN else "")


def _weighted_producer(node: Any, hops: int = 4) -> Any | None:
    """The weighted layer (convolution, dense) whose output reaches ``node`` through at most ``hops`` weightless layers."""
    from segdoctor.io.model_graph import WEIGHTED

    current = node
    for _ in range(hops):
        if len(current.inputs) != 1:
            return None
        prev = current.sibling(current.inputs[0])
        if prev is None:
            return None
        if prev.class_name in WEIGHTED:
            return prev
        if prev.is_model or prev.class_name in ("InputLayer", "Concatenate", "Add"):
            return None
        current = prev
    return None


def _backbone(node: Any) -> Any | None:
    """The outermost nested model enclosing ``node`` (the backbone as the user built it), or None."""
    ancestors = [a for a in node.ancestors if a.parent is not None]
    return ancestors[-1] if ancestors else None


_FREEZE_RECIPE = """\
def batchnorm_layers(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for sub in getattr(layer, "layers", []):
        yield from batchnorm_layers(sub)

base = model.get_layer({name})      # the pretrained backbone
base.trainable = False              # frozen: its convolutions and BatchNormalization stay as pretrained
# fine-tuning later: unfreeze the backbone, but keep its BatchNormalization layers frozen (inference mode);
# Keras 3 overrides a training=False written in the graph while fitting, so freeze the layers themselves
base.trainable = True
for layer in batchnorm_layers(base):
    layer.trainable = False
model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-5), loss=model.loss)  # 10x lower LR than for the head"""


@register
class FrozenBatchNorm(Check):
    """Fine-tuning traps around BatchNormalization: a frozen backbone whose BN layers still update, or stale BN statistics.

    *Why it matters:* BatchNormalization normalises with the current batch's statistics while training and
    with its stored moving statistics at inference. In a frozen pretrained backbone whose BN layers stay
    trainable, every training batch rewrites the pretrained statistics (small fine-tuning batches, other
    images) while the frozen convolutions still expect the old ones: features drift, the loss oscillates
    whatever the learning rate, and inference-mode predictions fall apart (SD509). Statistics still at
    their initial values (mean 0, variance 1) while the layer's scale and offset were trained mean the
    layer never saw the data in training mode: at inference it does not normalise at all.

    *How to fix:* freeze the backbone (``base.trainable = False``: in Keras 3 this also puts its BN layers
    in inference mode); when you unfreeze it for fine-tuning, set ``trainable = False`` on each BN layer
    and use a learning rate about 10x lower. In Keras 3, ``base(x, training=False)`` alone does not protect
    the statistics: ``fit()`` calls the model with ``training=True``, which overrides the ``training=False``
    written in the graph (measured with Keras 3.15; Keras 2 honoured it).

    Rules, on the saved architecture (nested models walked, each layer's own ``trainable`` flag as
    written) and the saved statistics: (1) warning: BN layers that update their statistics in ``fit()``
    (their own flag is trainable; for Keras 2 files, not called with ``training=False``) inside a frozen
    model, or right after a frozen convolution; (2) warning, Keras 3 files: BN layers called with
    ``training=False`` (themselves or through the backbone's call) that are trainable, so they update
    anyway; (3) info: a trainable nested backbone whose BN layers update with the fine-tuning batches
    (harmful with small batches, under ~16 images); (4) warning: moving mean exactly 0 and variance
    exactly 1 in every channel while gamma or beta moved from 1 and 0.
    """

    code = "SD409"
    name = "frozen-batchnorm"
    severity = Severity.WARNING
    scope = "model"

    @classmethod
    def skip_reason(cls, subject: Any) -> str | None:
        if getattr(subject, "graph", None) is None:
            return "the saved architecture could not be read"
        return None

    def run(self, ctx: Any) -> Iterator[Finding]:
        graph = ctx.graph
        bns = graph.batchnorm_layers()
        if not bns:
            return
        keras3 = (graph.keras_major or 3) >= 3
        frozen_ctx, overridden, adapting = [], [], []
        for bn in bns:
            if not bn.own_trainable:
                continue  # frozen BN runs in inference mode and keeps its statistics
            if not keras3 and bn.training_false:
                continue  # Keras 2 honoured training=False written in the graph
            producer = _weighted_producer(bn)
            in_frozen_model = any(not a.own_trainable for a in bn.ancestors)
            if in_frozen_model or (producer is not None and not producer.effective_trainable):
                frozen_ctx.append(bn)
            elif bn.training_false:
                overridden.append(bn)
            elif _backbone(bn) is not None:
                adapting.append(bn)
        version = f"Keras {graph.keras_version}" if graph.keras_version else "this Keras version"
        if frozen_ctx:
            backbones = sorted({"/".join(b.path) for b in (_backbone(n) for n in frozen_ctx) if b is not None})
            name = backbones[0] if backbones else None
            yield self.finding(
                title=(f"{len(frozen_ctx)} of {len(bns)} BatchNormalization layers still update their statistics inside a frozen "
                       + (f"backbone ('{name}')" if name else "part of the model")),
                evidence={"updating_layers": len(frozen_ctx), "batchnorm_layers": len(bns), "layers": _names(frozen_ctx),
                          "backbones": ", ".join(backbones) or "none (flat model)", "keras_version": graph.keras_version or "unknown"},
                why=("Their convolutions are frozen but the BN layers are trainable, so every training batch rewrites the pretrained "
                     "moving statistics: the frozen features drift, the loss oscillates at any learning rate and predictions in "
                     "inference mode no longer match training (SD509)."),
                fix=("Freeze the BatchNormalization layers with the backbone (base.trainable = False, and trainable = False on each "
                     "BN layer when you unfreeze for fine-tuning, with a 10x lower learning rate)."),
                snippet=_FREEZE_RECIPE.format(name=repr(name or "backbone")),
                related=("SD509", "SD603"),
            )
        if overridden:
            backbones = sorted({"/".join(b.path) for b in (_backbone(n) for n in overridden) if b is not None})
            name = backbones[0] if backbones else None
            yield self.finding(
                title=(f"{len(overridden)} BatchNormalization layers are called with training=False but are trainable: "
                       f"{version} updates their statistics in fit() anyway"),
                evidence={"updating_layers": len(overridden), "batchnorm_layers": len(bns), "layers": _names(overridden),
                          "backbones": ", ".join(backbones) or "none", "keras_version": graph.keras_version or "unknown"},
                why=("Keras 3 passes fit()'s training=True to every layer, overriding the training=False written in the graph "
                     "(the transfer-learning recipe written for Keras 2): these layers run in training mode and their "
                     "pretrained statistics are overwritten by the fine-tuning batches."),
                fix="Set trainable = False on the BatchNormalization layers themselves (they then run in inference mode), and fine-tune with a 10x lower learning rate.",
                snippet=_FREEZE_RECIPE.format(name=repr(name or "backbone")),
                related=("SD509",),
            )
        if adapting:
            backbones = sorted({"/".join(b.path) for b in (_backbone(n) for n in adapting) if b is not None})
            yield self.finding(
                severity=Severity.INFO,
                title=(f"The trainable backbone {', '.join(repr(b) for b in backbones[:3])} has {len(adapting)} BatchNormalization "
                       "layers that adapt their statistics to your training batches"),
                evidence={"updating_layers": len(adapting), "batchnorm_layers": len(bns), "layers": _names(adapting),
                          "backbones": ", ".join(backbones)},
                why=("Fine-tuning a pretrained backbone with its BN layers in training mode replaces the pretrained statistics with "
                     "those of your batches; with batches of a few images they are noisy and the model degrades."),
                fix="With batches under ~16 images, freeze the backbone's BatchNormalization layers (trainable = False) while fine-tuning.",
                snippet=_FREEZE_RECIPE.format(name=repr(backbones[0] if backbones else "backbone")),
            )
        stale = []
        for bn in bns:
            w = _bn_weights(ctx, bn)
            mean, var = w.get("moving_mean"), w.get("moving_variance")
            if mean is None or var is None or mean.size == 0:
                continue
            if not (np.all(mean == 0.0) and np.all(var == 1.0)):
                continue
            moved = ("gamma" in w and not np.allclose(w["gamma"], 1.0)) or ("beta" in w and not np.allclose(w["beta"], 0.0))
            if moved:
                stale.append(bn)
        if stale:
            yield self.finding(
                title=(f"{len(stale)} of {len(bns)} BatchNormalization layers still hold their initial statistics (mean 0, variance 1) "
                       "although their scale and offset were trained"),
                evidence={"stale_layers": len(stale), "batchnorm_layers": len(bns), "layers": _names(stale)},
                why=("The layers were trained but never ran in training mode (frozen, or called with training=False, from the "
                     "start), so at inference they assume inputs with mean 0 and variance 1 and do not normalise at all."),
                fix=("Recompute the statistics with forward passes over training images in training mode (no weight update), "
                     "or retrain these layers in training mode."),
                snippet=RECOMPUTE_RECIPE,
                related=("SD509",),
            )


def _bn_weights(ctx: Any, node: Any) -> dict[str, np.ndarray]:
    from segdoctor.io.model_graph import batchnorm_weights

    return batchnorm_weights(ctx.loaded.model, node)


RECOMPUTE_RECIPE = """\
def batchnorm_layers(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        yield layer
    for sub in getattr(layer, "layers", []):
        yield from batchnorm_layers(sub)

# re-estimate the BatchNormalization statistics: forward passes in training mode, no weight update (LR 0)
for layer in batchnorm_layers(model):
    layer.trainable = True          # Keras 3: a frozen BN layer would stay in inference mode
    layer.momentum = 0.9            # forget the stale values within a few dozen batches
for images, _ in train_dataset.take(100):   # your training images, preprocessed exactly as in training
    model(images, training=True)
for layer in batchnorm_layers(model):
    layer.trainable = False         # keep the new statistics (inference mode) from now on
model.save("model_bn_recomputed.keras")"""


def _double_activation_range(first: str, second: str, channels: int) -> tuple[float, float]:
    """The range the second activation's outputs can reach when its inputs are the first one's (in [0, 1])."""
    if second in ("sigmoid", "hard_sigmoid"):
        return 0.5, 1 / (1 + math.exp(-1))
    # a softmax over C channels of values in [0, 1]: the extremes are one channel at 1 and the others at 0
    c, e = max(channels, 2), math.e
    return 1 / (1 + (c - 1) * e), e / (e + c - 1)


@register
class DoubleActivation(Check):
    """An activation applied twice: a softmax/sigmoid layer after a layer that already ends in softmax/sigmoid.

    *Why it matters:* the second activation squashes probabilities that are already in [0, 1]: after a
    double softmax over 2 channels every output lies between 0.27 and 0.73, after a double sigmoid
    between 0.5 and 0.73 (every pixel is foreground at threshold 0.5). The loss can never reach its
    minimum, the gradients shrink, and the model looks poor whatever the learning rate.

    *How to fix:* remove one of them (keep the activation in the head layer, or make the head linear and
    keep the separate activation) and compile with ``from_logits`` matching what remains.

    Detection is structural, on the saved architecture, nested models included: an ``Activation`` or
    ``Softmax`` layer whose input, through layers that keep values in range (reshape, dropout, upsampling),
    comes from a layer whose own activation (``activation=`` argument, an ``Activation`` layer, or a
    nested model's output) is softmax or sigmoid.
    """

    code = "SD410"
    name = "double-activation"
    severity = Severity.ERROR
    scope = "model"

    @classmethod
    def skip_reason(cls, subject: Any) -> str | None:
        if getattr(subject, "graph", None) is None:
            return "the saved architecture could not be read"
        return None

    def run(self, ctx: Any) -> Iterator[Finding]:
        for node in ctx.graph.walk():
            second = _applied_activation(node)
            if second not in ("softmax", "sigmoid", "hard_sigmoid") or len(node.inputs) != 1:
                continue
            source = node.sibling(node.inputs[0])
            found = _final_activation(source) if source is not None else None
            if found is None:
                continue
            first, first_node = found
            if first not in ("softmax", "sigmoid", "hard_sigmoid"):
                continue
            channels = ctx.spec.out_channels or 2
            lo, hi = _double_activation_range(first, second, channels)
            how = (f"activation=\"{first}\" argument of {first_node.class_name} '{'/'.join(first_node.path)}'"
                   if first_node.class_name not in ("Activation", "Softmax") else f"{first_node.class_name} layer '{'/'.join(first_node.path)}'")
            c = ctx.spec.out_channels or 1
            loss = ("keras.losses.BinaryCrossentropy(from_logits=False)" if c == 1
                    else "keras.losses.SparseCategoricalCrossentropy(from_logits=False)")
            yield self.finding(
                title=(f"{second.capitalize()} applied twice: layer '{'/'.join(node.path)}' after the {how}; outputs can only "
                       f"range over [{lo:.3f}, {hi:.3f}]"),
                evidence={"second_activation": second, "second_layer": "/".join(node.path), "first_activation": first,
                          "first_layer": "/".join(first_node.path), "output_range_low": round(lo, 4), "output_range_high": round(hi, 4),
                          "channels": channels},
                why=(f"The {second} receives values that are already probabilities in [0, 1], so its outputs are squashed into "
                     f"[{lo:.3f}, {hi:.3f}]: the loss cannot reach its minimum, the gradients shrink and predictions are blurred"
                     + (" (every pixel above 0.5: all foreground at the usual threshold)." if lo >= 0.5 else ".")),
                fix=f"Remove one {second if first == second else 'of the two activations'}: keep the head's activation and delete the extra layer, then compile with from_logits=False.",
                snippet=(f"outputs = layers.Conv2D({c}, 1, activation=\"{'sigmoid' if c == 1 else 'softmax'}\")(x)  # the only activation\n"
                         f"model = keras.Model(inputs, outputs)\n"
                         f"model.compile(optimizer=\"adam\", loss={loss})"),
                related=("SD402", "SD401"),
            )


def _applied_activation(node: Any) -> str | None:
    """The activation an activation-only layer applies (Activation, Softmax), else None."""
    if node.class_name == "Softmax":
        return "softmax"
    if node.class_name == "Activation":
        return node.activation()
    return None


def _final_activation(node: Any, depth: int = 0) -> tuple[str, Any] | None:
    """(activation, layer) of the last activation applied to the tensor ``node`` outputs, through transparent
    layers and into nested models; None when the path is unknown or ends in something else."""
    from segdoctor.io.model_graph import TRANSPARENT

    if node is None or depth > 40:
        return None
    if node.is_model:
        out = next((n for n in node.layers if node.outputs and n.name == node.outputs[0]), None)
        return _final_activation(out, depth + 1)
    applied = _applied_activation(node)
    if applied is not None:
        return applied, node
    if node.class_name in TRANSPARENT and len(node.inputs) == 1:
        return _final_activation(node.sibling(node.inputs[0]), depth + 1)
    act = node.activation()
    if act is not None:
        return act, node
    return None


@register
class TrainInferenceGap(Check):
    """The model's predictions in inference mode are far worse than in training mode (stale BatchNorm statistics).

    *Why it matters:* in training mode BatchNormalization normalises with each batch's own statistics; in
    inference mode (``model.predict``, deployment) with the moving statistics stored in the file. When
    those no longer describe the activations — statistics rewritten by tiny fine-tuning batches, never
    updated, or inputs now preprocessed differently than in training — the model that looked good in
    training predicts poorly in use.

    *How to fix:* recompute the statistics with a pass over the training images in training mode without
    weight updates (learning rate 0), or freeze the BN layers while fine-tuning; feed the images exactly
    as in training (same scaling).

    Measured on up to 64 images with a foreground: the mean Dice of the saved model's predictions in
    inference mode against a copy's predictions in training mode (batch statistics; dropout disabled, so
    only BatchNormalization differs; the copy's statistics are restored afterwards). A model whose statistics
    describe its data gives the same predictions in both modes up to batch noise (a frozen BN layer gives
    identical ones); error when the training-mode Dice is at least 0.2 higher, warning from 0.1 higher.
    Skipped for models without BatchNormalization, where both modes compute the same function.
    """

    code = "SD509"
    name = "train-inference-gap"
    severity = Severity.ERROR
    scope = "predictions"

    @classmethod
    def skip_reason(cls, subject: Any) -> str | None:
        gap = getattr(subject, "mode_gap", None)
        if gap is None:
            return "the two prediction modes were not compared"
        if gap.batchnorm_layers == 0:
            return "the model has no BatchNormalization layers: both modes compute the same function"
        if gap.images < 2:
            return "fewer than 2 images with foreground to compare"
        return None

    def run(self, ctx: Any) -> Iterator[Finding]:
        gap = getattr(ctx, "mode_gap", None)
        if gap is None or gap.images < 2 or not (math.isfinite(gap.dice_inference) and math.isfinite(gap.dice_training)):
            return
        diff = gap.dice_training - gap.dice_inference
        if diff < 0.1:
            return
        strong = diff >= 0.2
        fixed = getattr(ctx, "preprocess_fixed", False)
        scaling = (f"the images were scaled with '{ctx.preprocess}'" + (" (chosen with --preprocess)" if fixed else " (segdoctor's choice)"))
        related = tuple(f.code for f in ctx.other_findings if f.code in ("SD409", "SD507", "SD201"))
        yield self.finding(
            severity=Severity.ERROR if strong else Severity.WARNING,
            title=(f"Mean Dice {gap.dice_inference:.3f} in inference mode against {gap.dice_training:.3f} in training mode on "
                   f"{gap.images} images: the BatchNormalization statistics do not match the data"),
            evidence={"dice_inference_mode": round(gap.dice_inference, 4), "dice_training_mode": round(gap.dice_training, 4),
                      "images": gap.images, "batch_size": gap.batch_size, "batchnorm_layers": gap.batchnorm_layers,
                      "mean_probability_difference": round(gap.mean_abs_difference, 4), "preprocess": ctx.preprocess,
                      "statistics_restored": gap.restored},
            why=("With each batch's own statistics the model segments well; with the moving statistics saved in the file it does "
                 f"not. Either those statistics are stale (rewritten by small fine-tuning batches, never updated: see SD409) or the "
                 f"inputs differ from what the model was trained on ({scaling}; see SD507)."),
            fix=("Recompute the BatchNormalization statistics with a pass over the training images in training mode at learning "
                 "rate 0, or freeze the BN layers (trainable = False) while fine-tuning; preprocess exactly as in training."),
            snippet=RECOMPUTE_RECIPE,
            related=related or ("SD409", "SD507"),
        )
