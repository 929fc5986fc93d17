"""check-pipeline's source: loading FILE.py:FUNCTION / module:attr, every accepted object kind, and hostile input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline_helpers import batches, blob_arrays, write_module
from segdoctor.cli import main
from segdoctor.commands.pipeline import check_pipeline
from segdoctor.errors import PipelineError
from segdoctor.io.pipeline import parse_spec, pull_batches

REPO = Path(__file__).resolve().parent.parent

GEN = """
import numpy as np

def _data(n=24, size=48, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r = rng.integers(6, 12)
        c = rng.integers(r, size - r, 2)
        yy, xx = np.mgrid[:size, :size]
        y[i] = (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r
    x = (rng.normal(60, 8, (n, size, size, 1)) + 120 * y[..., None]).clip(0, 255).astype(np.float32) / 255
    return x, y
"""


def _run(args, capsys):
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("segdoctor: error:")]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------- specs and loading


@pytest.mark.parametrize("text", ["train.py", "train.py:", ":make", "train.py:1abc", "a b c:make"])
def test_malformed_specs_are_one_line_errors(text):
    with pytest.raises(PipelineError) as e:
        parse_spec(text)
    assert "\n" not in str(e.value) and "FILE.py:FUNCTION" in str(e.value)


def test_file_function_is_imported_called_without_arguments_and_leaves_no_trace(tmp_path, capsys, monkeypatch):
    user = tmp_path / "project"
    path = write_module(user, "train.py", GEN + """
import helper_module  # a sibling module: the file's folder is on sys.path
import os
CALLS = []

def make_train_ds():
    CALLS.append(1)
    print("building the dataset ...")  # must not reach segdoctor's stdout
    os.chdir("/")  # the working folder is restored afterwards
    x, y = _data()
    return (x, y)

if __name__ == "__main__":
    raise SystemExit("script code must not run")
""")
    write_module(user, "helper_module.py", "VALUE = 1\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path_before = list(sys.path)
    rc, out, err = _run(["check-pipeline", f"{path}:make_train_ds", "--report", str(tmp_path / "r.html"), "-q"], capsys)
    assert rc == 0, err
    assert "building the dataset" not in out
    assert out.strip().splitlines()[0] == "No problems found."
    assert Path.cwd() == work
    assert sys.path == path_before
    assert not (user / "__pycache__").exists()


def test_module_attr_may_be_the_object_itself(tmp_path, monkeypatch):
    write_module(tmp_path, "mydata.py", GEN + "X, Y = _data()\nTRAIN = (X, Y)\n")
    monkeypatch.chdir(tmp_path)
    report = check_pipeline("mydata:TRAIN", batches=2)
    assert report.facts["train_pipeline_kind"] == "(X, Y) arrays"
    assert report.facts["train_samples"] == 24  # two array batches of 16 (24 samples in all)
    assert not (tmp_path / "__pycache__").exists()


def test_missing_file_missing_attribute_and_arguments(tmp_path, capsys):
    rc, _, err = _run(["check-pipeline", str(tmp_path / "nope.py") + ":make"], capsys)
    assert rc == 2 and "no such file" in _error_line(err)
    path = write_module(tmp_path, "t.py", "def make(size):\n    return None\ndef other():\n    return None\n")
    rc, _, err = _run(["check-pipeline", f"{path}:missing"], capsys)
    assert rc == 2 and "no attribute 'missing'" in _error_line(err) and "make" in err
    rc, _, err = _run(["check-pipeline", f"{path}:make"], capsys)
    assert rc == 2 and "needs arguments (size)" in _error_line(err)
    rc, _, err = _run(["check-pipeline", "no_such_module_xyz:make"], capsys)
    assert rc == 2 and "no module named" in _error_line(err)


# ---------------------------------------------------------------------------------------------- hostile functions


HOSTILE = {
    "raises": ("def make():\n    raise ValueError('broken loader')\n", "raised ValueError: broken loader"),
    "none": ("def make():\n    return None\n", "returned None"),
    "images_only": ("import numpy as np\ndef make():\n    return np.zeros((4, 8, 8, 3))\n", "images only"),
    "yields_images_only": ("import numpy as np\ndef make():\n    while True:\n        yield np.zeros((4, 8, 8, 3))\n",
                           "images only, no masks"),
    "ragged": ("import numpy as np\ndef make():\n    while True:\n"
               "        yield [np.zeros((8, 8, 3)), np.zeros((9, 8, 3))], [np.zeros((8, 8)), np.zeros((9, 8))]\n",
               "different shapes"),
    "exit_in_function": ("import sys\ndef make():\n    sys.exit(3)\n", "called sys.exit(3)"),
    "exit_in_module": ("import sys\nsys.exit('bye')\ndef make():\n    return None\n", "called sys.exit('bye')"),
    "exit_in_generator": ("import sys\ndef make():\n    yield from ()\n    sys.exit(4)\n", "called sys.exit(4)"),
    "exit_while_yielding": ("import sys\nimport numpy as np\ndef gen():\n    yield np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8))\n"
                            "    sys.exit(5)\ndef make():\n    return gen()\n", "called sys.exit(5)"),
    "strings": ("import numpy as np\ndef make():\n    return iter([(np.array(['a.png', 'b.png']), np.array(['a.png', 'b.png']))])\n",
                "strings"),
    "classification": ("import numpy as np\ndef make():\n    return iter([(np.zeros((4, 8, 8, 3)), np.zeros(4))])\n",
                       "one value per sample"),
    "length": ("import numpy as np\ndef make():\n    return iter([(np.zeros((4, 8, 8, 3)), np.zeros((3, 8, 8)))])\n",
               "4 images but 3 targets"),
    "empty": ("def make():\n    return iter([])\n", "yielded no batches"),
    "unbatched": ("import numpy as np\ndef make():\n    return iter([(np.zeros((64, 64, 3)), np.zeros((64, 64, 1)))] * 4)\n",
                  "single samples"),
    "raises_midway": ("import numpy as np\ndef gen():\n    yield np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8))\n"
                      "    raise OSError('disk gone')\ndef make():\n    return gen()\n", "OSError at batch 1: disk gone"),
    "dict": ("def make():\n    return {'a': 1}\n", "returned a dict"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_pipelines_exit_2_with_one_line(case, tmp_path, capsys):
    source, expected = HOSTILE[case]
    path = write_module(tmp_path, f"{case}.py", source)
    rc, out, err = _run(["check-pipeline", f"{path}:make", "--report", str(tmp_path / "r.html"), "--time-limit", "20"], capsys)
    assert rc == 2, (out, err)
    line = _error_line(err)
    assert expected in line, line
    assert "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_never_ending_function_and_dataset_hit_the_time_limit(tmp_path, capsys):
    path = write_module(tmp_path, "slow.py", """
import time
def hangs():
    while True:
        pass
def never_yields():
    while True:
        time.sleep(0.01)
        if False:
            yield None
""")
    for fn, what in (("hangs", "returned no dataset"), ("never_yields", "yielded no batch")):
        rc, _, err = _run(["check-pipeline", f"{path}:{fn}", "--time-limit", "1", "--report", "none"], capsys)
        assert rc == 2 and what in _error_line(err) and "time limit of 1 s" in err


def test_slow_pipeline_keeps_the_batches_it_got(tmp_path):
    write_module(tmp_path, "slowish.py", GEN + """
import time
def make():
    x, y = _data(48)
    def gen():
        i = 0
        while True:
            if i >= 3:
                time.sleep(0.5)
            yield x[(8 * i) % 40:(8 * i) % 40 + 8], y[(8 * i) % 40:(8 * i) % 40 + 8]
            i += 1
    return gen()
""")
    report = check_pipeline(f"{tmp_path / 'slowish.py'}:make", batches=50, time_limit=2.5)
    assert 3 <= report.facts["train_batches"] < 50
    assert any("time limit" in n for n in report.notes)


def test_infinite_dataset_is_bounded_by_batches():
    x, y = blob_arrays(16)
    report = check_pipeline(batches(x, y, 4), batches=3)
    assert report.facts["train_batches"] == 3 and report.facts["train_samples"] == 12


def test_default_batches_cover_64_samples():
    x, y = blob_arrays(24)
    report = check_pipeline(batches(x, y, 6))
    assert report.facts["train_samples"] >= 64 and report.facts["train_batches"] == 11


def test_nan_batches_are_findings_not_crashes():
    x, y = blob_arrays(16)
    xf = x.astype(np.float32) / 255
    xf[3, 5:9, 5:9] = np.nan
    yf = y.astype(np.float32)
    yf[5, 0, 0] = np.nan
    report = check_pipeline(batches(xf, yf, 8, repeat=False))
    found = {f.code for f in report.findings}
    assert {"SD202", "SD107"} <= found
    assert not [c for c in report.checks if c.status == "crashed"]


def test_prints_are_captured_and_noted(tmp_path, capfd):
    path = write_module(tmp_path, "noisy.py", GEN + """
import os
def make():
    print("loading 24 pairs")
    os.system("echo from-a-subprocess")
    x, y = _data()
    def gen():
        while True:
            print("next batch")
            yield x[:8], y[:8]
    return gen()
""")
    rc = main(["check-pipeline", f"{path}:make", "--report", "none", "--batches", "2"])
    out, err = capfd.readouterr()
    assert rc == 0
    assert "loading" not in out and "next batch" not in out and "from-a-subprocess" not in out
    assert "printed" in err  # the note says so, on stderr


# ---------------------------------------------------------------------------------------------- object kinds


def test_tf_data_tuples_dicts_and_sample_weights():
    tf = pytest.importorskip("tensorflow")
    x, y = blob_arrays(16)
    w = np.ones((16,), np.float32)
    plain = tf.data.Dataset.from_tensor_slices((x, y[..., None])).batch(4)
    r1 = check_pipeline(plain, batches=2)
    assert r1.facts["train_pipeline_kind"] == "tf.data.Dataset" and r1.facts["train_samples"] == 8
    weighted = tf.data.Dataset.from_tensor_slices((x, y[..., None], w)).batch(4)
    r2 = check_pipeline(weighted, batches=2)
    assert r2.facts["train_sample_weight_shape"] == "(B, )" or "train_sample_weight_shape" in r2.facts
    as_dicts = tf.data.Dataset.from_tensor_slices(({"image": x}, {"mask": y})).batch(4)
    r3 = check_pipeline(as_dicts, batches=2)
    assert r3.facts["train_samples"] == 8
    single_dict = tf.data.Dataset.from_tensor_slices({"image": x, "segmentation_mask": y}).batch(4)
    r4 = check_pipeline(single_dict, batches=2)
    assert r4.facts["train_samples"] == 8


def test_ragged_tf_data_is_a_one_line_error():
    tf = pytest.importorskip("tensorflow")
    rt = tf.ragged.constant([[1.0, 2.0], [3.0]])
    ds = tf.data.Dataset.from_tensors((rt, rt))
    with pytest.raises(PipelineError, match="ragged"):
        check_pipeline(ds, batches=1)


def test_pydataset_and_sequence_are_read_by_index():
    keras = pytest.importorskip("keras")
    x, y = blob_arrays(16)

    class Pairs(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __len__(self):
            return 4

        def __getitem__(self, i):
            self.calls.append(i)
            return x[4 * i: 4 * i + 4].astype(np.float32) / 255, y[4 * i: 4 * i + 4]

    ds = Pairs()
    report = check_pipeline(ds, batches=10)
    assert ds.calls == [0, 1, 2, 3]
    assert report.facts["train_pipeline_kind"].startswith("keras.utils.PyDataset")
    assert any("ended after 4 batches" in n for n in report.notes)
    listed = check_pipeline([(x[:8], y[:8]), (x[8:], y[8:])])
    assert listed.facts["train_samples"] == 16


def test_zip_of_image_data_generator_flows():
    tf = pytest.importorskip("tensorflow")
    idg = tf.keras.preprocessing.image.ImageDataGenerator
    x, y = blob_arrays(16)
    images = idg(rescale=1 / 255).flow(x, batch_size=4, seed=1, shuffle=True)
    masks = idg().flow(y[..., None].astype(np.float32), batch_size=4, seed=1, shuffle=True)
    report = check_pipeline(zip(images, masks), batches=3)
    assert report.facts["train_pipeline_kind"] == "zip of iterators" and report.facts["train_samples"] == 12
    assert not {f.code for f in report.findings} & {"SD301", "SD302", "SD106"}


def test_numpy_pipeline_never_imports_tensorflow(tmp_path):
    path = write_module(tmp_path, "np_only.py", GEN + "def make():\n    return _data()\n")
    code = ("import sys\nfrom segdoctor.cli import main\n"
            f"rc = main(['check-pipeline', {str(path) + ':make'!r}, '--report', {str(tmp_path / 'r.html')!r}, '-q'])\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
            "print('RC', rc, 'TF', bad)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert "RC 0 TF []" in p.stdout, p.stdout + p.stderr
    assert (tmp_path / "r.html").is_file()


def test_pull_batches_keeps_only_what_was_asked():
    x, y = blob_arrays(32)
    seen = []
    pull = pull_batches(batches(x, y, 8), label="t", batches=3, on_batch=lambda b: seen.append(b.x.shape), keep=1)
    assert len(seen) == 3 and len(pull.kept) == 1 and pull.samples == 24


# ---------------------------------------------------------------------------------------------- outputs never overwrite inputs


def test_report_onto_the_pipeline_file_is_refused(tmp_path, capsys):
    path = write_module(tmp_path, "t.py", GEN + "def make():\n    return _data()\n")
    before = path.read_text()
    for flag in ("--report", "--json"):
        rc, _, err = _run(["check-pipeline", f"{path}:make", flag, str(path)], capsys)
        assert rc == 2 and "input" in _error_line(err)
    assert path.read_text() == before
    data = tmp_path / "data"
    data.mkdir()
    rc, _, err = _run(["check-pipeline", f"{path}:make", "--data", str(data), "--report", str(data / "r.html")], capsys)
    assert rc == 2


def test_multi_output_targets_use_the_first_output():
    x, y = blob_arrays(16)
    xf = x.astype(np.float32) / 255
    report = check_pipeline(iter([(xf[:8], [y[:8], y[:8]]), (xf[8:], [y[8:], y[8:]])]))
    assert report.facts["train_samples"] == 16
    assert any("several model inputs or outputs" in n for n in report.notes)


def test_lists_of_samples_are_stacked_as_batches():
    x, y = blob_arrays(8)
    xf = x.astype(np.float32) / 255
    report = check_pipeline(iter([(list(xf), list(y))]))
    assert report.facts["train_samples"] == 8 and not any("several" in n for n in report.notes)
