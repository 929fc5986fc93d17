"""Evaluates the causal links on the findings and facts of one run: root causes, their chains, the cause-first order."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segdoctor.diagnosis.conditions import Condition, Run
from segdoctor.diagnosis.links import ANSWERED_IN_TRAINING, HEADLINES, LINKS, SYMPTOMS, Link, label, scope_of
from segdoctor.findings import Finding, Severity

_WEIGHT = {Severity.ERROR: 3, Severity.WARNING: 2, Severity.INFO: 1}
_SCOPE_ORDER = {"data": 0, "model": 1, "history": 2, "predictions": 3}


# --- the result -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One explained finding of a cause: who explains it directly (the longest chain from the root)."""

    finding: Finding
    parent: Finding
    link: Link
    depth: int
    confirmed: bool  # every condition of this link was checked and holds


@dataclass(frozen=True)
class Cause:
    """A root cause: a finding nothing else in the run explains, and what it explains."""

    finding: Finding
    steps: tuple[Step, ...]  # every finding it explains, in chain order
    rank: int
    score: int
    confidence: str  # high | medium | low
    unchecked: tuple[str, ...]  # conditions this run could not check (why the confidence is medium)
    chain: str
    confirm: str

    @property
    def code(self) -> str:
        return self.finding.code

    @property
    def explains(self) -> list[Finding]:
        return [s.finding for s in self.steps]

    @property
    def explained_codes(self) -> list[str]:
        return list(dict.fromkeys(s.finding.code for s in self.steps))

    def to_json(self) -> dict[str, Any]:
        f = self.finding
        return {
            "cause": f.code, "name": f.name, "severity": f.severity.label, "title": f.title,
            "explains": self.explained_codes, "confidence": self.confidence, "score": self.score,
            "chain": self.chain, "fix": f.fix, "confirm": self.confirm,
            "unchecked_conditions": list(self.unchecked),
            "links": [{"cause": s.parent.code, "effect": s.finding.code, "via": s.link.via} for s in self.steps],
        }


@dataclass(frozen=True)
class Diagnosis:
    """Root causes ranked by how much of the run they explain, and the findings ordered cause-first."""

    causes: tuple[Cause, ...]
    findings: tuple[Finding, ...]  # cause-first: each cause, then what it explains; then the findings no cause explains
    explained_by: Mapping[int, tuple[str, ...]]  # id(finding) -> codes of the findings that directly explain it
    group: Mapping[int, Cause]  # id(finding) -> the cause it is shown under
    unexplained: tuple[Finding, ...]  # errors no cause of this run explains

    def __bool__(self) -> bool:
        return bool(self.causes)

    def cause_of(self, finding: Finding) -> Cause | None:
        return self.group.get(id(finding))

    def explainers(self, finding: Finding) -> tuple[str, ...]:
        return self.explained_by.get(id(finding), ())


def _headline_step(steps: Sequence[Step]) -> Step | None:
    for code in HEADLINES:
        for s in steps:
            if s.finding.code == code:
                return s
    return None


def _chain_text(root: Finding, steps: Sequence[Step]) -> str:
    """One line: the longest chain from the root (with the first mechanism), then the other findings it explains."""
    if not steps:
        return f"{label(root.code)} ({root.code})"
    # the chain ends at the symptom the verdict names, else at the deepest finding
    end = _headline_step(steps) or max(steps, key=lambda s: (s.depth, int(s.finding.severity)))
    parent = {id(s.finding): s for s in steps}
    path = [end]
    while id(path[-1].parent) in parent:
        path.append(parent[id(path[-1].parent)])
    path.reverse()
    text = f"{label(root.code)} ({root.code}) → {path[0].link.via}"
    for s in path:
        text += f" → {label(s.finding.code)} ({s.finding.code})"
    on_path = {id(s.finding) for s in path}
    others = list(dict.fromkeys(f"{label(s.finding.code)} ({s.finding.code})" for s in steps if id(s.finding) not in on_path))
    if others:
        text += "; also " + ", ".join(others)
    return text


def _command_line(command: str, inputs: Mapping[str, str]) -> str | None:
    q = shlex.quote
    if command == "check-data" and inputs.get("data"):
        return f"segdoctor check-data {q(inputs['data'])}"
    if command == "check-model" and inputs.get("model"):
        line = f"segdoctor check-model {q(inputs['model'])}"
        for flag in ("data", "history"):
            if inputs.get(flag):
                line += f" --{flag} {q(inputs[flag])}"
        return line
    if command == "check-history" and inputs.get("history"):
        line = f"segdoctor check-history {q(inputs['history'])}"
        if inputs.get("data"):
            line += f" --data {q(inputs['data'])}"
        return line
    return None


def _codes_text(codes: Sequence[str]) -> str:
    codes = list(codes)
    return codes[0] if len(codes) == 1 else ", ".join(codes[:-1]) + " and " + codes[-1]


