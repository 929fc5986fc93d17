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
import stat
import struct
import subprocess
import sys
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
