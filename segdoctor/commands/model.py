"""``segdoctor check-model``: static checks on a Keras model file, and with ``--data`` its predictions on a dataset.

With ``--data`` the dataset checks run on the same data and their findings join the report, so a blank
prediction (SD501) sits next to the 0/255 masks or the imbalance (SD101, SD151) that explain it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.errors import DatasetError, UsageError
from segdoctor.findings import Figure, Finding, Section, Table
from segdoctor.report.model import Report

log = logging.getLogger(__name__)

NAME = "check-model"
HELP = "check a Keras model: head/loss compatibility, custom loss probes, and (with --data) its predictions"
DESCRIPTION = """\
Check a saved Keras model (.keras, or legacy .h5) for head/loss mismatches, broken weights and
defective custom Dice/IoU functions; with --data, run it on the dataset and diagnose blank
predictions, Dice collapse, threshold calibration and input scaling.

Loading uses Keras safe mode: a model holding Python code (Lambda layers) is refused unless you
pass --unsafe for a file you trust. Custom losses, metrics and layers load from --custom-objects.

examples:
  segdoctor check-model unet.keras
  segdoctor check-model unet.keras --data data/ --custom-objects losses.py
  segdoctor check-model unet.keras --custom-objects losses.py:make_loss
  segdoctor check-model unet.keras --data data/ --preprocess unit --threshold 0.5 --json report.json
"""

#: images scored under every input scaling to choose (auto) or question (SD507) the preprocessing
PROBE_IMAGES = 16
PROGRESS = Callable[[int, int, str], None]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from segdoctor.io.inference import PREPROCESS_MODES

    p.add_argument("model", metavar="MODEL", help="the model file (.keras, or legacy .h5)")
    p.add_argument("--data", metavar="DIR", help="run the model on this dataset (image/mask pairs) and check the predictions")
    p.add_argument("--history", metavar="FILE", help="also check the training log (History JSON, CSVLogger CSV, TensorBoard dir)")
    p.add_argument("--custom-objects", action="append", default=[], metavar="FILE.py[:FACTORY]",
                   help="a Python file defining the model's custom losses, metrics or layers (repeatable); it is imported "
                        "and its definitions registered, nothing in it is called except FACTORY, a loss/metric factory "
                        "you name (losses.py:make_loss), and factories named like one (make_dice_loss(smooth=1))")
    p.add_argument("--preprocess", choices=PREPROCESS_MODES, default="auto",
                   help="input scaling: none (raw), unit (/type max), symmetric ([-1,1]), standardize (per image); "
                        "auto decides from the model and the data (default)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T", help="foreground probability threshold (default 0.5)")
    p.add_argument("--sample", type=int, metavar="N", help="evaluate a seeded random sample of N pairs")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="inference batch size (default 8)")
    p.add_argument("--unsafe", action="store_true",
                   help="load with safe_mode=False (runs Python code stored in the file, e.g. Lambda layers); only for files you trust")
    from segdoctor.commands.data import add_dataset_arguments
    from segdoctor.commands.lrfind import add_sweep_arguments

    add_dataset_arguments(p.add_argument_group("dataset layout (with --data, as in check-data)"))
    lr = p.add_argument_group("learning-rate range test (with --data)")
    lr.add_argument("--lr-find", action="store_true", help="also run the learning-rate range test on a copy of the model (SD451)")
    add_sweep_arguments(lr)


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads (the CLI refuses an output path that is, or lies inside, one of them)."""
    from segdoctor.io.model import custom_objects_file

    return [("MODEL", args.model), ("--data", args.data), ("--history", args.history),
            *(("--custom-objects", custom_objects_file(p)) for p in args.custom_objects)]


def run(args: argparse.Namespace, progress: PROGRESS | None = None) -> Report:
    from segdoctor.registry import split_patterns

    return check_model(
        args.model,
        data=args.data,
        history=args.history,
        custom_objects=args.custom_objects or (),
        preprocess=args.preprocess,
        threshold=args.threshold,
        sample=args.sample,
        batch_size=args.batch_size,
        unsafe=args.unsafe,
        images=args.images,
        masks=args.masks,
        mask_pattern=args.mask_pattern,
        num_classes=args.num_classes,
        select=split_patterns(args.select),
        ignore=split_patterns(args.ignore),
        progress=progress,
        lr_find=args.lr_find,
        lr_steps=args.steps,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        loss=args.loss,
    )


