"""Small synthetic datasets written with Pillow into tmp_path, for check tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def blob_pair(rng: np.random.Generator, size: int = 96, *, n_blobs: int = 3, radius=(8, 20), rgb: bool = True):
    """An image with bright textured blobs on a noisy background, and the binary mask {0, 1} of the blobs."""
    mask = np.zeros((size, size), bool)
    for _ in range(n_blobs):
        r = int(rng.integers(*radius))
        c = rng.integers(r, size - r, size=2)
        mask |= disk((size, size), c, r)
    base = rng.normal(70, 12, (size, size)) + np.where(mask, 90, 0)
    img = np.clip(base, 0, 255).astype(np.uint8)
    if rgb:
        img = np.stack([img, np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8), img], axis=-1)
    return img, mask.astype(np.uint8)


def write_dataset(root: Path, pairs, *, image_ext: str = ".png", mask_ext: str = ".png", split: str | None = None,
                  names=None) -> Path:
    """Write pairs as root/[split/]images/NAME + root/[split/]masks/NAME; arrays or PIL images."""
    base = root / split if split else root
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / "masks").mkdir(parents=True, exist_ok=True)
    for i, (img, mask) in enumerate(pairs):
        name = names[i] if names else f"s{i:03d}"
        im = img if isinstance(img, Image.Image) else Image.fromarray(img)
        im.save(base / "images" / f"{name}{image_ext}")
        if mask is not None:
            mk = mask if isinstance(mask, Image.Image) else Image.fromarray(mask)
            mk.save(base / "masks" / f"{name}{mask_ext}")
    return root


def codes(report) -> list[str]:
    return sorted({f.code for f in report.findings})


def finding(report, code: str):
    found = [f for f in report.findings if f.code == code]
    assert found, f"{code} not in {codes(report)}"
    return found[0]
