"""The classic failure chains, built end to end (data, a model trained on it, its log), diagnosed through the CLI.

Each test asserts the first root cause named (terminal first line and JSON) and what it explains; a healthy
run has no diagnosis. Models are tiny (32x32 inputs, one hidden convolution) and train for a few epochs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdoctor.cli import main

from tests.model_helpers import intensity_model, keras, make_dataset

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_data"

pytestmark = pytest.mark.slow


def _run(argv: list[str], out: Path, capsys) -> tuple[int, str, dict]:
    rc = main([*map(str, argv), "--json", str(out / "r.json"), "--report", str(out / "r.html")])
    text = capsys.readouterr().out
    return rc, text, json.loads((out / "r.json").read_text())


def _train(root: Path, data: Path, *, epochs: int) -> tuple[Path, Path]:
    """A one-hidden-layer network trained with plain binary cross-entropy on the masks exactly as stored."""
    k = keras()
    x = np.stack([np.asarray(Image.open(p)) for p in sorted((data / "images").glob("*.png"))])[..., None].astype("float32")
    y = np.stack([np.asarray(Image.open(p)) for p in sorted((data / "masks").glob("*.png"))])[..., None].astype("float32")
    k.utils.set_random_seed(0)
    layers = k.layers
    inputs = k.Input(x.shape[1:])
    hidden = layers.Conv2D(4, 3, padding="same", activation="relu")(layers.Rescaling(1 / 255.0)(inputs))
    model = k.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(hidden))
    model.compile(optimizer=k.optimizers.Adam(1e-2), loss="binary_crossentropy",
                  metrics=[k.metrics.BinaryIoU(target_class_ids=[1], name="iou"), "accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=4, verbose=0)
    model.save(root / "model.keras")
    (root / "history.json").write_text(json.dumps(history.history))
    return root / "model.keras", root / "history.json"


def _rare_foreground(root: Path, n: int = 24, seed: int = 1) -> Path:
    """Dark noisy scenes with one or two small bright discs: about 2% foreground, masks 0/1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = np.zeros((32, 32), np.uint8)
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(4, 28, size=2)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(1.5, 2.5) ** 2] = 1
        image = 90 + rng.normal(0, 12, (32, 32)) + 50 * mask
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"c{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i:02d}.png")
    return root


def test_masks_stored_as_255_explain_the_negative_loss_and_foreground_everywhere(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n=12, mask_scale=255)
    model, log = _train(tmp_path, data, epochs=5)
    rc, text, doc = _run(["check-model", model, "--data", data, "--history", log], tmp_path, capsys)
    assert rc == 1
    first = text.splitlines()[0]
    assert first.startswith("The model predicts foreground far beyond the objects (SD508) because all 12 masks store the "
                            "foreground as 255 instead of 1 (SD101)"), first
    top = doc["diagnosis"][0]
    assert top["cause"] == "SD101" and top["confidence"] == "high"
    assert {"SD609", "SD508"} <= set(top["explains"])  # negative loss in the log, every pixel predicted foreground
    assert top["chain"].startswith("masks store 255 for foreground (SD101) → targets of 255 push the loss below 0 and the IoU above 1 "
                                   "→ negative loss or Dice/IoU > 1 in the log (SD609) → foreground predicted far beyond")
    assert "mask > 127" in top["fix"] and "retrain" in top["confirm"]
    codes = [f["code"] for f in doc["findings"]]
    assert codes[0] == "SD101" and codes.index("SD609") < codes.index("SD508")
    by = {f["code"]: f for f in doc["findings"]}
    assert by["SD609"]["explained_by"] == ["SD101"]
    html = (tmp_path / "r.html").read_text()
    assert html.index('id="diagnosis"') < html.index('id="SD101-1"')


def test_rare_foreground_with_plain_cross_entropy_explains_the_blank_model_and_its_log(tmp_path, capsys):
    data = _rare_foreground(tmp_path / "data")
    model, log = _train(tmp_path, data, epochs=4)
    rc, text, doc = _run(["check-model", model, "--data", data, "--history", log], tmp_path, capsys)
    assert rc == 1
    first = text.splitlines()[0]
    assert first.startswith("The model predicts blank masks (SD501) because foreground (value 1) is ")
    assert first.endswith("(SD151), and the loss is plain cross-entropy (binary_crossentropy).")
    top = doc["diagnosis"][0]
    assert top["cause"] == "SD151" and top["confidence"] == "high"
    assert {"SD501", "SD502", "SD503", "SD605"} <= set(top["explains"])
    by = {f["code"]: f for f in doc["findings"]}
    assert by["SD605"]["evidence"]["fits"] == "blank"  # --data gives the foreground share: Dice 0, not 2f/(1+f)
    assert "SD151 stays" in top["confirm"]


