"""What ``segdoctor check-model --data`` costs beyond importing TensorFlow and ``model.predict`` (run by hand).

    python benchmarks/bench_check_model.py [--images 64] [--size 256] [--repeat 3] [--keep DIR]

Builds, in a temporary folder (or ``--keep DIR``), a small U-Net compiled with a custom Dice loss
(saved as ``.keras``, with the loss in ``losses.py``), 8-bit PNG images and 0/1 masks. Then runs,
alternately and ``--repeat`` times, each in a fresh interpreter:

1. the baseline: import Keras/TensorFlow, load the model, decode the images and ``model.predict`` them
   all (what any script that looks at the predictions pays);
2. ``segdoctor check-model MODEL --data DIR --custom-objects losses.py --report out.html``: loading,
   the static checks, the custom-loss probes, the input-scaling candidates, inference with per-image
   records, the data checks on the same data, every figure and the HTML report.

Prints the medians and the time check-model spends beyond the baseline, as a share of the baseline
(issue 15's target: <= 30%), and, with ``--profile``, where check-model's own time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LOSSES = '''
import keras


def dice_loss(y_true, y_pred, smooth=1.0):
    y_true = keras.ops.cast(y_true, "float32")
    inter = keras.ops.sum(y_true * y_pred, axis=(1, 2, 3))
    total = keras.ops.sum(y_true, axis=(1, 2, 3)) + keras.ops.sum(y_pred, axis=(1, 2, 3))
    return 1.0 - keras.ops.mean((2.0 * inter + smooth) / (total + smooth))
'''

BASELINE = '''
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from pathlib import Path
import numpy as np
from PIL import Image
import keras
sys.path.insert(0, sys.argv[1])
from losses import dice_loss
model = keras.models.load_model(Path(sys.argv[1]) / "model.keras", custom_objects={"dice_loss": dice_loss})
files = sorted((Path(sys.argv[1]) / "data" / "images").glob("*.png"))
x = np.stack([np.asarray(Image.open(f), dtype=np.float32)[..., None] for f in files])
model.predict(x, batch_size=int(sys.argv[2]), verbose=0)
'''


def build(root: Path, images: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    sys.path.insert(0, str(root))
    (root / "losses.py").write_text(LOSSES)
    from losses import dice_loss

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((size, size, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    skips = []
    for f in (16, 32, 64):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu")(x)
    for f, skip in zip((64, 32, 16), reversed(skips)):
        x = layers.UpSampling2D()(x)
        x = layers.Concatenate()([x, skip])
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    model = keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=dice_loss, metrics=["accuracy"])
    model.save(root / "model.keras")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(images):
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 10, size // 5))]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        image = np.clip(rng.normal(90, 20, (size, size)) + 80 * mask, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "data" / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "data" / "masks" / f"{i:04d}.png")


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return elapsed


def check_model_cmd(root: Path, batch: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "segdoctor", "check-model", str(root / "model.keras"), "--data", str(root / "data"),
            "--custom-objects", str(root / "losses.py"), "--batch-size", str(batch), "--report", str(out), "-q"]


def profile(root: Path, batch: int, out: Path) -> None:
    """check-model in this process under cProfile: where its own time goes."""
    import cProfile
    import pstats

    sys.path.insert(0, str(REPO))
    from segdoctor.cli import main

    args = check_model_cmd(root, batch, out)[3:]
    cProfile.runctx("main(args)", globals(), {"main": main, "args": args}, str(out.with_suffix(".prof")))
    pstats.Stats(str(out.with_suffix(".prof"))).sort_stats("cumulative").print_stats(40)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build the model and data here (kept) or reuse them when present")
    ap.add_argument("--profile", action="store_true", help="also profile one check-model run in this process")
    ap.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_only:
        build(args.build_only, args.images, args.size)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "bench"
        if not (root / "model.keras").exists():
            root.mkdir(parents=True, exist_ok=True)
            # built in a child: this process stays free of TensorFlow, like the runs it times
            subprocess.run([sys.executable, __file__, "--build-only", str(root), "--images", str(args.images),
                            "--size", str(args.size)], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        out = Path(tmp) / "report.html"
        base, tool = [], []
        for _ in range(args.repeat):
            base.append(timed([sys.executable, "-c", BASELINE, str(root), str(args.batch_size)]))
            tool.append(timed(check_model_cmd(root, args.batch_size, out)))
        b, t = statistics.median(base), statistics.median(tool)
        print(f"{args.images} images {args.size}x{args.size}, batch {args.batch_size}, repeat {args.repeat} (medians of alternating runs)")
        print(f"baseline (import, load, decode, model.predict): {b:7.2f} s")
        print(f"segdoctor check-model --data (report included): {t:7.2f} s")
        print(f"beyond the baseline:                           {t - b:7.2f} s = {100 * (t - b) / b:5.1f}% of it  (target <= 30%)")
        if args.profile:
            profile(root, args.batch_size, out)


if __name__ == "__main__":
    main()
