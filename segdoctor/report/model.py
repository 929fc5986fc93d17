"""The report: everything one run found, in the order a reader needs it."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from segdoctor.diagnosis import Diagnosis, diagnose, missing_inputs_hint
from segdoctor.diagnosis import verdict as diagnosis_verdict
from segdoctor.findings import Finding, Section, Severity
from segdoctor.runner import CheckStatus

SCHEMA = "segdoctor.report/1"


def _sort_key(f: Finding) -> tuple[int, str]:
    return (-int(f.severity), f.code)


@dataclass
class Report:
    """The outcome of one command: findings, the diagnosis that ranks their root causes, per-check status, overview sections.

    ``inputs`` names what the run read (``data``, ``model``, ``history``): the diagnosis says what to re-run, and
    the files of data findings are relative to ``inputs['data']``.
    """

    command: str
    target: str
    findings: list[Finding] = field(default_factory=list)
    checks: list[CheckStatus] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=_sort_key)

    def add(self, findings: Sequence[Finding], checks: Sequence[CheckStatus]) -> None:
        """Merge the outcome of another batch of checks (for example the data checks inside check-model)."""
        seen = {c.code for c in self.checks}
        self.findings = sorted([*self.findings, *findings], key=_sort_key)
        self.checks.extend(c for c in checks if c.code not in seen)

    @property
    def counts(self) -> dict[str, int]:
        out = {s.label: 0 for s in sorted(Severity, reverse=True)}
        for f in self.findings:
            out[f.severity.label] += 1
        return out

    @property
    def diagnosis(self) -> Diagnosis:
        """Root causes ranked by how much of this run they explain; ``diagnosis.findings`` is the cause-first order."""
        return diagnose(self.findings, self.facts, command=self.command, inputs=self.inputs)

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def verdict(self) -> str:
        """One line: the root cause when the run found one, else what the run found (or could not find)."""
        d = self.diagnosis
        named = diagnosis_verdict(d, command=self.command, facts=self.facts, findings=self.findings)
        if named:
            return named
        c = self.counts
        if c["error"]:
            top = d.unexplained[0] if d.unexplained else self.findings[0]
            more = f" and {c['error'] - 1} more error(s)" if c["error"] > 1 else ""
            return (f"{top.title} ({top.code}){more}; this run cannot tell why: "
                    f"{missing_inputs_hint(self.command, self.inputs)}.")
        dice = self.facts.get("mean_dice")
        works = (f"The model works on this data: mean Dice {dice:.2f}" if self.command == "check-model"
                 and isinstance(dice, (int, float)) and dice == dice else None)
        if c["warning"]:
            return (f"{works}, with {c['warning']} warning(s) likely to hurt results." if works
                    else f"Usable, with {c['warning']} warning(s) likely to hurt results.")
        crashed = [s for s in self.checks if s.status == "crashed"]
        if crashed:
            return f"No problems found, but {len(crashed)} check(s) could not run."
        return f"{works}; no problems found." if works else "No problems found."

    def fails(self, fail_on: str) -> bool:
        """True when a finding reaches the ``--fail-on`` level (``never`` never fails)."""
        if fail_on == "never":
            return False
        level = Severity.parse(fail_on)
        return any(f.severity >= level for f in self.findings)

    # notebooks and scripts ------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        """Jupyter/Colab display: the HTML report inline, in a sandboxed iframe (its CSS cannot leak)."""
        from segdoctor.report.html import notebook_html

        return notebook_html(self)

    def __repr__(self) -> str:
        c = self.counts
        return (f"<segdoctor Report {self.command} {self.target!r}: {c['error']} error(s), {c['warning']} warning(s), "
                f"{c['info']} info; {self.verdict}>")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report to ``path``: HTML for ``.html``/``.htm``, JSON for ``.json``. Returns the path written.

        Written atomically (a temporary file renamed over the old one), and never over what the report was
        made from: a path that is, or lies inside, the checked target raises ``OutputError``.
        """
        from segdoctor.io.outputs import OutputError, guard_outputs

        suffix = Path(str(path)).suffix.lower()
        if suffix not in (".html", ".htm", ".json"):
            raise OutputError(f"{path}: unknown report type {suffix or '(no suffix)'!r}; expected a .html or .json path.")
        inputs = [("target", self.target), *dict(getattr(self, "inputs", None) or {}).items()]  # everything it read
        guard_outputs([("save", path)], inputs)
        if suffix == ".json":
            from segdoctor.report.json_writer import write_json

            return write_json(self, path)
        from segdoctor.report.html import write_html

        return write_html(self, path)

    def to_json(self) -> dict[str, Any]:
        from segdoctor import __version__

        diagnosis = self.diagnosis
        return {
            "schema": SCHEMA,
            "tool": {"name": "segdoctor", "version": __version__},
            "command": self.command,
            "target": self.target,
            "created": self.created,
            "inputs": dict(self.inputs),
            "summary": {"verdict": self.verdict, "counts": self.counts, **self.facts},
            "diagnosis": [c.to_json() for c in diagnosis.causes],
            "notes": list(self.notes),
            "findings": [{**f.to_json(), "explained_by": list(diagnosis.explainers(f))} for f in diagnosis.findings],
            "checks": [c.to_json() for c in self.checks],
        }