def discover_pairs(root: str | Path, *, images: str | None = None, masks: str | None = None,
                   mask_pattern: str | None = None, sample: int | None = None) -> tuple[list[Any], int]:
    """Image/mask pairs under ``root`` found as check-data finds them (and the same seeded sample); also the total."""
    from segdoctor.io.dataset import discover_dataset, sample_dataset

    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data {root}: no such folder; expected a dataset folder with images and masks.")
    ds = discover_dataset(root, images=images, masks=masks, mask_pattern=mask_pattern)
    total = len(ds.pairs)
    if sample:
        ds = sample_dataset(ds, sample)
    pairs = [p for p in ds.pairs if p.image is not None and p.mask is not None]
    if not pairs:
        raise DatasetError(f"{root}: no image/mask pairs found; expected images with masks of the same stem (see segdoctor check-data).")
    return pairs, total


def _data_num_classes(values: set[int], declared: int | None) -> tuple[int | None, tuple[int, ...]]:
    ids = tuple(sorted(values))
    if declared:
        return declared, ids
    if not ids:
        return None, ids
    if set(ids) <= {0, 1} or set(ids) <= {0, 255} or len(ids) <= 2:
        return 2, ids
    core = [v for v in ids if v != 255]  # 255 is the usual void/ignore label
    if core and max(core) < 256 and len(core) <= 64:
        return max(core) + 1, ids
    return None, ids


def _choose_preprocess(mode: str, spec: Any, pairs: Sequence[Any]) -> tuple[str, str]:
    """The scaling to use and why. Auto: none when the model rescales its own input, else from the image type."""
    if mode != "auto":
        return mode, "chosen with --preprocess"
    if spec.input_scaling:
        return "none", f"the model starts with {spec.input_scaling}, so it takes raw pixel values"
    from segdoctor.io.readers import UnreadableFile, read_file

    for pair in pairs[:4]:
        try:
            a = read_file(pair.image).array
        except (UnreadableFile, OSError):
            continue
        if a.dtype.kind in "ui":
            return "unit", f"{a.dtype} images and no Rescaling layer in the model: divided by {int(np.iinfo(a.dtype).max)}"
        if float(np.nanmin(a)) >= 0 and float(np.nanmax(a)) <= 1:
            return "none", "float images already in [0, 1]"
        return "standardize", "float images outside [0, 1]: standardised per image"
    return "unit", "default"


def _score_candidates(model: Any, spec: Any, pairs: Sequence[Any], *, threshold: float, batch_size: int,
                      num_classes: int | None) -> dict[str, float]:
    from segdoctor.io.inference import CANDIDATE_MODES, run_inference

    out = {}
    subset = list(pairs[:PROBE_IMAGES])
    for mode in CANDIDATE_MODES:
        res = run_inference(model, spec, subset, preprocess=mode, threshold=threshold, batch_size=batch_size,
                            num_classes=num_classes, keep_worst=0)
        a = res.binary.arrays()
        has = a["true_fg"] > 0
        out[mode] = float(a["dice"][has].mean()) if has.any() else float("nan")
    return out


