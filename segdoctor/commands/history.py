"""``segdoctor check-history LOG``: diagnose a training log (SD6xx), optionally with the dataset it was trained on.

Also the library entry points ``check_history`` (a path in, a Report out) and ``diagnose_history``
(a History in, findings out), which ``check-model --history`` and the Keras callback reuse.
"""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from segdoctor.findings import Finding, Section, Table
from segdoctor.io.history import History, read_history
from segdoctor.registry import select_checks, split_patterns
from segdoctor.report.model import Report
from segdoctor.runner import CheckStatus, run_checks

NAME = "check-history"
HELP = "diagnose a training log: NaN, divergence, oscillation, plateaus, Dice collapse, the accuracy trap (SD6xx)"
DESCRIPTION = """\
Diagnose a training log saved by Keras:

  - History.history saved with json.dump  (json.dump(model.fit(...).history, f))
  - a CSVLogger CSV                        (keras.callbacks.CSVLogger("log.csv"))
  - a TensorBoard log folder               (keras.callbacks.TensorBoard("logs/"))
  - the JSON written by segdoctor.keras_callback.SegDoctorCallback

Columns are recognised by meaning (dice_coef, f1-score, mean_io_u_1, binary_accuracy, lr, val_*),
and a loss defined as -Dice or 1 - Dice is judged as such. With --data DIR the dataset checks run
too, and the background share sharpens the accuracy-trap and plateau checks.

examples:
  segdoctor check-history history.json
  segdoctor check-history training.csv --data data/ --json report.json
  segdoctor check-history logs/ --fail-on warning
"""



class HistoryDiagnosis(NamedTuple):
    """What ``diagnose_history`` returns: findings, one status per check, and the overview sections."""

    findings: list[Finding]
    checks: list[CheckStatus]
    sections: list[Section]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("history", metavar="LOG",
                        help="History JSON, CSVLogger CSV, TensorBoard log folder, or SegDoctorCallback JSON")
    parser.add_argument("--data", metavar="DIR",
                        help="the dataset the model was trained on: runs the data checks and uses its background share")


def diagnose_history(
    history: History | str | Path,
    *,
    background_share: float | None = None,
    data_findings: Sequence[Finding] = (),
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    lr_range: Any = None,
) -> HistoryDiagnosis:
    """Run the SD6xx checks on a History (or the log at a path); return (findings, statuses, sections).

    This is what ``check-model --history FILE`` calls: merge the result into its report with
    ``report.add(result.findings, result.checks)`` and ``report.sections.extend(result.sections)``.
    A path that cannot be read raises ``HistoryError`` (exit status 2 in the CLI).

    ``background_share`` (share of background pixels in the masks, 0..1) sharpens SD604/SD606;
    ``data_findings`` (from the data checks) let the fixes quote the loss prescription (SD151) and
    the mask encoding (SD101). ``select``/``ignore`` take codes, prefixes or names; codes of other
    scopes are accepted and simply select no history check. ``lr_range`` (a learning-rate range test of
    the same run, ``check-model --lr-find``) lets the learning-rate advice quote the measured range.
    """
    from segdoctor.checks.history import HistoryContext

    if not isinstance(history, History):
        history = read_history(history)
    checks = select_checks(("history",), select, ignore)
    ctx = HistoryContext(history, background_share=background_share, data_findings=tuple(data_findings), lr_range=lr_range)
    findings, statuses = run_checks(checks, {"history": ctx})
    return HistoryDiagnosis(findings, statuses, [history_section(ctx)])


