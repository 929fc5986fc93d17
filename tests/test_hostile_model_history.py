"""check-model and check-history on hostile input: corrupt model files, unsafe and unknown code, broken
custom-object modules, unusable --data/--history, and training logs that are empty, ragged, non-numeric,
binary, enormous or oddly named.

The contract, checked through ``segdoctor.cli.main`` (and ``python -m segdoctor`` where the real
terminal matters): no traceback ever reaches the terminal; bad input ends with exit status 2 and exactly
one line on stderr that names the path, what was found and what was expected, and writes no report;
findings end with exit status 1 (per --fail-on); nothing is written outside the --report/--json paths
(the input folder, the working directory and the temporary folder are snapshotted before and after); the
user's files are never modified (content hash, mode and mtime).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from segdoctor.cli import main
from tests.model_helpers import intensity_model, keras, make_dataset
from tests.test_hostile_data import HTML_NAME, NON_UTF8, _display, snapshot

REPO = Path(__file__).resolve().parent.parent
SIZE = 16  # tiny models: the whole module runs in seconds


# --- tiny models, built once per module ------------------------------------------------------------

def hostile_focal_loss(y_true, y_pred):
    """A custom loss that is not available when the model is loaded (no --custom-objects)."""
    return keras().ops.mean(keras().ops.square(y_true - y_pred))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """good.keras (works on make_dataset images), lambda.keras, custom_loss.keras, weights.weights.h5."""
    root = tmp_path_factory.mktemp("models")
    k = keras()
    out = {"good": intensity_model(root / "good.keras", w=20.0, b=-10.0, rescale=True, size=SIZE)}

    inputs = k.Input((SIZE, SIZE, 1))
    scaled = k.layers.Lambda(lambda t: t / 255.0, name="scale")(inputs)
    m = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid", name="head")(scaled))
    m.compile(optimizer="adam", loss="binary_crossentropy")
    m.save(root / "lambda.keras")
    out["lambda"] = root / "lambda.keras"

    inputs = k.Input((SIZE, SIZE, 1))
    m = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid", name="head")(k.layers.Rescaling(1 / 255.0)(inputs)))
    m.compile(optimizer="adam", loss=hostile_focal_loss)
    m.save(root / "custom_loss.keras")
    out["custom_loss"] = root / "custom_loss.keras"

    m.save_weights(root / "weights.weights.h5")
    out["weights_h5"] = root / "weights.weights.h5"
    return out


@pytest.fixture(scope="module")
def dataset_template(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "data", n=6, size=SIZE)


# --- the contract ------------------------------------------------------------------------------------

@dataclass
class Run:
    rc: int
    out: str
    err: str
    doc: dict | None
    html: str | None


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: in/ holds the user's files, out/ the requested reports, cwd/ is the working directory
    and systmp/ Python's temporary folder; all of tmp_path but out/ must be unchanged by a run."""
    for name in ("in", "out", "cwd", "systmp"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    return tmp_path


def user_file(ws: Path, src: Path, name: str | None = None) -> Path:
    dst = ws / "in" / (name or src.name)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return dst


def cli(ws: Path, capsys, *argv, report: str = "report.html", json_name: str = "report.json") -> Run:
    """Run segdoctor in-process with --report/--json under out/ and check what every run must satisfy."""
    out = ws / "out"
    before = {k: v for k, v in snapshot(ws).items() if not k.startswith("out")}
    rc = main([*map(str, argv), "--report", str(out / report), "--json", str(out / json_name)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    after = {k: v for k, v in snapshot(ws).items() if not k.startswith("out")}
    assert after == before, "a file outside --report/--json was written, or an input file changed"
    assert os.listdir(ws / "cwd") == [] and os.listdir(ws / "systmp") == []
    written = sorted(os.listdir(out))
    if rc == 2:
        assert written == [], "a failed run must not leave a report behind"
        return Run(rc, captured.out, captured.err, None, None)
    assert written == sorted([report, json_name])
    # strict: valid UTF-8, no NaN/Infinity tokens, whatever the input held
    doc = json.loads((out / json_name).read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    html = (out / report).read_bytes().decode("utf-8")
    return Run(rc, captured.out, captured.err, doc, html)


def _refuse_constant(token):
    raise AssertionError(f"non-standard JSON token {token} in the report")


def assert_usage_error(run: Run, path: str | Path, *found: str) -> str:
    """Exit 2 and one stderr line naming the path, what was found and what was expected."""
    assert run.rc == 2, (run.rc, run.out, run.err)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    line = lines[0]
    assert line.startswith("segdoctor: error: ")
    assert _display(str(path)) in line, line
    for text in found:
        assert text in line, line
    assert "expected" in line.lower(), line
    return line


def codes(run: Run) -> dict[str, dict]:
    return {f["code"]: f for f in run.doc["findings"]}


def exit_for(doc: dict, fail_on: str = "error") -> int:
    levels = {"error": ("error",), "warning": ("error", "warning"), "info": ("error", "warning", "info")}[fail_on]
    return 1 if any(doc["summary"]["counts"][lvl] for lvl in levels) else 0


# --- check-model: the model file -------------------------------------------------------------------

def _zip_with(path: Path, src: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of the .keras zip ``src`` with members replaced (bytes) or dropped (None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return path


def _bad_model(kind: str, ws: Path, models: dict[str, Path]) -> Path:
    d = ws / "in"
    good = models["good"].read_bytes()
    if kind == "missing":
        return d / "missing.keras"
    if kind == "folder":
        (d / "model.keras").mkdir()
        (d / "model.keras" / "saved_model.pb").write_bytes(b"\0")
        return d / "model.keras"
    p = d / "model.keras"
    if kind == "zero_bytes":
        p.write_bytes(b"")
    elif kind == "zip_without_config":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("model.weights.h5", b"\0" * 64)
            zf.writestr("notes.txt", "hello")
    elif kind == "truncated":
        p.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        p.write_text("this is a text file renamed .keras\n" * 3)
    elif kind == "html":
        p.write_text("<html><body>404 Not Found</body></html>")
    elif kind == "weights_only_h5":
        return user_file(ws, models["weights_h5"])
    elif kind == "config_not_json":
        _zip_with(p, models["good"], {"config.json": b"{not json"})
    elif kind == "config_a_list":
        _zip_with(p, models["good"], {"config.json": b"[1, 2, 3]"})
    elif kind == "weights_missing":
        _zip_with(p, models["good"], {"model.weights.h5": None})
    elif kind == "weights_garbage":
        _zip_with(p, models["good"], {"model.weights.h5": b"garbage" * 100})
    elif kind == "lambda_safe_mode":
        return user_file(ws, models["lambda"])
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize("kind, found", [
    ("missing", ["no such file"]),
    ("folder", ["is a folder", "SavedModel"]),
    ("zero_bytes", ["empty (0 bytes)"]),
    ("zip_without_config", ["zip archive without config.json"]),
    ("truncated", ["truncated or corrupt zip"]),
    ("text", ["not a Keras model", "b'this is "]),
    ("html", ["not a Keras model", "b'<html><b'"]),
    ("weights_only_h5", ["weights only"]),
    ("config_not_json", ["Keras could not load"]),
    ("config_a_list", ["Keras could not load"]),
    ("weights_missing", ["Keras could not load"]),
    ("weights_garbage", ["Keras could not load"]),
    ("lambda_safe_mode", ["Lambda", "--unsafe", "safe mode"]),
])
def test_bad_model_file_exits_2_with_one_line(ws, models, capsys, kind, found):
    path = _bad_model(kind, ws, models)
    run = cli(ws, capsys, "check-model", path)
    assert_usage_error(run, path, *found)


def test_lambda_model_loads_with_unsafe_and_says_so(ws, models, capsys):
    path = user_file(ws, models["lambda"])
    run = cli(ws, capsys, "check-model", path, "--unsafe")
    assert run.rc == exit_for(run.doc)
    notes = [n for n in run.doc["notes"] if "safe_mode=False" in n]
    assert len(notes) == 1 and path.name in notes[0] and "trust" in notes[0]
    err = run.err.strip().splitlines()
    assert err and all(line.startswith("segdoctor: note: ") for line in err)
    assert any("safe_mode=False" in line for line in err)
    assert "safe_mode=False" in run.html
    assert run.doc["summary"]["head"] == "sigmoid"  # it was loaded and described
    assert not [c for c in run.doc["checks"] if c["status"] == "crashed"]


def test_unknown_custom_loss_loads_uncompiled_and_sd406_names_it(ws, models, capsys):
    path = user_file(ws, models["custom_loss"])
    run = cli(ws, capsys, "check-model", path)
    sd406 = codes(run)["SD406"]
    assert "hostile_focal_loss" in sd406["title"] and sd406["severity"] == "warning"
    assert "--custom-objects" in sd406["fix"]
    assert run.rc == exit_for(run.doc) == 0  # a warning does not fail the default --fail-on error
    assert "compile state restored" in run.html and "hostile_focal_loss" in run.html
    for entry in os.listdir(ws / "out"):
        os.unlink(ws / "out" / entry)
    run = cli(ws, capsys, "check-model", path, "--fail-on", "warning")
    assert run.rc == 1 and "SD406" in codes(run)


def test_unknown_custom_loss_resolved_by_custom_objects_writes_no_bytecode(ws, models, capsys, monkeypatch):
    """Importing the user's module must not leave a __pycache__/ beside it (whatever PYTHONDONTWRITEBYTECODE says)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    path = user_file(ws, models["custom_loss"])
    src = ws / "in" / "losses.py"
    src.write_text("from keras import ops\n\n"
                   "def hostile_focal_loss(y_true, y_pred):\n"
                   "    return ops.mean(ops.square(y_true - y_pred))\n")
    run = cli(ws, capsys, "check-model", path, "--custom-objects", src)
    assert "SD406" not in codes(run)
    assert sorted(os.listdir(ws / "in")) == ["custom_loss.keras", "losses.py"]
    assert sys.dont_write_bytecode is False  # restored


@pytest.mark.parametrize("name, source, found", [
    ("missing.py", None, ["no such file"]),
    ("syntax.py", "def broken(:\n    pass\n", ["SyntaxError"]),
    ("raises.py", "raise RuntimeError('cannot import this\\nsecond line of the message')\n",
     ["RuntimeError: cannot import this"]),
    ("imports.py", "import segdoctor_no_such_module_xyz\n", ["ModuleNotFoundError", "segdoctor_no_such_module_xyz"]),
    ("exits.py", "import sys\nsys.exit(3)\n", ["SystemExit"]),
    ("losses.txt", "x = 1\n", ["not a .py file"]),
])
def test_broken_custom_objects_file_exits_2_with_one_line(ws, models, capsys, name, source, found):
    model = user_file(ws, models["good"])
    src = ws / "in" / name
    if source is not None:
        src.write_text(source)
    run = cli(ws, capsys, "check-model", model, "--custom-objects", src)
    line = assert_usage_error(run, src, "--custom-objects", *found)
    assert "second line" not in line


def test_data_folder_without_pairs_exits_2(ws, models, capsys):
    model = user_file(ws, models["good"])
    data = ws / "in" / "data"
    (data / "images").mkdir(parents=True)
    for i in range(3):
        (data / "images" / f"x{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (data / "README.txt").write_text("no masks here")
    run = cli(ws, capsys, "check-model", model, "--data", data)
    assert_usage_error(run, data, "no image/mask pairs")


def test_data_with_corrupt_images_continues_and_reports_them(ws, models, dataset_template, capsys):
    model = user_file(ws, models["good"])
    data = user_file(ws, dataset_template)
    (data / "images" / "s01.png").write_bytes(b"")
    (data / "images" / "s03.png").write_bytes(b"this is not a PNG")
    good_mask = (data / "masks" / "s04.png").read_bytes()
    (data / "masks" / "s04.png").write_bytes(good_mask[: len(good_mask) // 2])
    (data / "images" / (HTML_NAME + ".png")).write_bytes(b"<html>")  # escaped in the HTML
    shutil.copy2(data / "masks" / "s00.png", data / "masks" / (HTML_NAME + ".png"))
    run = cli(ws, capsys, "check-model", model, "--data", data)
    assert run.rc == 1
    unreadable = {e.split(": ")[0] for e in codes(run)["SD001"]["files"]}
    assert {"images/s01.png", "images/s03.png", "masks/s04.png", f"images/{HTML_NAME}.png"} <= unreadable
    # everything else was analysed: the readable pairs were evaluated, and the model segments them well
    summary = run.doc["summary"]
    assert summary["pairs_found"] == 7 and summary["pairs_evaluated"] == 7
    assert summary["mean_dice"] > 0.8
    statuses = {c["code"]: c["status"] for c in run.doc["checks"]}
    assert statuses["SD501"] == "passed" and "crashed" not in statuses.values()
    assert "could not be read and were skipped" in run.html
    assert HTML_NAME not in run.html and "&lt;script&gt;alert(1)" in run.html


@pytest.mark.parametrize("name, content, found", [
    ("binary.csv", b"\x00\xff\xfe\x89 binary", ["binary content"]),
    ("empty.json", b"", ["the file is empty"]),
    ("ragged.csv", b"loss,val_loss\n0.5,0.6\n0.4\n", ["line 3 has 1 fields"]),
    ("no_events", None, ["without TensorBoard event files"]),
])
def test_model_with_unreadable_history_exits_2_before_running_the_model(ws, models, dataset_template, capsys,
                                                                        monkeypatch, name, content, found):
    import segdoctor.io.inference

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran on the data before the unreadable --history was reported")

    monkeypatch.setattr(segdoctor.io.inference, "run_inference", must_not_run)
    model = user_file(ws, models["good"])
    data = user_file(ws, dataset_template)
    log = ws / "in" / name
    if content is None:
        log.mkdir()
        (log / "notes.txt").write_text("not an event file")
    else:
        log.write_bytes(content)
    run = cli(ws, capsys, "check-model", model, "--data", data, "--history", log)
    assert_usage_error(run, log, *found)


# --- check-history ---------------------------------------------------------------------------------

HISTORY_CASES = [
    ("empty.json", b"", ["the file is empty"]),
    ("empty.csv", b"", ["the file is empty"]),
    ("whitespace.csv", b"  \n\t\n   \r\n", ["the file is empty"]),
    ("numbers.json", b"[0.5, 0.4, 0.3]", ["a JSON list that is not a list of per-epoch records"]),
    ("empty_list.json", b"[]", ["a JSON list that is not a list of per-epoch records"]),
    ("string.json", b'"loss went down"', ["a JSON str"]),
    ("number.json", b"42", ["a JSON int"]),
    ("object_of_objects.json", b'{"loss": {"0": 0.5}}', ["key 'loss' holds a dict"]),
    ("ragged.json", b'{"loss": [0.5, 0.4, 0.3], "val_loss": [0.6]}', ["different lengths", "loss has 3", "val_loss has 1"]),
    ("truncated.json", b'{"loss": [0.5, 0.4', ["not valid JSON"]),
    ("ragged_short.csv", b"epoch,loss,val_loss\n0,0.5,0.6\n1,0.4\n", ["line 3 has 2 fields but the header has 3"]),
    ("ragged_long.csv", b"epoch,loss\n0,0.5\n1,0.4,0.3,0.2\n", ["line 3 has 4 fields but the header has 2"]),
    ("words.csv", b"epoch,loss,val_loss\n0,0.5,0.6\n1,low,0.5\n", ["non-numeric value 'low'"]),
    ("words.json", b'{"loss": [0.5, "0.4 (approx)"]}', ["non-numeric value '0.4 (approx)'"]),
    ("epoch_words.csv", b"epoch,loss\nfirst,0.5\n", ["column 'epoch'", "'first'"]),
    ("booleans.json", b'{"loss": [0.5, true]}', ["boolean"]),
    ("header_only.csv", b"epoch,loss,val_loss\n", ["a header (epoch, loss, val_loss) but no epoch rows"]),
    ("epoch_only.csv", b"epoch\n0\n1\n", ["only an epoch column"]),
    ("all_empty.csv", b"loss,val_loss\n,\nNA,\n", ["every cell is empty"]),
    ("binary.log", bytes(range(256)) * 8, ["binary content"]),
    ("model.h5", b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe", ["binary content"]),
    ("latin1.csv", "epoch,perte\n0,0.5\n1,0.4 é\n".encode("latin-1"), ["binary content"]),
]


@pytest.mark.parametrize("name, content, found", HISTORY_CASES, ids=[c[0] for c in HISTORY_CASES])
def test_unreadable_log_exits_2_with_one_line(ws, capsys, name, content, found):
    log = ws / "in" / name
    log.write_bytes(content)
    run = cli(ws, capsys, "check-history", log)
    assert_usage_error(run, log, *found)


def test_tensorboard_folder_without_event_files_exits_2(ws, capsys):
    logs = ws / "in" / "logs"
    (logs / "train").mkdir(parents=True)
    (logs / "validation").mkdir()
    (logs / "train" / "events.out.tfevents.folder").mkdir()  # a folder with an event file's name
    (logs / "validation" / "notes.txt").write_text("no events")
    run = cli(ws, capsys, "check-history", logs)
    assert_usage_error(run, logs, "without TensorBoard event files")


def test_truncated_event_file_exits_2(ws, capsys):
    logs = ws / "in" / "logs"
    (logs / "train").mkdir(parents=True)
    (logs / "train" / "events.out.tfevents.1.host").write_bytes(b"\x18\x00\x00\x00\x00\x00\x00\x00garbage")
    run = cli(ws, capsys, "check-history", logs)
    assert run.rc == 2
    line = run.err.strip()
    assert "\n" not in line and line.startswith("segdoctor: error: ") and str(logs) in line


def test_non_utf8_log_name_that_cannot_be_read(ws, capsys):
    log = ws / "in" / (NON_UTF8 + ".csv")
    log.write_bytes(b"epoch,loss\n")
    run = cli(ws, capsys, "check-history", log)
    assert_usage_error(run, log, "no epoch rows")


@pytest.mark.parametrize("name, content", [
    ("tokens.json", b'{"loss": [0.7, NaN, Infinity, -Infinity, 0.3], "val_loss": [0.8, 0.7, NaN, 0.6, 0.5]}'),
    ("tokens.csv", b"epoch,loss,val_loss\n0,0.7,0.8\n1,nan,0.7\n2,inf,NaN\n3,-Infinity,0.6\n4,0.3,0.5\n"),
])
def test_nan_and_infinity_tokens_are_findings_in_valid_json(ws, capsys, name, content):
    log = ws / "in" / name
    log.write_bytes(content)
    run = cli(ws, capsys, "check-history", log)  # cli() parses the JSON refusing NaN/Infinity tokens
    assert run.rc == 1
    sd601 = codes(run)["SD601"]
    assert sd601["severity"] == "error" and sd601["evidence"]["first_bad_epoch"] == 2
    assert run.doc["summary"]["epochs"] == 5


def test_html_special_column_names_are_escaped(ws, capsys):
    evil = "<script>alert('col')</script>"
    amp = 'dice&"quoted"'
    log = ws / "in" / "h.json"
    n = 8
    log.write_text(json.dumps({"loss": [1 / (i + 1) for i in range(n)], "val_loss": [1.1 / (i + 1) for i in range(n)],
                               evil: [0.1 * i for i in range(n)], amp: [0.05 * i for i in range(n)]}))
    run = cli(ws, capsys, "check-history", log)
    assert run.rc == exit_for(run.doc)
    assert "<script>alert(" not in run.html
    assert "&lt;script&gt;alert(&#39;col&#39;)&lt;/script&gt;" in run.html
    assert "dice&amp;&#34;quoted&#34;" in run.html


def test_non_utf8_log_and_report_names(ws, capsys):
    """A log and reports whose names are not UTF-8: the reports stay valid UTF-8, the terminal gets escapes."""
    log = ws / "in" / (NON_UTF8 + ".csv")
    log.write_text("epoch,loss,val_loss\n" + "".join(f"{i},{1 / (i + 1):.4f},{1.2 / (i + 1):.4f}\n" for i in range(10)))
    run = cli(ws, capsys, "check-history", log, report=NON_UTF8 + ".html", json_name=NON_UTF8 + ".json")
    assert run.rc == exit_for(run.doc)
    assert run.doc["target"] == _display(str(log))
    assert _display(NON_UTF8) in run.html
    assert f"Report: {_display(str(ws / 'out' / (NON_UTF8 + '.json')))}" in run.out


def test_enormous_log_gives_a_valid_report(ws, capsys):
    """200,000 epochs x 6 columns: read, diagnosed and reported (the content is checked, not the time)."""
    n = 200_000
    e = np.arange(n)
    loss = 0.1 + 0.9 * np.exp(-e / 20_000)
    dice = np.clip(0.95 - 0.9 * np.exp(-e / 20_000), 0, 1)
    loss[-10:] = np.nan  # a defect at the very end must still be found
    table = np.column_stack([e, loss, loss + 0.05, dice, dice - 0.02, np.full(n, 1e-3)])
    log = ws / "in" / "huge.csv"
    with open(log, "w") as fh:
        fh.write("epoch,loss,val_loss,dice_coef,val_dice_coef,lr\n")
        np.savetxt(fh, table, delimiter=",", fmt=["%d", "%.6g", "%.6g", "%.6g", "%.6g", "%g"])
    run = cli(ws, capsys, "check-history", log)
    assert run.rc == 1
    assert run.doc["summary"]["epochs"] == n and run.doc["summary"]["format"] == "csv"
    sd601 = codes(run)["SD601"]
    assert sd601["evidence"]["first_bad_epoch"] == n - 9 and sd601["evidence"]["bad_epochs"] == 10
    statuses = {c["code"]: c["status"] for c in run.doc["checks"]}
    assert set(statuses) == {f"SD6{i:02d}" for i in range(1, 11)} and "crashed" not in statuses.values()
    assert f"{n} epoch(s) read from" in run.html and "Columns recognised" in run.html
    assert os.path.getsize(ws / "out" / "report.html") < 5_000_000  # figures are drawn, not 200,000 table rows


# --- the live callback -----------------------------------------------------------------------------

def test_callback_survives_epochs_without_numeric_logs(tmp_path):
    """A diagnostic callback must never break training: non-numeric or empty logs are empty cells."""
    from segdoctor.keras_callback import SegDoctorCallback

    cb = SegDoctorCallback(tmp_path / "h.json", warn=False)
    cb.on_train_begin()
    cb.on_epoch_end(0, {})
    cb.on_epoch_end(1, {"loss": "not a number", "per_class_iou": np.array([0.1, 0.2, 0.3])})
    for epoch in range(2, 8):
        cb.on_epoch_end(epoch, {"loss": 0.5 / epoch, "val_loss": 0.6 / epoch, "<b>dice</b>": 0.1 * epoch})
    assert sorted(os.listdir(tmp_path)) == ["h.json"]  # the temporary file was renamed into place
    from segdoctor.io.history import read_history

    h = read_history(tmp_path / "h.json")
    assert h.n_epochs == 8 and h.is_missing("loss")[:2].all() and np.isfinite(h.columns["loss"][2:]).all()


# --- the real terminal: python -m segdoctor --------------------------------------------------------

def _subprocess(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **env}
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run([sys.executable, "-m", "segdoctor", *args], cwd=cwd, capture_output=True, env=environ,
                          timeout=300)


@pytest.mark.parametrize("kind", ["truncated", "lambda_safe_mode"])
def test_subprocess_bad_model_one_line_no_traceback(ws, models, kind):
    path = _bad_model(kind, ws, models)
    before = snapshot(ws)
    proc = _subprocess(["check-model", str(path), "--report", str(ws / "out" / "r.html")], ws / "cwd")
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and b"Traceback" not in proc.stdout + proc.stderr
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segdoctor: error: ") and str(path) in lines[0], err
    assert snapshot(ws) == before


def test_subprocess_custom_objects_and_history_with_strict_terminal(ws, models):
    """A strict UTF-8 terminal (as under a UTF-8 locale) and non-UTF-8 report names: no UnicodeEncodeError."""
    model = user_file(ws, models["custom_loss"])
    src = ws / "in" / "losses.py"
    src.write_text("def unrelated(a, b):\n    return a\n")
    log = ws / "in" / (NON_UTF8 + ".json")
    log.write_text(json.dumps({"loss": [0.5, 0.4, 0.35, 0.3], "val_loss": [0.6, 0.5, 0.45, 0.4]}))
    report = ws / "out" / (NON_UTF8 + ".html")
    before = {k: v for k, v in snapshot(ws).items() if not k.startswith("out")}
    proc = _subprocess(["check-model", str(model), "--custom-objects", str(src),
                        "--history", str(log), "--report", str(report), "--fail-on", "warning"],
                       ws / "cwd", PYTHONIOENCODING="utf-8:strict")
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert b"Traceback" not in proc.stdout + proc.stderr, err
    assert proc.returncode == 1 and err == ""  # SD406 (warning) fails --fail-on warning
    assert f"Report: {_display(str(report))}" in out
    assert {k: v for k, v in snapshot(ws).items() if not k.startswith("out")} == before
    assert os.listdir(ws / "out") == [os.path.basename(report)]
    html = report.read_bytes().decode("utf-8")
    assert "hostile_focal_loss" in html and "Training history" in html


def test_subprocess_binary_history(ws):
    log = ws / "in" / "events.bin"
    log.write_bytes(os.urandom(4096) + b"\xff\xfe")
    proc = _subprocess(["check-history", str(log), "--report", str(ws / "out" / "r.html")], ws / "cwd")
    lines = proc.stderr.decode("utf-8").strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and str(log) in lines[0] and "binary content" in lines[0]
    assert os.listdir(ws / "out") == []
