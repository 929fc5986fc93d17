"""``segdoctor check-pipeline FILE.py:FUNCTION``: diagnose the data as the model sees it.

The batches come from the user's own loading code (``segdoctor.io.pipeline``), are reduced to the same
per-sample records as the file scan (``segdoctor.stats.pipeline``), and every mask/balance/image check that
makes sense on arrays runs on them unchanged, beside the pipeline-only checks SD301-SD307. Findings of the
file checks are re-titled to say they come from the pipeline; with ``--data`` each says whether the files
have the defect too or the loader made it. TensorFlow is imported only when the pipeline object (or
``--model``) needs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdoctor.checks._common import of
from segdoctor.checks.pipeline_fixes import pipeline_snippet
from segdoctor.errors import PipelineError, UsageError
from segdoctor.findings import Figure, Finding, Section, Severity, Table
from segdoctor.io.pipeline import DEFAULT_TIME_LIMIT, KEPT_BATCHES, pull_batches, spec_file
from segdoctor.io.pipeline_batches import describe_object
from segdoctor.report.model import Report
from segdoctor.runner import CheckStatus

log = logging.getLogger(__name__)

NAME = "check-pipeline"
HELP = "check the batches your loading code yields (tf.data, PyDataset, generators, ImageDataGenerator, arrays)"
DESCRIPTION = """\
Diagnose the data as the model sees it: the batches your own loading code yields, after decoding,
resizing, normalisation and augmentation. Files can be clean while the loader breaks them.

PIPELINE is FILE.py:FUNCTION (the file is imported with its folder on sys.path and FUNCTION is called
with no arguments) or module:attr (the attribute may be the dataset itself). It may return a
tf.data.Dataset of (x, y) or (x, y, sample_weight) batches, a keras.utils.PyDataset / Sequence, a
generator or iterator of batches (zip(image_flow, mask_flow)), or (X, Y) arrays. Only that function
runs; its prints are captured; the working folder is left as it was.

examples:
  segdoctor check-pipeline train.py:make_train_ds
  segdoctor check-pipeline train.py:make_train_ds --val train.py:make_val_ds --data data/
  segdoctor check-pipeline train.py:make_train_ds --model unet.keras --batches 20 --json report.json
"""

ProgressFn = Callable[[int, int, str], None]

#: the file checks that make sense on batch arrays (the rest judge files, pairing, splits or EXIF tags)
PIPELINE_DATA_CHECKS = frozenset({"SD004", "SD101", "SD102", "SD103", "SD104", "SD105", "SD106", "SD107", "SD108", "SD151", "SD152",
                                  "SD201", "SD202"})
#: pairs of the --data files scanned for the comparison (seeded sample beyond)
FILE_SAMPLE = 256
#: samples shown in the report's grid
GRID_SAMPLES = 8
#: the loader-side fix appended to a file check's snippet when it fires on the batches
PIPELINE_TOPICS = {"SD101": "binarise", "SD104": "channels", "SD105": "binarise", "SD106": "interpolated"}
#: the fix in words when the files are clean and only the loading code needs the change
LOADER_FIXES = {
    "SD101": "Binarise the mask in the loading code (mask > 127, as integers) before it reaches the loss; the files are not at fault.",
    "SD104": "Read the mask with one channel in the loading code (channels=1, or map the colours to ids); the files are not at fault.",
    "SD105": "Threshold the mask in the loading code (mask > 127 on the decoded 8-bit values, or > 0.5 after a division) "
             "so that the loss receives exact class values; the files are not at fault.",
    "SD106": "Resize and warp the mask with nearest-neighbour in the loading code (method=\"nearest\", "
             "interpolation_order=0, mask= in albumentations); the files are not at fault.",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", metavar="PIPELINE", help="FILE.py:FUNCTION (or module:attr) returning the training data")
    p.add_argument("--val", metavar="PIPELINE", help="the validation pipeline, compared with the training one")
    p.add_argument("--data", metavar="DIR", help="the dataset folder the pipeline reads: say what the loader changed")
    p.add_argument("--model", metavar="MODEL", help="a Keras model file: check the batches against its input, output and loss")
    p.add_argument("--batches", type=int, metavar="N", help="batches to read (default: enough for 64 samples)")
    p.add_argument("--num-classes", type=int, metavar="K", help="number of classes the model predicts (ids 0..K-1)")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                   help=f"stop reading batches after this long (default {DEFAULT_TIME_LIMIT:g} s)")
    g = p.add_argument_group("with --model (as in check-model)")
    g.add_argument("--custom-objects", action="append", default=[], metavar="FILE.py",
                   help="a Python file defining the model's custom losses, metrics or layers (repeatable)")
    g.add_argument("--unsafe", action="store_true", help="load the model with safe_mode=False (only for files you trust)")
    d = p.add_argument_group("with --data (as in check-data)")
    d.add_argument("--images", metavar="SUBDIR", help="folder of images (relative to DIR), overrides discovery")
    d.add_argument("--masks", metavar="SUBDIR", help="folder of masks (relative to DIR), overrides discovery")
    d.add_argument("--mask-pattern", metavar="GLOB", help="which label files are masks, e.g. '*_labelTrainIds.png'")


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads: the pipeline file(s), the dataset and the model (reports never overwrite them)."""
    from segdoctor.io.model import custom_objects_file

    return [("PIPELINE", spec_file(args.pipeline)), ("--val", spec_file(args.val) if args.val else None),
            ("--data", args.data), ("--model", args.model),
            *(("--custom-objects", custom_objects_file(p)) for p in args.custom_objects)]


