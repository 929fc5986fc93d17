"""Opens a real report in headless Chromium and checks that it renders (skipped when Chromium is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")


def _report(tmp_path: Path) -> Path:
    html = tmp_path / "report.html"
    rc = main(["check-data", str(REPO / "sample_data" / "coins_broken"), "--report", str(html), "-q", "--jobs", "1"])
    assert rc == 1
    return html


def test_report_renders_in_chromium(tmp_path):
    html = _report(tmp_path)
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert "Not ready to train" in dom.stdout
    assert dom.stdout.count('class="finding ') >= 4
    # every picture is embedded and decodes in the browser's DOM as a data: URI
    assert "src=\"http" not in dom.stdout and "href=\"http" not in dom.stdout

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1100,1600",
                    f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20, "the screenshot is blank"
    # the dark header band is drawn at the top of the page
    assert pixels[:40].mean() < 100
