"""From the findings of check-data to a repair plan: which file gets which repairs, and what needs the user.

The plan reads only the findings: their codes, the files they name and the repair parameters in their
evidence (the threshold, the remap table, the colour table, the class values, the transform). It never
judges the data again. A repair applies only when its finding fired, and only to the files it names.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from segdoctor.errors import UsageError
from segdoctor.findings import Finding, Severity
from segdoctor.fix.encode import output_name

#: the order in which one file's repairs run: geometry first, then snapping (on the values as stored),
#: then the channel/colour mapping, the id remapping, and binarising last
REPAIR_ORDER = ("SD004", "SD252", "SD203", "SD105", "SD106", "SD104", "SD102", "SD101")
#: codes with a mechanical repair (SD109 is kept as it is: palette indices are already class ids)
REPAIRABLE = frozenset(REPAIR_ORDER)

#: why a finding is left to the user (shown with its own fix sentence)
NOT_AUTOMATIC = {
    "SD001": "a file that cannot be decoded has no pixels to repair",
    "SD002": "a missing mask cannot be made up",
    "SD003": "a mask without its image cannot be used",
    "SD005": "converting images changes what the model sees; do it in the loader",
    "SD103": "void pixels are meant to be ignored by the loss, not rewritten",
    "SD107": "which class an unexpected id belongs to is your decision",
    "SD108": "empty masks are valid labels",
    "SD151": "imbalance is handled by the loss and the sampling, not in the files",
    "SD152": "tiny objects are handled by resolution, cropping and the loss, not in the files",
    "SD153": "re-splitting the data is a decision about your experiment",
    "SD154": "which copy of a leaked image to remove is a decision about your experiment",
    "SD201": "not rewritten: normalisation belongs in the loader, so that training and inference use the same code",
    "SD202": "a blank image has nothing to repair",
    "SD251": "which mask belongs to which image needs a look by eye",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One repair of one file: the finding's code, the operation, its parameters and a sentence for the manifest."""

    code: str
    op: str
    params: dict
    action: str


@dataclass
class FileTask:
    """A file to rewrite: where it is, where its repaired copy goes (relative to the output), and how."""

    source: Path
    rel: str
    output: str
    kind: str  # "mask" or "image"
    steps: list[Step] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return list(dict.fromkeys(s.code for s in self.steps))

    def portable(self, index: int) -> tuple:
        """What a worker process (or a Dask worker) needs, as plain picklable values."""
        return (index, str(self.source.absolute()), self.rel, self.output, self.kind,
                tuple((s.code, s.op, s.params, s.action) for s in self.steps))


@dataclass
class Outstanding:
    """A finding (or part of one) that fix leaves to the user, with the files concerned."""

    code: str
    name: str
    severity: Severity
    title: str
    fix: str
    reason: str
    files: list[str] = field(default_factory=list)
    file_details: dict[str, str] = field(default_factory=dict)  # what is wrong with each file, where the finding says

    def to_json(self) -> dict:
        out = {"code": self.code, "name": self.name, "severity": self.severity.label, "title": self.title,
               "reason": self.reason, "fix": self.fix, "files": list(self.files)}
        if self.file_details:
            out["file_details"] = dict(self.file_details)
        return out


@dataclass
class Plan:
    tasks: list[FileTask]
    repairs: dict[str, list[str]]  # code -> files (as the findings name them) that get its repair
    findings: dict[str, list[Finding]]  # code -> the findings being repaired
    needs_you: list[Outstanding]
    kept: list[Outstanding]

    @property
    def codes(self) -> list[str]:
        return [c for c in REPAIR_ORDER if self.repairs.get(c)]


def _plain_table(table) -> dict[int, int]:
    return {int(k): int(v) for k, v in dict(table).items()}


def _needs(f: Finding, reason: str, files: Iterable[str] | None = None) -> Outstanding:
    names = list(f.files if files is None else files)
    details = {n: f.file_details[n] for n in names if n in f.file_details}
    return Outstanding(f.code, f.name, f.severity, f.title, f.fix, reason, names, details)


