"""Hostile input, round 2 (issue 11): user code that must not run, user strings that must not become code,
inputs that must not hang or crash, and verdicts that must not be wrong.

Every command-line case keeps the contract of the hostile suites: exit status 2 with one stderr line naming
the path (or the option), no traceback, the user's files byte-identical (hash, mode, mtime), and a report
written by an earlier run left exactly as it was.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import struct
import tempfile
import tokenize
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main
from tests.synth import blob_pair, write_dataset
from tests.test_hostile_data import snapshot

REPO = Path(__file__).resolve().parent.parent

#: what a hostile string tries to run; it may only ever appear inside a string literal or a comment
MARKER = "PWNED"
HOSTILE = (
    '"), __import__("os").system("PWNED")#',
    "'); __import__('os').system('PWNED') #",
    'a\nimport os; os.system("PWNED")\n#',
    'back\\slash\\"); exec("PWNED")',
    "\u00fcn\u00efc\u00f6de\u202e\"PWNED'",
    '\r\x1b[2J"""PWNED""" + eval("1")',
)


# --- proving that a snippet is harmless ------------------------------------------------------------

#: call targets a snippet may use: its libraries, the user's objects it talks about, and plain builtins
ALLOWED_ROOTS = frozenset({
    "np", "keras", "tf", "ops", "layers", "cv2", "Image", "ImageOps", "tifffile", "model", "dataset", "mask", "mask_pil",
    "image", "rng", "im", "x", "probs", "base", "int", "float", "len", "range", "max", "min", "abs", "round", "sorted",
    "list", "tuple", "dict", "set", "str", "bool", "zip", "enumerate", "isinstance", "sum", "any", "all",
})
ALLOWED_IMPORTS = frozenset({"numpy", "keras", "tensorflow", "PIL", "cv2", "math", "tifffile"})
FORBIDDEN_NAMES = frozenset({
    "__import__", "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars",
    "input", "breakpoint", "subprocess", "os", "sys", "shutil", "builtins", "importlib", MARKER,
})
#: attributes no snippet needs (``model.compile`` and ``Image.open`` are the snippets' business)
FORBIDDEN_ATTRS = frozenset({"system", "popen", "spawn", "spawnl", "execv", "remove", "unlink", "rmtree", MARKER})


def _defined_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def assert_harmless(snippet: str, where: str = "") -> None:
    """The snippet parses; the marker sits only in string literals and comments; no forbidden name or dunder
    attribute appears; every call goes to an allowed library, builtin or a name the snippet defines itself."""
    try:
        tree = ast.parse(snippet)
    except SyntaxError as exc:
        raise AssertionError(f"{where}: the snippet does not parse ({exc}):\n{snippet}") from None
    for tok in tokenize.generate_tokens(io.StringIO(snippet).readline):
        if MARKER in tok.string:
            assert tok.type in (tokenize.STRING, tokenize.COMMENT), f"{where}: {tok.string!r} is code:\n{snippet}"
    defined = _defined_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_NAMES, f"{where}: name {node.id} in\n{snippet}"
        elif isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_ATTRS and not node.attr.startswith("__"), f"{where}: .{node.attr} in\n{snippet}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for m in modules:
                assert m.split(".")[0] in ALLOWED_IMPORTS, f"{where}: import {m} in\n{snippet}"
        elif isinstance(node, ast.Call):
            root = _root(node.func)
            assert root is None or root in ALLOWED_ROOTS or root in defined, f"{where}: call of {root} in\n{snippet}"
        elif isinstance(node, ast.JoinedStr):
            raise AssertionError(f"{where}: an f-string evaluates code in the snippet:\n{snippet}")


@pytest.mark.parametrize("text", HOSTILE + ("plain", "", "it's", 'say "hi"', "\udcff"))
def test_py_str_is_a_literal_of_exactly_that_text(text):
    from segdoctor.checks._common import py_str

    literal = py_str(text)
    assert ast.literal_eval(literal) == text
    assert "\n" not in literal and "\r" not in literal and "\x1b" not in literal
    assert_harmless(f"x = {literal}  # {literal}")


def test_the_checker_catches_injections():
    for bad in ('monitor="x"), __import__("os").system("PWNED")#"', "x = 1\nimport os\nos.system('PWNED')",
                "# a\nexec('PWNED')", "x = f'{__import__(1)}'"):
        with pytest.raises(AssertionError):
            assert_harmless(bad)


def _snippets(findings) -> list[tuple[str, str]]:
    return [(f.code, f.snippet) for f in findings if f.snippet]


# history columns: the names keep the words that give them their role (loss, val_, dice)
def _curves(n: int = 30) -> dict[str, dict[str, list[float]]]:
    t = np.arange(n, dtype=float)
    zig = np.where(t % 2 == 0, 1.0, 0.4)
    down = 1.0 / (1.0 + 0.2 * t)
    rise = np.concatenate([down[:10], down[9] * (1 + 0.15 * np.arange(1, n - 9))])
    dice_up = 1 - down
    return {
        "oscillation": {"loss": zig * (1 - 0.01 * t), "val_loss": zig[::-1] * (1 - 0.01 * t), "dice": dice_up},
        "overfitting": {"loss": down * 0.5, "val_loss": rise, "dice": dice_up, "val_dice": np.r_[dice_up[:10], dice_up[9] - 0.02 * np.arange(1, n - 9)]},
        "plateau": {"loss": np.full(n, 0.693) + 1e-4 * (t % 3), "val_loss": np.full(n, 0.70), "dice": np.full(n, 0.01)},
        "nan": {"loss": np.r_[down[:12], [np.nan] * (n - 12)], "val_loss": down + 0.1},
        "divergence": {"loss": 0.5 + 0.1 * t, "val_loss": 0.6 + 0.1 * t},
        "frozen": {"loss": down, "val_loss": down + 0.05, "dice": np.full(n, 0.4321), "val_dice": np.full(n, 0.4321)},
        "out_of_range": {"loss": -3.0 - t, "dice": 3.0 + 0.1 * t, "accuracy": np.full(n, 0.97)},
        "early_stop": {"loss": down[:6], "val_loss": down[:6] + 0.05},
    }


def test_hostile_history_columns_never_become_code():
    from segdoctor.commands.history import diagnose_history
    from segdoctor.io.history import history_from_mapping

    seen_marker: set[str] = set()
    checked = 0
    for hostile in HOSTILE:
        for scenario, cols in _curves().items():
            named = {f"{name}{hostile}": np.asarray(v).tolist() for name, v in cols.items()}
            named["lr"] = [1e-3] * len(next(iter(cols.values())))
            result = diagnose_history(history_from_mapping(named, source=f"{scenario}.json"))
            assert not [c for c in result.checks if c.status == "crashed"], scenario
            for code, snippet in _snippets(result.findings):
                assert_harmless(snippet, f"{scenario} {code}")
                checked += 1
                if MARKER in snippet:
                    seen_marker.add(code)
    # the hostile names did reach the snippets that quote a column (quoted), so the test is not vacuous
    assert {"SD603", "SD607"} <= seen_marker, seen_marker
    assert checked >= 20


def _hostile_names(n: int) -> list[str]:
    """File stems: the hostile strings that a file name can hold (no '/'), then plain ones."""
    usable = [h.replace("/", "_") for h in HOSTILE if "\x00" not in h]
    return [f"{i:02d}{usable[i]}" if i < len(usable) else f"{i:02d}" for i in range(n)]


def test_hostile_file_names_never_become_code(tmp_path):
    from segdoctor.commands.data import check_data

    rng = np.random.default_rng(0)
    pairs = [blob_pair(rng) for _ in range(12)]
    pairs[1], pairs[4] = (pairs[1][0], pairs[4][1]), (pairs[4][0], pairs[1][1])  # two swapped masks (SD251)
    names = _hostile_names(12)
    write_dataset(tmp_path / "aligned", pairs, names=names)
    report = check_data(tmp_path / "aligned", jobs=1)
    # leakage across splits (SD154): the hostile-named images reappear in val
    rng = np.random.default_rng(1)
    train = [blob_pair(rng, size=96) for _ in range(8)]
    photos = [(np.asarray(Image.fromarray(img).resize((96, 96))), m) for img, m in train]
    write_dataset(tmp_path / "splits", photos, split="train", names=names[:8])
    write_dataset(tmp_path / "splits", photos[:3] + [blob_pair(rng, size=96) for _ in range(3)], split="val",
                  names=[f"v{n}" for n in names[:6]])
    leak = check_data(tmp_path / "splits", jobs=1)
    codes = {f.code for f in report.findings} | {f.code for f in leak.findings}
    assert {"SD251", "SD154"} <= codes, codes
    quoted = set()
    for code, snippet in _snippets([*report.findings, *leak.findings]):
        assert_harmless(snippet, code)
        if MARKER in snippet:
            quoted.add(code)
    assert {"SD251", "SD154"} <= quoted


def test_hostile_names_in_a_model_file_never_become_code():
    from segdoctor.checks.model import ModelContext
    from segdoctor.io.model import LoadedModel
    from segdoctor.io.model_spec import LossSpec, ModelSpec, WeightProblem
    from segdoctor.registry import select_checks
    from segdoctor.runner import run_checks

    def wrong_axis_dice(y_true, y_pred):  # a Dice over the channel axis: SD407 gives the corrected function
        inter = (y_true * y_pred).sum(axis=-1)
        return float(np.mean(2 * inter / (y_true.sum(axis=-1) + y_pred.sum(axis=-1) + 1e-6)))

    produced: dict[str, str] = {}
    for hostile in HOSTILE:
        for optimizer, lr, loss in ((hostile, 50.0, LossSpec(hostile, "binary_ce", True, False)),
                                    ("sgd", 50.0, LossSpec("binary_crossentropy", "binary_ce", False, False)),
                                    ("Adam", 1e-9, LossSpec(hostile, "sparse_ce", False, False))):
            spec = ModelSpec(
                name=hostile, input_shape=(None, 32, 32, 1), output_shape=(None, 32, 32, 1), head_activation="sigmoid",
                head_layer=hostile, activation_axis_size=1, input_scaling=None, loss=loss, metric_names=(hostile,),
                optimizer=optimizer, learning_rate=lr, lr_schedule=None, n_params=1, n_layers=2, n_downsampling=3,
                n_merges=0, n_transposed=1,
                weight_problems=[WeightProblem(hostile, hostile, 4, 1, 0, False)])
            loaded = LoadedModel(model=None, path=Path(f"{hostile}.keras"), format="keras", compile_config={},
                                 compiled=False, missing_objects=(hostile, "focal_" + hostile, "plain_loss"))
            ctx = ModelContext(loaded=loaded, spec=spec, functions={hostile: (wrong_axis_dice, "metric"),
                                                                    f"dice{hostile}": (wrong_axis_dice, "loss")},
                               data_num_classes=3, data_class_ids=(0, 1, 2), evaluate=lambda fn, t, p: fn(t, p))
            findings, _ = run_checks(select_checks(["model"]), {"model": ctx})
            for code, snippet in _snippets(findings):
                assert_harmless(snippet, code)
                produced[code] = snippet
    assert {"SD402", "SD404", "SD405", "SD406", "SD407"} <= set(produced), sorted(produced)


# --- the command-line contract -------------------------------------------------------------------

from tests.model_helpers import keras, make_dataset  # noqa: E402
from tests.test_hostile_model_history import cli, user_file  # noqa: E402


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """in/ holds the user's files, out/ the reports, cwd/ is the working directory and systmp/ Python's temporary
    folder (as in test_hostile_model_history): everything but out/ must be unchanged by a run."""
    for name in ("in", "out", "cwd", "systmp"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "systmp"))
    return tmp_path


def refused(ws: Path, capsys, *argv, found: tuple[str, ...] = (), path: str | Path | None = None) -> str:
    """Exit 2, one stderr line (naming ``path`` and what was found), no traceback, the user's files unchanged and
    the reports of an earlier run left exactly as they were."""
    out = ws / "out"
    (out / "report.html").write_text("<p>the previous report</p>")
    (out / "report.json").write_text('{"previous": true}')
    reports = snapshot(out)
    before = {k: v for k, v in snapshot(ws).items() if not k.startswith("out")}
    rc = main([*map(str, argv), "--report", str(out / "report.html"), "--json", str(out / "report.json")])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert rc == 2, (rc, captured.out, captured.err)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segdoctor: error: "), captured.err
    assert snapshot(out) == reports, "an earlier report was touched"
    assert {k: v for k, v in snapshot(ws).items() if not k.startswith("out")} == before, "an input changed"
    for text in found:
        assert text in lines[0], lines[0]
    if path is not None:
        assert str(path) in lines[0], lines[0]
    return lines[0]


# --custom-objects: nothing runs unless the user names it or it is named and shaped like a loss factory

EVIL = '''\
from pathlib import Path
from keras import ops

MARKER = Path(__file__).with_name("MARKER")


def main():
    MARKER.write_text("main ran")


def train(epochs=10):
    MARKER.write_text("train ran")


def cleanup():
    MARKER.write_text("cleanup ran")


def setup_loss():
    MARKER.write_text("setup_loss ran")


def save_score(y_true, y_pred):
    MARKER.write_text("save_score ran")
    return ops.mean(y_pred)


def make_dice_loss(smooth=1.0):
    def soft_dice_loss(y_true, y_pred):
        inter = ops.sum(y_true * y_pred, axis=(1, 2))
        total = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
        return 1 - ops.mean((2 * inter + smooth) / (total + smooth))
    return soft_dice_loss


def make_broken_loss():
    raise RuntimeError("this factory cannot build its loss")


def make_thing():
    def weird(y_true, y_pred):
        inter = ops.sum(y_true * y_pred, axis=-1)
        return 1 - ops.mean(2 * inter / (ops.sum(y_true, axis=-1) + ops.sum(y_pred, axis=-1) + 1e-6))
    return weird
'''


@pytest.fixture(scope="module")
def factory_models(tmp_path_factory) -> dict[str, Path]:
    """Models compiled with the products of two factories: make_dice_loss (named like one) and make_thing (not)."""
    root = tmp_path_factory.mktemp("factory")
    src = root / "evil.py"
    src.write_text(EVIL)
    from segdoctor.io.model import load_custom_objects

    objects = load_custom_objects([f"{src}:make_thing"])
    assert not (root / "MARKER").exists()
    k = keras()
    out = {}
    for name, loss in (("dice", objects["soft_dice_loss"]), ("weird", objects["weird"])):
        inputs = k.Input((16, 16, 1))
        m = k.Model(inputs, k.layers.Conv2D(1, 1, activation="sigmoid", name="head")(k.layers.Rescaling(1 / 255.0)(inputs)))
        m.compile(optimizer="adam", loss=loss)
        m.save(root / f"{name}.keras")
        out[name] = root / f"{name}.keras"
    return out


def test_custom_objects_file_functions_are_never_called(ws, capsys, factory_models):
    src = ws / "in" / "evil.py"
    src.write_text(EVIL)
    for model in (user_file(ws, factory_models["dice"]), user_file(ws, factory_models["weird"])):
        run = cli(ws, capsys, "check-model", model, "--custom-objects", src)  # asserts: nothing new in in/
        assert not (ws / "in" / "MARKER").exists()
        found = {f["code"]: f for f in run.doc["findings"]}
        if model.stem == "dice":  # make_dice_loss(smooth=1.0) is a factory by name and signature: unwrapped
            assert "SD406" not in found and run.doc["summary"].get("head") == "sigmoid"
        else:  # make_thing() is not: never called, so the loss it makes stays missing
            assert "weird" in found["SD406"]["title"]
        for entry in os.listdir(ws / "out"):
            os.unlink(ws / "out" / entry)
    assert sorted(os.listdir(ws / "in")) == ["dice.keras", "evil.py", "weird.keras"]


def test_a_factory_the_user_names_is_unwrapped(ws, capsys, factory_models):
    src = ws / "in" / "evil.py"
    src.write_text(EVIL)
    model = user_file(ws, factory_models["weird"])
    run = cli(ws, capsys, "check-model", model, "--custom-objects", f"{src}:make_thing")
    found = {f["code"]: f for f in run.doc["findings"]}
    assert "SD406" not in found
    assert found["SD407"]["evidence"]["function"] == "weird" and run.rc == 1  # a Dice over the channel axis
    assert not (ws / "in" / "MARKER").exists()


@pytest.mark.parametrize("spec, found", [
    ("evil.py:no_such_factory", ("defines no function 'no_such_factory'",)),
    ("evil.py:MARKER", ("defines no function 'MARKER'",)),
    ("evil.py:make_broken_loss", ("calling make_broken_loss() failed with RuntimeError: this factory cannot",)),
])
def test_a_named_factory_that_is_not_one_exits_2(ws, capsys, factory_models, spec, found):
    (ws / "in" / "evil.py").write_text(EVIL)
    model = user_file(ws, factory_models["dice"])
    refused(ws, capsys, "check-model", model, "--custom-objects", str(ws / "in" / spec), found=found)


@pytest.mark.parametrize("name, called", [
    ("make_loss", True), ("dice_coef_fun", True), ("get_iou_metric", True), ("makeFocalLoss", True),
    ("tversky", True), ("main", False), ("train", False), ("run", False), ("cleanup", False), ("setup", False),
    ("setup_loss", False), ("save_dice", False), ("previous", False), ("build_model", False), ("loss_plot", False),
])
def test_factory_rule(name, called):
    from segdoctor.io.model import is_auto_factory

    def factory(smooth=1.0):
        return lambda y_true, y_pred: y_pred

    assert is_auto_factory(name, factory) is called
    if called:
        def needs_an_argument(weights):
            return weights

        assert not is_auto_factory(name, needs_an_argument)  # a required parameter: never called
        assert not is_auto_factory(name, lambda y_true, y_pred: y_pred)  # a loss itself: probed, not called


# training logs that used to crash or hang

@pytest.mark.parametrize("name, content, found", [
    ("bigint.json", b'{"loss": [' + b"9" * 5000 + b", 0.5]}", "an integer of thousands of digits"),
    ("deep.json", b'{"loss": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ("longfield.csv", b"loss,val_loss\n" + b"1" * 140_000 + b",0.5\n0.4,0.5\n", "field larger than field limit"),
])
def test_history_that_used_to_crash_exits_2(ws, capsys, name, content, found):
    log = ws / "in" / name
    log.write_bytes(content)
    refused(ws, capsys, "check-history", log, found=(found,), path=log)


def test_history_from_a_device_or_a_fifo_exits_2_without_reading(ws, capsys):
    fifo = ws / "in" / "history.csv"
    os.mkfifo(fifo)  # a reader that opened it plainly would wait for a writer forever
    refused(ws, capsys, "check-history", fifo, found=("not a regular file",), path=fifo)
    if os.path.exists("/dev/zero"):  # endless: read whole, it would fill the memory
        refused(ws, capsys, "check-history", "/dev/zero", found=("not a regular file",), path="/dev/zero")


def test_history_size_is_capped(ws, capsys, monkeypatch):
    from segdoctor.io import history

    monkeypatch.setattr(history, "MAX_HISTORY_BYTES", 1000)
    log = ws / "in" / "big.csv"
    log.write_text("loss,val_loss\n" + "0.5,0.6\n" * 200)
    refused(ws, capsys, "check-history", log, found=("above the 1,000-byte limit",), path=log)


def test_model_with_a_fifo_history_exits_2(ws, capsys, factory_models):
    model = user_file(ws, factory_models["dice"])
    fifo = ws / "in" / "log.json"
    os.mkfifo(fifo)
    refused(ws, capsys, "check-model", model, "--history", fifo, found=("not a regular file",), path=fifo)


# model files that used to crash, or that would inflate to gigabytes

def _entries(src: Path, dst: Path, extra: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=compression) as zout:
        for info in zin.infolist():
            if info.filename not in extra:
                zout.writestr(info.filename, zin.read(info.filename))
        for name, data in extra.items():
            zout.writestr(name, data)
    return dst


def test_zip_bomb_entries_are_refused_before_anything_inflates(ws, capsys, factory_models, monkeypatch):
    from segdoctor.io import model as model_io

    monkeypatch.setattr(model_io, "ZIP_BOMB_FLOOR", 1 << 20)  # 4 MiB of zeros deflate to 4 KiB: a bomb at 1 MiB
    bomb = _entries(factory_models["dice"], ws / "in" / "bomb.keras", {"model.weights.h5": b"\0" * (4 << 20)})

    def must_not_load(*args, **kwargs):
        raise AssertionError("Keras opened a zip bomb")

    monkeypatch.setattr(model_io, "_quiet_load", must_not_load)
    refused(ws, capsys, "check-model", bomb, found=("'model.weights.h5' declares 4,194,304 bytes", "decompression bomb"),
            path=bomb)
    monkeypatch.setattr(model_io, "MAX_CONFIG_BYTES", 1 << 16)
    config = json.loads(zipfile.ZipFile(factory_models["dice"]).read("config.json"))
    config["padding"] = " " * (1 << 17)
    big = _entries(factory_models["dice"], ws / "in" / "config.keras", {"config.json": json.dumps(config).encode()},
                   compression=zipfile.ZIP_STORED)
    refused(ws, capsys, "check-model", big, found=("config.json declares", "limit for a model configuration"), path=big)


def test_unbuilt_sequential_model_exits_2(ws, capsys, tmp_path):
    k = keras()
    m = k.Sequential([k.layers.Conv2D(1, 1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(tmp_path / "unbuilt.keras")
    model = user_file(ws, tmp_path / "unbuilt.keras")
    refused(ws, capsys, "check-model", model, found=("saved before it was built",), path=model)


def test_model_that_is_a_fifo_exits_2(ws, capsys):
    fifo = ws / "in" / "model.keras"
    os.mkfifo(fifo)
    refused(ws, capsys, "check-model", fifo, found=("not a regular file",), path=fifo)


# --num-classes is bounded

@pytest.fixture
def small_data(ws) -> Path:
    return make_dataset(ws / "in" / "data", n=4, size=16)


@pytest.mark.parametrize("value", ["1e20", "1e7", "10000000", "100000000000000000000", "0", "-3", "three", "2.5"])
def test_num_classes_out_of_bounds_exits_2(ws, capsys, small_data, value):
    line = refused(ws, capsys, "check-data", small_data, "--num-classes", value, "--jobs", "1",
                   found=(f"--num-classes {value}", "from 1 to 4,096"))
    assert "Traceback" not in line


def test_num_classes_at_the_bound_is_accepted(ws, capsys, small_data):
    from segdoctor.commands.data import MAX_NUM_CLASSES

    run = cli(ws, capsys, "check-data", small_data, "--num-classes", str(MAX_NUM_CLASSES), "--jobs", "1")
    assert run.rc in (0, 1) and run.doc["findings"] is not None


# no image/mask pair at all is an input error, wherever discovery is reused

@pytest.mark.parametrize("layout", ["empty_images", "no_masks", "unsupported_formats"])
def test_zero_pairs_exits_2(ws, capsys, layout):
    data = ws / "in" / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i in range(3):
        mask = (np.arange(256).reshape(16, 16) % 2).astype(np.uint8)
        if layout == "empty_images":
            Image.fromarray(mask).save(data / "masks" / f"{i}.png")
        elif layout == "no_masks":
            Image.fromarray(mask * 200).save(data / "images" / f"{i}.png")
        else:
            (data / "images" / f"{i}.jp2").write_bytes(b"\0\0\0\x0cjP  \r\n\x87\n")
            (data / "masks" / f"{i}.jp2").write_bytes(b"\0\0\0\x0cjP  \r\n\x87\n")
    refused(ws, capsys, "check-data", data, found=("found no image/mask pairs",), path=data)
    log = ws / "in" / "h.json"
    log.write_text(json.dumps({"loss": [0.9, 0.5, 0.3]}))
    refused(ws, capsys, "check-history", log, "--data", data, found=("found no image/mask pairs",), path=data)



# multi-page TIFF stacks: read page 1 without walking every page, and say "page 1 of N"

def tiff_stack(pages: list[np.ndarray] | np.ndarray, n_pages: int | None = None) -> bytes:
    """A classic little-endian uint8 TIFF of ``n_pages`` pages; the given pages first, the rest repeat the last one
    (pages share their strips, so a 100,000-page stack of 16x16 pixels is 11 MB and takes milliseconds to build)."""
    pages = [np.ascontiguousarray(p, dtype=np.uint8) for p in pages]
    n_pages = n_pages or len(pages)
    h, w = pages[0].shape
    strips, offsets, pos = [], [], 8
    for p in pages:
        strips.append(p.tobytes())
        offsets.append(pos)
        pos += h * w
    ifd_size = 2 + 9 * 12 + 4
    out = [b"II*\x00", struct.pack("<I", pos), *strips]
    for i in range(n_pages):
        entries = [(256, 3, w), (257, 3, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, offsets[min(i, len(pages) - 1)]),
                   (277, 3, 1), (278, 3, h), (279, 4, h * w)]
        nxt = pos + ifd_size if i < n_pages - 1 else 0
        out.append(struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in entries)
                   + struct.pack("<I", nxt))
        pos += ifd_size
    return b"".join(out)


def test_tiff_page_count_is_bounded_and_cheap(tmp_path):
    from segdoctor.io.readers import MAX_PAGES_COUNTED, read_file, tiff_page_count

    page = (np.arange(256).reshape(16, 16) % 7).astype(np.uint8)
    (tmp_path / "big.tif").write_bytes(tiff_stack([page], 100_000))
    assert tiff_page_count(tmp_path / "big.tif") == MAX_PAGES_COUNTED + 1
    dec = read_file(tmp_path / "big.tif")
    assert np.array_equal(dec.array, page) and dec.extra["pages"] == MAX_PAGES_COUNTED + 1
    (tmp_path / "loop.tif").write_bytes(tiff_stack([page], 3)[:-4] + struct.pack("<I", 8 + 256))  # last page -> first
    assert tiff_page_count(tmp_path / "loop.tif") == 3
    import tifffile

    tifffile.imwrite(tmp_path / "one.tif", page)
    assert tiff_page_count(tmp_path / "one.tif") == 1 and "pages" not in read_file(tmp_path / "one.tif").extra


def test_stacks_are_read_at_page_1_and_the_report_says_so(ws, capsys):
    """An ISBI-style volume (30 slices, masks {0, 255}) and a 100,000-page stack: the scan reads page 1 of each
    (the old reader counted every frame first: minutes), judges it, and a note names the page counts."""
    data = ws / "in" / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    slices = [blob_pair(rng, size=64, rgb=False) for _ in range(30)]
    (data / "images" / "train-volume.tif").write_bytes(tiff_stack([s[0] for s in slices]))
    (data / "masks" / "train-volume.tif").write_bytes(tiff_stack([s[1] * 255 for s in slices]))
    (data / "images" / "huge.tif").write_bytes(tiff_stack([slices[0][0]], 100_000))
    (data / "masks" / "huge.tif").write_bytes(tiff_stack([slices[0][1] * 255], 100_000))
    run = cli(ws, capsys, "check-data", data, "--jobs", "1")
    notes = [n for n in run.doc["notes"] if "several pages" in n]
    assert len(notes) == 1
    assert "images/train-volume.tif (page 1 of 30)" in notes[0] and "page 1 of more than 10,000" in notes[0]
    assert "segdoctor: note: 4 file(s) hold several pages" in run.err
    assert "SD101" in {f["code"] for f in run.doc["findings"]}  # page 1 was judged: {0, 255} masks
    assert not {"SD001"} & {f["code"] for f in run.doc["findings"]}


# label values beyond uint8

def _label_dataset(root: Path, masks: list[np.ndarray], ext: str = ".tif") -> Path:
    import tifffile

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(3)
    for i, m in enumerate(masks):
        img, _ = blob_pair(rng, size=m.shape[0])
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        if ext == ".npy":
            np.save(root / "masks" / f"{i:02d}.npy", m)
        else:
            tifffile.imwrite(root / "masks" / f"{i:02d}.tif", m)
    return root


def _blob_masks(n: int = 8, size: int = 64, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [blob_pair(rng, size=size)[1].astype(np.int32) for _ in range(n)]


def _with_border(m: np.ndarray, value: int, width: int = 2) -> np.ndarray:
    from scipy import ndimage

    band = ndimage.binary_dilation(m > 0, iterations=width) & ~ndimage.binary_erosion(m > 0, iterations=width)
    out = m.copy()
    out[band] = value
    return out


def test_uint32_and_int8_tiff_masks_keep_their_true_values(tmp_path):
    import tifffile

    from segdoctor.io.readers import read_file

    big = np.zeros((8, 8), np.uint32)
    big[2:5, 2:5] = 3_000_000_000
    tifffile.imwrite(tmp_path / "u32.tif", big)
    signed = np.zeros((8, 8), np.int8)
    signed[2:5, 2:5] = -1
    tifffile.imwrite(tmp_path / "i8.tif", signed)
    assert read_file(tmp_path / "u32.tif").array.max() == 3_000_000_000  # not -1,294,967,296
    assert read_file(tmp_path / "i8.tif").array.min() == -1  # not 255


@pytest.mark.parametrize("kind", ["minus_one_plus_one", "minus_one_background"])
def test_negative_ids_are_an_error(ws, capsys, kind):
    masks = _blob_masks()
    if kind == "minus_one_plus_one":
        masks = [np.where(m > 0, 1, -1).astype(np.int32) for m in masks]
    else:
        masks = [np.where(m > 0, 1, -1).astype(np.int32) for m in masks]
        for m in masks:
            m[:8, :8] = 2
    data = _label_dataset(ws / "in" / "data", masks)
    run = cli(ws, capsys, "check-data", data, "--jobs", "1")
    found = {f["code"]: f for f in run.doc["findings"]}
    assert run.rc == 1 and found["SD107"]["severity"] == "error", sorted(found)
    assert "negative class ids {-1}" in found["SD107"]["title"] and "the background" in found["SD107"]["title"]
    assert "SD103" not in found  # a -1 that covers most of the mask is not a void label
    assert_harmless(found["SD107"]["snippet"])


@pytest.mark.parametrize("dtype, ext", [(np.int32, ".tif"), (np.int8, ".tif"), (np.int16, ".npy")])
def test_a_minus_one_void_border_is_named_minus_one(ws, capsys, dtype, ext):
    masks = [_with_border(m, -1).astype(dtype) for m in _blob_masks()]
    data = _label_dataset(ws / "in" / "data", masks, ext)
    run = cli(ws, capsys, "check-data", data, "--jobs", "1")
    found = {f["code"]: f for f in run.doc["findings"]}
    assert found["SD103"]["evidence"]["void_value"] == -1 and "void label -1" in found["SD103"]["title"]
    assert "255" not in found["SD103"]["title"]
    assert not {"SD107", "SD251"} & set(found), sorted(found)  # a void border is neither a bad id nor a shifted mask


# void bands across boundaries (Pascal VOC style) and the alignment check

def _voc_style(root: Path, *, swap: tuple[int, int] | None = None, size: int = 96, width: int = 2) -> Path:
    """12 pairs whose masks have classes 1 and 2 and a void band (255) `width` px wide on both sides of every edge."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(12):
        img, m = blob_pair(rng, size=size, radius=(size // 12, size // 5))
        lab, _ = ndimage.label(m)
        m = np.where(lab % 2 == 1, 1, np.where(lab > 0, 2, 0)).astype(np.uint8)
        pairs.append((img, _with_border(m.astype(np.int32), 255, width).astype(np.uint8)))
    if swap:
        i, j = swap
        pairs[i], pairs[j] = (pairs[i][0], pairs[j][1]), (pairs[j][0], pairs[i][1])
    return write_dataset(root, pairs)


def test_void_bands_do_not_make_correct_pairs_look_misaligned(tmp_path):
    from segdoctor.commands.data import check_data

    report = check_data(_voc_style(tmp_path / "clean"), jobs=1)
    codes = {f.code for f in report.findings}
    assert "SD103" in codes and not {"SD251", "SD252"} & codes, codes
    swapped = check_data(_voc_style(tmp_path / "swapped", swap=(2, 7)), jobs=1)
    f = next(f for f in swapped.findings if f.code == "SD251")
    assert sorted(x for x in f.files if x.startswith("images/")) == ["images/s002.png", "images/s007.png"]


def _realdata() -> Path:
    root = Path(os.environ.get("SEGDOCTOR_REALDATA", REPO.parent / "shared" / "realdata"))
    if not (root / "voc_rgb_targets").is_dir():
        pytest.skip(f"real data not found at {root} (set SEGDOCTOR_REALDATA)")
    return root


@pytest.mark.parametrize("as_palette", [False, True])
def test_real_voc_masks_with_void_borders_stay_aligned(tmp_path, as_palette):
    """The three Pascal VOC targets of ../shared/realdata (void colour (224, 224, 192) along every outline), as RGB
    colour masks and as palette PNGs with 255, in 12 crops and flips (image and mask alike): no pair is called
    misaligned, and two swapped masks are."""
    from segdoctor.commands.data import check_data
    from segdoctor.stats.labels import VOC_VOID_COLOUR, voc_palette

    src = _realdata() / "voc_rgb_targets"
    palette = voc_palette(256)

    def build(root: Path, swap: tuple[int, int] | None = None) -> Path:
        pairs = []
        for stem in ("1", "23", "114"):
            img = np.asarray(Image.open(src / f"{stem}_image.png").convert("RGB"))
            target = np.asarray(Image.open(src / f"{stem}_target.png").convert("RGB"))
            index = np.zeros(target.shape[:2], np.uint8)
            for i, colour in enumerate(palette[:21]):
                index[(target == colour).all(-1)] = i
            index[(target == VOC_VOID_COLOUR).all(-1)] = 255
            h, w = index.shape
            for v in range(4):
                sl = (slice(0, h - 20 * v), slice(10 * v, w))
                flip = (slice(None), slice(None, None, -1)) if v % 2 else (slice(None), slice(None))
                mask = index[sl][flip] if as_palette else target[sl][flip]
                pairs.append((np.ascontiguousarray(img[sl][flip]), np.ascontiguousarray(mask)))
        if swap:  # each image gets the other's mask, resized (nearest) to its size
            i, j = swap

            def fitted(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
                return np.asarray(Image.fromarray(mask).resize(image.shape[1::-1], Image.NEAREST))

            pairs[i], pairs[j] = (pairs[i][0], fitted(pairs[j][1], pairs[i][0])), (pairs[j][0], fitted(pairs[i][1], pairs[j][0]))
        masks = []
        for _, mask in pairs:
            im = Image.fromarray(mask, "P" if as_palette else "RGB")
            if as_palette:
                im.putpalette(palette.ravel().tolist())
            masks.append(im)
        return write_dataset(root, [(Image.fromarray(img), m) for (img, _), m in zip(pairs, masks)])

    clean = check_data(build(tmp_path / "clean"), jobs=1)
    assert not {"SD251", "SD252"} & {f.code for f in clean.findings}
    swapped = check_data(build(tmp_path / "swapped", swap=(1, 6)), jobs=1)  # masks of two different photos
    f = next(f for f in swapped.findings if f.code == "SD251")
    assert {"images/s001.png", "images/s006.png"} <= set(f.files)


# models with several outputs

@pytest.fixture(scope="module")
def two_output_models(tmp_path_factory) -> dict[str, Path]:
    """A 1-channel sigmoid segmentation head ('seg') beside a 1-value classification head ('cls'): as dict outputs
    whose first key sorts after the other (Keras flattens dict outputs by key), and as a list [cls, seg]."""
    root = tmp_path_factory.mktemp("multi")
    k = keras()
    out = {}
    for kind in ("dict", "list"):
        inputs = k.Input((16, 16, 1))
        x = k.layers.Rescaling(1 / 255.0)(inputs)
        conv = k.layers.Conv2D(1, 1, activation="sigmoid", name="seg")
        seg = conv(x)
        cls = k.layers.Dense(3, activation="softmax", name="cls")(k.layers.GlobalAveragePooling2D()(x))
        if kind == "dict":
            model = k.Model(inputs, {"zseg": seg, "aux": cls})
            model.compile(optimizer="adam", loss={"zseg": "binary_crossentropy", "aux": "sparse_categorical_crossentropy"})
        else:
            model = k.Model(inputs, [cls, seg])
            model.compile(optimizer="adam", loss=["sparse_categorical_crossentropy", "binary_crossentropy"])
        conv.set_weights([np.full((1, 1, 1, 1), 20.0, np.float32), np.full((1,), -10.0, np.float32)])
        model.save(root / f"{kind}.keras")
        out[kind] = root / f"{kind}.keras"
    return out


@pytest.mark.parametrize("kind, key", [("dict", "zseg"), ("list", "seg")])
def test_several_outputs_pair_losses_by_name_and_say_which_was_analysed(ws, capsys, two_output_models, kind, key):
    model = user_file(ws, two_output_models[kind])
    data = make_dataset(ws / "in" / "data", n=6, size=16)
    run = cli(ws, capsys, "check-model", model, "--data", data, "--select", "SD4,SD5")
    found = {f["code"] for f in run.doc["findings"]}
    assert not {"SD402", "SD403", "SD401"} & found, found  # the sigmoid head trains with binary CE: no mismatch
    note = next(n for n in run.doc["notes"] if "outputs" in n)
    assert f"the checks analyse {key!r}" in note and "binary_crossentropy" in note
    assert run.doc["summary"]["output_analysed"] == key and run.doc["summary"]["head"] == "sigmoid"
    assert run.doc["summary"]["mean_dice"] > 0.8  # the segmentation output was the one run on the data


# nothing from a file name or a log reaches the terminal as a control sequence

def test_control_characters_are_escaped_on_the_terminal(ws, capsys):
    """A folder name (printed in a note), a log column (printed in a finding title) and a missing path (printed in
    the error line) holding terminal escape sequences, a bell and a carriage return: printed as \\x escapes."""
    data = make_dataset(ws / "in" / "data", n=4, size=16)
    extra = data / "extra\x1b]0;owned\x07\x1b[31m"
    extra.mkdir()
    shutil.copy2(data / "images" / "s00.png", extra / "s00.png")  # images without masks: named in a note
    log = ws / "in" / "h.json"
    log.write_text(json.dumps({"loss\x1b[2J\r": [0.5, 0.4, float("nan"), float("nan")], "val_loss": [0.5] * 4}))
    for argv in (("check-data", data, "--jobs", "1"), ("check-history", log), ("check-data", ws / "in" / "missing\x1b[1m")):
        rc = main([*map(str, argv), "--report", str(ws / "out" / "r.html")])
        printed = "".join(capsys.readouterr())
        assert "\x1b" not in printed and "\r" not in printed and "\x07" not in printed, printed
        assert "\\x1b" in printed, (rc, printed)
