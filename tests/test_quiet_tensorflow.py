"""TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, cuInit, cpu_feature_guard, XLA) never reach the
terminal unless -v, whatever TF_CPP_MIN_LOG_LEVEL the user's environment sets (hosted notebooks set 1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

#: an absl/TensorFlow log line ("I0000 00:00:1712.3 123 port.cc:153] ...") and the known start-up notices
NATIVE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|cuInit|cpu_feature_guard|oneDNN|cudart_stub|"
                    r"XLA service|StreamExecutor", re.M)


def _run(args, **env):
    full = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "1", **env}
    return subprocess.run([sys.executable, "-m", "segdoctor", *args], capture_output=True, text=True, env=full,
                          cwd=REPO, timeout=600)


def test_check_model_keeps_tensorflow_quiet(tmp_path):
    model = REPO / "sample_data" / "models" / "healthy_unet.keras"
    data = REPO / "sample_data" / "models" / "data"
    # a custom-objects file that imports keras itself, before segdoctor would
    losses = tmp_path / "losses.py"
    losses.write_text("import keras\n\n\ndef my_dice(y_true, y_pred):\n    return keras.ops.mean(y_pred)\n")
    p = _run(["check-model", str(model), "--data", str(data), "--sample", "4", "--custom-objects", str(losses),
              "--report", "none", "-q"])
    assert p.returncode in (0, 1), p.stderr
    assert not NATIVE.search(p.stderr), p.stderr


def _tensorboard_log(folder):
    code = (
        "import sys\n"
        "from tensorboard.summary.writer.event_file_writer import EventFileWriter\n"
        "from tensorboard.compat.proto import event_pb2, summary_pb2\n"
        "for run, values in (('train', [0.5, 0.4, 0.3]), ('validation', [0.6, 0.5, 0.45])):\n"
        "    w = EventFileWriter(sys.argv[1] + '/' + run)\n"
        "    for step, v in enumerate(values):\n"
        "        s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag='epoch_loss', simple_value=v)])\n"
        "        w.add_event(event_pb2.Event(step=step, summary=s))\n"
        "    w.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True, timeout=600)
    return folder


def test_check_history_on_a_tensorboard_log_keeps_tensorflow_quiet(tmp_path):
    pytest.importorskip("tensorboard")
    log = _tensorboard_log(tmp_path / "logs")
    p = _run(["check-history", str(log), "--report", "none", "-q"])
    assert p.returncode == 0, p.stderr
    assert not NATIVE.search(p.stderr), p.stderr


def test_check_pipeline_keeps_tensorflow_quiet_when_the_user_file_imports_it_in_a_list(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "loader.py").write_text(
        "import os, numpy as np, tensorflow as tf\n\n"
        "def make():\n"
        "    x = np.random.default_rng(0).random((16, 32, 32, 3)).astype('float32')\n"
        "    y = (x[..., :1] > 0.5).astype('float32')\n"
        "    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)\n")
    p = _run(["check-pipeline", f"{tmp_path / 'loader.py'}:make", "--report", "none", "-q"])
    assert p.returncode in (0, 1), p.stderr
    assert not NATIVE.search(p.stderr), p.stderr


@pytest.mark.parametrize("source, found", [
    ("import os, numpy as np, tensorflow as tf", ["tensorflow"]),
    ("from tensorflow.keras import layers", ["tensorflow"]),
    ("    import keras.layers as L", ["keras"]),
    ("import segmentation_models as sm", ["segmentation_models"]),
    ("# import tensorflow\nx = 'import keras'\nimport mytensorflow", []),
])
def test_the_user_file_scan_finds_tensorflow_imports(source, found):
    from segdoctor.io.pipeline import _TF_IMPORT

    assert _TF_IMPORT.findall(source) == found