def _steps_for(f: Finding, ds) -> tuple[list[tuple[str, Step]], list[str], str]:
    """(display name, step) pairs for the files a finding names; the files it names but cannot repair; why.

    Raises KeyError when the evidence lacks a repair parameter (a finding from another version)."""
    ev = f.evidence
    c = f.code
    if c == "SD101":
        keep = [ev["void_value"]] if ev.get("void_value") is not None else []
        thr = ev["threshold"]
        step = Step(c, "binarise", {"threshold": thr, "keep": keep},
                    f"binarised: values above {thr} -> 1, the others -> 0" + (f" (void {keep[0]} kept)" if keep else ""))
        return [(name, step) for name in f.files], [], ""
    if c == "SD102":
        table = _plain_table(ev["remap"])
        void = ev.get("void_value")
        text = ", ".join(f"{a}->{b}" for a, b in table.items())
        step = Step(c, "remap", {"table": table},
                    f"remapped ids {text}" + (f" (void {void} kept)" if void is not None else ""))
        return [(name, step) for name in f.files], [], ""
    if c == "SD104":
        if "colour_table" in ev:
            table = [list(map(int, row)) for row in ev["colour_table"]]
            dist = float(ev.get("max_colour_distance", 0.0))
            if max((row[3] for row in table if row[3] != 255), default=0) > 254:  # 255: the void colour
                return [], list(f.files), "more class colours than an 8-bit id map holds next to the void id 255"
            text = "; ".join(f"{tuple(r[:3])}->{r[3]}" for r in table[:24]) + (" …" if len(table) > 24 else "")
            how = (f"the nearest class colour (within {dist:g}), other colours -> 255 (void)" if dist > 0
                   else "its exact colour, other colours -> 255 (void)")
            step = Step(c, "colours_to_ids", {"table": table, "max_distance": dist},
                        f"colours mapped to class ids by {how}: {text}")
        else:
            step = Step(c, "single_channel", {}, "3 equal channels stored as one")
        return [(name, step) for name in f.files], [], ""
    if c in ("SD105", "SD106"):
        values = list(ev["snap_values"])
        colours = [list(map(int, x)) for x in ev.get("snap_colours", [])]
        what = "{" + ", ".join(str(v) for v in values[:16]) + ("…" if len(values) > 16 else "") + "}"
        step = Step(c, "snap", {"values": values, "colours": colours, "lossless": c == "SD105"},
                    f"every pixel snapped to the nearest class value of {what}"
                    + (" (colour masks: the nearest class colour)" if colours else ""))
        return [(name, step) for name in f.files], [], ""
    if c == "SD252":
        name = ev["transform"]
        step = Step(c, "transform", {"name": name}, f"applied a {name} (the masks fit their images after it)")
        return [(n, step) for n in f.files], [], ""
    if c == "SD004":
        transposed = list(ev.get("transposed_masks", ()))
        step = Step(c, "transpose", {}, "rows and columns swapped (the mask was its image's transpose)")
        chosen = set(transposed)
        rest = [entry for entry in f.files if entry not in chosen]
        return [(t, step) for t in transposed], rest, "only transposed masks are repaired; resize the others with nearest-neighbour"
    if c == "SD203":
        return [(name, Step(c, "exif", {}, "EXIF orientation applied to the pixels, tag dropped")) for name in f.files], [], ""
    raise KeyError(c)


def _union(a: list, b: list) -> list:
    return [list(c) for c in dict.fromkeys(tuple(int(x) for x in c) for c in [*a, *b])]


def _resolve(entry: str, index: dict[str, tuple[Path, str, object]]):
    """The file a finding's entry names: the entry itself, or its head before ': details' (SD001, SD004)."""
    if entry in index:
        return index[entry]
    start = 0
    while (i := entry.find(": ", start)) >= 0:
        if entry[:i] in index:
            return index[entry[:i]]
        start = i + 1
    return None


