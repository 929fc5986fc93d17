"""Validation of written reports against the JSON Schema shipped in the package, plus what a schema cannot say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from segdoctor.report.json_writer import schema

_VALIDATOR = jsonschema.Draft202012Validator(schema())


def is_report(path: Path) -> dict[str, Any] | None:
    """The parsed file when it is a segdoctor report, else None."""
    try:
        with open(path, "rb") as fh:  # a report starts with its schema key; hostile test inputs (deep, huge) do not
            if b'"schema": "segdoctor.report/' not in fh.read(64):
                return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("segdoctor.report/") else None


def report_errors(doc: dict[str, Any]) -> list[str]:
    """Schema violations, then the cross-field rules: file_details describe listed files, causes explain findings of the run."""
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in _VALIDATOR.iter_errors(doc)]
    if errors:
        return errors
    codes = {f["code"] for f in doc["findings"]}
    for f in doc["findings"]:
        if not set(f["file_details"]) <= set(f["files"]):
            errors.append(f"{f['code']}: file_details names files that are not in files")
        if not set(f["explained_by"]) <= codes:
            errors.append(f"{f['code']}: explained_by names codes that are not findings of this report")
    for c in doc["diagnosis"]:
        if c["cause"] not in codes or not set(c["explains"]) <= codes:
            errors.append(f"diagnosis {c['cause']}: names codes that are not findings of this report")
    if doc["diagnosis"] and doc["findings"] and doc["findings"][0]["code"] != doc["diagnosis"][0]["cause"]:
        errors.append("findings are not cause-first: the first finding is not the first root cause")
    return errors


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    errors = report_errors(doc)
    assert not errors, "\n".join(errors)
    return doc
