"""The diagnosis in words: the verdict line, the hint when no cause was found, the links as ``segdoctor explain`` prints them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segdoctor.diagnosis.conditions import CONDITIONS, Run
from segdoctor.diagnosis.engine import Cause, Diagnosis, Step, _headline_step
from segdoctor.diagnosis.links import HEADLINES, LINKS, SYMPTOMS, label, links_from, links_to
from segdoctor.findings import Finding

# --- words --------------------------------------------------------------------------------------------


#: names that keep their capital inside a sentence
_PROPER = frozenset({"Adam", "AdamW", "Adamax", "Adagrad", "Adadelta", "Adafactor", "Nadam", "Lion", "Lamb", "Ftrl",
                     "Dice", "Jaccard", "Tversky", "Keras", "TensorFlow", "Cityscapes"})


def lower_first(text: str) -> str:
    """``text`` with its first word in lower case when it is an ordinary capitalised word ("All", not "IoU" or "Adam")."""
    word = text.split(" ", 1)[0]
    if word.strip(",.:;()") in _PROPER:
        return text
    if len(word) > 1 and word[0].isupper() and (word[1:].islower() or not any(c.isalpha() for c in word[1:])):
        return text[0].lower() + text[1:]
    return text


def headline(cause: Cause) -> Step | None:
    """The explained finding the verdict names: the most telling symptom of what went wrong."""
    return _headline_step(cause.steps)


def _condition_words(cause: Cause, step: Step, run: Run) -> str:
    """The confirmed conditions on the way from the root to ``step``, as a clause ("the loss is plain cross-entropy")."""
    parent = {id(s.finding): s for s in cause.steps}
    path = [step]
    while id(path[-1].parent) in parent:
        path.append(parent[id(path[-1].parent)])
    first = path[-1]
    direct = next((lk for lk in LINKS if lk.cause == cause.code and lk.effect == step.finding.code), None)
    link = direct if direct is not None and direct.state(run, cause.finding, step.finding)[0] is True else first.link
    words = []
    for c in link.conditions:
        if c.name in ("class-prior-output", "collapse-blank", "collapse-throughout", "collapse-after-rise",
                      "nan-after-training", "nan-from-start", "same-files"):
            continue  # these describe the symptom, which the verdict already names
        if c.test(run, cause.finding, step.finding) is not True:
            continue
        detail = c.detail(run) if c.detail else None
        words.append((c.short or c.text) + (f" ({detail})" if detail else ""))
    return " and ".join(words)


def verdict(diagnosis: Diagnosis, *, command: str, facts: Mapping[str, Any] | None = None,
            findings: Sequence[Finding] = ()) -> str | None:
    """The first line of every report when a root cause was found: the symptom, and the cause that explains it."""
    if not diagnosis.causes:
        return None
    top = diagnosis.causes[0]
    f = top.finding
    more = len(diagnosis.causes) - 1
    tail = f" {more} more cause{'s' if more > 1 else ''} below." if more else ""
    step = headline(top)
    if step is not None:
        clause = _condition_words(top, step, Run(findings, facts))
        return (f"{HEADLINES[step.finding.code]} ({step.finding.code}) because {lower_first(f.title)} ({f.code})"
                + (f", and {clause}" if clause else "") + "." + tail)
    if command in ("check-data", "check-pipeline"):  # nothing has trained yet: the data (as the model will see it) is the subject
        return f"Not ready to train. Root cause: {lower_first(f.title)} ({f.code})." + tail
    return f"Root cause: {lower_first(f.title)} ({f.code})." + tail


def missing_inputs_hint(command: str, inputs: Mapping[str, str]) -> str:
    """What to add to a run that found symptoms but not their cause."""
    if command == "check-history":
        if not inputs.get("data"):
            return "add --data DIR (the masks it trained on), or run `segdoctor check-model MODEL --data DIR --history LOG`"
        return "run `segdoctor check-model MODEL --data DIR --history LOG` to check the model too"
    if command == "check-model":
        missing = [flag for flag, name in (("--data DIR", "data"), ("--history LOG", "history")) if not inputs.get(name)]
        if missing:
            return f"add {' and '.join(missing)}"
        return "check the training code (augmentation, loss, preprocessing) against the findings below"
    if command == "check-pipeline":
        return "add --data DIR (the files the pipeline reads) and --model MODEL.keras"
    return "run check-model with --data and --history"


def links_text() -> str:
    """The whole table, for ``segdoctor explain --links``."""
    lines = ["Causal links: a finding of the first code can explain a finding of the second.", ""]
    for link in LINKS:
        lines.append(f"{link.cause} → {link.effect}  {label(link.cause)} → {label(link.effect)}: {link.describe()}")
    lines += ["", "Codes that are only symptoms (never named as the root cause): " + ", ".join(sorted(SYMPTOMS)), "",
              "Conditions read the run's facts and evidence; one that this run cannot check lowers the confidence to medium:"]
    for c in CONDITIONS.values():
        lines.append(f"  {c.name}: {c.text}")
    return "\n".join(lines)


def links_of(code: str) -> str:
    """The links of one check, for ``segdoctor explain CODE``."""
    out, into = links_from(code), links_to(code)
    lines = ["Causal links (segdoctor explain --links lists them all):"]
    if code in SYMPTOMS:
        lines.append("  a symptom: never named as the root cause itself")
    if out:
        lines.append("  can explain:")
        lines += [f"    {lk.effect} {label(lk.effect)}: {lk.describe()}" for lk in out]
    if into:
        lines.append("  can be explained by:")
        lines += [f"    {lk.cause} {label(lk.cause)}: {lk.describe()}" for lk in into]
    if not out and not into:
        lines.append("  none: its findings stand on their own")
    return "\n".join(lines)
