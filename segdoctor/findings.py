"""The result types every check produces: severities, findings and the figures they ask for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """How bad a finding is; ordered so that ``max()`` gives the worst."""

    INFO = 10
    WARNING = 20
    ERROR = 30

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r}; expected one of info, warning, error") from None


@dataclass(frozen=True, slots=True)
class Figure:
    """Numbers to draw, not pixels: the report package turns ``kind`` + ``data`` into a picture.

    ``data`` holds plain numbers, lists and file paths. Drawing happens late, in
    ``segdoctor.report.figures``, so checks never import matplotlib.
    """

    kind: str
    title: str
    data: Mapping[str, Any]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Table:
    """A small table for the report (column headers and rows of plain values)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosed problem, quantified, with the fix."""

    code: str
    name: str
    severity: Severity
    title: str
    evidence: Mapping[str, Any]
    why: str
    fix: str
    snippet: str | None = None
    files: tuple[str, ...] = ()
    figures: tuple[Figure, ...] = ()
    related: tuple[str, ...] = ()
    #: what is wrong with each file, by path (a subset of ``files``); ``files`` holds the paths alone
    file_details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.label,
            "title": self.title,
            "evidence": dict(self.evidence),
            "why": self.why,
            "fix": self.fix,
            "snippet": self.snippet,
            "files": list(self.files),
            "file_details": dict(self.file_details),
            "related": list(self.related),
        }


@dataclass(frozen=True, slots=True)
class Section:
    """An overview block of the report that is not a finding (dataset summary, model summary)."""

    title: str
    text: str = ""
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    facts: tuple[tuple[str, Any], ...] = field(default=())
