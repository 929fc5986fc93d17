"""Notebook conventions: a Report displays itself inline (an iframe whose page is the --report page),
saves by suffix, keeps its findings as a plain list; progress goes through tqdm.auto."""

from __future__ import annotations

import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import segdoctor
from segdoctor.cli import main
from segdoctor.findings import Finding, Severity
from segdoctor.io.outputs import OutputError
from segdoctor.progress import TqdmProgress, resolve_progress
from segdoctor.report.model import Report


class _Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _tags(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.tags


def _log(tmp_path: Path) -> Path:
    k = np.arange(30)
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"loss": (0.5 + 0.3 * (-1.0) ** k).tolist(), "dice_coef": [0.0] * 30,
                                "lr": [1e-2] * 30}))
    return path


def _hostile_report() -> Report:
    nasty = 'x" onload="alert(1)" </iframe><script>alert(2)</script><style>body{display:none}</style>'
    finding = Finding(code="SD605", name="metric-collapse", severity=Severity.ERROR, title=nasty,
                      evidence={"column": nasty}, why=nasty, fix=nasty, snippet=nasty, files=(nasty,))
    return Report(command="check-history", target=nasty, findings=[finding], notes=[nasty])


def test_repr_html_is_one_sandboxed_iframe_holding_the_report_page(tmp_path):
    report = segdoctor.check_history(_log(tmp_path))
    shown = report._repr_html_()
    tags = _tags(shown)
    assert [t for t, _ in tags] == ["iframe"]  # nothing else reaches the notebook's DOM: no style, no script
    attrs = tags[0][1]
    assert "sandbox" in attrs and "allow-scripts" not in (attrs["sandbox"] or "")
    page = attrs["srcdoc"]
    saved = report.save(tmp_path / "report.html")
    assert page == saved.read_text(encoding="utf-8")  # the very page --report writes
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page and "SD605" in page
    # self-contained: no file or network resource outside the page
    for tag, a in _tags(page):
        for key in ("src", "href"):
            value = a.get(key)
            assert value is None or value.startswith(("data:", "#")), (tag, key, value)


def test_repr_html_page_matches_the_cli_report(tmp_path):
    log = _log(tmp_path)
    assert main(["check-history", str(log), "--report", str(tmp_path / "cli.html"), "--json", str(tmp_path / "cli.json"), "-q"]) == 1
    report = segdoctor.check_history(log)
    # the fields that depend on the clock: when the report was made, how long each check took
    cli = json.loads((tmp_path / "cli.json").read_text())
    report.created = cli["created"]
    cli_page = re.sub(r'(status-\w+">\w+</td><td class="num">)[^<]*', r"\1", (tmp_path / "cli.html").read_text(encoding="utf-8"))
    page = re.sub(r'(status-\w+">\w+</td><td class="num">)[^<]*', r"\1", _tags(report._repr_html_())[0][1]["srcdoc"])
    assert page == cli_page


def test_repr_html_escapes_what_the_report_quotes():
    report = _hostile_report()
    shown = report._repr_html_()
    assert [t for t, _ in _tags(shown)] == ["iframe"]
    assert "<script>" not in shown and "<style>" not in shown.split("srcdoc=")[0]
    page = _tags(shown)[0][1]["srcdoc"]
    # inside the page the user text is escaped again: it renders as text, never as markup
    assert "<script>alert(2)</script>" not in page and html.escape("<script>alert(2)</script>") in page
    assert [t for t, _ in _tags(page) if t in ("script", "iframe")] == []


def test_save_writes_html_or_json_by_suffix(tmp_path):
    report = segdoctor.check_history(_log(tmp_path))
    data = json.loads(report.save(tmp_path / "r.json").read_text())
    assert data["schema"] == "segdoctor.report/1" and data["findings"][0]["code"] == report.findings[0].code
    out = tmp_path / "r.html"
    out.write_text("old report")
    assert report.save(str(out)) == out.resolve() and "SD605" in out.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.html")]  # no temporary file left
    with pytest.raises(OutputError, match="expected a .html or .json path"):
        report.save(tmp_path / "r.txt")


def test_save_never_writes_over_or_into_the_target(tmp_path):
    log = _log(tmp_path)
    report = segdoctor.check_history(log)
    before = log.read_bytes()
    renamed = tmp_path / "log.json"
    log.rename(renamed)
    report.target = str(renamed)
    with pytest.raises(OutputError, match="destroy"):
        report.save(renamed)
    assert renamed.read_bytes() == before
    folder = tmp_path / "data"
    folder.mkdir()
    inside = Report(command="check-data", target=str(folder))
    with pytest.raises(OutputError, match="inside"):
        inside.save(folder / "report.html")


def test_findings_are_a_plain_list_and_the_repr_is_one_line(tmp_path):
    report = segdoctor.check_history(_log(tmp_path))
    assert type(report.findings) is list and all(isinstance(f, Finding) for f in report.findings)
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    assert errors and errors[0].code == "SD605"
    text = repr(report)
    assert "\n" not in text and "check-history" in text and report.verdict in text


def test_progress_is_a_tqdm_bar_when_asked():
    assert resolve_progress(None) is None and resolve_progress(False) is None
    assert isinstance(resolve_progress(True), TqdmProgress)

    def callback(done, total, label):
        return None

    assert resolve_progress(callback) is callback
    stream = io.StringIO()
    bar = TqdmProgress(file=stream, delay=0)
    for done in range(1, 6):
        bar(done, 5, "scanning")
    bar(1, 2, "predicting")  # a new label starts a new bar
    bar(2, 2, "predicting")
    text = stream.getvalue()
    assert "scanning" in text and "5/5" in text and "predicting" in text and "2/2" in text


def test_check_data_accepts_progress_true(tmp_path, capsys):
    from PIL import Image

    for sub in ("images", "masks"):
        (tmp_path / "ds" / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "ds" / "images" / f"{i}.png")
        Image.fromarray((np.arange(256).reshape(16, 16) % 2).astype(np.uint8)).save(tmp_path / "ds" / "masks" / f"{i}.png")
    report = segdoctor.check_data(tmp_path / "ds", jobs=1, progress=True)
    assert isinstance(report, Report)