def run(args: argparse.Namespace, progress: ProgressFn | None = None) -> Report:
    from segdoctor.registry import split_patterns

    return check_pipeline(args.pipeline, val=args.val, data=args.data, model=args.model, batches=args.batches,
                          num_classes=args.num_classes, select=split_patterns(args.select),
                          ignore=split_patterns(args.ignore), time_limit=args.time_limit,
                          custom_objects=tuple(args.custom_objects), unsafe=args.unsafe, images=args.images,
                          masks=args.masks, mask_pattern=args.mask_pattern, progress=progress)


def _label(source: Any, split: str) -> str:
    if isinstance(source, str):
        return source
    return f"{split} {describe_object(source)}"


def _validate(train, val, num_classes, batches, time_limit, data, model) -> None:
    from segdoctor.io.pipeline import parse_spec

    for flag, source in (("PIPELINE", train), ("--val", val)):
        if isinstance(source, str):  # a malformed spec or a missing file fails before anything runs
            spec = parse_spec(source, flag)
            if spec.path is not None and not spec.path.is_file():
                raise PipelineError(f"{spec.text}: no such file {str(spec.path)!r}; expected a Python file defining "
                                    f"{spec.attr}().")
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"--num-classes {num_classes}: expected a positive number of classes (2 for binary masks).")
    if batches is not None and batches < 1:
        raise UsageError(f"--batches {batches}: expected a positive number of batches.")
    if time_limit is None or not time_limit > 0:
        raise UsageError(f"--time-limit {time_limit}: expected a positive number of seconds.")
    if data is not None and "://" not in str(data) and not Path(data).expanduser().is_dir():
        raise UsageError(f"--data {data}: no such folder; expected the dataset folder the pipeline reads.")
    if isinstance(model, (str, Path)) and not Path(model).expanduser().exists():
        raise UsageError(f"--model {model}: no such file; expected a Keras model file (.keras, or legacy .h5).")


