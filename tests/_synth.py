"""Tiny synthetic images and masks for tests, built in tmp_path (64x64 by default)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from segdoctor.stats.labels import voc_palette

SIZE = 64


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def image_rgb(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A smooth-ish RGB image (uint8)."""
    r = rng(seed)
    base = r.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(base).resize((size, size), Image.BILINEAR))


def binary_mask(seed: int = 0, size: int = SIZE, fg: int = 1) -> np.ndarray:
    """One or two filled discs (values {0, fg}), different per seed."""
    r = rng(seed)
    yy, xx = np.mgrid[:size, :size]
    m = np.zeros((size, size), np.uint8)
    for _ in range(2):
        cy, cx = r.integers(size // 4, 3 * size // 4, 2)
        rad = r.integers(size // 8, size // 4)
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2] = fg
    return m


def multiclass_mask(seed: int = 0, size: int = SIZE, classes=(0, 1, 2, 3)) -> np.ndarray:
    """Background plus one rectangle/disc per further class, each class present in the mask."""
    r = rng(seed)
    m = np.full((size, size), classes[0], np.uint8 if max(classes) < 256 else np.uint16)
    yy, xx = np.mgrid[:size, :size]
    n = len(classes) - 1
    for i, c in enumerate(classes[1:]):
        # one blob per class in its own horizontal band so every class keeps an interior
        y0 = int(i * size / n)
        y1 = int((i + 1) * size / n)
        cy = (y0 + y1) // 2
        cx = int(r.integers(size // 4, 3 * size // 4))
        rad = max(3, (y1 - y0) // 2 - 1)
        m[((yy - cy) ** 2 + (xx - cx) ** 2 <= rad**2) & (yy >= y0) & (yy < y1)] = c
    return m


def save(path: Path, array: np.ndarray, mode: str | None = None, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
        return path
    im = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    im.save(path, **kw)
    return path


def save_palette(path: Path, indices: np.ndarray, palette: np.ndarray | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8), "P")
    pal = voc_palette(256) if palette is None else palette
    im.putpalette(pal.astype(np.uint8).ravel().tolist())
    im.save(path)
    return path


def pair(root: Path, stem: str, mask: np.ndarray, *, image: np.ndarray | None = None, seed: int = 0,
         images: str = "images", masks: str = "masks", image_ext: str = ".png", mask_ext: str = ".png") -> tuple[Path, Path]:
    """images/<stem>.png + masks/<stem>.png under root."""
    img = image_rgb(seed, mask.shape[0]) if image is None else image
    ip = save(Path(root) / images / f"{stem}{image_ext}", img)
    mp = save(Path(root) / masks / f"{stem}{mask_ext}", mask)
    return ip, mp


def dataset(root: Path, masks: list[np.ndarray], **kw) -> Path:
    for i, m in enumerate(masks):
        pair(root, f"case_{i:03d}", m, seed=i, **kw)
    return Path(root)


def jpeg_roundtrip(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf))


def resize(a: np.ndarray, size: int, resample) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), resample))


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


def by_code(report, code: str):
    found = [f for f in report.findings if f.code == code]
    assert found, f"no {code} finding; got {[(f.code, f.title) for f in report.findings]}"
    return found[0] if len(found) == 1 else found


def above_info(report, prefixes=("SD0", "SD10")) -> list:
    return [(f.code, f.severity.label, f.title) for f in report.findings
            if f.code.startswith(prefixes) and f.severity.label != "info"]
