"""The check registry: every check class registers under a stable code and a kebab-case name.

Selection (``--select`` / ``--ignore``) accepts codes (``SD101``), code prefixes (``SD1``,
``SD10``) and names (``mask-0-255``). Registering a duplicate code or name fails loudly.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from segdoctor.errors import UsageError
from segdoctor.findings import Figure, Finding, Severity

_CODE_RE = re.compile(r"^SD\d{3}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")

#: scopes a check can run in; each has its own context type
SCOPES = ("data", "model", "predictions", "history", "pipeline")


class Check:
    """Base class. Subclasses set ``code``, ``name``, ``severity`` and ``scope`` and implement ``run``.

    The subclass docstring is the user documentation shown by ``segdoctor explain``: a summary
    line, then *Why it matters* and *How to fix* paragraphs, then the calibrated thresholds.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    severity: ClassVar[Severity]
    scope: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    #: per-pair extractors (function names in ``segdoctor.stats.pair.EXTRACTORS``) whose statistics this check
    #: reads. An extractor that some check claims runs only when a selected, applicable check uses it, so that
    #: ``--select`` and datasets a check cannot apply to (no splits) scan faster. Unclaimed extractors always run.
    uses: ClassVar[tuple[str, ...]] = ()

    def run(self, ctx: Any) -> Iterator[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def skip_reason(cls, subject: Any) -> str | None:
        """Why the check cannot apply (shown as its "skipped" status), or None. ``subject`` is what the check
        inspects: the dataset for data checks (known before the scan, so the scan can leave out what only
        skipped checks would read)."""
        return None

    @classmethod
    def summary(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def documentation(cls) -> str:
        return inspect.getdoc(cls) or ""

    def finding(
        self,
        *,
        title: str,
        evidence: dict[str, Any],
        why: str,
        fix: str,
        snippet: str | None = None,
        files: Iterable[str] = (),
        figures: Iterable[Figure] = (),
        severity: Severity | None = None,
        related: Iterable[str] = (),
        file_details: dict[str, str] | None = None,
    ) -> Finding:
        """Build a finding carrying this check's code and name. ``files`` are paths only, exactly as they exist
        (relative to the dataset); what is wrong with each goes in ``file_details`` ({path: reason})."""
        return Finding(
            code=self.code,
            name=self.name,
            severity=self.severity if severity is None else severity,
            title=title[:1].upper() + title[1:],
            evidence=evidence,
            why=why,
            fix=fix,
            snippet=snippet,
            files=tuple(str(f) for f in files),
            figures=tuple(figures),
            related=tuple(related),
            file_details=dict(file_details or {}),
        )


_REGISTRY: dict[str, type[Check]] = {}
_BY_NAME: dict[str, str] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add a check to the registry, refusing duplicate codes or names."""
    code, name = cls.code, cls.name
    if not _CODE_RE.match(code):
        raise ValueError(f"check code {code!r} must look like SD123")
    if not _NAME_RE.match(name):
        raise ValueError(f"check name {name!r} must be kebab-case")
    if cls.scope not in SCOPES:
        raise ValueError(f"check {code} has unknown scope {cls.scope!r}")
    if code in _REGISTRY and _REGISTRY[code] is not cls:
        raise ValueError(f"duplicate check code {code}: {_REGISTRY[code].__name__} and {cls.__name__}")
    for key in (name, *cls.aliases):
        if key in _BY_NAME and _BY_NAME[key] != code:
            raise ValueError(f"duplicate check name {key!r} for {code} and {_BY_NAME[key]}")
    _REGISTRY[code] = cls
    for key in (name, *cls.aliases):
        _BY_NAME[key] = code
    return cls


def _load_all() -> None:
    # Importing the package registers every built-in check (modules import lazily-heavy libs inside functions).
    import segdoctor.checks  # noqa: F401


def all_checks() -> list[type[Check]]:
    _load_all()
    return [_REGISTRY[c] for c in sorted(_REGISTRY)]


def get_check(key: str) -> type[Check]:
    """Look a check up by code (any case), name or alias."""
    _load_all()
    k = key.strip()
    if k.upper() in _REGISTRY:
        return _REGISTRY[k.upper()]
    if k.lower() in _BY_NAME:
        return _REGISTRY[_BY_NAME[k.lower()]]
    raise UsageError(f"Unknown check {key!r}: expected a code such as SD101 or a name such as mask-0-255 (see `segdoctor list-checks`).")


def _matches(cls: type[Check], pattern: str) -> bool:
    p = pattern.strip()
    if not p:
        return False
    if p.upper().startswith("SD") and p[2:].isdigit():
        return cls.code.startswith(p.upper())
    return p.lower() == cls.name or p.lower() in cls.aliases


def _validate_patterns(patterns: Sequence[str], checks: Sequence[type[Check]]) -> None:
    for p in patterns:
        if not any(_matches(c, p) for c in checks):
            raise UsageError(
                f"--select/--ignore value {p!r} matches no check: expected a code (SD101), a code prefix (SD1) or a name (mask-0-255)."
            )


def select_checks(
    scopes: Iterable[str],
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
) -> list[type[Check]]:
    """Checks of the given scopes, narrowed by ``select`` (if any) and minus ``ignore``."""
    every = all_checks()
    _validate_patterns([*select, *ignore], every)
    wanted = set(scopes)
    out = []
    for cls in every:
        if cls.scope not in wanted:
            continue
        if select and not any(_matches(cls, p) for p in select):
            continue
        if any(_matches(cls, p) for p in ignore):
            continue
        out.append(cls)
    if select and not out:
        # e.g. `check-data --select SD601`: a valid code, but of another command; running nothing would
        # print "No problems found."
        raise UsageError(
            f"--select {', '.join(select)}: selects none of the {'/'.join(sorted(wanted))} checks this command runs "
            f"(see `segdoctor list-checks --scope {sorted(wanted)[0]}`)."
        )
    return out


def split_patterns(values: Sequence[str] | None) -> list[str]:
    """Accept repeated flags and comma-separated lists alike."""
    out: list[str] = []
    for v in values or ():
        out.extend(x for x in (s.strip() for s in v.split(",")) if x)
    return out