def check_model(
    path: str | Path,
    *,
    data: str | Path | None = None,
    history: str | Path | None = None,
    custom_objects: Sequence[str | Path] = (),
    preprocess: str = "auto",
    threshold: float = 0.5,
    sample: int | None = None,
    batch_size: int = 8,
    unsafe: bool = False,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
    num_classes: int | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    progress: PROGRESS | None = None,
    lr_find: bool = False,
    lr_steps: int = 100,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    loss: str | None = None,
) -> Report:
    """Check a saved Keras model; with ``data``, also its predictions and the dataset itself. Returns the report.

    ``lr_find`` (needs ``data``) also runs the learning-rate range test (SD451) with ``lr_steps`` batches from
    ``min_lr`` to ``max_lr``; ``loss`` names the loss for a model saved without one."""
    from segdoctor.checks.model import ModelContext
    from segdoctor.checks.predictions import PredictionContext
    from segdoctor.commands.data import check_data
    from segdoctor.io.inference import PREPROCESS_MODES, evaluate_function, run_inference
    from segdoctor.io.model import custom_functions, load_custom_objects, load_model
    from segdoctor.io.model_graph import read_model_graph
    from segdoctor.io.model_spec import describe_model
    from segdoctor.progress import resolve_progress
    from segdoctor.registry import select_checks
    from segdoctor.runner import run_checks

    progress = resolve_progress(progress)
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"--threshold {threshold}: expected a probability strictly between 0 and 1.")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected a positive number of images.")
    if sample is not None and sample < 1:
        raise UsageError(f"--sample {sample}: expected a positive number of pairs.")
    from segdoctor.commands.data import num_classes_option

    num_classes = num_classes_option(num_classes)
    if preprocess not in PREPROCESS_MODES:
        raise UsageError(f"--preprocess {preprocess}: expected one of {', '.join(PREPROCESS_MODES)}.")
    if lr_find:
        from segdoctor.commands.lrfind import validate_sweep

        if data is None:
            raise UsageError("--lr-find: the range test trains a copy of the model on data; add --data DIR.")
        validate_sweep(steps=lr_steps, min_lr=min_lr, max_lr=max_lr, batch_size=batch_size)
    history_module = _history_module() if history is not None else None
    if history is not None and not Path(history).expanduser().exists():  # fail before the slow part, not after it
        raise UsageError(f"--history {history}: no such file or folder; expected a History JSON, a CSVLogger CSV or a TensorBoard log folder.")
    # an unreadable log (empty, binary, ragged) fails here too, not after the model and the data have run
    history_log = history_module.read_history(history) if history_module is not None else None
    # one selection over every scope this run covers: `--select SD501` must not fail for selecting no data check
    scopes = ["model", "predictions", *(["data"] if data is not None else []), *(["history"] if history is not None else [])]
    chosen = select_checks(scopes, select, ignore)
    model_checks = [c for c in chosen if c.scope == "model"]
    prediction_checks = [c for c in chosen if c.scope == "predictions"]
    run_data_checks = any(c.scope == "data" for c in chosen)
    run_history_checks = any(c.scope == "history" for c in chosen)

    if custom_objects:
        from segdoctor.io.model import import_keras

        import_keras()  # the user's file imports keras itself: import it first, quietly
    objects = load_custom_objects(list(custom_objects))
    loaded = load_model(path, custom_objects=objects, unsafe=unsafe)
    spec = describe_model(loaded)
    run_lr_find = lr_find and any(c.code == "SD451" for c in model_checks)
    if run_lr_find:
        from segdoctor.io.lr_sweep import resolve_loss

        resolve_loss(loaded, spec, loss)  # a model saved without compile information fails here, before the slow part
    report = Report(command=NAME, target=str(path))
    report.inputs.update({"model": str(path), **({"data": str(data)} if data is not None else {}),
                          **({"history": str(history)} if history is not None else {})})
    report.notes.extend(loaded.notes)
    report.facts.update({"model": Path(path).name, "output_shape": str(spec.output_shape), "head": spec.head_activation})
    if len(spec.output_keys) > 1:
        loss = spec.loss.name if spec.loss is not None else "no loss"
        report.notes.append(f"The model has {len(spec.output_keys)} outputs ({', '.join(repr(k) for k in spec.output_keys)}); "
                            f"the checks analyse {spec.output_key!r}, {spec.output_reason}, with its own loss ({loss}).")
        report.facts["output_analysed"] = spec.output_key
    # the compile config, as the diagnosis reads it (plain cross-entropy or an overlap loss; the learning rate)
    if spec.loss is not None:
        report.facts.update({"loss": spec.loss.name, "loss_family": spec.loss.family})
    if spec.optimizer:
        report.facts["optimizer"] = str(spec.optimizer)
    if spec.learning_rate is not None:
        report.facts["learning_rate"] = float(spec.learning_rate)

    data_findings: list[Finding] = []
    data_report: Report | None = None
    pairs: list[Any] = []
    if data is not None:
        pairs, n_all = discover_pairs(data, images=images, masks=masks, mask_pattern=mask_pattern, sample=sample)
        report.facts.update({"pairs_found": n_all, "pairs_evaluated": len(pairs)})
        if run_data_checks:
            # the dataset checks on the same data: a model failure is often a data defect (0/255 masks, imbalance)
            data_report = check_data(data, images=images, masks=masks, mask_pattern=mask_pattern, num_classes=num_classes,
                                     select=select, ignore=ignore, sample=sample, progress=progress)
            data_findings = list(data_report.findings)
            report.add(data_report.findings, data_report.checks)
            report.sections.extend(data_report.sections)
            report.notes.extend(data_report.notes)
            if "background_share" in data_report.facts:
                report.facts["background_share"] = data_report.facts["background_share"]

    result = None
    candidate: dict[str, float] = {}
    mode_used, reason = preprocess, ""
    # SD403 compares the head with the class ids the inference pass collects; nothing else needs predictions
    if pairs and (prediction_checks or any(c.code == "SD403" for c in model_checks)):
        mode_used, reason = _choose_preprocess(preprocess, spec, pairs)
        if preprocess != "auto" or not spec.input_scaling:
            candidate = _score_candidates(loaded.model, spec, pairs, threshold=threshold, batch_size=batch_size, num_classes=num_classes)
            if preprocess == "auto":
                best = max((m for m in candidate if np.isfinite(candidate[m])), key=lambda m: candidate[m], default=None)
                cur = candidate.get(mode_used, float("nan"))
                if best and best != mode_used and np.isfinite(cur) and candidate[best] >= cur + 0.1 and candidate[best] >= 1.5 * cur:
                    reason = (f"'{mode_used}' was the default guess ({reason}), but '{best}' scores mean Dice {candidate[best]:.3f} "
                              f"against {cur:.3f} on {min(PROBE_IMAGES, len(pairs))} images, so '{best}' was used")
                    mode_used = best
        log.info("input scaling '%s': %s", mode_used, reason)
        result = run_inference(loaded.model, spec, pairs, preprocess=mode_used, threshold=threshold, batch_size=batch_size,
                               num_classes=num_classes, progress=progress)
        if len(result.binary) == 0:
            raise DatasetError(f"{data}: none of the {len(pairs)} pairs could be read; expected image and mask files (see segdoctor check-data).")
    mode_gap = None
    if result is not None and any(c.code == "SD509" for c in prediction_checks):
        from segdoctor.io.mode_gap import measure_mode_gap

        mode_gap = measure_mode_gap(loaded, spec, pairs, preprocess=mode_used, threshold=threshold, batch_size=batch_size,
                                    num_classes=num_classes)
    lr_range = None
    if run_lr_find:
        from segdoctor.commands.lrfind import history_learning_rates, lr_range_section, measure_lr_range

        if result is None:  # no prediction check selected: choose the input scaling as the inference pass would
            mode_used, reason = _choose_preprocess(preprocess, spec, pairs)
        lr_range = measure_lr_range(loaded, spec, pairs, preprocess=mode_used, batch_size=batch_size, steps=lr_steps,
                                    min_lr=min_lr, max_lr=max_lr, loss=loss, num_classes=num_classes,
                                    history_lrs=history_learning_rates(history_log) if history_log is not None else (),
                                    progress=progress)
        report.sections.append(lr_range_section(lr_range, mode_used, reason))

    k, ids = _data_num_classes(result.mask_values if result else set(), num_classes)
    mctx = ModelContext(
        loaded=loaded, spec=spec, functions=custom_functions(loaded),
        data_num_classes=k if (result is not None or num_classes) else None, data_class_ids=ids,
        data_num_classes_declared=bool(num_classes), data_mask_channels=result.mask_channels if result else None,
        evaluate=evaluate_function, lr_range=lr_range, graph=read_model_graph(loaded),
    )
    model_findings, statuses = run_checks(model_checks, {"model": mctx})
    report.add(model_findings, statuses)

    if result is not None:
        pctx = PredictionContext(spec=spec, result=result, threshold=threshold, preprocess=mode_used,
                                 preprocess_fixed=preprocess != "auto", candidate_dice=candidate,
                                 other_findings=[*model_findings, *data_findings],
                                 data_root=str(Path(data).expanduser()), mode_gap=mode_gap)
        pred_findings, pstatuses = run_checks(prediction_checks, {"predictions": pctx})
        report.add(pred_findings, pstatuses)
        report.facts.update({"mean_dice": round(pctx.mean_dice, 4), "preprocess": mode_used})
        report.sections.insert(0, _predictions_section(pctx, reason, candidate))
    else:
        report.add([], [_skipped(c) for c in prediction_checks])
    report.sections.insert(0, _model_section(loaded, spec))

    if history_module is not None and run_history_checks:
        share = history_module.background_share_from(data_report) if data_report is not None else None
        diagnosis = history_module.diagnose_history(history_log, background_share=share, data_findings=data_findings,
                                                    select=select, ignore=ignore, lr_range=lr_range)
        report.add(diagnosis.findings, diagnosis.checks)
        report.sections.extend(diagnosis.sections)
        report.facts.update(history_module.history_facts(history_log))
    return report


