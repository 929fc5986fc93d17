"""``segdoctor lr-find MODEL --data DIR``: a learning-rate range test on a copy of the model (SD451).

Also the library entry points ``lr_find`` (a model file or an in-memory Keras model in, a Report out) and
``measure_lr_range`` (used by ``check-model --lr-find``).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from segdoctor.errors import UsageError
from segdoctor.findings import Section
from segdoctor.report.model import Report

log = logging.getLogger(__name__)

NAME = "lr-find"
HELP = "learning-rate range test: train a copy of the model with a growing LR and measure the range that works (SD451)"
DESCRIPTION = """\
Measure the learning rate for a Keras model on your data (Smith 2017, as fastai's lr_find): a copy of
the model, with its compiled loss and a fresh optimizer of the saved type, trains one batch per step
while the learning rate grows exponentially, until the loss blows up. The report gives the LR where the
loss falls fastest, where it blows up, where the model's own LR sits, Keras code for a constant LR and a
warm-up + cosine schedule, and the plot. Your model file and weights are never changed.

A model saved without compile information needs --loss (binary_crossentropy, categorical_crossentropy,
sparse_categorical_crossentropy or dice).

examples:
  segdoctor lr-find unet.keras --data data/
  segdoctor lr-find unet.keras --data data/ --batch-size 16 --steps 200 --json lr.json
  segdoctor lr-find encoder_only.keras --data data/ --loss binary_crossentropy
"""

PROGRESS = Callable[[int, int, str], None]

#: default sweep: 100 steps from 1e-7 to 10 (fastai's defaults), batches of 8
DEFAULT_STEPS = 100
DEFAULT_MIN_LR = 1e-7
DEFAULT_MAX_LR = 10.0


def add_sweep_arguments(g: Any) -> None:
    """Sweep options shared by lr-find and check-model --lr-find."""
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                   help=f"at most N training batches, one per learning rate (default {DEFAULT_STEPS}); bounds the work")
    g.add_argument("--min-lr", type=float, default=DEFAULT_MIN_LR, metavar="LR", help=f"first learning rate (default {DEFAULT_MIN_LR:g})")
    g.add_argument("--max-lr", type=float, default=DEFAULT_MAX_LR, metavar="LR", help=f"last learning rate (default {DEFAULT_MAX_LR:g})")
    g.add_argument("--loss", metavar="NAME",
                   help="loss for a model saved without compile information: binary_crossentropy, categorical_crossentropy, "
                        "sparse_categorical_crossentropy, dice, or a function from --custom-objects")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from segdoctor.commands.data import add_dataset_arguments
    from segdoctor.io.inference import PREPROCESS_MODES

    p.add_argument("model", metavar="MODEL", help="the model file (.keras, or legacy .h5)")
    p.add_argument("--data", metavar="DIR", required=True, help="the dataset (image/mask pairs) to train the copy on")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="images per training step (default 8)")
    add_sweep_arguments(p)
    p.add_argument("--preprocess", choices=PREPROCESS_MODES, default="auto",
                   help="input scaling, as in check-model (default auto: from the model and the image type)")
    p.add_argument("--custom-objects", action="append", default=[], metavar="FILE.py",
                   help="a Python file defining the model's custom losses, metrics or layers (repeatable)")
    p.add_argument("--history", metavar="FILE", help="also place the learning rates of this training log (its LR column) on the range")
    p.add_argument("--unsafe", action="store_true",
                   help="load with safe_mode=False (runs Python code stored in the file); only for files you trust")
    add_dataset_arguments(p.add_argument_group("dataset layout (as in check-data)"))


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads (the CLI refuses an output path that is, or lies inside, one of them)."""
    from segdoctor.io.model import custom_objects_file

    return [("MODEL", args.model), ("--data", args.data), ("--history", args.history),
            *(("--custom-objects", custom_objects_file(p)) for p in args.custom_objects)]


def run(args: argparse.Namespace, progress: PROGRESS | None = None) -> Report:
    from segdoctor.registry import split_patterns

    return lr_find(
        args.model, data=args.data, batch_size=args.batch_size, steps=args.steps, min_lr=args.min_lr, max_lr=args.max_lr,
        preprocess=args.preprocess, custom_objects=args.custom_objects or (), loss=args.loss, history=args.history,
        unsafe=args.unsafe, images=args.images, masks=args.masks, mask_pattern=args.mask_pattern, num_classes=args.num_classes,
        select=split_patterns(args.select), ignore=split_patterns(args.ignore), progress=progress,
    )


def validate_sweep(*, steps: int, min_lr: float, max_lr: float, batch_size: int) -> None:
    """Refuse impossible sweep options before anything slow runs."""
    if steps < 2:
        raise UsageError(f"--steps {steps}: expected at least 2 steps (100 is the usual sweep).")
    if not (math.isfinite(min_lr) and math.isfinite(max_lr) and 0 < min_lr < max_lr):
        raise UsageError(f"--min-lr {min_lr:g} --max-lr {max_lr:g}: expected 0 < min-lr < max-lr (default 1e-7 to 10).")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected a positive number of images.")


def history_learning_rates(history: Any) -> tuple[float, ...]:
    """The finite values of a training log's learning-rate column (empty without one)."""
    import numpy as np

    from segdoctor.stats import curves

    for name in history.columns:
        if curves.column_role(name).kind == curves.LR:
            values = np.asarray(history.columns[name], dtype=np.float64)
            return tuple(float(v) for v in values[np.isfinite(values) & (values > 0)])
    return ()


def measure_lr_range(loaded: Any, spec: Any, pairs: Sequence[Any], *, preprocess: str, batch_size: int = 8,
                     steps: int = DEFAULT_STEPS, min_lr: float = DEFAULT_MIN_LR, max_lr: float = DEFAULT_MAX_LR,
                     loss: str | None = None, num_classes: int | None = None, history_lrs: Sequence[float] = (),
                     progress: PROGRESS | None = None) -> Any:
    """Run the range test on ``pairs`` and read it: an ``LRFindResult`` for SD451 and the history checks."""
    from segdoctor.checks.lr_range import LRFindResult
    from segdoctor.io.lr_sweep import prepare_batches, resolve_loss, run_sweep
    from segdoctor.stats.lr_range import analyse_range

    validate_sweep(steps=steps, min_lr=min_lr, max_lr=max_lr, batch_size=batch_size)
    loss_obj, loss_name, family = resolve_loss(loaded, spec, loss)
    batches = prepare_batches(loaded.model, spec, pairs, preprocess=preprocess, family=family, batch_size=batch_size,
                              samples_wanted=steps * batch_size, num_classes=num_classes, progress=progress)
    sweep = run_sweep(loaded, spec, batches, loss=loss_obj, loss_name=loss_name, family=family,
                      loss_source="--loss" if loss else "compiled", min_lr=min_lr, max_lr=max_lr, steps=steps,
                      batch_size=batch_size, progress=progress)
    result = analyse_range(sweep.learning_rates, sweep.losses, constant_loss=sweep.constant_loss,
                           stopped_early=sweep.stopped_early, content_start=sweep.content_start,
                           content_curve=sweep.content_curve)
    notes = []
    if batches.resized_from is not None:
        notes.append(f"images were resized from e.g. {batches.resized_from[0]}x{batches.resized_from[1]} to "
                     f"{sweep.input_shape[0]}x{sweep.input_shape[1]} for the sweep")
    if batches.n_unreadable:
        notes.append(f"{batches.n_unreadable} pair(s) could not be read and were skipped")
    return LRFindResult(sweep=sweep, range=result, history_lrs=tuple(history_lrs), notes=notes)


def lr_range_section(result: Any, preprocess: str, reason: str = "") -> Section:
    """The overview of the sweep: what ran, on what, and how it ended."""
    sweep, r = result.sweep, result.range
    facts: list[tuple[str, Any]] = [
        ("steps run", f"{len(sweep.losses)} of {sweep.steps_planned}"),
        ("learning rates swept", f"{sweep.min_lr:.2g} to {sweep.learning_rates[-1]:.2g}" if len(sweep.learning_rates) else "none"),
        ("stopped because", sweep.stop_reason),
        ("batch size", sweep.batch_size),
        ("samples in memory", f"{sweep.n_samples} of {sweep.n_pairs} pairs"),
        ("input shape", str(sweep.input_shape)),
        ("preprocessing", preprocess + (f" ({reason})" if reason else "")),
        ("optimizer", f"{sweep.optimizer} ({sweep.optimizer_source})"),
        ("loss", f"{sweep.loss} ({'from --loss' if sweep.loss_source == '--loss' else 'compiled with the model'})"),
        ("loss at the start / lowest", f"{r.start_loss:.4g} / {r.min_loss:.4g} (at LR {r.min_lr:.2g})"),
        ("loss of the best constant prediction", "unknown" if r.constant_loss is None else f"{r.constant_loss:.4g}"),
        ("verdict", {"falls": "the loss falls", "trained": "the model already fits the data",
                     "never-falls": "the loss never falls below a constant prediction"}[r.state]),
        ("seconds", round(sweep.seconds, 1)),
        ("your model's weights", "unchanged (checked)" if sweep.weights_unchanged else "changed and restored"),
    ]
    if result.suggestion is not None:
        facts.insert(0, ("suggested learning rate", f"{result.suggestion:g}"))
    text = (f"A copy of the model trained one batch per step while the learning rate grew from {sweep.min_lr:.2g} to at most "
            f"{sweep.max_lr:.2g}; " + result.describe() + ".")
    if result.notes:
        text += " " + "; ".join(n[0].upper() + n[1:] for n in result.notes) + "."
    return Section(title="Learning-rate range test", text=text, facts=tuple(facts))


def _as_loaded(model: Any, *, custom_objects: Sequence[str | Path], unsafe: bool) -> tuple[Any, str]:
    """A ``LoadedModel`` for a path, or for an in-memory Keras model (which is never modified)."""
    from segdoctor.io.model import LoadedModel, load_custom_objects, load_model

    if isinstance(model, (str, Path)):
        objects = load_custom_objects(list(custom_objects))
        return load_model(model, custom_objects=objects, unsafe=unsafe), str(model)
    if not hasattr(model, "layers") or not hasattr(model, "get_weights"):
        raise UsageError(f"model: got a {type(model).__name__}; expected a path to a .keras/.h5 file or a Keras model.")
    compiled = bool(getattr(model, "compiled", False)) and getattr(model, "loss", None) is not None
    config = None
    if compiled:
        try:
            config = model.get_compile_config()
        except Exception:
            config = None
    objects = load_custom_objects(list(custom_objects)) if custom_objects else {}
    loaded = LoadedModel(model=model, path=Path(f"<in-memory model {model.name}>"), format="memory",
                         compile_config=config, compiled=compiled, custom_objects=objects)
    return loaded, f"in-memory model {model.name}"


def lr_find(
    model: Any,
    *,
    data: str | Path,
    batch_size: int = 8,
    steps: int = DEFAULT_STEPS,
    min_lr: float = DEFAULT_MIN_LR,
    max_lr: float = DEFAULT_MAX_LR,
    preprocess: str = "auto",
    custom_objects: Sequence[str | Path] = (),
    loss: str | None = None,
    history: str | Path | None = None,
    unsafe: bool = False,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
    num_classes: int | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    progress: PROGRESS | None = None,
) -> Report:
    """Run the learning-rate range test for ``model`` (a file path, or an in-memory Keras model) on ``data``.

    The model is copied; neither the object nor the file changes. Returns a Report with SD451 and the sweep.
    """
    from segdoctor.checks.model import ModelContext
    from segdoctor.commands.model import _choose_preprocess, discover_pairs
    from segdoctor.io.inference import PREPROCESS_MODES
    from segdoctor.io.model_spec import describe_model
    from segdoctor.registry import select_checks
    from segdoctor.runner import run_checks

    validate_sweep(steps=steps, min_lr=min_lr, max_lr=max_lr, batch_size=batch_size)
    if preprocess not in PREPROCESS_MODES:
        raise UsageError(f"--preprocess {preprocess}: expected one of {', '.join(PREPROCESS_MODES)}.")
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"--num-classes {num_classes}: expected the number of classes including background (2 for binary).")
    chosen = [c for c in select_checks(("model",), select, ignore) if c.code == "SD451"]
    if select and not chosen:
        raise UsageError(f"--select {', '.join(select)}: lr-find runs only SD451 learning-rate-range (see segdoctor check-model for the others).")
    history_lrs: tuple[float, ...] = ()
    if history is not None:
        from segdoctor.io.history import read_history

        if not Path(history).expanduser().exists():
            raise UsageError(f"--history {history}: no such file or folder; expected a History JSON, a CSVLogger CSV or a TensorBoard log folder.")
        history_lrs = history_learning_rates(read_history(history))
    loaded, target = _as_loaded(model, custom_objects=custom_objects, unsafe=unsafe)
    spec = describe_model(loaded)
    from segdoctor.io.lr_sweep import resolve_loss

    resolve_loss(loaded, spec, loss)  # a model without compile information fails here, before the data is read
    pairs, n_all = discover_pairs(data, images=images, masks=masks, mask_pattern=mask_pattern)
    mode, reason = _choose_preprocess(preprocess, spec, pairs)
    result = measure_lr_range(loaded, spec, pairs, preprocess=mode, batch_size=batch_size, steps=steps, min_lr=min_lr,
                              max_lr=max_lr, loss=loss, num_classes=num_classes, history_lrs=history_lrs, progress=progress)
    report = Report(command=NAME, target=target)
    report.notes.extend(loaded.notes)
    if history is not None and not history_lrs:
        report.notes.append(f"--history {history}: the log has no learning-rate column; only the saved optimizer's LR was compared.")
    ctx = ModelContext(loaded=loaded, spec=spec, lr_range=result)
    findings, statuses = run_checks(chosen, {"model": ctx})
    report.add(findings, statuses)
    report.sections.append(lr_range_section(result, mode, reason))
    report.facts.update({"model": Path(str(loaded.path)).name, "pairs_found": n_all, "state": result.range.state,
                         "steps_run": int(len(result.sweep.losses)), "suggested_lr": result.suggestion,
                         "saved_lr": spec.learning_rate})
    return report
