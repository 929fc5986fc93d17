"""``fix_dataset``: check, plan, write the repaired copy (atomically), re-check it, and report before/after."""

from __future__ import annotations

import fnmatch
import gc
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from segdoctor.errors import SegDoctorError, UsageError
from segdoctor.fix.output import MANIFEST_NAME, Staging, check_out_folder
from segdoctor.fix.plan import Plan, make_plan
from segdoctor.io.remote import is_url

ProgressFn = Callable[[int, int, str], None]

MANIFEST_SCHEMA = "segdoctor.fix/1"
DRY_RUN_MANIFEST = "segdoctor-fix-plan.json"
#: changed files kept in memory for the HTML table (all of them go to the manifest)
PREVIEW = 50


@dataclass
class FixOutcome:
    """What a fix run did; ``segdoctor.fix.report`` turns it into the report."""

    source: str
    target: Path
    dry_run: bool
    manifest: Path
    plan: Plan
    before: Any  # Report of check-data on the source
    after: Any = None  # Report of check-data on the output (None for a dry run)
    done: Counter = field(default_factory=Counter)  # code -> files repaired
    unchanged: Counter = field(default_factory=Counter)  # code -> files the repair left as they were
    failed: list[dict] = field(default_factory=list)  # {"file", "codes", "reason"}
    preview: list[dict] = field(default_factory=list)
    changed: int = 0
    renamed: int = 0
    linked: int = 0
    copied: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remaining: dict[str, list] = field(default_factory=dict)  # repaired code -> its findings on the output
    out_text: str = ""  # --out as the user wrote it (messages); ``target`` is the resolved folder

    @property
    def shown_manifest(self) -> str:
        return str(Path(self.out_text) / MANIFEST_NAME) if not self.dry_run else str(self.manifest)


def fix_dataset(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    images: str | None = None,
    masks: str | None = None,
    mask_pattern: str | None = None,
    num_classes: int | None = None,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    jobs: int | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    hard_links: bool = True,
    manifest: str | os.PathLike | None = None,
    progress: ProgressFn | None = None,
):
    """Write a repaired copy of the dataset at ``path`` to ``out`` and return the before/after report.

    Runs check-data, repairs each file named by a repairable finding (in worker processes or on Dask),
    hard-links or copies every other file, writes ``out/segdoctor-fix.json``, renames the finished copy
    into place and runs check-data on it. ``dry_run`` writes only the plan: to ``manifest`` (default
    ``./segdoctor-fix-plan.json``). Nothing under ``path`` is ever written.
    """
    from segdoctor.commands.data import check_data
    from segdoctor.io.outputs import guard_outputs

    if is_url(path):
        raise UsageError(f"{path}: segdoctor fix needs a local dataset folder (it writes a complete copy of it); "
                         "download the dataset first, or run check-data on the URL.")
    target = check_out_folder(path, out, overwrite=overwrite)
    manifest_path = target / MANIFEST_NAME
    if dry_run:
        chosen = guard_outputs([("--manifest", str(manifest or DRY_RUN_MANIFEST))], [("DIR", str(path))])
        manifest_path = chosen["--manifest"]
    options = dict(images=images, masks=masks, mask_pattern=mask_pattern, num_classes=num_classes,
                   select=select, ignore=ignore, jobs=jobs, engine=engine, scheduler=scheduler)
    before = check_data(path, progress=progress, **options)
    ds = before.context.dataset
    plan = make_plan(before.findings, ds)
    # The per-pair records (and the alignment maps) are not needed any more: free them before the repair
    # workers fork, so that neither this process nor its workers carry them through the rest of the run.
    before.context = None
    gc.collect()
    # What this process holds from here on lives as long as the run: keep it out of the garbage collector's
    # sight, so that forked workers (repairs, the re-check's scan) do not copy every page it touches.
    gc.freeze()
    try:
        return _write(path, target, manifest_path, plan, before, ds, options, dry_run, hard_links, out, progress)
    finally:
        gc.unfreeze()


def _write(path, target, manifest_path, plan, before, ds, options, dry_run, hard_links, out, progress):
    from segdoctor.fix.report import build_report

    engine, scheduler, jobs = options["engine"], options["scheduler"], options["jobs"]
    outcome = FixOutcome(str(path), target, dry_run, manifest_path, plan, before, out_text=str(out))
    tasks = [t.portable(i) for i, t in enumerate(plan.tasks)]
    from segdoctor.fix.engine import map_repairs

    results = map_repairs(tasks, encode_output=not dry_run, engine=engine, scheduler=scheduler, jobs=jobs,
                          progress=progress)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="utf-8") as entries:
        if dry_run:
            for result in results:
                _record(outcome, result, entries)
            _write_manifest(outcome, manifest_path, entries, options)
            return build_report(outcome)
        staging = Staging(target, hard_links=hard_links)
        try:
            skip = {t.rel for t in plan.tasks} | {MANIFEST_NAME}
            if (Path(ds.root) / MANIFEST_NAME).is_file():
                outcome.notes.append(f"The {MANIFEST_NAME} of an earlier fix run in {path} is replaced by this run's.")
            staging.copy_tree(Path(ds.root), skip)
            for result in results:
                index, status, data, entry, _ = result
                task = plan.tasks[index]
                if status == "repaired":
                    staging.write(entry["output"], data)
                else:
                    staging.place(task.source, task.rel)
                _record(outcome, result, entries)
            outcome.linked, outcome.copied = staging.stats.linked, staging.stats.copied
            outcome.skipped = list(staging.stats.skipped)
            with staging.open_new(MANIFEST_NAME) as fh:
                _stream_manifest(fh, outcome, entries, options)
            staging.commit()
        except BaseException:
            results.close()
            staging.discard()
            raise
        del tasks, results  # one tuple per repaired file: not needed for the re-check
        outcome.after = _recheck(outcome, options, progress)
        _write_manifest(outcome, manifest_path, entries, options)
    return build_report(outcome)