def check_pipeline(
    train: Any,
    *,
    val: Any = None,
    data: str | Path | None = None,
    model: Any = None,
    batches: int | None = None,
    num_classes: int | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    time_limit: float = DEFAULT_TIME_LIMIT,
    custom_objects: Sequence[str | Path] = (),
    unsafe: bool = False,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Check the batches a data pipeline yields and return the report.

    ``train`` (and ``val``) is a pipeline object (``tf.data.Dataset``, ``PyDataset``, generator, ``(X, Y)``
    arrays) or a ``"FILE.py:FUNCTION"`` / ``"module:attr"`` string. ``data`` is the dataset folder it reads
    (to say what the loader changed), ``model`` a Keras model or model file, ``batches`` the number of batches
    to read (default: enough for 64 samples). A generator passed as an object is consumed by the batches read.
    """
    from segdoctor.checks.pipeline_context import PipelineContext
    from segdoctor.context import DataOptions
    from segdoctor.registry import select_checks
    from segdoctor.runner import run_checks

    _validate(train, val, num_classes, batches, time_limit, data, model)
    chosen = select_checks(["data", "pipeline"], select, ignore)
    data_checks = [c for c in chosen if c.scope == "data" and c.code in PIPELINE_DATA_CHECKS]
    pipeline_checks = [c for c in chosen if c.scope == "pipeline"]
    if select and not (data_checks or pipeline_checks):
        raise UsageError(f"--select {', '.join(select)}: selects none of the checks check-pipeline runs "
                         f"({', '.join(sorted(PIPELINE_DATA_CHECKS))} and SD3xx).")
    want_model = model is not None and any(c.code in ("SD303", "SD307") for c in pipeline_checks)
    options = DataOptions(num_classes=num_classes)
    files_report = None
    if data is not None:
        # the files first: a dataset that cannot be found fails before the (slower) pipeline runs, and the scan's
        # worker processes fork before the pipeline may have loaded TensorFlow
        from segdoctor.commands.data import check_data

        files_select = sorted({c.code for c in data_checks} | {"SD251"})
        files_report = check_data(data, images=images, masks=masks, mask_pattern=mask_pattern, num_classes=num_classes,
                                  select=files_select, sample=FILE_SAMPLE, progress=progress)
    train_src, train_pull = _read(train, "train", batches, time_limit, progress, options,
                                  keep=KEPT_BATCHES if want_model else 0)
    val_src = val_pull = None
    if val is not None:
        val_src, val_pull = _read(val, "val", batches, time_limit, progress, options, keep=0)
    probe = None
    if want_model:
        from segdoctor.io.pipeline_model import probe_model

        probe = probe_model(model, train_pull.kept, custom_objects=tuple(custom_objects), unsafe=unsafe)
        train_pull.kept.clear()
    files_ctx = getattr(files_report, "context", None)
    files_codes = {f.code for f in files_report.findings} if files_report is not None else None
    findings: list[Finding] = []
    statuses: dict[str, list[CheckStatus]] = {}
    for src in (train_src, val_src):
        if src is None:
            continue
        found, stats = run_checks(data_checks, {"data": src.ctx})
        findings.extend(from_pipeline(f, src, files_codes) for f in found)
        for s in stats:
            statuses.setdefault(s.code, []).append(s)
    pctx = PipelineContext(train=train_src, val=val_src, files=files_ctx, model=probe, options=options)
    found, stats = run_checks(pipeline_checks, {"pipeline": pctx})
    findings.extend(found)
    for s in stats:
        statuses.setdefault(s.code, []).append(s)
    report = Report(command=NAME, target=train_src.label, findings=findings,
                    checks=[_merge_status(v) for v in statuses.values()])
    report.facts.update(_facts(train_src, train_pull, "train"))
    if val_src is not None:
        report.facts.update(_facts(val_src, val_pull, "val"))
    if files_report is not None:
        report.facts["data"] = str(data)
        report.facts["data_pairs_compared"] = files_report.facts.get("pairs")
    if probe is not None:
        report.facts["model"] = probe.name
        report.notes.extend(probe.notes)
    for pull in (train_pull, val_pull):
        if pull is None:
            continue
        report.notes.extend(f"{pull.label}: {n}" for n in pull.notes)
        if pull.printed_count:
            last = pull.printed[-1][:160]
            report.notes.append(f"{pull.label} printed {pull.printed_count} line(s) while yielding batches (captured; "
                                f"the last: {last!r})")
    report.sections.extend(pipeline_sections(pctx, report.findings, files_report))
    report.context = pctx  # type: ignore[attr-defined]
    return report


def _read(source: Any, split: str, batches, time_limit, progress, options, *, keep: int):
    from segdoctor.checks.pipeline_context import PipelineSource
    from segdoctor.context import DataContext
    from segdoctor.stats.pipeline import BatchRecorder

    label = _label(source, split)
    recorder = BatchRecorder(split)
    report_progress = None if progress is None else (lambda done, total, _label: progress(done, total, f"{split} batches"))
    pull = pull_batches(source, label=label, batches=batches, on_batch=recorder.add, time_limit=time_limit,
                        progress=report_progress, keep=keep)
    recorder.finalise()
    ctx = DataContext(recorder.dataset(pull.kind), recorder.records, options)
    src = PipelineSource(split=split, label=label, kind=pull.kind, ctx=ctx, ids=recorder.ids, thumbs=recorder.thumbs,
                         batches=pull.batches, batch_sizes=recorder.batch_sizes, x_shapes=dict(recorder.x_shapes),
                         y_shapes=dict(recorder.y_shapes), w_shapes=dict(recorder.w_shapes))
    return src, pull


def _merge_status(stats: list[CheckStatus]) -> CheckStatus:
    """One status per check over the train and val runs: found if either found, crashed if either crashed."""
    order = {"crashed": 3, "found": 2, "passed": 1, "skipped": 0}
    worst = max(stats, key=lambda s: order.get(s.status, 0))
    return CheckStatus(worst.code, worst.name, worst.status, sum(s.seconds for s in stats), worst.message)


# ---------------------------------------------------------------------------------------------- findings from files checks


def _sample_of(path_text: str) -> str:
    """'train batch 0, sample 3/mask' -> 'train batch 0, sample 3' (the data checks list pair paths)."""
    text = str(path_text)
    if text.startswith("pipeline/"):
        text = text[len("pipeline/"):]
    head, sep, tail = text.rpartition("/")
    return head if sep and tail in ("image", "mask") else text


def _soft_samples(src: Any, *kinds: str) -> list[dict]:
    """The pipeline notes of the samples whose targets hold fractional values of these kinds (see calibrate_sparse)."""
    return [p for r in src.records if (p := r.get("pipeline") or {}).get("soft") in kinds]


def _fractional_share(samples: list[dict]) -> float:
    return float(np.mean([p.get("fractional_share", 0.0) for p in samples]))


def from_pipeline(f: Finding, src: Any, files_codes: set[str] | None) -> Finding:
    """A file check's finding on the batches, re-titled to say that it comes from the pipeline, with the samples it
    names, thumbnails instead of file figures, the loader-side fix, and (with --data) whether the files share it."""
    from segdoctor.checks.pipeline_context import sample_figure

    samples = list(dict.fromkeys(_sample_of(p) for p in f.files))
    index = {sid: i for i, sid in enumerate(src.ids)}
    figures = []
    for fig in f.figures:
        if fig.kind == "pairs":
            items = []
            for item in fig.data.get("items", ()):
                sid = _sample_of(item.get("image") or item.get("mask") or "")
                if sid in index:
                    items.append((index[sid], str(item.get("caption", ""))))
            if not items:
                items = [(index[s], "") for s in samples if s in index]
            new = sample_figure(src, items, fig.title)
            if new is not None:
                figures.append(new)
        else:
            figures.append(fig)
    evidence = {"source": "pipeline batches", "pipeline": src.label, **dict(f.evidence)}
    if samples:
        evidence["samples"] = samples
    suffix = ""
    if files_codes is not None:
        in_files = f.code in files_codes
        evidence["in_the_files"] = "yes" if in_files else "no"
        suffix = " (the files have it too)" if in_files else " (not in the files: the loader introduces it)"
    snippet, fix = f.snippet, f.fix
    topic = PIPELINE_TOPICS.get(f.code)
    if topic is not None and files_codes is not None and f.code not in files_codes:
        # the files are clean: the repair is in the loading code alone, and a file repair would only mislead
        snippet = pipeline_snippet(topic, src.kind)
        fix = LOADER_FIXES[f.code]
    elif topic is not None:
        snippet = pipeline_snippet(topic, src.kind) + ("\n\n# on the files themselves:\n" + snippet if snippet else "")
    body = f.title[:1].lower() + f.title[1:]
    if f.code == "SD106":
        # the record's label holds the classes; what the loss receives holds the fractional values: say where they lie
        soft = _soft_samples(src, "interpolated", "continuous")
        between = [p for p in soft if p["soft"] == "interpolated"]
        if soft:
            evidence["samples_with_fractional_values"] = len(soft)
            evidence["fractional_pixel_share"] = round(_fractional_share(soft), 4)
            for key in ("boundary_pixels_between_neighbours", "clean_masks_at_most", "intermediate_values"):
                if evidence.get(key) == 0 or key == "clean_masks_at_most":
                    evidence.pop(key, None)
        if between and len(between) >= len(soft) / 2:
            evidence["fractional_values_only_between_classes"] = len(between)
            body = (f"{of(len(between), len(src.records))} targets hold fractional values on class boundaries only "
                    f"({evidence['fractional_pixel_share']:.1%} of their pixels): the masks are resized or warped with "
                    "interpolation")
    if f.code == "SD105":
        noisy = _soft_samples(src, "compressed")
        if noisy:
            share = _fractional_share(noisy)
            evidence.update({"samples_with_fractional_values": len(noisy), "fractional_pixel_share": round(share, 4)})
            for key in ("masks_lossy_format", "masks_with_stray_values", "stray_pixel_share_in_those_masks",
                        "stray_near_class_share", "stray_values"):
                evidence.pop(key, None)
            body = (f"{of(len(noisy), len(src.records))} targets hold fractional values next to the class values "
                    f"({share:.1%} of their pixels), as lossy compression leaves them: masks decoded from JPEG (or another "
                    "lossy format) reach the loss without a threshold")
    title = f"In the {src.split} pipeline: {body}{suffix}"
    return dataclasses.replace(f, title=title, evidence=evidence, files=(), figures=tuple(figures), snippet=snippet, fix=fix,
                               why=f.why + " (Found in the batches the pipeline yields, after its preprocessing.)")


# ---------------------------------------------------------------------------------------------- report


def _shape_text(shapes: dict) -> str:
    if not shapes:
        return "-"
    return ", ".join(f"(B, {', '.join(str(v) for v in s)})" for s, _ in Counter(shapes).most_common(3))


def _facts(src: Any, pull: Any, split: str) -> dict[str, Any]:
    t = src.targets
    facts: dict[str, Any] = {
        f"{split}_pipeline": src.label,
        f"{split}_pipeline_kind": src.kind,
        f"{split}_batches": pull.batches,
        f"{split}_samples": pull.samples,
        f"{split}_image_batch_shape": _shape_text(src.x_shapes),
        f"{split}_target_batch_shape": _shape_text(src.y_shapes),
        f"{split}_target_encoding": t.main_encoding + (f" (depth {t.depths.most_common(1)[0][0]})" if t.depths else ""),
        f"{split}_pipeline_seconds": round(pull.pipeline_seconds, 3),
        f"{split}_analysis_seconds": round(pull.analysis_seconds, 3),
    }
    if src.w_shapes:
        facts[f"{split}_sample_weight_shape"] = _shape_text(src.w_shapes)
    if t.smoothing:
        facts[f"{split}_label_smoothing"] = ", ".join(f"{k:g}" for k in sorted(t.smoothing))
    return facts


def _offending(findings: list[Finding], src: Any) -> list[tuple[str, list[str]]]:
    """Sample ids named by findings (worst findings first), each with the codes that name it."""
    codes: dict[str, list[str]] = {}
    for f in findings:
        samples = f.evidence.get("samples") if isinstance(f.evidence.get("samples"), list) else []
        for sid in samples:
            if sid in src.thumbs:
                codes.setdefault(sid, [])
                if f.code not in codes[sid]:
                    codes[sid].append(f.code)
    return list(codes.items())


def _grid(src: Any, findings: list[Finding]) -> Figure | None:
    from segdoctor.checks.pipeline_context import sample_figure

    index = {sid: i for i, sid in enumerate(src.ids)}
    offending = _offending(findings, src)
    items = [(index[sid], ", ".join(codes)) for sid, codes in offending[:GRID_SAMPLES]]
    seen = {sid for sid, _ in offending[:GRID_SAMPLES]}
    for sid in src.ids:
        if len(items) >= GRID_SAMPLES:
            break
        if sid not in seen and sid in src.thumbs:
            items.append((index[sid], "no finding"))
    fig = sample_figure(src, items, f"Batch samples of the {src.split} pipeline (offending first)")
    if fig is not None:
        # sample_figure keeps EXAMPLES rows; the overview grid shows more
        rows = []
        for i, caption in items:
            thumb = src.thumbs.get(src.ids[i])
            if thumb is not None:
                rows.append({"image": thumb[0], "label": thumb[1], "caption": f"{src.ids[i]}: {caption}"})
        fig = Figure("samples", fig.title, {"items": rows})
    return fig


def _target_figure(src: Any) -> Figure | None:
    from segdoctor.stats.pipeline_summary import target_histogram

    t = src.targets
    if not t.continuous and t.values and len(t.values) <= 24:
        vals = sorted(t.values)
        counts = [t.values[v] for v in vals]
        wide = max(counts) > 50 * max(min(counts), 1)
        return Figure("bar", f"Target values in the {src.split} batches (pixels per value)",
                      {"labels": [f"{v:.4g}" for v in vals], "values": counts,
                       "ylabel": "pixels (log)" if wide else "pixels", "log": wide},
                      caption="The values the loss receives, as the pipeline yields them (before any calibration).")
    hist = target_histogram(src.records)
    if hist is None:
        return None
    edges, counts = hist
    return Figure("histogram", f"Target values in the {src.split} batches",
                  {"edges": edges, "counts": counts, "xlabel": "target value", "ylabel": "pixels (log)", "log": True},
                  caption="The values the loss receives, as the pipeline yields them.")


def _overview(src: Any, pull: Any | None = None) -> Section:
    t, s = src.targets, src.images
    rows = [
        ("object", src.kind),
        ("batches read", f"{src.batches} ({sum(src.batch_sizes)} samples, batch size "
                         f"{', '.join(str(b) for b, _ in Counter(src.batch_sizes).most_common(3))})"),
        ("images", f"{_shape_text(src.x_shapes)} {', '.join(s.dtypes)}; values {s.vmin:.4g} to {s.vmax:.4g}"),
        ("targets", f"{_shape_text(src.y_shapes)} {', '.join(t.dtypes)}; {t.main_encoding}"
                    + (f" depth {t.depths.most_common(1)[0][0]}" if t.depths else "") + f"; values {t.value_set()}"),
    ]
    if src.w_shapes:
        rows.append(("sample weights", _shape_text(src.w_shapes)))
    if t.smoothing:
        eps = ", ".join(f"{k:g}" for k in sorted(t.smoothing))
        rows.append(("label smoothing", f"epsilon {eps} in {sum(t.smoothing.values())} samples: soft targets by design, "
                                        "judged as their hard classes (not a defect)"))
    if t.rescaled:
        rows.append(("rescaled targets", f"{sum(len(v) for v in t.rescaled.values())} samples hold class ids divided "
                                         f"by {', '.join(f'{d:g}' for d in t.rescaled)} (SD302)"))
    fg = src.foreground
    if len(fg):
        rows.append(("foreground", f"{(fg > 0).mean():.0%} of the samples hold foreground; "
                                   f"{fg.mean():.2%} of the pixels on average"))
    return Section(f"The {src.split} pipeline: {src.label}", tables=(Table("What the batches hold", ("", ""), tuple(rows)),),
                   figures=tuple(f for f in (_target_figure(src),) if f is not None))


def _files_rows(pctx: Any) -> list[tuple[str, str, str, str]]:
    """(property, files, batches, what the loader changed) for --data."""
    from segdoctor.checks.pipeline_context import files_value_set
    from segdoctor.stats.pipeline_summary import foreground_shares, image_summary

    files, src = pctx.files, pctx.train
    t, s = src.targets, src.images
    rows = []
    fv = files_value_set(files) or "-"
    change = "unchanged"
    if t.rescaled:
        d = max(t.rescaled.items(), key=lambda kv: len(kv[1]))[0]
        change = f"the masks are divided by {d:g} in the pipeline"
    elif t.main_encoding == "one-hot":
        depth = t.depths.most_common(1)[0][0] if t.depths else "?"
        change = f"one-hot encoded (depth {depth})" + (f"; {t.zero_rows:,} pixels became rows of zeros" if t.zero_rows else "")
    elif t.fractional_samples and not t.smoothing:
        change = f"fractional values in {t.fractional_samples} samples: the loader interpolates the masks"
    elif t.smoothing:
        change = "label smoothing (soft targets by design)"
    elif t.value_set() != fv:
        f_vals = set(files.labels.class_values)
        b_vals = set(t.values)
        if len(f_vals) == 2 and 0 in f_vals and b_vals <= {0.0, 1.0} and max(f_vals) > 1:
            change = f"binarised ({max(f_vals)} -> 1)"
        else:
            change = "different values"
    rows.append(("mask values", fv, t.value_set(), change))
    f_fg, b_fg = foreground_shares(files.records), src.foreground
    if len(f_fg) and len(b_fg):
        rows.append(("samples with foreground", f"{(f_fg > 0).mean():.0%}", f"{(b_fg > 0).mean():.0%}",
                     "fewer (crops or filtering)" if (b_fg > 0).mean() < 0.8 * (f_fg > 0).mean() else "similar"))
        rows.append(("foreground pixel share", f"{f_fg.mean():.2%}", f"{b_fg.mean():.2%}",
                     "lower" if b_fg.mean() < 0.6 * f_fg.mean() else ("higher" if b_fg.mean() > 1.6 * f_fg.mean() else "similar")))
    fs = image_summary(files.records)
    if fs.samples and s.samples:
        f_rng = f"{', '.join(fs.dtypes)} {fs.vmin:.4g}..{fs.vmax:.4g}"
        b_rng = f"{', '.join(s.dtypes)} {s.vmin:.4g}..{s.vmax:.4g}"
        ratio = fs.reach / s.reach if s.reach else float("inf")
        if s.reach and 200 <= ratio <= 300:
            what = "divided by 255"
        elif s.reach and 200 * 255 <= ratio:
            what = "divided by 255 twice"
        elif s.vmin < 0 and fs.vmin >= 0:
            what = "centred (standardised or [-1, 1])"
        elif abs(ratio - 1) < 0.05:
            what = "unchanged"
        else:
            what = f"scaled by about 1/{ratio:.3g}" if ratio > 1 else f"scaled by about {1 / ratio:.3g}"
        rows.append(("image values", f_rng, b_rng, what))
        f_sizes = ", ".join(f"{h}x{w}" for (h, w), _ in fs.sizes.most_common(2))
        b_sizes = ", ".join(f"{h}x{w}" for (h, w), _ in s.sizes.most_common(2))
        rows.append(("image size", f_sizes, b_sizes, "unchanged" if set(fs.sizes) == set(s.sizes) else "resized or cropped"))
        rows.append(("image channels", ", ".join(map(str, sorted(fs.channels))), ", ".join(map(str, sorted(s.channels))),
                     "unchanged" if set(fs.channels) == set(s.channels) else "decoded with another channel count"))
    if pctx.files_signal is not None and src.pair_study is not None:
        rows.append(("image/mask alignment (median z)", f"{pctx.files_signal:.1f}", f"{np.nanmedian(src.pair_study.z_own):.1f}",
                     "masks no longer fit their images (SD301)" if np.nanmedian(src.pair_study.z_own) < 0.5 * pctx.files_signal
                     else "similar"))
    return rows


def pipeline_sections(pctx: Any, findings: list[Finding], files_report: Report | None) -> list[Section]:
    from segdoctor.checks.pipeline_context import alignment_figure

    out = []
    for src in pctx.sources:
        section = _overview(src)
        figs = list(section.figures)
        grid = _grid(src, [f for f in findings if f.severity >= Severity.INFO])
        if grid is not None:
            figs.insert(0, grid)
        if src.pair_study is not None:
            figs.append(alignment_figure(src.pair_study))
        out.append(dataclasses.replace(section, figures=tuple(figs)))
    if pctx.files is not None:
        rows = _files_rows(pctx)
        n_err = files_report.counts["error"] if files_report is not None else 0
        text = (f"{len(pctx.files.records)} file pairs of {files_report.target if files_report else ''} against the "
                f"{len(pctx.train.records)} train samples." + (f" check-data finds {n_err} error(s) in the files "
                                                               "themselves: run segdoctor check-data on them." if n_err else ""))
        out.append(Section("What the loader changed (files vs batches)", text=text,
                           tables=(Table("Files vs batches", ("property", "files", "batches", "change"), tuple(rows)),)))
    probe = pctx.model
    if probe is not None:
        spec = probe.spec
        rows = [("input", f"{spec.input_shape} {probe.input_dtype}", f"batches {probe.batch_x_shape} {probe.batch_x_dtype}"),
                ("output", f"{spec.output_shape} {spec.head_activation}", f"targets {probe.batch_y_shape}"),
                ("loss", spec.loss.name if spec.loss else "none", probe.perfect or (probe.loss_error or ""))]
        for k, v in probe.loss_values.items():
            rows.append((f"loss at {k} prediction", f"{v:.6g}", ""))
        for k, v in probe.scaling_dice.items():
            rows.append((f"mean Dice, inputs {k}", f"{v:.3f}" if np.isfinite(v) else "-", ""))
        if probe.predict_error:
            rows.append(("prediction", "failed", probe.predict_error))
        out.append(Section(f"The batches against the model {probe.name}",
                           tables=(Table("Model probes", ("", "model", "batches"), tuple(rows)),)))
    return out


def _import_renderers() -> None:
    import segdoctor.report.pipeline_figures  # noqa: F401  (registers the "samples" figure)


_import_renderers()
