"""Build the bundled sample datasets from scikit-image's bundled ``coins`` picture.

Run from the repository root:  python sample_data/make_sample_data.py
Deterministic (fixed seed). Writes:

- sample_data/coins_clean/   images/ + masks/ with {0, 1} masks: segdoctor finds nothing above info.
- sample_data/coins_broken/  the same pictures with the defects people hit most: masks saved as {0, 255},
  some masks saved as JPEG, some resized with bilinear interpolation, an image without a mask and a
  truncated file.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data, filters, morphology

HERE = Path(__file__).resolve().parent
TILE = 128
N_TILES = 12


def coin_mask(image: np.ndarray) -> np.ndarray:
    """Foreground = coins: Otsu threshold of the smoothed picture, holes filled, specks removed."""
    smooth = filters.gaussian(image, sigma=1.5, preserve_range=True)
    fg = smooth > filters.threshold_otsu(smooth)
    fg = ndimage.binary_fill_holes(ndimage.binary_opening(fg, structure=morphology.disk(2)))
    labels, n = ndimage.label(fg)
    sizes = ndimage.sum(fg, labels, index=np.arange(1, n + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 64))
    return keep.astype(np.uint8)


def tiles(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    image = data.coins()
    mask = coin_mask(image)
    out = []
    h, w = image.shape
    for _ in range(N_TILES):
        y, x = int(rng.integers(0, h - TILE)), int(rng.integers(0, w - TILE))
        im, m = image[y : y + TILE, x : x + TILE], mask[y : y + TILE, x : x + TILE]
        if rng.random() < 0.5:
            im, m = im[:, ::-1], m[:, ::-1]
        out.append((np.ascontiguousarray(im), np.ascontiguousarray(m)))
    return out


def save_png(a: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, optimize=True)


def main() -> None:
    rng = np.random.default_rng(7)
    pairs = tiles(rng)
    for name in ("coins_clean", "coins_broken"):
        shutil.rmtree(HERE / name, ignore_errors=True)

    clean = HERE / "coins_clean"
    for i, (im, m) in enumerate(pairs):
        save_png(np.stack([im] * 3, axis=-1), clean / "images" / f"coin_{i:02d}.png")
        save_png(m, clean / "masks" / f"coin_{i:02d}.png")

    broken = HERE / "coins_broken"
    for i, (im, m) in enumerate(pairs):
        save_png(np.stack([im] * 3, axis=-1), broken / "images" / f"coin_{i:02d}.png")
        m255 = m * 255  # the classic: binary masks exported for viewing
        if i % 4 == 1:  # exported as JPEG
            buf = io.BytesIO()
            Image.fromarray(m255).save(buf, "JPEG", quality=80)
            (broken / "masks").mkdir(parents=True, exist_ok=True)
            (broken / "masks" / f"coin_{i:02d}.jpg").write_bytes(buf.getvalue())
        elif i % 4 == 2:  # resized with bilinear interpolation and back
            small = Image.fromarray(m255).resize((TILE // 2, TILE // 2), Image.BILINEAR)
            save_png(np.array(small.resize((TILE, TILE), Image.BILINEAR)), broken / "masks" / f"coin_{i:02d}.png")
        else:
            save_png(m255, broken / "masks" / f"coin_{i:02d}.png")
    # an image whose mask was never exported, and a file cut short by an interrupted copy
    save_png(np.stack([pairs[0][0][::-1]] * 3, axis=-1), broken / "images" / "coin_99.png")
    full = (broken / "images" / "coin_03.png").read_bytes()
    (broken / "images" / "coin_03.png").write_bytes(full[: len(full) // 3])
    print(f"wrote {clean} and {broken}")


if __name__ == "__main__":
    main()
