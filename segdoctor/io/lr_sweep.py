"""Run the learning-rate range test: train a copy of the model one batch per step while the LR grows exponentially.

The copy gets the model's compiled loss (or ``--loss``) and a fresh optimizer of the saved type and
settings (momentum, betas, weight decay, clipping), only its learning rate swept. The user's model object
and file are never written. Batches come from the dataset as check-model reads it (same scaling, resizing
and label decoding), held in memory up to ``MEMORY_BUDGET`` bytes and cycled with a seeded shuffle.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segdoctor.errors import DatasetError, SegDoctorError, UsageError
from segdoctor.stats.lr_range import StopRule, sweep_learning_rates

log = logging.getLogger(__name__)

#: bytes of decoded batches kept in memory for the sweep (inputs and targets); at least one batch is always held
MEMORY_BUDGET = 256 * 2**20
#: Keras loss names ``--loss`` accepts (with their usual aliases), and the family each belongs to
LOSS_NAMES = {
    "binary_crossentropy": "binary_ce", "bce": "binary_ce", "binary_focal_crossentropy": "binary_ce",
    "categorical_crossentropy": "categorical_ce", "categorical_focal_crossentropy": "categorical_ce",
    "sparse_categorical_crossentropy": "sparse_ce", "dice": "dice", "tversky": "dice",
}


@dataclass
class SweepBatches:
    """The decoded sweep data: model inputs and training targets, in the model's input and output geometry."""

    x: np.ndarray
    y: np.ndarray
    target_format: str  # "binary" (N,H,W,1 float) | "sparse" (N,H,W,1 int) | "one-hot" (N,H,W,C float)
    n_pairs: int  # pairs available
    n_unreadable: int = 0
    resized_from: tuple[int, int] | None = None
    foreground_share: float = math.nan
    class_shares: tuple[float, ...] = ()


@dataclass
class Sweep:
    """One range test as recorded: the LR and batch loss of every step run, and how it ended."""

    learning_rates: np.ndarray
    losses: np.ndarray
    running: np.ndarray  # the running average that decided the stop
    stop_reason: str
    stopped_early: bool
    steps_planned: int
    batch_size: int
    min_lr: float
    max_lr: float
    optimizer: str  # the optimizer class used for the copy
    optimizer_source: str  # "saved" or "default (no optimizer saved)"
    optimizer_settings: dict[str, Any] = field(default_factory=dict)
    loss: str = ""
    loss_source: str = "compiled"  # "compiled" (the model's own loss) or "--loss"
    loss_family: str = "other"
    trainable_params: int = 0
    target_format: str = "binary"
    constant_loss: float | None = None
    content_start: tuple[float, float] | None = None  # (true-pair loss, shuffled-pair loss) before the sweep
    content_curve: list[tuple[float, float, float]] = field(default_factory=list)  # (LR, true, shuffled) probes
    n_samples: int = 0
    n_pairs: int = 0
    input_shape: tuple[int, ...] = ()
    seconds: float = 0.0
    weights_unchanged: bool = True  # the user's model was compared before and after


def _loss_fn_name(loss: Any) -> str:
    if isinstance(loss, str):
        return loss
    return str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__)


def resolve_loss(loaded: Any, spec: Any, loss_name: str | None) -> tuple[Any, str, str]:
    """(loss object, display name, family) for the sweep: ``--loss`` when given, else the model's compiled loss.

    A model saved without its compile information (or whose custom loss could not be rebuilt) needs ``--loss``.
    Only Keras's own losses and functions from the user's ``--custom-objects`` files are accepted by name.
    """
    from segdoctor.io.model import import_keras

    keras = import_keras()
    if loss_name:
        key = loss_name.strip()
        if key in (loaded.custom_objects or {}):
            obj = loaded.custom_objects[key]
            return obj, key, "custom"
        family = LOSS_NAMES.get(key.lower())
        if family is None:
            raise UsageError(f"--loss {loss_name!r}: not a Keras loss segdoctor knows; expected one of "
                             f"{', '.join(sorted(k for k in LOSS_NAMES if '_' in k or k == 'dice'))}, or a loss defined in a --custom-objects file.")
        canonical = {"bce": "binary_crossentropy"}.get(key.lower(), key.lower())
        try:
            obj = keras.losses.get(canonical)
        except Exception:
            obj = None
        if obj is None:
            raise UsageError(f"--loss {loss_name!r}: this Keras version ({keras.__version__}) has no such loss; "
                             "expected binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy or dice.")
        return obj, canonical, family
    model_loss = getattr(loaded.model, "loss", None) if loaded.compiled else None
    if model_loss is None:
        missing = f" (its loss {', '.join(loaded.missing_objects)} could not be loaded: pass --custom-objects FILE.py, or)" if loaded.missing_objects else ""
        raise UsageError(
            f"{loaded.path}: the model was saved without compile information{missing}; lr-find trains with a loss: "
            "rerun with --loss NAME (binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy or dice)."
        )
    family = spec.loss.family if spec.loss is not None else "other"
    return model_loss, _loss_fn_name(model_loss), family