def make_plan(findings: Sequence[Finding], ds) -> Plan:
    """The repairs for ``findings`` (of a check-data run on ``ds``), per file, in ``REPAIR_ORDER``."""
    root = Path(ds.root)
    index: dict[str, tuple[Path, str, object]] = {}
    for pair in ds.pairs:
        for path, kind in ((pair.image, "image"), (pair.mask, "mask")):
            if path is not None:
                index[ds.display(path)] = (Path(path), kind, pair)
    per_file: dict[Path, list[Step]] = defaultdict(list)
    kinds: dict[Path, str] = {}
    named: dict[tuple[str, Path], str] = {}
    repairs: dict[str, list[str]] = defaultdict(list)
    repaired_findings: dict[str, list[Finding]] = defaultdict(list)
    needs_you: list[Outstanding] = []
    kept: list[Outstanding] = []
    for f in findings:
        if f.code == "SD109":
            kept.append(_needs(f, "palette PNGs are kept as they are (their indices are the class ids); "
                                  "repaired palette masks keep their palette"))
            continue
        if f.code not in REPAIRABLE:
            reason = NOT_AUTOMATIC.get(f.code, "no safe mechanical repair")
            (needs_you if f.severity >= Severity.WARNING else kept).append(_needs(f, reason))
            continue
        try:
            steps, rest, why_rest = _steps_for(f, ds)
        except (KeyError, TypeError, ValueError):
            needs_you.append(_needs(f, "this finding carries no repair parameters (made by another segdoctor version?)"))
            continue
        unknown = []
        for entry, step in steps:
            hit = _resolve(entry, index)
            if hit is None:
                unknown.append(entry)
                continue
            path, kind, pair = hit
            if f.code == "SD203":
                if kind != "image":
                    unknown.append(entry)
                    continue
                mask = pair.mask
                step = Step(step.code, "exif", {"mask": str(Path(mask).absolute()) if mask is not None else None},
                            step.action)
                if mask is not None:  # image and mask alike: a mask that carries a tag of its own turns too
                    per_file[Path(mask)].append(Step(step.code, "exif_if_tagged", {},
                                                     "EXIF orientation of the mask applied with its image's, tag dropped"))
                    kinds[Path(mask)] = "mask"
            elif kind != "mask":
                unknown.append(entry)
                continue
            per_file[path].append(step)
            kinds[path] = kind
            named[(f.code, path)] = entry
        repaired_findings[f.code].append(f)
        if unknown or rest:
            needs_you.append(_needs(f, why_rest or "segdoctor could not locate these files in the dataset", [*rest, *unknown]))
        if f.code == "SD252":
            chosen = {p for (code, p) in named if code == "SD252"}
            others = [ds.display(p.mask) for p in ds.pairs if p.mask is not None and Path(p.mask) not in chosen]
            if others:
                needs_you.append(_needs(
                    f, f"the {f.evidence.get('transform', 'transform')} was applied to the masks this finding names; "
                       "these masks were not judged (not studied, no boundary, or no clear gain): check them by eye", others))

    tasks: list[FileTask] = []
    for path, steps in per_file.items():
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            raise UsageError(f"{path}: lies outside the dataset folder {root}; segdoctor fix copies DIR as a whole, "
                             "so --images and --masks must name folders inside it.") from None
        ordered = sorted(steps, key=lambda s: (REPAIR_ORDER.index(s.code), s.op))
        tables = [s.params["table"] for s in ordered if s.op == "colours_to_ids"]
        if tables:
            # a colour mask is snapped to the colours of SD104's table before SD104 maps them to ids: the class
            # colours as SD104 names them (Pascal VOC's exact colours), with the void colour of thin borders
            colours = _union([], [row[:3] for table in tables for row in table])
            ordered = [Step(s.code, s.op, {**s.params, "colours": colours}, s.action) if s.op == "snap" else s
                       for s in ordered]
        tasks.append(FileTask(path, rel, output_name(rel), kinds[path], ordered))

    # two repaired files cannot share an output name, nor take the name of another file of the dataset
    by_output: dict[str, list[FileTask]] = defaultdict(list)
    for t in tasks:
        by_output[t.output].append(t)
    clashes = []
    for out, group in by_output.items():
        if len(group) > 1 or (group[0].output != group[0].rel and (root / out).exists()):
            clashes.extend(group)
    by_code: dict[str, list[FileTask]] = defaultdict(list)
    for t in clashes:
        tasks.remove(t)
        by_code[t.steps[0].code].append(t)
    for code, group in by_code.items():
        f = repaired_findings[code][0]
        needs_you.append(Outstanding(
            code, f.name, f.severity, f"{len(group)} repaired files would take the name of another file",
            "Rename the files that share a stem (e.g. a.jpg beside a.png), then run segdoctor fix again.",
            "the lossless copy (.png) would replace another file of the dataset; these files are copied unrepaired",
            [t.rel for t in group]))
    tasks.sort(key=lambda t: t.rel)
    clash_paths = {t.source for t in clashes}
    for (code, path), entry in named.items():
        if path not in clash_paths:
            repairs[code].append(entry)
    return Plan(tasks, dict(repairs), dict(repaired_findings), needs_you, kept)
