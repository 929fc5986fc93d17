"""``segdoctor check-data DIR``: inspect an image/mask dataset. Never imports TensorFlow."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from segdoctor.commands.data_sections import data_sections
from segdoctor.context import DataContext, DataOptions
from segdoctor.engines import ENGINES, scan_records, validate_engine
from segdoctor.errors import UsageError
from segdoctor.findings import Figure, Section, Table
from segdoctor.io.dataset import discover_dataset, sample_dataset
from segdoctor.progress import resolve_progress
from segdoctor.registry import Check, all_checks, select_checks, split_patterns
from segdoctor.report.model import Report
from segdoctor.runner import run_checks

NAME = "check-data"
HELP = "inspect an image/mask dataset: pairing, geometry, mask encoding, balance, normalisation, alignment"
DESCRIPTION = """\
Inspect an image/mask dataset and write an HTML report (and optionally JSON).

Finds the images and masks (images/+masks/, image/+label/, JPEGImages/+SegmentationClass/,
leftImg8bit/+gtFine/, train/ val/ test/ splits, masks beside images named *_mask.png ...),
pairs them, and checks each pair once in parallel worker processes.

examples:
  segdoctor check-data data/
  segdoctor check-data data/ --images imgs --masks annotations --num-classes 4
  segdoctor check-data cityscapes/ --mask-pattern '*_labelIds.png' --json report.json
  segdoctor check-data s3://bucket/dataset --engine dask --scheduler tcp://10.0.0.5:8786
