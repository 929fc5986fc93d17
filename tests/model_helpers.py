"""Tiny Keras models and datasets for the check-model tests, built in seconds in tmp_path.

Most prediction models are one 1x1 convolution with hand-set weights, ``sigmoid(w * x + b)`` on the
input intensity, so each failure (blank, constant, over-segmenting, mis-scaled) is exact and needs no
training. Images hold bright objects (200) on a dark background (50) with noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 32
FG, MID, BG = 200, 120, 50


def keras():
    from segdoctor.io.model import import_keras

    return import_keras()


def make_dataset(root: Path, *, n: int = 12, seed: int = 0, multiclass: bool = False, mask_scale: int = 1,
                 size: int = SIZE) -> Path:
    """images/ + masks/ PNG pairs: a bright rectangle (class 1), optionally a mid-gray one (class 2)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.full((size, size), BG, np.float64)
        mask = np.zeros((size, size), np.uint8)
        h, w = rng.integers(3, 7, size=2) * size // SIZE
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        image[y : y + h, x : x + w] = FG
        mask[y : y + h, x : x + w] = 1
        if multiclass:
            y2, x2 = (y + size // 2) % (size - 4), (x + size // 2) % (size - 4)
            region = np.zeros_like(mask, bool)
            region[y2 : y2 + 4, x2 : x2 + 4] = True
            region &= mask == 0
            image[region] = MID
            mask[region] = 2
        image += rng.normal(0, 5, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"s{i:02d}.png")
        Image.fromarray((mask * mask_scale).astype(np.uint8)).save(root / "masks" / f"s{i:02d}.png")
    return root


def intensity_model(path: Path, *, w: float, b: float, rescale: bool = False, size: int | None = SIZE,
                    activation: str = "sigmoid", loss=None, optimizer=None) -> Path:
    """Output sigmoid(w * x + b) per pixel, x the (optionally /255-rescaled inside the model) intensity."""
    k = keras()
    inputs = k.Input((size, size, 1))
    x = k.layers.Rescaling(1 / 255.0)(inputs) if rescale else inputs
    conv = k.layers.Conv2D(1, 1, activation=activation, name="head")
    model = k.Model(inputs, conv(x))
    conv.set_weights([np.full((1, 1, 1, 1), w, np.float32), np.full((1,), b, np.float32)])
    model.compile(optimizer=optimizer or k.optimizers.Adam(1e-3), loss=loss or "binary_crossentropy")
    model.save(path)
    return path


def three_class_model(path: Path, *, predict_class_2: bool) -> Path:
    """Softmax over 3 classes from intensity (unit-scaled input): bright -> 1, mid-gray -> 2 (or never)."""
    k = keras()
    inputs = k.Input((SIZE, SIZE, 1))
    x = k.layers.Rescaling(1 / 255.0)(inputs)
    # logits: background is high for dark pixels, class 1 for bright, class 2 for the middle of the range
    feats = k.layers.Conv2D(3, 1, activation="relu", name="features")(x)
    head = k.layers.Conv2D(3, 1, activation="softmax", name="head")
    model = k.Model(inputs, head(feats))
    f1, f2 = FG / 255.0, MID / 255.0
    t1 = (f1 + f2) / 2  # between class 2 and class 1
    t0 = (f2 + BG / 255.0) / 2  # between background and class 2
    kernel = np.array([[[[1.0, 1.0, 1.0]]]], np.float32)
    bias = np.array([0.0, -t0, -t1], np.float32)  # relu(x), relu(x - t0), relu(x - t1)
    model.get_layer("features").set_weights([kernel, bias])
    hk = np.zeros((1, 1, 3, 3), np.float32)
    hb = np.array([3.0, 0.0, 0.0], np.float32)
    hk[0, 0, 1, 0] = 0.0
    hk[0, 0, 1, 2] = 200.0 if predict_class_2 else 0.0  # above t0: class 2 ...
    hk[0, 0, 2, 1] = 1000.0  # ... above t1: class 1 wins
    hk[0, 0, 2, 2] = -200.0 if predict_class_2 else 0.0
    head.set_weights([hk, hb if predict_class_2 else np.array([3.0, 0.0, -50.0], np.float32)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(path)
    return path