def _optimizer_class(keras: Any, name: str) -> Any:
    cls = getattr(keras.optimizers, name, None) if name.isidentifier() else None
    return cls if isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer) else None


def build_optimizer(loaded: Any, start_lr: float) -> tuple[Any, str, str, dict[str, Any]]:
    """A fresh optimizer of the saved type and settings with ``learning_rate=start_lr``; Adam when none was saved.

    Returns (optimizer, class name, source, the settings that differ from that class's defaults)."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    saved = getattr(loaded.model, "optimizer", None) if loaded.compiled else None
    config: dict[str, Any] | None = None
    cls = None
    if saved is not None:
        cls, config = type(saved), dict(saved.get_config())
    else:
        raw = (loaded.compile_config or {}).get("optimizer")
        try:
            if raw is not None:
                made = keras.optimizers.get(raw)
                cls, config = type(made), dict(made.get_config())
        except Exception as exc:  # a custom optimizer class the user did not pass
            log.info("the saved optimizer could not be rebuilt (%s); sweeping with Adam", exc)
    if cls is not None and config is not None:
        config["learning_rate"] = float(start_lr)  # a saved schedule is replaced: the sweep sets the LR each step
        try:
            optimizer = cls.from_config(config)
            defaults = {}
            try:
                defaults = cls().get_config()
            except Exception:
                pass
            changed = {k: v for k, v in config.items()
                       if k not in ("name", "learning_rate") and isinstance(v, (int, float, bool)) and defaults.get(k, v) != v}
            return optimizer, cls.__name__, "saved", changed
        except Exception as exc:
            log.info("could not rebuild %s from its config (%s); sweeping with Adam", cls.__name__, exc)
    return keras.optimizers.Adam(learning_rate=float(start_lr)), "Adam", "default (no optimizer saved)", {}


def _target_format(out_channels: int, family: str) -> str:
    if out_channels <= 1:
        return "binary"
    return "sparse" if family == "sparse_ce" else "one-hot"


def prepare_batches(model: Any, spec: Any, pairs: Sequence[Any], *, preprocess: str, family: str, batch_size: int,
                    samples_wanted: int, num_classes: int | None = None,
                    progress: Callable[[int, int, str], None] | None = None) -> SweepBatches:
    """Read up to ``samples_wanted`` pairs (within ``MEMORY_BUDGET``) into model inputs and training targets."""
    from segdoctor.io.inference import IGNORE, fit_channels, mask_labels, resize_image, resize_labels, scale_image
    from segdoctor.io.readers import UnreadableFile, read_file

    out_c = spec.out_channels or 1
    k = num_classes or (2 if out_c <= 2 else out_c)
    fmt = _target_format(out_c, family)
    size = spec.input_size
    multiple = 2 ** min(int(getattr(spec, "n_downsampling", 0) or 0), 6)
    xs: list[np.ndarray] = []
    labels_list: list[np.ndarray] = []
    unreadable = 0
    resized_from = None
    limit = max(batch_size, samples_wanted)
    used = 0
    total = len(pairs)
    for i, pair in enumerate(pairs):
        if len(xs) >= limit:
            break
        try:
            image = read_file(pair.image).array
            mask = read_file(pair.mask).array
        except (UnreadableFile, OSError):
            unreadable += 1
            continue
        x = scale_image(fit_channels(image, spec.in_channels), preprocess)
        labels = mask_labels(mask, k)
        if size is None:
            # a free-size model: every sample takes the first one's size, rounded up to the model's total stride
            h, w = xs[0].shape[:2] if xs else (-(-x.shape[0] // multiple) * multiple, -(-x.shape[1] // multiple) * multiple)
            target = (h, w)
        else:
            target = size
        if x.shape[:2] != target:
            resized_from = resized_from or tuple(x.shape[:2])
            x = resize_image(x, target)
        if labels.shape[:2] != target:
            labels = resize_labels(labels, target)
        xs.append(x.astype(np.float32))
        labels_list.append(labels)
        used += x.nbytes + labels.size * (4 * (out_c if fmt == "one-hot" else 1))
        if used >= MEMORY_BUDGET and len(xs) >= batch_size:
            break
        if progress:
            progress(min(len(xs), limit), limit, "reading")
    if not xs:
        raise DatasetError(f"none of the {total} pairs could be read for lr-find; expected image and mask files (see segdoctor check-data).")
    x = np.stack(xs)
    labels = np.stack(labels_list)
    # the targets take the output's geometry (a head at a lower resolution, or a flattened H*W head)
    out_shape = tuple(spec.output_shape or ())
    if len(out_shape) < 2 or any(v is None for v in out_shape[1:]):
        try:  # a free-size model: run it once to see
            out_shape = np.asarray(_first_output(model.predict_on_batch(x[:1]))).shape
        except Exception as exc:
            raise SegDoctorError(f"{spec.name}: the model failed on an input of shape {x[:1].shape} ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); expected inputs it accepts; check --preprocess.") from None
    out = np.empty((1, *out_shape[1:]), np.float32)
    valid = labels != IGNORE
    ids = np.where(valid, labels, 0)
    shares = np.bincount(ids[valid].ravel(), minlength=max(k, 2)).astype(np.float64)
    shares = shares / max(shares.sum(), 1.0)
    fg = float(1.0 - shares[0])
    if out.ndim == 4 and out.shape[1:3] != ids.shape[1:3]:
        ids = np.stack([resize_labels(a, out.shape[1:3]) for a in ids])
        valid = np.stack([resize_labels(a, out.shape[1:3]) for a in valid])
    if fmt == "binary":
        y = ((ids > 0) & valid).astype(np.float32)[..., None]
    elif fmt == "sparse":
        y = ids.astype(np.int32)[..., None]
    else:
        c = out.shape[-1]
        y = np.zeros((*ids.shape, c), np.float32)
        np.put_along_axis(y, np.clip(ids, 0, c - 1)[..., None], 1.0, axis=-1)
        y *= valid[..., None]  # void pixels: an all-zero row counts for nothing in cross-entropy
    if out.ndim == 3 and y.ndim == 4 and out.shape[1] == y.shape[1] * y.shape[2]:
        y = y.reshape(y.shape[0], -1, y.shape[-1])
    return SweepBatches(x=x, y=y, target_format=fmt, n_pairs=total, n_unreadable=unreadable, resized_from=resized_from,
                        foreground_share=fg, class_shares=tuple(float(s) for s in shares))


def _first_output(out: Any) -> Any:
    if isinstance(out, (list, tuple)):
        return out[0]
    if isinstance(out, dict):
        return next(iter(out.values()))
    return out


def _from_logits(loss: Any) -> bool:
    value = getattr(loss, "from_logits", None)
    if value is None:
        value = (getattr(loss, "_fn_kwargs", None) or {}).get("from_logits")
    return bool(value)


def constant_prediction_loss(loss: Any, batches: SweepBatches, out_channels: int, *, n: int = 32) -> float | None:
    """The lowest loss a constant output reaches on the first ``n`` samples: the floor a model reaches by learning
    the class prior alone, without looking at the images. None when the loss cannot be evaluated that way."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if isinstance(fn, (dict, list, tuple)) or not callable(fn):
        return None
    y = batches.y[:n]
    logits = _from_logits(fn)
    shape = (*y.shape[:-1], max(out_channels, 1))
    candidates: list[np.ndarray] = []
    if out_channels <= 1:
        fg = min(max(batches.foreground_share, 1e-4), 1 - 1e-4) if math.isfinite(batches.foreground_share) else 0.5
        for p in sorted({fg, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999}):
            candidates.append(np.array([p]))
    else:
        prior = np.array(batches.class_shares[:out_channels] or (), np.float64)
        if prior.size != out_channels:
            prior = np.full(out_channels, 1.0 / out_channels)
        prior = np.clip(prior, 1e-4, None)
        candidates.append(prior / prior.sum())
        candidates.append(np.full(out_channels, 1.0 / out_channels))
        for c in range(out_channels):
            v = np.full(out_channels, 0.02 / max(out_channels - 1, 1))
            v[c] = 0.98
            candidates.append(v)
    best = math.inf
    for v in candidates:
        p = np.clip(v, 1e-6, 1 - 1e-6)
        if logits:
            p = np.log(p / (1 - p)) if out_channels <= 1 else np.log(p)
        pred = np.broadcast_to(p.astype(np.float32), shape)
        try:
            value = float(np.mean(np.asarray(keras.ops.convert_to_numpy(fn(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(pred))))))
        except Exception as exc:  # a loss that does not take our tensors: no floor, the curve is judged alone
            log.info("constant-prediction loss unavailable: %s", exc)
            return None
        if math.isfinite(value):
            best = min(best, value)
    return best if math.isfinite(best) else None


