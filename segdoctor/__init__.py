"""segdoctor: tells a Keras/TensorFlow user why their segmentation model fails, and how to fix it.

The public API. Importing it never imports Keras or TensorFlow: the functions that need them import
them when called.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from segdoctor.findings import Figure, Finding, Section, Severity, Table
from segdoctor.report.model import Report

__version__ = "0.1.0"

# Lazily resolved so that `import segdoctor` stays light (no scan machinery, no Keras).
_LAZY = {
    "check_data": "segdoctor.commands.data",
    "check_history": "segdoctor.commands.history",
    "check_model": "segdoctor.commands.model",
    "check_pipeline": "segdoctor.commands.pipeline",
    "fix_dataset": "segdoctor.fix.run",
    "lr_find": "segdoctor.commands.lrfind",
}

__all__ = sorted(["Figure", "Finding", "Report", "Section", "Severity", "Table", "__version__", *_LAZY])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segdoctor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