def _record(outcome: FixOutcome, result, entries) -> None:
    index, status, _, entry, error = result
    task = outcome.plan.tasks[index]
    codes = task.codes
    if status == "repaired":
        outcome.changed += 1
        outcome.renamed += int(entry["output"] != task.rel)
        outcome.done.update(codes)
        entries.write(json.dumps(_clean(entry), allow_nan=False) + "\n")
        if len(outcome.preview) < PREVIEW:
            outcome.preview.append(entry)
    elif status == "unchanged":
        outcome.unchanged.update(codes)
    else:
        outcome.failed.append({"file": task.rel, "codes": codes, "reason": error})


def _clean(value):
    from segdoctor.report.json_writer import _clean as clean

    return clean(value)


def _adjusted_pattern(outcome: FixOutcome, pattern: str | None) -> str | None:
    """A --mask-pattern that still selects the masks written as .png (e.g. '*_mask.jpg' -> '*_mask.png')."""
    if not pattern:
        return pattern
    renamed = [PurePath(e["output"]).name for e in outcome.preview if e.get("extension_changed")]
    if not outcome.renamed or (renamed and all(fnmatch.fnmatch(n, pattern) for n in renamed)):
        return pattern
    png = re.sub(r"\.(jpe?g|webp|gif|bmp)$", ".png", pattern, flags=re.IGNORECASE)
    if png != pattern:
        outcome.notes.append(f"Re-checked with --mask-pattern {png!r}: the repaired masks are PNG files now.")
    return png


def _recheck(outcome: FixOutcome, options: dict, progress):
    from segdoctor.commands.data import check_data

    opts = dict(options, mask_pattern=_adjusted_pattern(outcome, options.get("mask_pattern")))
    try:
        after = check_data(outcome.target, progress=progress, **opts)
        after.context = None  # the findings and sections are kept; the per-pair records are not needed
    except SegDoctorError as exc:
        outcome.notes.append(f"The re-check of {outcome.target} could not run: {exc}")
        outcome.remaining = {code: [] for code in outcome.plan.codes}
        return None
    for code in outcome.plan.codes:
        still = [f for f in after.findings if f.code == code]
        if still:
            outcome.remaining[code] = still
    return after


def manifest_head(outcome: FixOutcome, options: dict) -> dict:
    from segdoctor import __version__
    from segdoctor.report.model import Report

    plan = outcome.plan
    repairs = []
    for code in plan.codes:
        found = plan.findings[code]
        if outcome.dry_run:
            after = "not re-checked (dry run)"
        elif code in outcome.remaining:
            after = "still found: " + "; ".join(x.title for x in outcome.remaining[code])
        else:
            after = "gone"
        repairs.append({"code": code, "name": found[0].name, "severity": max(f.severity for f in found).label,
                        "before": "; ".join(f.title for f in found),
                        "files_named": len(plan.repairs.get(code, [])), "files_repaired": outcome.done[code],
                        "files_already_right": outcome.unchanged[code], "after": after})
    head: dict[str, Any] = {
        "schema": MANIFEST_SCHEMA,
        "tool": {"name": "segdoctor", "version": __version__},
        "created": Report(command="fix", target="").created,
        "dry_run": outcome.dry_run,
        "source": str(Path(outcome.source).absolute()),
        "output": str(outcome.target),
        "options": {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in options.items()
                    if k in ("images", "masks", "mask_pattern", "num_classes", "select", "ignore") and v},
        "summary": {"files_repaired": outcome.changed, "files_renamed": outcome.renamed,
                    "files_not_repaired": len(outcome.failed),
                    **({} if outcome.dry_run else {"files_hard_linked": outcome.linked, "files_copied": outcome.copied})},
        "repairs": repairs,
        "not_repaired": outcome.failed,
        "needs_you": [o.to_json() for o in plan.needs_you],
        "kept": [o.to_json() for o in plan.kept],
    }
    if outcome.skipped:
        head["skipped"] = outcome.skipped
    if outcome.after is not None:
        head["after"] = {"counts": outcome.after.counts,
                         "findings": [{"code": f.code, "name": f.name, "severity": f.severity.label, "title": f.title,
                                       "files": list(f.files)} for f in outcome.after.findings]}
    elif not outcome.dry_run:
        head["after"] = None
    return head


def _stream_manifest(fh, outcome: FixOutcome, entries, options: dict) -> None:
    """The manifest as JSON, the changed files streamed one per line from ``entries`` (bounded memory)."""
    head = _clean(manifest_head(outcome, options))
    text = json.dumps(head, indent=2, allow_nan=False)
    fh.write(text[:-2] + ',\n  "changed": [')
    entries.seek(0)
    first = True
    for line in entries:
        fh.write(("\n    " if first else ",\n    ") + line.rstrip("\n"))
        first = False
    fh.write("\n  ]\n}\n" if not first else "]\n}\n")
    entries.seek(0, 2)


def _write_manifest(outcome: FixOutcome, path: Path, entries, options: dict) -> None:
    """Write (or replace) the manifest at ``path`` through a temporary file and a rename."""
    from segdoctor.io.outputs import OutputError

    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            _stream_manifest(fh, outcome, entries, options)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"{path}: could not write the manifest ({exc.strerror or type(exc).__name__}).") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