#: samples on which the true-pair and shuffled-pair losses are compared (at least one batch, held out of training),
#: and how many such probes a sweep takes at most: one every 5 steps of a 100-step sweep once the loss has started
#: to move (before that the model cannot have learned anything), about 5% of the sweep's time
CONTENT_SAMPLES = 8
CONTENT_PROBES = 20
#: the running loss must have left its first value by this much (relative) before the periodic probes start
PROBE_AFTER_MOVE = 0.01
#: masks that overlap their shuffled partners this much (mean Dice) make the shuffled-pair comparison uninformative
SIMILAR_MASKS_DICE = 0.8


def _shuffle_partner(batches: SweepBatches, idx: np.ndarray) -> np.ndarray | None:
    """For each sample in ``idx``, another sample whose mask it gets in the shuffled-pair comparison; None when the
    masks are too alike for that comparison to mean anything (nearly identical masks everywhere)."""
    if idx.size < 2:
        return None
    partner = np.roll(idx, 1)
    y, z = batches.y[idx], batches.y[partner]
    if batches.target_format == "sparse":
        a, b = y[..., 0] > 0, z[..., 0] > 0
    elif batches.target_format == "binary" or y.shape[-1] == 1:
        a, b = y[..., 0] > 0.5, z[..., 0] > 0.5
    else:
        a, b = y[..., 1:].sum(-1) > 0.5, z[..., 1:].sum(-1) > 0.5
    if a.mean() > 0.5:  # compare the minority: where the foreground covers most of the image, the background
        a, b = ~a, ~b
    axes = tuple(range(1, a.ndim))
    inter = (a & b).sum(axis=axes)
    total = a.sum(axis=axes) + b.sum(axis=axes)
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return None if float(dice.mean()) >= SIMILAR_MASKS_DICE else partner