def _skipped(cls: Any) -> Any:
    from segdoctor.runner import CheckStatus

    return CheckStatus(cls.code, cls.name, "skipped", 0.0, "needs --data")


def _history_module() -> Any:
    try:
        from segdoctor.commands import history as module
    except ImportError:
        raise UsageError("--history: the training-log checks (segdoctor.commands.history) are not part of this installation; "
                         "run check-model without --history.") from None
    return module


# --- report sections ------------------------------------------------------------------------------

def _model_section(loaded: Any, spec: Any) -> Section:
    loss = spec.loss
    facts: list[tuple[str, Any]] = [
        ("file", str(loaded.path)),
        ("format", ".keras" if loaded.format == "keras" else "legacy .h5"),
        ("input shape", str(spec.input_shape)),
        ("output shape", str(spec.output_shape)),
        ("head activation", f"{spec.head_activation} (layer '{spec.head_layer}')"),
        ("loss", "not compiled" if loss is None else f"{loss.name}" + ("" if loss.from_logits is None else f" (from_logits={loss.from_logits})")),
        ("metrics", ", ".join(spec.metric_names) or "none"),
        ("optimizer", spec.optimizer or "none saved"),
        ("learning rate", "unknown" if spec.learning_rate is None else f"{spec.learning_rate:g}" + (f" ({spec.lr_schedule})" if spec.lr_schedule else "")),
        ("input scaling inside the model", spec.input_scaling or "none"),
        ("parameters", spec.n_params),
        ("layers", spec.n_layers),
        ("compile state restored", loaded.compiled),
    ]
    if loaded.custom_objects:
        facts.append(("custom objects loaded", ", ".join(sorted(loaded.custom_objects))))
    if loaded.missing_objects:
        facts.append(("custom objects missing", ", ".join(loaded.missing_objects)))
    return Section(title="Model", text=f"{spec.name}: {spec.n_params:,} parameters.", facts=tuple(facts))


