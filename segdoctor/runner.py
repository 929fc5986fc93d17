"""Runs selected checks on their contexts. A crashing check becomes a recorded failure, never a lost report."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segdoctor.findings import Finding
from segdoctor.registry import Check

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckStatus:
    code: str
    name: str
    status: str  # "passed" | "found" | "skipped" | "crashed"
    seconds: float
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {"code": self.code, "name": self.name, "status": self.status, "seconds": round(self.seconds, 4)}
        if self.message:
            d["message"] = self.message
        return d


def run_checks(
    checks: Sequence[type[Check]], contexts: Mapping[str, Any]
) -> tuple[list[Finding], list[CheckStatus]]:
    """Run every check whose scope has a context; return findings and one status per check."""
    findings: list[Finding] = []
    statuses: list[CheckStatus] = []
    for cls in checks:
        ctx = contexts.get(cls.scope)
        if ctx is None:
            statuses.append(CheckStatus(cls.code, cls.name, "skipped", 0.0, f"no {cls.scope} to check"))
            continue
        start = time.perf_counter()
        try:
            reason = cls.skip_reason(getattr(ctx, "dataset", ctx))
        except Exception as exc:
            reason = None
            log.debug("skip_reason of %s failed: %s", cls.code, exc)
        if reason:
            statuses.append(CheckStatus(cls.code, cls.name, "skipped", time.perf_counter() - start, reason))
            continue
        try:
            found = list(cls().run(ctx))
        except Exception as exc:  # a check bug must not cost the user the whole report
            log.warning("check %s crashed: %s", cls.code, exc)
            log.debug("%s", traceback.format_exc())
            statuses.append(
                CheckStatus(cls.code, cls.name, "crashed", time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
            )
            continue
        findings.extend(found)
        statuses.append(
            CheckStatus(cls.code, cls.name, "found" if found else "passed", time.perf_counter() - start)
        )
    return findings, statuses
