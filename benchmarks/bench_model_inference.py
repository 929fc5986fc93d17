"""Time segdoctor's inference path against plain ``model.predict`` on the same images (run by hand).

    python benchmarks/bench_model_inference.py [--images 64] [--size 256] [--batch-size 8]

segdoctor's path reads each PNG pair, scales and batches it, runs ``predict_on_batch`` and reduces every
probability map to per-image records (Dice/IoU counts, threshold histograms, rank-based decoding).
The baseline is ``model.predict`` on the already-decoded, already-scaled arrays, so the ratio is the
full price of the diagnosis (file reading included) over bare inference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path


def unet(keras, size: int):
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
    return keras.Model(inputs, layers.Conv2D(1, 1, activation="sigmoid")(x))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from segdoctor.io.inference import run_inference
    from segdoctor.io.model import LoadedModel, import_keras
    from segdoctor.io.model_spec import describe_model

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = unet(keras, args.size)
    spec = describe_model(LoadedModel(model, Path("bench.keras"), "keras", None, False))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs, arrays = [], []
        for i in range(args.images):
            image = rng.integers(0, 256, (args.size, args.size), dtype=np.uint8)
            mask = (rng.random((args.size, args.size)) < 0.05).astype(np.uint8)
            Image.fromarray(image).save(root / f"{i}.png")
            Image.fromarray(mask).save(root / f"{i}_mask.png")
            pairs.append(Pair(root / f"{i}.png", root / f"{i}_mask.png"))
            arrays.append(image[..., None].astype(np.float32))
        x = np.stack(arrays)
        model.predict(x[: args.batch_size], batch_size=args.batch_size, verbose=0)  # warm up both paths
        run_inference(model, spec, pairs[: args.batch_size], preprocess="none", batch_size=args.batch_size)

        def best_of(fn) -> float:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return min(times)

        t_predict = best_of(lambda: model.predict(x, batch_size=args.batch_size, verbose=0))
        t_segdoctor = best_of(lambda: run_inference(model, spec, pairs, preprocess="none", batch_size=args.batch_size))
    n = args.images
    print(f"{n} images {args.size}x{args.size}, batch {args.batch_size}, best of {args.repeats}")
    print(f"model.predict on arrays:        {t_predict:7.3f} s  ({n / t_predict:7.1f} images/s)")
    print(f"segdoctor inference from files: {t_segdoctor:7.3f} s  ({n / t_segdoctor:7.1f} images/s)")
    print(f"ratio segdoctor / predict:      {t_segdoctor / t_predict:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
