"""The ``segdoctor fix`` command line that repairs a finding, for check-data's HTML report.

Light on purpose (imported while the report renders): it decides from the finding's code and evidence
alone, as the repair plan does, and quotes every path for a POSIX shell.
"""

from __future__ import annotations

import shlex

from segdoctor.findings import Finding

#: codes whose findings the fix command repairs (SD004 only when it names transposed masks)
REPAIRED_BY_FIX = frozenset({"SD004", "SD101", "SD102", "SD104", "SD105", "SD106", "SD203", "SD252"})


def repairable(f: Finding) -> bool:
    """Whether ``segdoctor fix`` repairs (part of) this finding."""
    if f.code not in REPAIRED_BY_FIX:
        return False
    if f.code == "SD004":
        return bool(f.evidence.get("transposed_masks"))
    return True


def repair_command(report, f: Finding) -> str | None:
    """Two command lines (all repairs / this finding's only) for a repairable finding of a check-data
    report on a local folder, or None."""
    if getattr(report, "command", None) != "check-data" or not repairable(f):
        return None
    target = str(report.target)
    if "://" in target and not target.lower().startswith("file://"):
        return None
    out = target.rstrip("/\\") + "-fixed"
    flags = []
    options = getattr(getattr(report, "context", None), "options", None)
    for flag, attr in (("--images", "images"), ("--masks", "masks"), ("--mask-pattern", "mask_pattern"),
                       ("--num-classes", "num_classes")):
        value = getattr(options, attr, None)
        if value is not None:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    base = " ".join(["segdoctor fix", shlex.quote(target), "--out", shlex.quote(out), *flags])
    codes = sorted({x.code for x in report.findings if repairable(x)})
    return (f"{base}   # repairs {', '.join(codes)} in a copy\n"
            f"{base} --select {f.code}   # this finding only")