def _rebin(hist: np.ndarray, bins: int = 50) -> np.ndarray:
    """Fold counts on the logit-spaced threshold grid into equal-width probability bins (by bin centre)."""
    from segdoctor.stats.segmentation_metrics import THRESHOLDS

    edges = np.concatenate(([0.0], THRESHOLDS, [1.0]))
    centres = (edges[:-1] + edges[1:]) / 2
    idx = np.minimum((centres * bins).astype(int), bins - 1)
    return np.bincount(idx, weights=hist, minlength=bins)


def _overlay(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """True positives green, false positives red, missed foreground blue, on black."""
    out = np.zeros((*truth.shape, 3), np.uint8)
    out[truth & pred] = (60, 180, 75)
    out[~truth & pred] = (230, 25, 75)
    out[truth & ~pred] = (0, 130, 200)
    return out


def _predictions_section(ctx: Any, reason: str, candidate: dict[str, float]) -> Section:
    from segdoctor.io.inference import type_max
    from segdoctor.stats.segmentation_metrics import THRESHOLDS, best_threshold

    a, res = ctx.a, ctx.result
    has = ctx.has_fg
    t_best, d_best = best_threshold(ctx.curve) if has.any() else (float("nan"), float("nan"))
    d_rank = float(a["rank_dice"][has].mean()) if has.any() else float("nan")
    text = [f"{ctx.n} image(s) evaluated with preprocessing '{ctx.preprocess}' ({reason}) at threshold {ctx.threshold:g}."]
    if res.n_resized:
        h, w = ctx.spec.input_size
        text.append(f"{res.n_resized} image(s) were resized from e.g. {res.resized_from[0]}x{res.resized_from[1]} to the model's input "
                    f"{h}x{w} (images bilinear, masks nearest-neighbour); metrics are computed at {h}x{w}.")
    if res.n_padded:
        text.append(f"{res.n_padded} image(s) were padded (edge values) to a multiple of the model's total stride and the output cropped back.")
    if res.output_resized:
        text.append(f"{res.output_resized} output map(s) did not match the input size and were resized bilinearly to the mask.")
    if res.squashed_with:
        text.append(f"The head is unbounded ({ctx.spec.head_activation}); probabilities were obtained by {res.squashed_with}.")
    if res.n_unreadable:
        text.append(f"{res.n_unreadable} pair(s) could not be read and were skipped.")
    facts: list[tuple[str, Any]] = [
        (f"mean Dice at {ctx.threshold:g}", round(ctx.mean_dice, 4)),
        ("best global threshold", round(t_best, 4)),
        ("mean Dice at best threshold", round(d_best, 4)),
        ("mean Dice, rank-based decoding", round(d_rank, 4)),
        ("mean IoU", round(float(a["iou"][has].mean()), 4) if has.any() else float("nan")),
        ("pixel accuracy", round(float((a["tp"].sum() + a["tn"].sum()) / max(a["n_pixels"].sum(), 1)), 4)),
        ("pixel ROC AUC (all pixels pooled)", round(ctx.auc, 4)),
        ("median per-image ROC AUC", round(float(np.nanmedian(a["auc"])), 4) if np.isfinite(a["auc"]).any() else float("nan")),
        ("true foreground share", round(ctx.true_share, 5)),
        ("predicted foreground share", round(ctx.pred_share, 5)),
        ("images with foreground", int(has.sum())),
    ]
    for m, d in candidate.items():
        facts.append((f"mean Dice with preprocessing '{m}' (first {min(PROBE_IMAGES, ctx.n)} images)", round(d, 4)))
    tables = [_class_table(ctx), _image_table(ctx)]
    figures = []
    fg_h, bg_h = res.binary.pooled_histograms()
    edges = np.linspace(0, 1, 51).tolist()
    fg_r, bg_r = _rebin(fg_h), _rebin(bg_h)
    figures.append(Figure(
        kind="histogram", title="Predicted foreground probability: foreground vs background pixels",
        data={"series": [{"label": "foreground pixels", "edges": edges, "counts": (fg_r / max(fg_r.sum(), 1)).tolist()},
                         {"label": "background pixels", "edges": edges, "counts": (bg_r / max(bg_r.sum(), 1)).tolist()}],
              "xlabel": "predicted probability", "ylabel": "share of pixels", "log": True,
              "vlines": [{"x": ctx.threshold, "label": f"threshold {ctx.threshold:g}"}]},
        caption="Well-separated peaks near 0 and 1 mean a confident model; foreground pixels piled near 0 mean blank predictions."))
    if has.any():
        figures.append(Figure(
            kind="lines", title="Mean per-image Dice vs threshold",
            data={"x": THRESHOLDS.tolist(),
                  "series": [{"label": "global threshold", "y": np.nan_to_num(ctx.curve).tolist()},
                             {"label": f"rank-based decoding ({d_rank:.3f})", "y": [d_rank] * len(THRESHOLDS), "style": "--"}],
                  "vlines": [{"x": ctx.threshold, "label": f"used {ctx.threshold:g}: {ctx.mean_dice:.3f}"},
                             {"x": t_best, "label": f"best {t_best:.3g}: {d_best:.3f}"}],
                  "xlabel": "threshold", "ylabel": "mean Dice"},
            caption="The three decodings of SD504: the threshold used, the best global threshold, and per-image rank-based selection."))
    if res.worst:
        rows = []
        for w in res.worst:
            pred = w.prob >= ctx.threshold
            truth = w.truth > 0
            image = w.image.astype(np.float32) / type_max(w.image)
            rows.append({"caption": f"{Path(w.name).name}: Dice {w.dice:.3f}", "panels": [
                {"title": "image", "array": image if image.ndim == 2 else image[..., :3], "cmap": "gray"},
                {"title": "ground truth", "array": truth.astype(np.uint8), "cmap": "gray", "vmin": 0, "vmax": 1},
                {"title": "probability", "array": w.prob, "cmap": "viridis", "vmin": 0, "vmax": 1},
                {"title": "overlay (TP green, FP red, FN blue)", "array": _overlay(truth, pred)},
            ]})
        figures.append(Figure(kind="arrays", title="Worst images by Dice", data={"rows": rows},
                              caption="The images with the lowest Dice among those whose mask has foreground."))
    return Section(title="Predictions on the data", text=" ".join(text), tables=tuple(tables), figures=tuple(figures), facts=tuple(facts))


#: rows of the per-image table in the report (the worst images first; JSON findings list every affected file)
IMAGE_ROWS = 20


def _image_table(ctx: Any) -> Table:
    a = ctx.a
    names = ctx.result.binary.names
    order = np.lexsort((-a["true_share"], a["dice"]))  # lowest Dice first; among equals, the most foreground
    rows = tuple(
        (Path(names[i]).name, round(float(a["true_share"][i]), 5), round(float(a["pred_share"][i]), 5),
         round(float(a["dice"][i]), 4), round(float(a["iou"][i]), 4), round(float(a["accuracy"][i]), 4),
         round(float(a["auc"][i]), 4), round(float(a["rank_dice"][i]), 4))
        for i in order[:IMAGE_ROWS]
    )
    return Table(title=f"Per image, worst {min(IMAGE_ROWS, len(names))} of {len(names)} by Dice",
                 columns=("image", "true share", "predicted share", f"Dice at {ctx.threshold:g}", "IoU", "pixel accuracy",
                          "ROC AUC", "Dice rank-based"),
                 rows=rows, caption="Foreground shares are fractions of the image; an image without foreground has Dice 1 when nothing is predicted.")


def _class_table(ctx: Any) -> Table:
    a = ctx.a
    mc = ctx.result.multiclass
    if mc is not None and len(mc):
        pc = mc.per_class()
        total = max(pc["true"].sum(), 1)
        rows = []
        for c in range(pc["true"].shape[1]):
            present = pc["true"][:, c] > 0
            dice = float(np.nanmean(pc["dice"][present, c])) if present.any() else float("nan")
            iou = float(np.nanmean(pc["iou"][present, c])) if present.any() else float("nan")
            rows.append((c, int(present.sum()), round(float(pc["true"][:, c].sum() / total), 5),
                         round(float(pc["pred"][:, c].sum() / total), 5), round(dice, 4), round(iou, 4)))
        return Table(title="Per class (argmax decoding)", columns=("class", "images containing", "true share", "predicted share", "mean Dice", "mean IoU"),
                     rows=tuple(rows), caption="Dice and IoU are averaged over the images that contain the class.")
    has = a["true_fg"] > 0
    n_pix = max(a["n_pixels"].sum(), 1)
    bg_tp, bg_fp, bg_fn = a["tn"], a["fn"], a["fp"]
    from segdoctor.stats.segmentation_metrics import dice_from_counts, iou_from_counts

    bg_dice = dice_from_counts(bg_tp, bg_fp, bg_fn)
    bg_iou = iou_from_counts(bg_tp, bg_fp, bg_fn)
    rows = (
        (0, int((a["true_fg"] < a["n_pixels"]).sum()), round(1 - ctx.true_share, 5), round(1 - ctx.pred_share, 5),
         round(float(bg_dice.mean()), 4), round(float(bg_iou.mean()), 4)),
        (1, int(has.sum()), round(float(a["true_fg"].sum() / n_pix), 5), round(float(a["pred_fg"].sum() / n_pix), 5),
         round(float(a["dice"][has].mean()), 4) if has.any() else float("nan"),
         round(float(a["iou"][has].mean()), 4) if has.any() else float("nan")),
    )
    return Table(title=f"Per class (threshold {ctx.threshold:g})", columns=("class", "images containing", "true share", "predicted share", "mean Dice", "mean IoU"),
                 rows=rows, caption="Class 0 is background, class 1 foreground; Dice and IoU are averaged over the images containing the class.")
