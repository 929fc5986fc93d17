"""Renders the self-contained HTML report from ``report_templates/`` with one autoescaping jinja2 environment."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from segdoctor.findings import Figure
from segdoctor.report.model import Report

#: files shown per finding in HTML (JSON has them all)
FILES_SHOWN = 8
#: findings of one check whose figures are drawn: a log with 400 frozen metrics gives 400 findings of one
#: check with the same curves, and drawing each would make a report of megabytes that nobody scrolls
FIGURES_PER_CHECK = 5


def template_dir() -> Path:
    """Where the templates live: inside the installed package (wheel) or at the repository top level."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "report_templates", here.parent.parent / "report_templates"):
        if (candidate / "report.html.j2").is_file():
            return candidate
    raise FileNotFoundError("report_templates/report.html.j2 is missing from the installation; reinstall segdoctor")


def _fmt_number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        a = abs(value)
        if a >= 1e5 or a < 1e-3:
            return f"{value:.3g}"
        if a >= 100:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if hasattr(value, "item"):
        try:
            return _fmt_number(value.item())
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_fmt_number(v) for v in list(value)[:12])
        return f"[{shown}{', …' if len(value) > 12 else ''}]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt_number(v)}" for k, v in list(value.items())[:12])
    return str(value)


@functools.lru_cache(maxsize=1)
def environment():
    """The one jinja2 environment (templates compile once per process: figures render through it too)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        autoescape=True,  # every template, whatever its extension: file names and evidence are user data
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt_number
    return env


_environment = environment  # the name callers used before the environment was cached


def _figure_view(fig: Figure) -> dict[str, Any]:
    from segdoctor.report.figures import data_uri

    return {"title": fig.title, "caption": fig.caption, "src": data_uri(fig)}


def _views(report: Report) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The diagnosis and the findings as the template shows them: cause-first, each snippet printed once."""
    from segdoctor.fix.suggest import repair_command

    diagnosis = report.diagnosis
    anchors = {id(f): f"{f.code}-{i}" for i, f in enumerate(diagnosis.findings, start=1)}
    shown: dict[str, str] = {}  # snippet text -> where it was first printed
    causes = []
    for c in diagnosis.causes:
        f = c.finding
        snippet = f.snippet if f.snippet and f.snippet not in shown else None
        if snippet:
            shown[snippet] = f"the diagnosis (cause {c.rank}, {f.code})"
        causes.append({
            "c": c, "f": f, "anchor": anchors[id(f)], "snippet": snippet,
            "steps": [{"parent": s.parent.code, "code": s.finding.code, "title": s.finding.title, "via": s.link.via,
                       "anchor": anchors[id(s.finding)], "severity": s.finding.severity.label} for s in c.steps],
        })
    findings = []
    drawn: dict[str, int] = {}  # findings of each check whose figures were drawn (wide logs: thousands of findings)
    for f in diagnosis.findings:
        draw = drawn.get(f.code, 0) < FIGURES_PER_CHECK
        if draw and f.figures:
            drawn[f.code] = drawn.get(f.code, 0) + 1
        cause = diagnosis.cause_of(f)
        is_root = cause is not None and cause.finding is f
        snippet, snippet_ref, folded = f.snippet, None, False
        if f.snippet and f.snippet in shown:
            snippet, snippet_ref = None, shown[f.snippet]
        elif f.snippet:
            shown[f.snippet] = f"{f.code} above"
            # a symptom's own code matters only if it remains after its cause's fix
            folded = cause is not None and not is_root and bool(cause.finding.snippet)
        findings.append(
            {
                "f": f,
                "repair": repair_command(report, f),
                "anchor": anchors[id(f)],
                "root_of": cause if is_root else None,
                "under": cause if (cause is not None and not is_root) else None,
                "explained_by": list(diagnosis.explainers(f)),
                "snippet": snippet,
                "snippet_ref": snippet_ref,
                "snippet_folded": folded,
                "files_shown": [(path, f.file_details.get(path, "")) for path in f.files[:FILES_SHOWN]],
                "files_more": max(0, len(f.files) - FILES_SHOWN),
                "figures": [v for v in (_figure_view(x) for x in f.figures) if v["src"]] if draw else [],
                "figures_left_out": 0 if draw else len(f.figures),
            }
        )
    return causes, findings


def render_html(report: Report) -> str:
    from segdoctor import __version__

    env = environment()
    css = (template_dir() / "report.css").read_text(encoding="utf-8")
    causes, findings = _views(report)
    sections = []
    for s in report.sections:
        sections.append({"s": s, "figures": [v for v in (_figure_view(x) for x in s.figures) if v["src"]]})
    template = env.get_template("report.html.j2")
    return template.render(
        report=report,
        version=__version__,
        css=css,
        causes=causes,
        findings=findings,
        sections=sections,
        counts=report.counts,
        verdict=report.verdict,
        checks=report.checks,
    )


def html_page(report: Report) -> str:
    """The self-contained page ``--report`` writes."""
    from segdoctor.io.dataset import printable

    # file names that are not UTF-8 can reach the page through notes and captions, not only file lists
    return printable(render_html(report))


def write_html(report: Report, path: str | Path) -> Path:
    from segdoctor.io.outputs import atomic_write_text

    return atomic_write_text(path, html_page(report))


def notebook_html(report: Report) -> str:
    """The report for a notebook cell: the page inside an ``<iframe srcdoc>``, so its CSS styles only itself.

    The page is an attribute value here, escaped by the template (``&``, ``<``, ``>`` and both quotes), so
    nothing in it can close the attribute or the iframe. The iframe is sandboxed: the page needs no script.
    """
    return environment().get_template("notebook.html.j2").render(page=html_page(report), report=report,
                                                                 verdict=report.verdict)
