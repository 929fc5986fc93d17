"""The report of a fix run: the findings left on the output, and the repairs before/after side by side."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from segdoctor.findings import Section, Severity, Table
from segdoctor.report.model import Report

#: files shown per row of the "needs you" table (all of them are in the manifest)
FILES_SHOWN = 5


@dataclass
class FixReport(Report):
    """A Report whose findings are those on the repaired copy (those of the dataset for a dry run).

    It also fails (exit status 1) when a finding it repaired is still found on the output, whatever
    that finding's severity."""

    fix_verdict: str = ""
    unrepaired: list[str] = field(default_factory=list)
    fix: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.fix_verdict or super().verdict

    def fails(self, fail_on: str) -> bool:
        if fail_on == "never":
            return False
        return bool(self.unrepaired) or super().fails(fail_on)

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["fix"] = self.fix
        return out


def _counts(codes: dict[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in codes.items())


def _files(files: Iterable[str]) -> str:
    files = list(files)
    shown = ", ".join(files[:FILES_SHOWN])
    return shown + (f" … and {len(files) - FILES_SHOWN} more" if len(files) > FILES_SHOWN else "")


def _values(v: dict | None) -> str:
    if not v:
        return ""
    if "colours" in v:
        cols = v["colours"]
        return f"{v['distinct_colours']} colours: " + ", ".join(str(tuple(c)) for c in cols[:6]) + (" …" if len(cols) > 6 else "")
    vals = v["values"]
    text = ", ".join(str(x) for x in vals[:12]) + (" …" if len(vals) > 12 else "")
    return "{" + text + "}" + (f" ({v['distinct']} values)" if v["distinct"] > 12 else "") + (
        f" x{v['channels']} channels" if v.get("channels") else "")


def build_report(outcome) -> FixReport:
    plan = outcome.plan
    before, after = outcome.before, outcome.after
    shown = after if after is not None else before
    target = f"{outcome.source} -> {outcome.out_text}"
    done = {c: outcome.done[c] for c in sorted(plan.codes) if outcome.done[c]}
    report = FixReport(command="fix", target=target, findings=list(shown.findings), checks=list(shown.checks))
    report.unrepaired = sorted(outcome.remaining)
    needs = [o for o in plan.needs_you]
    repaired_codes = set(plan.repairs) if outcome.dry_run else set(outcome.remaining)
    errors_left = [f for f in shown.findings if f.severity is Severity.ERROR and f.code not in repaired_codes]
    n_files = outcome.changed
    if outcome.dry_run:
        verdict = (f"Dry run: {n_files} file(s) would be repaired ({_counts(done)}); nothing written but the plan "
                   f"{outcome.shown_manifest}." if n_files else
                   f"Dry run: nothing to repair automatically; nothing written but the plan {outcome.shown_manifest}.")
    else:
        if n_files:
            verdict = f"Repaired {n_files} file(s) in {outcome.out_text} ({_counts(done)})."
        elif plan.tasks:
            verdict = f"Repaired no file; wrote an unchanged copy to {outcome.out_text}."
        else:
            verdict = f"Nothing to repair automatically; wrote an unchanged copy to {outcome.out_text}."
        if report.unrepaired:
            verdict += f" Still found after repair: {', '.join(report.unrepaired)}."
        elif n_files:
            verdict += " Every repaired finding is gone."
    if errors_left:
        verdict += f" {len(errors_left)} error(s) need you: {errors_left[0].title} ({errors_left[0].code})."
    report.fix_verdict = verdict

    report.notes.extend(before.notes)
    report.notes.extend(outcome.notes)
    if not outcome.dry_run:
        report.notes.append(
            f"Wrote {outcome.out_text}: {n_files} repaired file(s) ({outcome.renamed} now .png), {outcome.linked} "
            f"unchanged file(s) hard-linked, {outcome.copied} copied. Manifest: {outcome.shown_manifest}.")
        if outcome.linked:
            report.notes.append("Hard-linked files share their data with the originals: replace them (as most tools "
                                "do when saving), never edit them in place, or run with --copy.")
    if outcome.dry_run and outcome.preview:
        shown = sorted(outcome.preview, key=lambda e: e["source"])[:10]
        listing = "; ".join(f"{e['source']}" + (f" -> {e['output']}" if e["output"] != e["source"] else "")
                            + f" ({', '.join(dict.fromkeys(r['code'] for r in e['repairs']))})" for e in shown)
        more = n_files - len(shown)
        report.notes.append(f"Would repair: {listing}" + (f"; and {more} more in the plan." if more > 0 else "."))
    if outcome.failed:
        report.notes.append(f"Not repaired (copied as they were): {len(outcome.failed)} file(s), e.g. "
                            f"{outcome.failed[0]['file']}: {outcome.failed[0]['reason']}.")
    if needs:
        report.notes.append("Needs you: " + "; ".join(f"{o.code} {o.name} ({len(o.files)} file(s))" for o in needs) + ".")

    report.facts.update({"source": outcome.source, "output": str(outcome.target), "manifest": str(outcome.manifest),
                         "files_repaired": n_files, "dry_run": outcome.dry_run})
    if not outcome.dry_run:
        report.facts.update({"files_hard_linked": outcome.linked, "files_copied": outcome.copied})
    report.sections.extend(_sections(outcome))
    if after is not None:
        report.sections.extend(after.sections[:1])  # the overview of the repaired copy
    report.fix = {
        "output": str(outcome.target), "manifest": str(outcome.manifest), "dry_run": outcome.dry_run,
        "files_repaired": n_files, "repaired": done, "still_found": report.unrepaired,
        "needs_you": [{"code": o.code, "reason": o.reason, "files": o.files} for o in needs],
        "not_repaired": outcome.failed,
        "before": {"counts": before.counts, "findings": [{"code": f.code, "severity": f.severity.label,
                                                          "title": f.title} for f in before.findings]},
    }
    return report


def _sections(outcome) -> list[Section]:
    plan = outcome.plan
    after = outcome.after
    after_codes: dict[str, list] = {}
    if after is not None:
        for f in after.findings:
            after_codes.setdefault(f.code, []).append(f)
    kept_codes = {o.code for o in plan.kept}
    rows = []
    for f in outcome.before.findings:
        repaired = f.code in plan.repairs and plan.repairs[f.code]
        if outcome.dry_run:
            status = "would be repaired" if repaired else ("kept" if f.code in kept_codes else "needs you")
        elif f.code in after_codes:
            status = "still found: " + "; ".join(x.title for x in after_codes[f.code])
            if not repaired:
                status = ("kept: " if f.code in kept_codes else "needs you: ") + status[len("still found: "):]
        else:
            status = "gone"
        rows.append((f.code, f.name, f"{f.severity.label}: {f.title}",
                     outcome.done[f.code] if repaired else "-", status))
    if after is not None:
        before_codes = {f.code for f in outcome.before.findings}
        for f in after.findings:
            if f.code not in before_codes:
                rows.append((f.code, f.name, "-", "-", f"new on the output: {f.severity.label}: {f.title}"))
    title = "Planned repairs" if outcome.dry_run else "Repairs: before and after"
    text = ("What check-data found in the dataset, what segdoctor fix repairs, and what check-data finds on the "
            "repaired copy.")
    tables = [Table("Findings before and after", ("code", "check", "before", "files repaired", "after"), tuple(rows))]
    if plan.needs_you or outcome.failed:
        need_rows = [(o.code, o.severity.label, o.reason, o.fix, _files(o.files)) for o in plan.needs_you]
        need_rows += [(", ".join(x["codes"]), "-", f"not repaired: {x['reason']}", "Repair this file by hand.", x["file"])
                      for x in outcome.failed]
        tables.append(Table("Needs you", ("code", "severity", "why not automatic", "what to do", "files"),
                            tuple(need_rows), caption="Every file is listed in the manifest."))
    if outcome.preview:
        changed = tuple((e["source"], e["output"], "; ".join(f"{r['code']} {r['action']}" for r in e["repairs"]),
                         _values(e.get("values_before")), _values(e.get("values_after")))
                        for e in sorted(outcome.preview, key=lambda e: e["source"]))
        more = outcome.changed - len(outcome.preview)
        tables.append(Table("Changed files", ("file", "written as", "repairs", "values before", "values after"), changed,
                            caption=(f"… and {more} more. " if more > 0 else "")
                            + f"All in {outcome.shown_manifest}, with the SHA-256 of each original."))
    return [Section(title, text=text, tables=tuple(tables))]