def training_forward(model: Any) -> Callable[[np.ndarray], Any]:
    """``model(x, training=True)`` as a compiled graph function on TensorFlow (eager calls are several times slower)."""
    from segdoctor.io.model import import_keras

    keras = import_keras()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x, training=True), reduce_retracing=True)
    return lambda x: model(x, training=True)


def content_losses(forward: Callable[[np.ndarray], Any], fn: Any, batches: SweepBatches, idx: np.ndarray, partner: np.ndarray | None,
                   batch_size: int) -> tuple[float, float] | None:
    """(loss on the true pairs, loss on the same predictions scored against the partners' masks), forward passes in
    training mode as during the sweep (batch statistics in BatchNormalization). None when unavailable."""
    from segdoctor.io.model import import_keras

    if partner is None:
        return None
    keras = import_keras()
    ops = keras.ops
    true_sum = shuffled_sum = 0.0
    count = 0
    try:
        for a in range(0, idx.size, batch_size):
            chunk, other = idx[a: a + batch_size], partner[a: a + batch_size]
            pred = _first_output(forward(batches.x[chunk]))
            t = float(np.mean(ops.convert_to_numpy(fn(ops.convert_to_tensor(batches.y[chunk]), pred))))
            u = float(np.mean(ops.convert_to_numpy(fn(ops.convert_to_tensor(batches.y[other]), pred))))
            true_sum += t * chunk.size
            shuffled_sum += u * chunk.size
            count += chunk.size
    except Exception as exc:  # a loss that does not take these tensors: the curve is judged without the comparison
        log.info("true/shuffled pair comparison unavailable: %s", exc)
        return None
    if not count:
        return None
    return true_sum / count, shuffled_sum / count


