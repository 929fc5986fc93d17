"""Make the sample models and the small dataset they are evaluated on (run from the repository root).

    python sample_data/models/make_models.py

Everything is generated (no downloads) with fixed seeds, and trains in well under a minute on a CPU:

- ``data/images/*.png`` + ``data/masks/*.png``: 64x64 grayscale scenes of textured background with a few
  faint round cells covering about 1% of the pixels; masks hold 0 (background) and 1 (cell).
  The models are trained on a separate set drawn from the same generator (not saved).
- ``blank_unet.keras``: a small U-Net trained with plain binary cross-entropy for a few epochs. On 1%
  foreground it learns the class prior first and predicts no cell at all: check-model reports blank
  predictions (SD501), Dice collapse (SD502), an output stuck at the class prior (SD505) and the
  accuracy trap (SD503).
- ``healthy_unet.keras``: the same U-Net trained longer with Dice + cross-entropy: check-model is quiet.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = 64


def make_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A noisy textured background with 1-3 faint discs; returns (uint8 image, uint8 mask in {0, 1})."""
    from scipy.ndimage import gaussian_filter

    texture = gaussian_filter(rng.normal(0, 1, (SIZE, SIZE)), 3)
    texture = texture / (np.abs(texture).max() + 1e-9)
    image = 100 + 30 * texture + rng.normal(0, 12, (SIZE, SIZE))
    mask = np.zeros((SIZE, SIZE), np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(2.0, 3.5)
        cy, cx = rng.uniform(6, SIZE - 6, size=2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        mask[disc] = 1
    image = image + 45 * gaussian_filter(mask.astype(float), 0.7)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [make_scene(rng) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def unet(keras, *, filters: int = 8):
    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    skips = []
    for f in (filters, filters * 2):
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(filters * 4, 3, padding="same", activation="relu")(x)
    for f, skip in zip((filters * 2, filters), reversed(skips)):
        x = layers.UpSampling2D()(x)
        x = layers.Concatenate()([x, skip])
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="unet")


def main() -> int:
    import keras

    keras.utils.set_random_seed(7)
    x_train, y_train = make_set(192, seed=1)
    x_eval, y_eval = make_set(24, seed=2)
    data = HERE / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    for i, (img, m) in enumerate(zip(x_eval, y_eval)):
        Image.fromarray(img).save(data / "images" / f"cell_{i:03d}.png", optimize=True)
        Image.fromarray(m).save(data / "masks" / f"cell_{i:03d}.png", optimize=True)
    print(f"foreground share: train {y_train.mean():.4f}, eval {y_eval.mean():.4f}")
    x = x_train[..., None].astype("float32")
    y = y_train[..., None].astype("float32")

    def dice_loss(y_true, y_pred, smooth=1e-6):
        ops = keras.ops
        inter = ops.sum(y_true * y_pred, axis=(1, 2))
        denom = ops.sum(y_true, axis=(1, 2)) + ops.sum(y_pred, axis=(1, 2))
        return 1.0 - ops.mean((2 * inter + smooth) / (denom + smooth))

    def dice_bce(y_true, y_pred):
        return keras.losses.binary_crossentropy(y_true, y_pred) + dice_loss(y_true, y_pred)

    # blank: plain BCE, few epochs; the 99% background wins
    keras.utils.set_random_seed(7)
    blank = unet(keras)
    blank.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])
    blank.fit(x, y, epochs=int(os.environ.get("BLANK_EPOCHS", 4)), batch_size=16, verbose=0)
    blank.save(HERE / "blank_unet.keras")

    # healthy: Dice + BCE, trained longer; compiled with a built-in loss so the file loads without custom code
    keras.utils.set_random_seed(7)
    healthy = unet(keras)
    healthy.compile(optimizer=keras.optimizers.Adam(3e-3), loss=dice_bce)
    healthy.fit(x, y, epochs=int(os.environ.get("HEALTHY_EPOCHS", 40)), batch_size=16, verbose=0)
    healthy.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.BinaryIoU(target_class_ids=[1])])
    healthy.optimizer.build(healthy.trainable_variables)  # save a complete optimizer state, so loading it is silent
    healthy.save(HERE / "healthy_unet.keras")

    for name, m in (("blank", blank), ("healthy", healthy)):
        p = m.predict(x_eval[..., None].astype("float32"), verbose=0)[..., 0]
        pred = p >= 0.5
        inter = (pred & (y_eval > 0)).sum((1, 2))
        dice = 2 * inter / np.maximum(pred.sum((1, 2)) + y_eval.sum((1, 2)), 1)
        print(f"{name}: mean Dice {dice.mean():.3f}, predicted share {pred.mean():.4f}, max prob {p.max():.3f}")
    for f in sorted(HERE.glob("*.keras")):
        print(f"{f.name}: {f.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