def _confirm_text(root: Finding, steps: Sequence[Step], command: str, inputs: Mapping[str, str]) -> str:
    """What to re-run after the fix, and what should be gone then."""
    line = _command_line(command, inputs)
    retrain = any(scope_of(s.finding.code) in ("predictions", "history") for s in steps) or (
        command != "check-data" and scope_of(root.code) in ("model", "history"))
    stays = root.code in ANSWERED_IN_TRAINING
    # a data property the root explains (masks that look empty after a one_hot of 255) goes with the root's fix;
    # under a root that stays, it stays too
    gone = [s.finding.code for s in steps if not (stays and s.finding.code in ANSWERED_IN_TRAINING)]
    if not stays:
        gone.insert(0, root.code)
    gone = list(dict.fromkeys(gone))
    run = f"re-run `{line}`" if line else "re-run segdoctor on the same inputs"
    text = ("Apply the fix, retrain, then " if retrain else "Apply the fix, then ") + run
    if gone:
        text += f": {_codes_text(gone)} should be gone"
    if stays:
        text += f" ({root.code} stays: it describes the data, and the fix answers it in training)"
    return text + "."


def diagnose(findings: Sequence[Finding], facts: Mapping[str, Any] | None = None, *,
             command: str = "", inputs: Mapping[str, str] | None = None) -> Diagnosis:
    """Evaluate ``LINKS`` on the findings and facts of one run."""
    run = Run(findings, facts)
    items = run.findings
    n = len(items)
    by_code: dict[str, list[int]] = {}
    for i, f in enumerate(items):
        by_code.setdefault(f.code, []).append(i)
    # active edges between the findings of this run: (cause index, effect index, link, confirmed, unchecked conditions)
    edges: list[tuple[int, int, Link, bool, tuple[Condition, ...]]] = []
    for link in LINKS:
        for i in by_code.get(link.cause, ()):
            for j in by_code.get(link.effect, ()):
                state, unknown = link.state(run, items[i], items[j])
                if state is not False:
                    edges.append((i, j, link, state is True, unknown))
    out: dict[int, list] = {i: [] for i in range(n)}
    explainers: dict[int, list[int]] = {i: [] for i in range(n)}
    for e in edges:
        out[e[0]].append(e)
        explainers[e[1]].append(e[0])

    def can_lead(i: int) -> bool:
        f = items[i]
        return f.code not in SYMPTOMS and (f.severity >= Severity.ERROR or bool(out[i]))

    def reach(i: int) -> list[Step]:
        """Every finding reachable from i, each with its parent on the longest chain of checked links (else the longest
        chain); the graph is acyclic."""
        best: dict[int, tuple[bool, int, int, Link]] = {}  # k -> (chain fully checked, depth, parent, link)
        order: list[int] = []

        def visit(k: int, checked: bool, d: int, parent: int, link: Link) -> None:
            if k in best and best[k][:2] >= (checked, d):
                return
            if k not in best:
                order.append(k)
            best[k] = (checked, d, parent, link)
            for _, j, lk, ok, _ in out[k]:
                visit(j, checked and ok, d + 1, k, lk)

        for _, j, lk, ok, _ in out[i]:
            visit(j, ok, 1, i, lk)
        steps = [Step(items[k], items[best[k][2]], best[k][3], best[k][1], best[k][0]) for k in order]
        steps.sort(key=lambda s: (s.depth, -int(s.finding.severity), s.finding.code))
        return steps

    roots = [i for i in range(n) if not explainers[i] and can_lead(i)]
    reached = {id(s.finding) for r in roots for s in reach(r)}
    # a cause explained only by symptoms that no cause explains would otherwise be lost
    roots += [i for i in range(n) if i not in roots and id(items[i]) not in reached and can_lead(i)]

    index = {id(f): i for i, f in enumerate(items)}
    scored = []
    for i in roots:
        steps = reach(i)
        score = sum(_WEIGHT[s.finding.severity] for s in steps)
        f = items[i]
        key = (-score, -int(f.severity), -len(f.files), _SCOPE_ORDER.get(scope_of(f.code), 9), f.code)
        scored.append((key, i, steps, score))
    scored.sort(key=lambda t: t[0])

    causes: list[Cause] = []
    seen: set[int] = set()
    for rank, (_, i, steps, score) in enumerate(scored, start=1):
        root = items[i]
        # a finding is confirmed when some chain of checked links leads to it; the others say what was not checked
        confirmed = {i}
        grew = True
        while grew:
            grew = False
            for k, j, _, ok, _ in edges:
                if ok and k in confirmed and j not in confirmed:
                    confirmed.add(j)
                    grew = True
        members = {i} | {index[id(s.finding)] for s in steps}
        unchecked = list(dict.fromkeys(
            c.text for k, j, _, ok, unknown in edges
            if not ok and k in members and j in members and j not in confirmed for c in unknown))
        ids = {id(s.finding) for s in steps}
        if steps and ids <= seen:
            confidence = "low"
        elif unchecked:
            confidence = "medium"
        else:
            confidence = "high"
        seen |= ids
        causes.append(Cause(root, tuple(steps), rank, score, confidence, tuple(unchecked),
                            _chain_text(root, steps), _confirm_text(root, steps, command, inputs or {})))

    ordered: list[Finding] = []
    group: dict[int, Cause] = {}
    placed: set[int] = set()
    for cause in causes:
        for f in (cause.finding, *cause.explains):
            if id(f) not in placed:
                placed.add(id(f))
                ordered.append(f)
                group[id(f)] = cause
    rest = sorted((f for f in items if id(f) not in placed), key=lambda f: (-int(f.severity), f.code))
    ordered.extend(rest)
    explained_by = {id(items[j]): tuple(dict.fromkeys(items[k].code for k in explainers[j])) for j in range(n) if explainers[j]}
    unexplained = tuple(f for f in rest if f.severity >= Severity.ERROR)
    return Diagnosis(tuple(causes), tuple(ordered), explained_by, group, unexplained)