def test_learning_rate_too_high_explains_the_diverging_log(tmp_path, capsys):
    k = keras()
    model = intensity_model(tmp_path / "m.keras", w=5.0, b=-6.0, rescale=True, optimizer=k.optimizers.Adam(0.5))
    log = tmp_path / "log.csv"  # the shape of a divergence at that rate: the loss climbs, the Dice falls, then NaN
    log.write_text("epoch,loss,dice_coef,lr\n0,0.62,0.21,0.5\n1,0.48,0.35,0.5\n2,0.55,0.31,0.5\n3,0.81,0.18,0.5\n"
                   "4,1.6,0.05,0.5\n5,3.9,0.01,0.5\n6,9.7,0.0,0.5\n7,nan,0.0,0.5\n")
    rc, text, doc = _run(["check-model", model, "--history", log], tmp_path, capsys)
    first = text.splitlines()[0]
    assert first.startswith("The training loss diverged (SD602) because Adam learning rate 0.5 is above the usual range")
    assert "(SD404)" in first and "the log's learning rate reached 0.5" in first
    top = doc["diagnosis"][0]
    assert top["cause"] == "SD404" and top["confidence"] == "high"
    assert {"SD602", "SD601", "SD605"} <= set(top["explains"])
    # the log alone: the divergence is the deepest cause it can see
    rc, text, doc = _run(["check-history", log], tmp_path, capsys)
    assert doc["diagnosis"][0]["cause"] == "SD602" and {"SD601", "SD605"} <= set(doc["diagnosis"][0]["explains"])
    assert "(SD602)" in text.splitlines()[0]
    # a model saved with a sane rate does not explain the same log
    sane = intensity_model(tmp_path / "sane.keras", w=5.0, b=-6.0, rescale=True, optimizer=k.optimizers.Adam(1e-3))
    rc, text, doc = _run(["check-model", sane, "--history", log], tmp_path, capsys)
    assert [c["cause"] for c in doc["diagnosis"]] == ["SD602"]


def test_healthy_runs_have_no_diagnosis(tmp_path, capsys):
    rc, text, doc = _run(["check-model", SAMPLES / "models" / "healthy_unet.keras", "--data", SAMPLES / "models" / "data"],
                         tmp_path, capsys)
    assert rc == 0 and doc["diagnosis"] == []
    assert text.splitlines()[0].startswith("The model works on this data: mean Dice 0.8")
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,dice_coef,val_loss,val_dice_coef\n" + "".join(
        f"{i},{0.9 * 0.8 ** i:.4f},{0.8 - 0.6 * 0.7 ** i:.4f},{0.95 * 0.8 ** i:.4f},{0.78 - 0.6 * 0.7 ** i:.4f}\n" for i in range(12)))
    rc, text, doc = _run(["check-history", log], tmp_path, capsys)
    assert rc == 0 and doc["diagnosis"] == [] and not text.splitlines()[0].startswith("Root cause")
    rc, text, doc = _run(["check-data", SAMPLES / "coins_clean"], tmp_path, capsys)
    assert rc == 0 and doc["diagnosis"] == [] and text.splitlines()[0] == "No problems found."


def _readme_commands() -> list[tuple[str, str | None]]:
    """The sample commands of the README's quick start, with the first output line it shows (when it shows one)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```\n*(?:It prints[^`]*?(?:`[^`\n]*`[^`]*?)*:\n+```\n(.*?)```)?", text, flags=re.S):
        commands, shown = block
        for line in commands.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("segdoctor check-") and "sample_data/" in line:
                out.append((line, shown.splitlines()[0] if shown else None))
    return out


def test_readme_sample_commands_print_the_root_cause_first(tmp_path):
    commands = _readme_commands()
    wanted = {"segdoctor check-data sample_data/coins_broken --report report.html",
              "segdoctor check-model sample_data/models/blank_unet.keras --data sample_data/models/data"}
    assert wanted <= {c for c, _ in commands}, commands
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for command, shown in commands:
        if command not in wanted:
            continue
        argv = [a for a in shlex.split(command)[1:] if a not in ("--report", "report.html")]
        argv += ["--report", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json")]
        p = subprocess.run([sys.executable, "-m", "segdoctor", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 1, p.stderr
        first = p.stdout.splitlines()[0]
        root = json.loads((tmp_path / "r.json").read_text())["diagnosis"][0]["cause"]
        assert f"({root})" in first and ("Root cause" in first or " because " in first), first
        assert root == {"check-data": "SD101", "check-model": "SD151"}[argv[0]]
        if shown is not None:
            assert first == shown, "the README shows another first line than the command prints"
