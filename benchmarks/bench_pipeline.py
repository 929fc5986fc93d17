"""How much time check-pipeline adds to the time the pipeline itself takes to produce its batches.

Builds N image/mask pairs (RGB PNG images of ``--source-size`` px, 8-bit PNG masks) in a temporary folder (or
reuses ``--data DIR``) and a tf.data pipeline over them that yields 256x256 batches: read, decode, scale to
[0, 1], resize to 256 (nearest for the masks) when the files are larger, a joint random flip, batch, prefetch.
``--source-size 256`` decodes the batches' size directly: the cheapest pipeline there is, so the ratio is the
worst case. Then, alternating, and each time on a fresh pipeline object:

- baseline: iterate ``--batches`` batches and convert them to numpy (what any consumer of the batches pays);
- check: ``segdoctor.check_pipeline(pipeline, batches=...)`` (reading, per-sample statistics, every check,
  the report's sections; no HTML is written).

Prints the medians and the ratio check / baseline (target: at most 1.25). TensorFlow is imported and one
warm-up run of each is done before timing. Runs on a loaded machine vary: compare the ratio, not seconds.

    python benchmarks/bench_pipeline.py                      # 8 batches of 8 (the default: 64 samples)
    python benchmarks/bench_pipeline.py --batches 32 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_data(root: Path, n: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(4):
            r = int(rng.integers(size // 16, size // 6))
            c = rng.integers(r, size - r, 2)
            mask[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= r * r] = 1
        base = rng.normal(70, 15, (size, size, 3)) + mask[..., None] * np.array([90, 60, 30])
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")


SIZE = 256


def make_pipeline(root: Path, batch: int):
    import tensorflow as tf

    images = sorted(str(p) for p in (root / "images").glob("*.png"))
    masks = [str(root / "masks" / Path(p).name) for p in images]

    def load(i, m):
        image = tf.cast(tf.io.decode_png(tf.io.read_file(i), channels=3), tf.float32) / 255.0
        mask = tf.cast(tf.io.decode_png(tf.io.read_file(m), channels=1), tf.float32)
        if image.shape[0] != SIZE:
            image = tf.image.resize(image, (SIZE, SIZE))
            mask = tf.image.resize(mask, (SIZE, SIZE), method="nearest")
        both = tf.image.random_flip_left_right(tf.concat([image, mask], axis=-1))
        return both[..., :3], both[..., 3:]

    ds = tf.data.Dataset.from_tensor_slices((images, masks)).shuffle(len(images), seed=0).repeat()
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def baseline(root: Path, batches: int, batch: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in make_pipeline(root, batch).take(batches):
        x.numpy(), y.numpy()
    return time.perf_counter() - start, time.process_time() - cpu


def check(root: Path, batches: int, batch: int) -> tuple[float, float, dict]:
    from segdoctor.commands.pipeline import check_pipeline

    start, cpu = time.perf_counter(), time.process_time()
    report = check_pipeline(make_pipeline(root, batch), batches=batches)
    return time.perf_counter() - start, time.process_time() - cpu, report.facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="reuse (or create) the pairs in this folder")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--source-size", type=int, default=512, help="side of the PNG files (the batches are 256x256)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = None
    root = args.data
    if root is None:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    if not (root / "images").is_dir():
        make_data(root, args.pairs, args.source_size)
    from segdoctor.io.model import import_keras

    import_keras()  # TensorFlow loaded once, outside the timings
    baseline(root, args.batches, args.batch_size)
    check(root, args.batches, args.batch_size)
    base_t, check_t, base_cpu, check_cpu, split = [], [], [], [], []
    for _ in range(args.repeat):
        seconds, cpu = baseline(root, args.batches, args.batch_size)
        base_t.append(seconds)
        base_cpu.append(cpu)
        seconds, cpu, facts = check(root, args.batches, args.batch_size)
        check_t.append(seconds)
        check_cpu.append(cpu)
        split.append((facts["train_pipeline_seconds"], facts["train_analysis_seconds"]))
    b, c = statistics.median(base_t), statistics.median(check_t)
    bc, cc = statistics.median(base_cpu), statistics.median(check_cpu)
    n = args.batches * args.batch_size
    side = int(np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(next((root / "images").glob("*.png")))).shape[0])
    print(f"{n} samples of {SIZE}x{SIZE} (from {side}x{side} PNG files) in {args.batches} batches, "
          f"medians of {args.repeat} alternating runs")
    print(f"pipeline alone : {b:.3f} s ({n / b:.0f} samples/s)")
    print(f"check_pipeline : {c:.3f} s (waiting for batches {statistics.median(s[0] for s in split):.3f} s, "
          f"per-sample statistics {statistics.median(s[1] for s in split):.3f} s, the rest checks and report)")
    print(f"ratio          : {c / b:.2f}  (overhead {100 * (c / b - 1):+.0f}%; target <= +25%)")
    print(f"CPU time       : pipeline {bc:.3f} s, check_pipeline {cc:.3f} s, ratio {cc / bc:.2f} (all threads; steadier "
          "than wall time when other jobs share the cores)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
