"""Predict the same images in inference mode and in training mode, to expose stale BatchNormalization statistics (SD509).

Inference mode is the saved model itself (``predict_on_batch`` changes nothing). Training mode runs on a copy
with dropout disabled, so that only BatchNormalization differs (batch statistics instead of the stored moving
ones); the copy's statistics, which training-mode calls update, are put back afterwards and checked, and the
saved model's weights are compared before and after.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: images with a foreground compared between the two modes
MAX_IMAGES = 64


@dataclass(frozen=True)
class ModeGap:
    images: int  # images with foreground compared
    dice_inference: float
    dice_training: float
    mean_abs_difference: float  # mean |p_inference - p_training| over all pixels
    batch_size: int
    batchnorm_layers: int
    restored: bool  # the copy's statistics were restored and the saved model is unchanged


def _all_layers(layer: Any) -> list[Any]:
    out = []
    for sub in getattr(layer, "layers", None) or []:
        out.append(sub)
        out.extend(_all_layers(sub))
    return out


def count_batchnorm(model: Any) -> int:
    return sum(1 for layer in _all_layers(model) if "BatchNormalization" in type(layer).__name__)


def _disable_dropout(model: Any) -> None:
    for layer in _all_layers(model):
        name = type(layer).__name__
        if "Dropout" in name and hasattr(layer, "rate"):
            layer.rate = 0.0
        elif name == "GaussianNoise" and hasattr(layer, "stddev"):
            layer.stddev = 0.0


def _dice(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> float:
    p, t = pred & valid, truth & valid
    total = int(p.sum()) + int(t.sum())
    return 2.0 * int((p & t).sum()) / total if total else 1.0


def measure_mode_gap(loaded: Any, spec: Any, pairs: Sequence[Any], *, preprocess: str, threshold: float = 0.5,
                     batch_size: int = 8, num_classes: int | None = None, max_images: int = MAX_IMAGES) -> ModeGap:
    """Mean Dice over images with foreground, inference mode vs training mode (see the module docstring)."""
    from segdoctor.io.inference import (
        IGNORE, fit_channels, foreground_probability, mask_labels, resize_image, resize_labels, scale_image, to_probabilities,
    )
    from segdoctor.io.lr_sweep import training_forward
    from segdoctor.io.model_copy import copy_model, same_weights, weights_snapshot
    from segdoctor.io.readers import UnreadableFile, read_file

    n_bn = count_batchnorm(loaded.model)
    if n_bn == 0:
        return ModeGap(0, math.nan, math.nan, math.nan, batch_size, 0, True)
    before = weights_snapshot(loaded.model)
    copy = copy_model(loaded)
    _disable_dropout(copy)
    saved_stats = weights_snapshot(copy)
    forward = training_forward(copy)
    out_c = spec.out_channels or 1
    k = num_classes or (2 if out_c <= 2 else out_c)
    size = spec.input_size
    multiple = 2 ** min(int(getattr(spec, "n_downsampling", 0) or 0), 6)
    takes_probabilities = bool(spec.loss is not None and spec.loss.expects_probabilities)
    dice_inf: list[float] = []
    dice_tr: list[float] = []
    diff_sum = 0.0
    diff_count = 0
    batch_x: list[np.ndarray] = []
    batch_y: list[np.ndarray] = []
    target = size

    def flush() -> None:
        nonlocal batch_x, batch_y, diff_sum, diff_count
        if not batch_x:
            return
        x = np.stack(batch_x)
        outs = []
        for raw in (loaded.model.predict_on_batch(x), forward(x)):
            raw = raw[0] if isinstance(raw, (list, tuple)) else next(iter(raw.values())) if isinstance(raw, dict) else raw
            probs, _ = to_probabilities(np.asarray(raw), spec.head_activation, loss_takes_probabilities=takes_probabilities)
            if probs.ndim == 3 and probs.shape[1] == x.shape[1] * x.shape[2]:
                probs = probs.reshape(x.shape[0], x.shape[1], x.shape[2], probs.shape[-1])
            outs.append(np.clip(foreground_probability(probs), 0.0, 1.0))
        p_inf, p_tr = outs
        diff_sum += float(np.abs(p_inf - p_tr).sum())
        diff_count += p_inf.size
        for j, labels in enumerate(batch_y):
            if labels.shape != p_inf[j].shape:
                labels = resize_labels(labels, p_inf[j].shape)
            truth, valid = labels > 0, labels != IGNORE
            if not (truth & valid).any():
                continue
            dice_inf.append(_dice(p_inf[j] >= threshold, truth, valid))
            dice_tr.append(_dice(p_tr[j] >= threshold, truth, valid))
        batch_x, batch_y = [], []

    for pair in pairs:
        if len(dice_inf) >= max_images:
            break
        try:
            image = read_file(pair.image).array
            mask = read_file(pair.mask).array
        except (UnreadableFile, OSError):
            continue
        x = scale_image(fit_channels(image, spec.in_channels), preprocess)
        labels = mask_labels(mask, k)
        if target is None:  # a free-size model: every image takes the first one's size, rounded up to the total stride
            target = (-(-x.shape[0] // multiple) * multiple, -(-x.shape[1] // multiple) * multiple)
        if x.shape[:2] != target:
            x = resize_image(x, target)
        if labels.shape[:2] != target:
            labels = resize_labels(labels, target)
        batch_x.append(x.astype(np.float32))
        batch_y.append(labels)
        if len(batch_x) >= batch_size:
            flush()
    flush()
    copy.set_weights(saved_stats)
    restored = same_weights(saved_stats, weights_snapshot(copy)) and same_weights(before, weights_snapshot(loaded.model))
    if not same_weights(before, weights_snapshot(loaded.model)):  # cannot happen: predict_on_batch is stateless
        loaded.model.set_weights(before)
        log.warning("the model's weights changed while predicting in inference mode and were restored")
    del copy
    if not dice_inf:
        return ModeGap(0, math.nan, math.nan, math.nan, batch_size, n_bn, restored)
    return ModeGap(len(dice_inf), float(np.mean(dice_inf)), float(np.mean(dice_tr)),
                   diff_sum / max(diff_count, 1), batch_size, n_bn, restored)