def run_sweep(loaded: Any, spec: Any, batches: SweepBatches, *, loss: Any, loss_name: str, family: str,
              loss_source: str = "compiled", min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100, batch_size: int = 8, seed: int = 0,
              progress: Callable[[int, int, str], None] | None = None) -> Sweep:
    """Train a copy of ``loaded.model`` for at most ``steps`` batches with the LR growing from ``min_lr`` to ``max_lr``."""
    from segdoctor.io.model_copy import copy_model, same_weights, weights_snapshot

    if not (0 < min_lr < max_lr) or not math.isfinite(max_lr):
        raise UsageError(f"--min-lr {min_lr:g} / --max-lr {max_lr:g}: expected 0 < min-lr < max-lr.")
    if steps < 2:
        raise UsageError(f"--steps {steps}: expected at least 2 steps (100 is the usual sweep).")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected a positive number of images.")
    start = time.perf_counter()
    before = weights_snapshot(loaded.model)
    model = copy_model(loaded)
    optimizer, opt_name, opt_source, settings = build_optimizer(loaded, min_lr)
    model.compile(optimizer=optimizer, loss=loss)
    try:  # its variables now, not inside the first traced step (which TensorFlow would then trace twice)
        optimizer.build(model.trainable_variables)
    except Exception as exc:
        log.info("optimizer.build failed (%s); the first step builds it", exc)
    trainable_params = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    from segdoctor.io.model import import_keras

    fn = import_keras().losses.get(loss) if isinstance(loss, str) else loss
    lrs = sweep_learning_rates(min_lr, max_lr, steps)
    rule = StopRule()
    rng = np.random.default_rng(seed)
    n = batches.x.shape[0]
    # the probe samples are held out of the sweep's training batches: a network can memorise even random masks
    held = min(max(CONTENT_SAMPLES, batch_size), n // 3)
    probe = np.arange(n - held, n) if held >= 2 else np.arange(0)
    trained_on = n - held if held >= 2 else n
    partner = _shuffle_partner(batches, probe)
    callable_loss = callable(fn) and not isinstance(fn, (dict, list, tuple))
    probing = partner is not None and callable_loss
    forward = training_forward(model) if probing else None
    content_start = content_losses(forward, fn, batches, probe, partner, batch_size) if probing else None
    probing = probing and content_start is not None
    if not probing:
        trained_on = n
    probe_every = max(1, int(round(len(lrs) / CONTENT_PROBES)))
    curve: list[tuple[float, float, float]] = []
    moved = False
    order = rng.permutation(trained_on)
    cursor = 0
    losses: list[float] = []
    reason = f"reached --max-lr {max_lr:g}"
    stopped = False
    for i, lr in enumerate(lrs):
        if cursor + batch_size > trained_on:
            order = rng.permutation(trained_on)
            cursor = 0
        idx = order[cursor: cursor + batch_size] if trained_on >= batch_size else order
        cursor += batch_size
        optimizer.learning_rate = float(lr)
        try:
            logs = model.train_on_batch(batches.x[idx], batches.y[idx], return_dict=True)
        except Exception as exc:
            raise SegDoctorError(
                f"{spec.name}: training a copy failed on a batch of shape {batches.x[idx].shape} with targets {batches.y[idx].shape} "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}); expected inputs and "
                "targets the model and its loss accept: check --preprocess, --num-classes and --loss.") from None
        value = float(np.asarray(logs.get("loss", next(iter(logs.values())))))
        losses.append(value)
        why = rule.update(value)
        if not moved and rule.first is not None and math.isfinite(rule.smoothed[-1]):
            moved = abs(rule.smoothed[-1] - rule.first) > PROBE_AFTER_MOVE * max(abs(rule.first), 1e-12)
        if probing and ((i + 1) % probe_every == 0 or why) and (moved or why):
            measured = content_losses(forward, fn, batches, probe, partner, batch_size)
            if measured is not None:
                curve.append((float(lr), *measured))
        if progress:
            progress(i + 1, len(lrs), "lr-find")
        if why:
            reason, stopped = why, True
            break
    if stopped and progress:
        progress(len(lrs), len(lrs), "lr-find")  # close the bar
    constant = constant_prediction_loss(loss, batches, spec.out_channels or 1)
    unchanged = same_weights(before, weights_snapshot(loaded.model))
    if not unchanged:  # cannot happen with a copy; if it ever does, put the user's weights back
        loaded.model.set_weights(before)
        log.warning("the model's weights changed during lr-find and were restored")
    del model
    return Sweep(
        learning_rates=lrs[: len(losses)], losses=np.array(losses), running=np.array(rule.smoothed),
        stop_reason=reason, stopped_early=rule.blew_up, steps_planned=len(lrs), batch_size=batch_size,
        min_lr=float(min_lr), max_lr=float(max_lr), optimizer=opt_name, optimizer_source=opt_source,
        optimizer_settings=settings, loss=loss_name, loss_source=loss_source, loss_family=family,
        trainable_params=trainable_params, target_format=batches.target_format,
        constant_loss=constant, content_start=content_start, content_curve=curve, n_samples=n, n_pairs=batches.n_pairs, input_shape=tuple(batches.x.shape[1:]),
        seconds=time.perf_counter() - start, weights_unchanged=unchanged,
    )
