"""Time ``segdoctor lr-find`` with its defaults against plain ``model.fit`` on the same batches (run by hand).

    python benchmarks/bench_lr_find.py [--images 64] [--size 128] [--filters 16] [--repeat 3] [--data DIR]

The model is a 2-level U-Net (two poolings, filters 16/32/64, BatchNormalization) on 128x128 gray images; the
data are generated noisy discs. Each round runs, in fresh processes and alternating:

- ``segdoctor lr-find MODEL --data DIR --report none``: the whole command with its defaults (100 steps of
  8 images from 1e-7 to 10, stopping at the blow-up): Python and TensorFlow start-up, model loading, reading
  and decoding the PNGs, the copy, the sweep with its held-out probes, the analysis;
- the baseline: the same start-up and model loading, the same PNGs read and scaled, then ``model.fit`` for
  as many steps of 8 images as the sweep ran (what a user pays to train that many steps).

The machine is shared: compare the ratio (medians of alternating runs), not the absolute seconds alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BASELINE = r'''
import os, sys, time, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
start = time.perf_counter()
from pathlib import Path
import numpy as np
from PIL import Image
import keras
model = keras.saving.load_model(sys.argv[1])
root, steps, batch = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
images = sorted((root / "images").glob("*.png"))
x = np.stack([np.asarray(Image.open(p), np.float32) for p in images])[..., None]
y = np.stack([np.asarray(Image.open(root / "masks" / p.name), np.float32) for p in images])[..., None]
reps = -(-steps * batch // len(x))
x, y = np.concatenate([x] * reps)[: steps * batch], np.concatenate([y] * reps)[: steps * batch]
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
fit_start = time.perf_counter()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
print(json.dumps({"total": time.perf_counter() - start, "fit": time.perf_counter() - fit_start}))
'''


def build(root: Path, *, images: int, size: int, filters: int) -> tuple[Path, Path]:
    from tests.lr_helpers import keras, noisy_discs

    data = root / "data"
    if not (data / "images").is_dir():
        noisy_discs(data, n=images, size=size, seed=0)
    k = keras()
    k.utils.set_random_seed(0)
    layers = k.layers
    inputs = k.Input((size, size, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)

    def block(x, n):
        for _ in range(2):
            x = layers.Conv2D(n, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
        return x

    c1 = block(x, filters)
    c2 = block(layers.MaxPooling2D()(c1), 2 * filters)
    b = block(layers.MaxPooling2D()(c2), 4 * filters)
    d2 = block(layers.Concatenate()([layers.UpSampling2D()(b), c2]), 2 * filters)
    d1 = block(layers.Concatenate()([layers.UpSampling2D()(d2), c1]), filters)
    model = k.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(d1))
    model.compile(optimizer=k.optimizers.Adam(1e-3), loss="binary_crossentropy")
    path = root / "unet.keras"
    model.save(path)
    return path, data


def run_lr_find(model: Path, data: Path, out: Path) -> tuple[float, int, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "segdoctor", "lr-find", str(model), "--data", str(data), "--report", "none",
                    "--json", str(out), "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    report = json.loads(out.read_text())
    [f] = [f for f in report["findings"] if f["code"] == "SD451"]
    suggested = report["summary"].get("suggested_lr")
    return wall, int(f["evidence"]["steps_run"]), float(suggested) if suggested is not None else float("nan")


def run_baseline(model: Path, data: Path, steps: int, batch: int) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", BASELINE, str(model), str(data), str(steps), str(batch)],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    fit = json.loads(out.stdout.strip().splitlines()[-1])["fit"]
    return wall, fit


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, help="keep the generated model and data here (reused when present)")
    args = ap.parse_args()

    root = args.data or Path(tempfile.mkdtemp(prefix="bench_lr_find_"))
    root.mkdir(parents=True, exist_ok=True)
    model, data = build(root, images=args.images, size=args.size, filters=args.filters)
    print(f"2-level U-Net ({args.filters}/{2 * args.filters}/{4 * args.filters} filters, BatchNormalization), "
          f"{args.size}x{args.size}, {args.images} image/mask pairs; {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}")
    lr_walls, base_walls, fits, steps_run = [], [], [], 100
    for i in range(args.repeat):
        wall, steps_run, suggested = run_lr_find(model, data, root / "lr.json")
        lr_walls.append(wall)
        b_wall, b_fit = run_baseline(model, data, steps_run, 8)
        base_walls.append(b_wall)
        fits.append(b_fit)
        print(f"  round {i + 1}: lr-find {wall:.1f} s ({steps_run} steps, suggested {suggested:g}); "
              f"baseline {b_wall:.1f} s (model.fit {b_fit:.1f} s)")
    lr, base, fit = statistics.median(lr_walls), statistics.median(base_walls), statistics.median(fits)
    ratios = [a / b for a, b in zip(lr_walls, base_walls)]
    print(f"median: lr-find {lr:.1f} s end to end; baseline {base:.1f} s ({fit:.1f} s in model.fit for {steps_run} steps)")
    print(f"ratio lr-find / baseline (whole processes), per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}")
    print(f"lr-find beyond the baseline's fixed costs: {lr - (base - fit):.1f} s against {fit:.1f} s of model.fit "
          f"(ratio {(lr - (base - fit)) / fit:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
