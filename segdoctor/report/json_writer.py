"""Writes the machine-readable report (schema ``segdoctor.report/1``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from segdoctor.io.dataset import printable
from segdoctor.report.model import Report


def _clean(value: Any) -> Any:
    # JSON has no NaN/Inf; numpy scalars are not serialisable. Keep the file strictly valid.
    if isinstance(value, dict):
        return {printable(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return printable(value)  # file names that are not UTF-8 (lone surrogates) would make the file invalid
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def schema_text() -> str:
    """The JSON Schema every report validates against (``segdoctor schema`` prints it); shipped inside the package."""
    from importlib.resources import files

    return files("segdoctor.report").joinpath("report.schema.json").read_text(encoding="utf-8")


def schema() -> dict[str, Any]:
    return json.loads(schema_text())


def report_json(report: Report) -> dict[str, Any]:
    return _clean(report.to_json())


def write_json(report: Report, path: str | Path) -> Path:
    from segdoctor.io.outputs import atomic_write_text

    return atomic_write_text(path, json.dumps(report_json(report), indent=2, allow_nan=False) + "\n")
