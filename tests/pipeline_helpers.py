"""Small image/mask data and pipeline files for the check-pipeline tests (64 px blobs, built in tmp_path)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 64


def disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def blob_arrays(n: int = 32, *, size: int = SIZE, seed: int = 0, classes: int = 2, radius=(7, 16), n_blobs=3,
                rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(X uint8 (n, size, size, 3|1), Y uint8 (n, size, size) ids 0..classes-1): bright textured blobs, asymmetric
    placements (so that a flipped mask does not fit), class k blobs brighter with k."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        mask = np.zeros((size, size), np.uint8)
        for b in range(n_blobs):
            r = int(rng.integers(*radius))
            c = rng.integers(r, size - r, size=2)
            mask[disk((size, size), c, r)] = 1 + (b % (classes - 1))
        base = rng.normal(60, 10, (size, size)) + mask.astype(float) * (150 / max(classes - 1, 1))
        img = np.clip(base, 0, 255).astype(np.uint8)
        img = np.stack([img, np.clip(img.astype(int) + 8, 0, 255).astype(np.uint8), img], -1) if rgb else img[..., None]
        xs.append(img)
        ys.append(mask)
    return np.stack(xs), np.stack(ys)


def write_dataset(root: Path, x: np.ndarray, y: np.ndarray, *, mask_scale: int = 1) -> Path:
    """images/ + masks/ PNGs (masks multiplied by mask_scale, e.g. 255 for {0, 255} files)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (im, m) in enumerate(zip(x, y)):
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(root / "images" / f"s{i:03d}.png")
        Image.fromarray((m.astype(np.int64) * mask_scale).astype(np.uint8)).save(root / "masks" / f"s{i:03d}.png")
    return root


def write_module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def batches(x, y, batch: int = 8, *, aug=None, seed: int = 0, repeat: bool = True, w=None):
    """A plain generator of (x, y[, w]) batches; ``aug(rng, image, mask) -> (image, mask)`` per sample."""
    rng = np.random.default_rng(seed)
    n = len(x)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch + 1, batch):
            idx = order[start: start + batch]
            xs, ys = [], []
            for i in idx:
                im, m = x[i], y[i]
                if aug is not None:
                    im, m = aug(rng, im, m)
                xs.append(im)
                ys.append(m)
            out = (np.stack(xs), np.stack(ys))
            yield out if w is None else (*out, np.stack([w[i] for i in idx]))
        if not repeat:
            return


def codes(report) -> set[str]:
    return {f.code for f in report.findings}


def finding(report, code: str):
    assert not [c for c in report.checks if c.status == "crashed"], [c.message for c in report.checks]
    found = [f for f in report.findings if f.code == code]
    assert found, f"{code} not in {sorted(codes(report))}: {[f.title for f in report.findings]}"
    return found[0]