"""

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]

#: the largest --num-classes accepted: as many classes as segdoctor tracks distinct values per mask
#: (``stats.labels.MAX_TRACKED_VALUES``), above ADE20K's 150, COCO-stuff's 182 and LVIS's 1,203. Larger counts are
#: typing errors (1e20), and every per-class table (weights, shares, the per-class report) is sized by K.
MAX_NUM_CLASSES = 4096


def num_classes_option(value: object) -> int | None:
    """``--num-classes`` as a whole number of classes in 1..MAX_NUM_CLASSES (None when not given); anything else is
    a UsageError (one line, exit 2), never an overflow or a run sized by a typing error."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        k = int(text) if not isinstance(value, (int, float)) or isinstance(value, bool) else value
    except ValueError:
        k = None
    if isinstance(k, float):
        k = int(k) if k.is_integer() else None
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_NUM_CLASSES:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise UsageError(f"--num-classes {shown}: expected a whole number of classes from 1 to {MAX_NUM_CLASSES:,} "
                         "(the classes the model predicts, background included: 2 for binary masks).")
    return k


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset options shared with check-model --data."""
    p.add_argument("--images", metavar="SUBDIR", help="folder of images (relative to DIR), overrides discovery")
    p.add_argument("--masks", metavar="SUBDIR", help="folder of masks (relative to DIR), overrides discovery")
    p.add_argument("--mask-pattern", metavar="GLOB", help="which label files are masks, e.g. '*_labelTrainIds.png'")
    p.add_argument("--num-classes", metavar="K",  # validated by num_classes_option: one line, not argparse's usage
                   help=f"number of classes the model predicts (ids 0..K-1), at most {MAX_NUM_CLASSES:,}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="dataset folder, or an fsspec URL (s3://, gs://, file://...)")
    add_dataset_arguments(p)
    p.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: all cores)")
    p.add_argument("--sample", type=int, metavar="N", help="check a seeded random subset of N pairs")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="where the per-file statistics run: local processes (default) or a Dask cluster")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="Dask scheduler address for --engine dask (default: a local cluster on 127.0.0.1)")


def check_data(
    path: str | Path,
    *,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
    num_classes: int | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    jobs: int | None = None,
    sample: int | None = None,
    progress: ProgressFn | bool | None = None,
    engine: str = "local",
    scheduler: str | None = None,
) -> Report:
    """Run the data checks on the dataset at ``path`` and return the report."""
    num_classes = num_classes_option(num_classes)
    if sample is not None and sample < 1:
        raise UsageError(f"--sample {sample}: expected a positive number of pairs.")
    validate_engine(engine, scheduler)
    checks = select_checks(["data"], select, ignore)
    ds = discover_dataset(path, images=images, masks=masks, mask_pattern=mask_pattern)
    progress = resolve_progress(progress)  # True: a tqdm bar (a widget in notebooks)
    if sample:
        ds = sample_dataset(ds, sample)
    records = scan_records(ds.pairs, engine=engine, scheduler=scheduler, jobs=jobs, progress=progress,
                           extractors=planned_extractors(checks, ds))
    ctx = DataContext(ds, records, DataOptions(num_classes=num_classes, jobs=jobs, sample=sample,
                                               images=images, masks=masks, mask_pattern=mask_pattern))
    findings, statuses = run_checks(checks, {"data": ctx})
    report = Report(command=NAME, target=str(path), findings=findings, checks=statuses, inputs={"data": str(path)})
    report.facts.update(dataset_facts(ctx))
    report.notes.extend(ds.notes)
    report.notes.extend(stack_notes(ctx))
    report.sections.extend(overview_sections(ctx))
    report.sections.extend(data_sections(ctx))
    report.context = ctx  # type: ignore[attr-defined]  # kept for callers that combine reports
    return report


def stack_notes(ctx: DataContext) -> list[str]:
    """Say when files are stacks (multi-page TIFF volumes such as ISBI 2012's, animated GIFs): each is judged by
    its first page only, and its page count is given (counted up to readers.MAX_PAGES_COUNTED)."""
    from segdoctor.io.readers import MAX_PAGES_COUNTED

    stacks: list[tuple[str, int]] = []
    for pair, rec in ctx.items():
        for key, path in (("image_info", pair.image), ("mask_info", pair.mask)):
            pages = (rec.get(key) or {}).get("pages")
            if pages is not None and path is not None:
                stacks.append((ctx.dataset.display(path), int(pages)))
    if not stacks:
        return []

    def of_n(n: int) -> str:
        return ("page 1 of more than " + f"{MAX_PAGES_COUNTED:,}" if n > MAX_PAGES_COUNTED
                else f"page 1 of {n:,}" if n > 1 else "the first of several frames")

    shown = "; ".join(f"{name} ({of_n(n)})" for name, n in stacks[:3]) + (f"; and {len(stacks) - 3} more" if len(stacks) > 3 else "")
    return [f"{len(stacks)} file(s) hold several pages (multi-page TIFF stacks or animated images): only the first page "
            f"of each was analysed: {shown}. To check every slice, save each page as its own image/mask pair "
            "(e.g. tifffile.imread(path, key=i) for page i)."]


def planned_extractors(checks: Sequence[type[Check]], ds) -> frozenset[str]:
    """The per-pair extractors this scan needs: those no data check claims (they feed the overview), plus
    those claimed by a selected check that applies to ``ds`` (split comparisons need splits)."""
    from segdoctor.stats.pair import extractor_names

    claimed = {name for c in all_checks() if c.scope == "data" for name in c.uses}
    wanted = {name for c in checks if c.scope == "data" and not c.skip_reason(ds) for name in c.uses}
    return frozenset(n for n in extractor_names() if n not in claimed or n in wanted)


def dataset_facts(ctx: DataContext) -> dict[str, object]:
    ds = ctx.dataset
    facts: dict[str, object] = {
        "pairs": len(ds.pairs),
        "unpaired_images": len(ds.unpaired_images),
        "unpaired_masks": len(ds.unpaired_masks),
        "layout": ds.layout,
        "pairing_rule": "; ".join(ds.rules),
    }
    if ds.splits:
        facts["splits"] = ", ".join(f"{s} ({sum(1 for p in ds.pairs if p.split == s)})" for s in ds.splits)
    if ds.sampled_from:
        facts["sampled"] = f"{len(ds.pairs)} of {ds.sampled_from} pairs (seed 0)"
    from segdoctor.stats.balance import class_balance

    balance = class_balance(ctx)
    if balance is not None and balance.background is not None and balance.counts.sum():
        # what a blank prediction scores in pixel accuracy (history and model checks compare against it)
        facts["background_share"] = round(float(balance.shares[balance.classes.index(balance.background)]), 4)
    return facts


def overview_sections(ctx: DataContext) -> list[Section]:
    """Dataset overview: sizes and modes of images and masks, and the mask value histogram."""
    img_modes: Counter[str] = Counter()
    mask_modes: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for _, rec in ctx.items():
        ii, mi = rec.get("image_info"), rec.get("mask_info")
        if ii:
            img_modes[f"{ii['format']} {ii['mode']} {ii['dtype']}"] += 1
            sizes[f"{ii['width']}x{ii['height']}"] += 1
        if mi:
            mask_modes[f"{mi['format']} {mi['mode']} {mi['dtype']}"] += 1
    rows = []
    for label, counter in (("image", img_modes), ("mask", mask_modes)):
        for key, n in counter.most_common(8):
            rows.append((label, key, n))
    tables = [Table("Storage (format, mode, dtype)", ("file", "storage", "count"), tuple(rows))]
    if sizes:
        tables.append(Table("Image sizes (width x height)", ("size", "count"),
                            tuple((k, n) for k, n in sizes.most_common(8)),
                            caption=f"{len(sizes)} distinct size(s)" if len(sizes) > 8 else ""))
    figures = []
    summary = ctx.labels
    if summary.value_table:
        vals = sorted(summary.value_table)[:64]
        figures.append(Figure(
            "bar", "Mask values: pixels per value (all masks)",
            {"labels": [str(v) for v in vals], "values": [summary.value_table[v][0] for v in vals],
             "ylabel": "pixels (log)", "log": True, "highlight": [str(v) for v in summary.artefact_values[:64]]},
            caption="Orange bars are values that do not fill regions (boundary artefacts of resizing or compression)."
            if summary.artefact_values else "",
        ))
    return [Section("Dataset overview", text=f"Layout: {ctx.dataset.layout}. Paired by {'; '.join(ctx.dataset.rules)}.",
                    tables=tuple(tables), figures=tuple(figures))]


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads (the CLI refuses an output path that is, or lies inside, one of them)."""
    return [("DIR", args.dir)]


def run(args: argparse.Namespace, progress: ProgressFn) -> Report:
    return check_data(
        args.dir,
        images=args.images,
        masks=args.masks,
        mask_pattern=args.mask_pattern,
        num_classes=args.num_classes,
        select=split_patterns(args.select),
        ignore=split_patterns(args.ignore),
        jobs=args.jobs,
        sample=args.sample,
        progress=progress,
        engine=args.engine,
        scheduler=args.scheduler,
    )
