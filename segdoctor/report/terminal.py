"""The terminal summary as lines of text: the verdict, the diagnosis, the findings grouped under their cause.

``segdoctor.cli`` prints them; nothing here prints.
"""

from __future__ import annotations

import textwrap

from segdoctor.diagnosis import lower_first
from segdoctor.report.model import Report

#: causes shown with their chain, fix and confirmation; findings listed
CAUSES_SHOWN = 3
FINDINGS_SHOWN = 12


def _wrap(text: str, width: int, indent: str) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ",
                         break_long_words=False, break_on_hyphens=False) or [indent]


def _shorten(indent: str, text: str, width: int) -> str:
    # textwrap.shorten collapses whitespace, the indent included: shorten the text alone
    return indent + textwrap.shorten(text, width=max(20, width - len(indent)), placeholder=" …")


def summary_lines(report: Report, *, width: int = 100, quiet: bool = False) -> list[str]:
    """The verdict first (it names the root cause when there is one); with ``quiet`` only the verdict."""
    lines = [report.verdict]
    if quiet:
        return lines
    counts = report.counts
    lines.append(f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info")
    diagnosis = report.diagnosis
    if diagnosis.causes:
        lines.append("Diagnosis:")
        for cause in diagnosis.causes[:CAUSES_SHOWN]:
            f = cause.finding
            lines.append(_shorten(f"  {cause.rank}. {f.code} ", f.title, width - 20) + f"  [confidence {cause.confidence}]")
            if cause.steps:
                lines += _wrap(cause.chain, width, "     ")
            lines += _wrap(f"Fix first: {f.fix}" if cause.rank == 1 else f"Fix: {f.fix}", width, "     ")
            if cause.rank == 1 or cause.steps:  # a defect that explains nothing else: its fix is the whole story
                lines += _wrap(f"Confirm: {lower_first(cause.confirm)}", width, "     ")
        if len(diagnosis.causes) > CAUSES_SHOWN:
            lines.append(f"  … and {len(diagnosis.causes) - CAUSES_SHOWN} more cause(s) in the report")
        lines.append("Findings:")
    for f in diagnosis.findings[:FINDINGS_SHOWN]:
        cause = diagnosis.cause_of(f)
        explained = cause is not None and cause.finding is not f
        indent = "    " if explained else "  "
        lines.append(_shorten(f"{indent}{f.severity.label.upper():<7} {f.code} ", f.title, width))
    if len(diagnosis.findings) > FINDINGS_SHOWN:
        lines.append(f"  … and {len(diagnosis.findings) - FINDINGS_SHOWN} more in the report")
    for c in report.checks:
        if c.status == "crashed":
            lines.append(f"  check {c.code} could not run: {c.message}")
    return lines