def history_section(ctx: Any) -> Section:
    """The overview: the recognised columns and the loss/metric curves with the LR."""
    from segdoctor.stats import curves

    h = ctx.history
    rows = []
    for name, role in ctx.roles.items():
        y = h.columns[name]
        finite = y[np.isfinite(y)]
        form = ctx.loss_forms.get(name)
        meaning = role.label if role.kind != curves.OTHER else "not interpreted"
        if form is not None:
            meaning = f"loss: {form.description}"
        rows.append((
            name, meaning, role.split,
            float(finite[0]) if finite.size else math.nan,
            float(finite[-1]) if finite.size else math.nan,
            float(finite.min()) if finite.size else math.nan,
            float(finite.max()) if finite.size else math.nan,
            int(np.count_nonzero(~np.isfinite(y) & ~h.is_missing(name))),
            int(np.count_nonzero(h.is_missing(name))),
        ))
    table = Table(
        title="Columns recognised",
        columns=("column", "meaning", "split", "first", "last", "min", "max", "NaN/Inf", "empty"),
        rows=tuple(rows),
        caption="Columns are matched by meaning (dice/f1, iou/jaccard/mean_io_u, accuracy, lr), val_ twins by prefix.",
    )
    figures = []
    if ctx.columns(curves.LOSS):
        figures.append(ctx.loss_figure(title="Loss curves (train solid, validation dashed; LR on the right axis)"))
    if ctx.columns(curves.DICE, curves.IOU, curves.ACCURACY):
        figures.append(ctx.metric_figure(title="Metric curves (train solid, validation dashed; LR on the right axis)"))
    facts = [("epochs", h.n_epochs), ("format", h.format)]
    if ctx.lr_name:
        lr = h.columns[ctx.lr_name]
        lr = lr[np.isfinite(lr)]
        if lr.size:
            facts.append(("learning rate", f"{lr[0]:.3g} → {lr[-1]:.3g}"))
    if ctx.background_share is not None:
        facts.append(("background share (from --data)", round(float(ctx.background_share), 4)))
    return Section(title="Training history", text=f"{h.n_epochs} epoch(s) read from {h.source or 'the log'}.",
                   tables=(table,), figures=tuple(figures), facts=tuple(facts))


def history_facts(history: History) -> dict[str, Any]:
    """What the diagnosis reads from a log: the form of its training loss and its highest learning rate."""
    from segdoctor.checks.history import HistoryContext

    ctx = HistoryContext(history)
    facts: dict[str, Any] = {}
    loss = ctx.main_loss("train") or ctx.main_loss("val")
    if loss is not None:
        facts["log_loss_form"] = ctx.loss_forms[loss].form
    if ctx.lr_name:
        lr = ctx.values(ctx.lr_name)
        lr = lr[np.isfinite(lr)]
        if lr.size:
            facts["log_learning_rate_max"] = float(lr.max())
    return facts


def background_share_from(data_report: Report) -> float | None:
    """The background share a data report states: ``facts['background_share']`` or ``1 - foreground_share``,
    else the SD151 evidence."""
    for source in [data_report.facts, *(f.evidence for f in data_report.findings if f.code == "SD151")]:
        for key, transform in (("background_share", lambda v: v), ("foreground_share", lambda v: 1.0 - v)):
            value = source.get(key) if hasattr(source, "get") else None
            if isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1:
                return float(transform(value))
    return None


def check_history(
    path: str | Path,
    *,
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    data_dir: str | Path | None = None,
    progress: Callable[..., None] | bool | None = None,
    **data_options: Any,
) -> Report:
    """Read a training log and diagnose it; with ``data_dir`` also run the data checks on the dataset.

    Raises ``HistoryError`` when the log cannot be read. ``data_options`` go to
    ``segdoctor.commands.data.check_data``.
    """
    history = read_history(path)
    background_share = None
    data_report = None
    if data_dir is not None:
        # Imported here: the data command is heavier and check-history must stay light without --data.
        from segdoctor.commands.data import check_data

        offered = {"select": select, "ignore": ignore, "progress": progress, **data_options}
        accepted = inspect.signature(check_data).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        data_report = check_data(data_dir, **{k: v for k, v in offered.items() if takes_any or k in accepted})
        background_share = background_share_from(data_report)
    findings, statuses, sections = diagnose_history(
        history, background_share=background_share,
        data_findings=data_report.findings if data_report is not None else (),
        select=select, ignore=ignore,
    )
    report = Report(command=NAME, target=str(path), findings=findings, checks=statuses, sections=sections,
                    facts={"epochs": history.n_epochs, "format": history.format, **history_facts(history)},
                    inputs={"history": str(path), **({"data": str(data_dir)} if data_dir is not None else {})})
    if data_report is not None:
        report.add(data_report.findings, data_report.checks)
        report.sections.extend(data_report.sections)
        report.notes.extend(data_report.notes)
        if background_share is not None:
            report.facts["background_share"] = round(background_share, 4)
        if background_share is None:
            report.notes.append(f"The data checks on {data_dir} gave no background share; SD604/SD606 judged the log alone.")
    return report


def input_paths(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """What this command reads (the CLI refuses an output path that is, or lies inside, one of them)."""
    return [("LOG", args.history), ("--data", args.data)]


def run(args: argparse.Namespace, progress: Callable[..., None]) -> Report:
    return check_history(
        args.history,
        select=split_patterns(args.select),
        ignore=split_patterns(args.ignore),
        data_dir=args.data,
        progress=progress,
    )
