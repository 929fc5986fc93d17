"""The command line: help, exit codes, selection, the JSON/HTML outputs, list-checks, explain, and no TensorFlow."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _synth import binary_mask, dataset, image_rgb, multiclass_mask, save, save_palette
from conftest import REPO
from segdoctor.cli import main

#: the data checks of CHECKS.md, code -> name, exactly as the contract spells them
CONTRACT = {
    "SD001": "unreadable-file", "SD002": "unpaired-image", "SD003": "unpaired-mask", "SD004": "shape-mismatch",
    "SD005": "inconsistent-images", "SD101": "mask-0-255", "SD102": "mask-label-offset", "SD103": "mask-void-label",
    "SD104": "mask-multichannel", "SD105": "mask-jpeg-artifacts", "SD106": "mask-interpolated",
    "SD107": "mask-unexpected-labels", "SD108": "mask-empty", "SD109": "mask-palette-mode",
    "SD151": "class-imbalance", "SD152": "tiny-objects", "SD153": "split-shift", "SD154": "split-leakage",
    "SD201": "image-range", "SD202": "image-constant", "SD203": "image-exif-rotation",
    "SD251": "pair-misaligned", "SD252": "mask-flipped",
}
CONTRACT_SEVERITY = {"SD001": "error", "SD002": "warning", "SD003": "warning", "SD004": "error", "SD005": "warning",
                     "SD101": "error", "SD102": "warning", "SD103": "warning", "SD104": "error", "SD105": "error",
                     "SD106": "error", "SD107": "error", "SD108": "warning", "SD109": "info",
                     "SD151": "warning", "SD152": "warning", "SD153": "warning", "SD154": "error",
                     "SD201": "error", "SD202": "error", "SD203": "warning", "SD251": "error", "SD252": "error"}
CHECKS_MD = REPO.parent / "shared" / "CHECKS.md"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def segdoctor(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segdoctor", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def clean(tmp_path) -> Path:
    return dataset(tmp_path / "clean", [binary_mask(i) for i in range(4)])


@pytest.fixture
def broken(tmp_path) -> Path:
    """0/255 masks (SD101 error) plus an unpaired image (SD002 warning)."""
    root = dataset(tmp_path / "broken", [binary_mask(i, fg=255) for i in range(5)])
    save(root / "images" / "orphan.png", image_rgb(7))
    return root


@pytest.fixture
def warn_only(tmp_path) -> Path:
    """Trimap ids {1, 2, 3}: one SD102 warning, no error."""
    return dataset(tmp_path / "trimap", [multiclass_mask(i, classes=(1, 2, 3)) for i in range(4)])


@pytest.fixture
def out(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def _run(argv, out: Path) -> int:
    return main([*argv, "--jobs", "1", "-q"] + ([] if any(a.startswith("--report") for a in argv)
                                                  else ["--report", str(out / "r.html")]))


# ---------------------------------------------------------------- help and TensorFlow


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "check-data" in text and "list-checks" in text and "explain" in text


def test_check_data_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check-data", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--images", "--masks", "--mask-pattern", "--num-classes", "--report", "--json", "--fail-on",
                 "--select", "--ignore", "--jobs", "--sample", "--quiet"):
        assert flag in text


def test_help_and_check_data_never_import_tensorflow(clean, out):
    code = (
        "import sys\n"
        "from segdoctor.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'help imported tensorflow'\n"
        f"rc = main(['check-data', {str(clean)!r}, '--report', {str(out / 'r.html')!r}, '--json', {str(out / 'r.json')!r}, '-q', '--jobs', '1'])\n"
        f"rc += main(['fix', {str(clean)!r}, '--out', {str(out / 'fixed')!r}, '--report', 'none', '-q', '--jobs', '1'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('RC', rc, 'TF', bad)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=out, env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "RC 0 TF []" in p.stdout, p.stdout + p.stderr
    assert (out / "r.html").is_file() and (out / "r.json").is_file()


def test_python_dash_m_segdoctor_help(tmp_path):
    p = segdoctor("--help", cwd=tmp_path)
    assert p.returncode == 0 and "check-data" in p.stdout


# ---------------------------------------------------------------- exit codes


def test_exit_0_when_clean(clean, out, capsys):
    assert _run(["check-data", str(clean)], out) == 0
    assert "No problems found." in capsys.readouterr().out


def test_exit_1_on_error_finding(broken, out, capsys):
    assert _run(["check-data", str(broken)], out) == 1
    text = capsys.readouterr().out
    assert "Not ready to train" in text and "SD101" in text
    assert f"Report: {out / 'r.html'}" in text


def test_exit_0_on_warning_by_default_and_1_with_fail_on_warning(warn_only, out):
    assert _run(["check-data", str(warn_only)], out) == 0
    assert _run(["check-data", str(warn_only), "--fail-on", "warning"], out) == 1
    assert _run(["check-data", str(warn_only), "--fail-on", "error"], out) == 0


def test_fail_on_never_and_info(broken, tmp_path, out):
    assert _run(["check-data", str(broken), "--fail-on", "never"], out) == 0
    pal = tmp_path / "pal"
    for i in range(3):
        save(pal / "images" / f"{i}.png", image_rgb(i))
        save_palette(pal / "masks" / f"{i}.png", multiclass_mask(i, classes=(0, 1, 2)))
    assert _run(["check-data", str(pal)], out) == 0
    assert _run(["check-data", str(pal), "--fail-on", "info"], out) == 1


@pytest.mark.parametrize(
    "args, expected",
    [
        (["check-data", "{missing}"], "no such folder"),
        (["check-data", "{file}"], "is a file"),
        (["check-data", "{clean}", "--num-classes", "0"], "--num-classes 0"),
        (["check-data", "{clean}", "--num-classes", "-3"], "--num-classes -3"),
        (["check-data", "{clean}", "--select", "SD999"], "SD999"),
        (["check-data", "{clean}", "--ignore", "no-such-check"], "no-such-check"),
        (["check-data", "{clean}", "--sample", "0"], "--sample 0"),
        (["check-data", "{clean}", "--select", "SD601"], "selects none of the data checks"),
        (["check-data", "{empty}"], "found no image/mask pairs"),
        (["check-data", "{clean}", "--images", "images"], "together"),
        (["check-data", "{clean}", "--json", "{missing}/r.json"], "does not exist"),
        (["explain", "SD999"], "SD999"),
    ],
)
def test_exit_2_with_one_line_message(tmp_path, clean, args, expected):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "emptydir" / "readme.txt").write_text("x")
    fmt = {"missing": str(tmp_path / "missing"), "file": str(clean / "images" / "case_000.png"),
           "clean": str(clean), "empty": str(tmp_path / "emptydir")}
    argv = [a.format(**fmt) for a in args]
    if argv[0] == "check-data":
        argv += ["--jobs", "1", "--report", str(tmp_path / "r.html")]
    p = segdoctor(*argv, cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = p.stderr.strip()
    assert "Traceback" not in p.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("segdoctor: error:") and expected in err
    assert not (tmp_path / "r.html").exists()


def test_bad_num_classes_type_is_a_usage_error(tmp_path, clean):
    p = segdoctor("check-data", str(clean), "--num-classes", "three", cwd=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "--num-classes" in p.stderr


def test_subprocess_exit_1_and_0(tmp_path, clean, broken):
    assert segdoctor("check-data", str(broken), "--jobs", "1", "-q", cwd=tmp_path).returncode == 1
    p = segdoctor("check-data", str(clean), "--jobs", "1", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "segdoctor-report.html").is_file()  # the default report path
    assert "scanning" not in p.stderr and "Traceback" not in p.stderr  # no progress bar when stderr is not a TTY


# ---------------------------------------------------------------- selection


def _json(argv, out: Path) -> dict:
    rc = _run([*argv, "--json", str(out / "r.json")], out)
    data = json.loads((out / "r.json").read_text())
    data["_rc"] = rc
    return data


def test_select_prefix(broken, out):
    data = _json(["check-data", str(broken), "--select", "SD10"], out)
    assert {c["code"] for c in data["checks"]} == {c for c in CONTRACT if c.startswith("SD10")}
    assert {f["code"] for f in data["findings"]} == {"SD101"}


def test_select_names_and_codes_comma_separated_and_repeated(broken, out):
    data = _json(["check-data", str(broken), "--select", "unpaired-image,SD004", "--select", "mask-empty"], out)
    assert {c["code"] for c in data["checks"]} == {"SD002", "SD004", "SD108"}
    assert [f["code"] for f in data["findings"]] == ["SD002"]
    assert data["_rc"] == 0  # the SD101 error was not selected


def test_ignore_by_name(broken, out):
    data = _json(["check-data", str(broken), "--ignore", "mask-0-255"], out)
    codes = {c["code"] for c in data["checks"]}
    assert "SD101" not in codes and "SD102" in codes
    assert "SD101" not in {f["code"] for f in data["findings"]}
    assert data["_rc"] == 0


def test_ignore_by_code_lowercase(broken, out):
    data = _json(["check-data", str(broken), "--ignore", "sd101"], out)
    assert "SD101" not in {c["code"] for c in data["checks"]}


# ---------------------------------------------------------------- JSON


def test_json_follows_the_contract(broken, out):
    data = _json(["check-data", str(broken)], out)
    assert data["schema"] == "segdoctor.report/1"
    assert data["tool"]["name"] == "segdoctor" and data["tool"]["version"]
    assert data["command"] == "check-data"
    assert data["target"] == str(broken)
    s = data["summary"]
    assert s["counts"] == {"error": 1, "warning": 1, "info": 0}
    assert s["pairs"] == 5 and s["unpaired_images"] == 1
    assert s["verdict"].startswith("Not ready to train")
    by = {f["code"]: f for f in data["findings"]}
    assert set(by) == {"SD101", "SD002"}
    assert [f["code"] for f in data["findings"]] == ["SD101", "SD002"]  # worst first
    for f in data["findings"]:
        for key in ("code", "name", "severity", "title", "evidence", "fix", "files", "why", "snippet"):
            assert key in f, key
        assert f["name"] == CONTRACT[f["code"]]
        assert isinstance(f["evidence"], dict) and f["evidence"]
        assert isinstance(f["files"], list)
    assert by["SD101"]["severity"] == "error" and by["SD002"]["severity"] == "warning"
    assert sorted(by["SD101"]["files"]) == [f"masks/case_{i:03d}.png" for i in range(5)]
    assert by["SD002"]["files"] == ["images/orphan.png"]
    assert {c["code"] for c in data["checks"]} == set(CONTRACT)
    for c in data["checks"]:
        assert c["status"] in ("passed", "found", "skipped", "crashed")
        assert isinstance(c["seconds"], float | int) and c["seconds"] >= 0
    status = {c["code"]: c["status"] for c in data["checks"]}
    assert status["SD101"] == "found" and status["SD004"] == "passed"


def test_json_lists_all_files_html_the_first_few(tmp_path, out):
    root = dataset(tmp_path / "many", [binary_mask(i, fg=255) for i in range(12)])
    data = _json(["check-data", str(root), "--report", str(out / "r.html")], out)
    f = next(f for f in data["findings"] if f["code"] == "SD101")
    assert len(f["files"]) == 12
    html = (out / "r.html").read_text()
    assert "masks/case_000.png" in html
    assert "masks/case_011.png" not in html
    assert "4 more" in html


# ---------------------------------------------------------------- HTML


def test_html_is_self_contained(broken, out):
    html_path = out / "report.html"
    assert _run(["check-data", str(broken), "--report", str(html_path)], out) == 1
    html = html_path.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<link" not in html.lower()
    assert "@import" not in html
    assert "data:image/png;base64," in html  # the figures are embedded
    assert "SD101" in html and "mask-0-255" in html and "&gt; 127" in html


def test_html_escapes_file_names(tmp_path, out):
    root = tmp_path / "evil"
    name = "a<script>alert(1)<&b"
    for stem in (name, "plain"):
        save(root / "images" / f"{stem}.png", image_rgb(0))
        save(root / "masks" / f"{stem}.png", binary_mask(1, fg=255))
    html_path = out / "r.html"
    assert _run(["check-data", str(root), "--report", str(html_path)], out) == 1
    html = html_path.read_text()
    assert "<script" not in html.lower()
    assert "a&lt;script&gt;alert(1)&lt;&amp;b" in html


def test_report_none_writes_no_html(clean, out, monkeypatch):
    monkeypatch.chdir(out)
    assert main(["check-data", str(clean), "--report", "none", "--jobs", "1", "-q"]) == 0
    assert not list(out.iterdir())


# ---------------------------------------------------------------- list-checks and explain


def _contract_from_checks_md() -> dict[str, str]:
    rows = {}
    for line in CHECKS_MD.read_text().splitlines():
        m = re.match(r"^\|\s*(SD\d{3})\s*\|\s*([a-z0-9-]+)\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def test_contract_table_matches_checks_md():
    if not CHECKS_MD.is_file():
        pytest.skip(f"{CHECKS_MD} is absent")
    from segdoctor.registry import all_checks

    contract = _contract_from_checks_md()
    assert {c: n for c, n in contract.items() if c in CONTRACT} == CONTRACT
    # every check of the catalogue, data, model and history alike, is registered under its code and name
    assert {c.code: c.name for c in all_checks() if c.code in contract} == contract


def test_list_checks_lists_every_contract_code_with_its_name(capsys):
    assert main(["list-checks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {}
    for line in lines:
        parts = line.split()
        listed[parts[0]] = (parts[1], parts[2])
    for code, name in CONTRACT.items():
        assert listed[code] == (name, CONTRACT_SEVERITY[code]), code


@pytest.mark.parametrize("key", ["SD101", "mask-0-255", "sd101"])
def test_explain_prints_the_documentation(key, capsys):
    assert main(["explain", key]) == 0
    text = capsys.readouterr().out
    assert text.startswith("SD101 mask-0-255")
    assert "severity: error" in text
    assert "Why it matters" in text and "How to fix" in text
    assert "> 127" in text


@pytest.mark.parametrize("code", sorted(CONTRACT))
def test_every_check_is_documented(code, capsys):
    assert main(["explain", code]) == 0
    text = capsys.readouterr().out
    assert "Why it matters" in text and "How to fix" in text


# ---------------------------------------------------------------- --sample and read-only


def test_sample_analyses_n_pairs(tmp_path, out):
    root = dataset(tmp_path / "many", [binary_mask(i, fg=255) for i in range(10)])
    data = _json(["check-data", str(root), "--sample", "4"], out)
    assert data["summary"]["pairs"] == 4
    assert "4 of 10" in data["summary"]["sampled"]
    f = next(f for f in data["findings"] if f["code"] == "SD101")
    assert len(f["files"]) == 4 and f["title"] == "All 4 masks store the foreground as 255 instead of 1"
    again = _json(["check-data", str(root), "--sample", "4"], out)
    assert next(f for f in again["findings"] if f["code"] == "SD101")["files"] == f["files"]  # seeded


def _tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
                                         st.st_mtime_ns if p.is_file() else 0)
    return out


def test_dataset_folder_is_not_modified(broken, tmp_path):
    (broken / "masks" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before = _tree_digest(broken)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    p = segdoctor("check-data", str(broken), "--jobs", "2", "--json", "r.json", cwd=cwd)
    assert p.returncode == 1, p.stderr
    assert _tree_digest(broken) == before
    assert (cwd / "segdoctor-report.html").is_file() and (cwd / "r.json").is_file()


def test_images_masks_and_mask_pattern_flags(tmp_path, out):
    root = tmp_path / "custom"
    for i in range(3):
        save(root / "pics" / f"{i}.png", image_rgb(i))
        save(root / "annots" / f"{i}_fine.png", binary_mask(i))
        save(root / "annots" / f"{i}_coarse.png", binary_mask(i, fg=255))
    data = _json(["check-data", str(root), "--images", "pics", "--masks", "annots", "--mask-pattern", "*_fine.png"], out)
    assert data["summary"]["pairs"] == 3
    assert data["summary"]["layout"] == "pics/ + annots/ (from flags)"
    assert data["findings"] == [] and data["_rc"] == 0
    data = _json(["check-data", str(root), "--images", "pics", "--masks", "annots", "--mask-pattern", "*_coarse.png"], out)
    assert [f["code"] for f in data["findings"]] == ["SD101"]


def test_html_orders_findings_worst_first(broken, out):
    assert _run(["check-data", str(broken), "--report", str(out / "r.html")], out) == 1
    html = (out / "r.html").read_text()
    assert html.index('id="SD101-1"') < html.index('id="SD002-2"')


def test_progress_bar_only_when_enabled(capsys):
    import io

    from segdoctor.cli import Progress

    Progress(enabled=False)(1, 3, "scanning")
    assert capsys.readouterr().err == ""
    stream = io.StringIO()
    bar = Progress(enabled=True, file=stream, delay=0)
    for done in (1, 2, 3):
        bar(done, 3, "scanning")
    assert "scanning" in stream.getvalue() and "3/3" in stream.getvalue()
    quiet = io.StringIO()
    short = Progress(enabled=True, file=quiet)  # the default delay: a scan that ends within a second shows nothing
    for done in (1, 2, 3):
        short(done, 3, "scanning")
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("value", ["-", "none"])
def test_json_dash_or_none_writes_no_file(clean, out, monkeypatch, value):
    # regression: `--json -` / `--json none` were skipped by the path check but then written as files "-" / "none"
    monkeypatch.chdir(out)
    assert main(["check-data", str(clean), "--json", value, "--report", "none", "--jobs", "1", "-q"]) == 0
    assert not list(out.iterdir())
