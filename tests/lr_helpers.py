"""Datasets and small Keras models for the lr-find and fine-tuning tests, built in tmp_path in seconds.

``noisy_discs`` is learnable but not trivially (discs a little brighter than a noisy background, label noise on
the boundaries, as annotators leave it), so a learning-rate sweep shows a flat start, a fall and a floor;
``random_masks=True`` pairs random images with random masks that nothing can learn.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras():
    from segdoctor.io.model import import_keras

    return import_keras()


def noisy_discs(root: Path, *, n: int = 48, size: int = 32, seed: int = 2, random_masks: bool = False,
                contrast: float = 50.0, noise: float = 35.0, boundary_noise: float = 0.5) -> Path:
    """images/ + masks/ PNG pairs: 1-3 discs (class 1) on a noisy background."""
    from PIL import Image
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        if random_masks:
            image = rng.integers(0, 256, (size, size)).astype(np.uint8)
            mask = (rng.random((size, size)) < 0.3).astype(np.uint8)
        else:
            disc = np.zeros((size, size), bool)
            for _ in range(int(rng.integers(1, 4))):
                cy, cx = rng.integers(size // 8, size - size // 8, 2)
                r = rng.integers(size // 16 + 1, size // 5 + 1)
                disc |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            image = ndimage.gaussian_filter(90 + contrast * disc + rng.normal(0, noise, (size, size)), 0.7)
            image = np.clip(image, 0, 255).astype(np.uint8)
            edge = disc ^ ndimage.binary_erosion(disc)
            flip = edge & (rng.random((size, size)) < boundary_noise)
            mask = (disc ^ flip).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"p{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"p{i:03d}.png")
    return root


def small_unet(*, size: int = 32, channels: int = 1, filters: int = 4, batchnorm: bool = True, out: int = 1,
               activation: str = "sigmoid", seed: int = 0, momentum: float = 0.99):
    """A 2-level U-Net (Rescaling 1/255 inside), the shape most segmentation tutorials build."""
    k = keras()
    k.utils.set_random_seed(seed)
    inputs = k.Input((size, size, channels))
    x = k.layers.Rescaling(1 / 255.0)(inputs)

    def block(x, n):
        for _ in range(2):
            x = k.layers.Conv2D(n, 3, padding="same", use_bias=not batchnorm)(x)
            if batchnorm:
                x = k.layers.BatchNormalization(momentum=momentum)(x)
            x = k.layers.Activation("relu")(x)
        return x

    c1 = block(x, filters)
    c2 = block(k.layers.MaxPooling2D()(c1), 2 * filters)
    b = block(k.layers.MaxPooling2D()(c2), 4 * filters)
    d2 = block(k.layers.Concatenate()([k.layers.UpSampling2D()(b), c2]), 2 * filters)
    d1 = block(k.layers.Concatenate()([k.layers.UpSampling2D()(d2), c1]), filters)
    outputs = k.layers.Conv2D(out, 1, activation=activation)(d1)
    return k.Model(inputs, outputs)


def file_state(path: Path) -> tuple[str, int]:
    """(sha256, mtime in ns) of a file: what 'never modified' is checked against."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest(), Path(path).stat().st_mtime_ns


def disc_arrays(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images of a ``noisy_discs`` folder as (N, H, W, 3) floats in [0, 1] and the masks as (N, H, W, 1)."""
    from PIL import Image

    x = np.stack([np.asarray(Image.open(p)) for p in sorted((root / "images").glob("*.png"))])
    y = np.stack([np.asarray(Image.open(p)) for p in sorted((root / "masks").glob("*.png"))])
    return np.repeat(x[..., None], 3, axis=-1).astype(np.float32) / 255.0, y[..., None].astype(np.float32)


def pretrained_encoder(*, size: int = 32, seed: int = 0):
    """MobileNetV2 (weights=None, alpha 0.35) cut after its first block, as U-Net encoders are cut from it, with
    BatchNormalization statistics estimated on other images (uniform noise in [0, 2]: brighter and with more
    contrast than the [0, 1] disc images the tests feed it), as pretrained ones would be."""
    k = keras()
    k.utils.set_random_seed(seed)
    base = k.applications.MobileNetV2(weights=None, include_top=False, input_shape=(size, size, 3), alpha=0.35)
    encoder = k.Model(base.input, base.get_layer("block_1_expand_relu").output, name="encoder")
    norms = [layer for layer in encoder.layers if isinstance(layer, k.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # the statistics of the "pretraining" images, exactly
    encoder(np.random.default_rng(seed).uniform(0, 2, (32, size, size, 3)).astype(np.float32), training=True)
    for layer, m in zip(norms, momentum):
        layer.momentum = m
    return encoder


def finetune_model(mode: str, *, size: int = 32, seed: int = 0):
    """A segmentation head on the pretrained encoder, frozen or fine-tuned as ``mode`` says:

    - ``mistake``: frozen encoder whose BatchNormalization layers were made trainable again, called plainly
    - ``recipe``: ``encoder.trainable = False`` and ``encoder(x, training=False)`` (the documented recipe)
    - ``training-false``: encoder unfrozen, called with ``training=False`` (the Keras 2 fine-tuning recipe)
    - ``finetune-recipe``: encoder unfrozen with its BatchNormalization layers frozen
    - ``unfrozen``: encoder unfrozen and called plainly (its BN layers adapt to the fine-tuning batches)
    """
    k = keras()
    encoder = pretrained_encoder(size=size, seed=seed)
    inputs = k.Input((size, size, 3))
    norms = [layer for layer in encoder.layers if isinstance(layer, k.layers.BatchNormalization)]
    if mode == "mistake":
        encoder.trainable = False
        for layer in norms:
            layer.trainable = True
        x = encoder(inputs)
    elif mode == "recipe":
        encoder.trainable = False
        x = encoder(inputs, training=False)
    elif mode == "training-false":
        encoder.trainable = True
        x = encoder(inputs, training=False)
    elif mode == "finetune-recipe":
        encoder.trainable = True
        for layer in norms:
            layer.trainable = False
        x = encoder(inputs, training=False)
    elif mode == "unfrozen":
        encoder.trainable = True
        x = encoder(inputs)
    else:
        raise ValueError(mode)
    x = k.layers.UpSampling2D(2)(x)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    outputs = k.layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = k.Model(inputs, outputs)
    model.compile(optimizer=k.optimizers.Adam(learning_rate=1e-2), loss="binary_crossentropy")
    return model
