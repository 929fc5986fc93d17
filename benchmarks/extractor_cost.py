"""Per-pair cost of each statistics extractor, in this process (run by hand, not in tests).

Run by hand:  python benchmarks/extractor_cost.py [--pairs 20] [--noise 25]
Builds 512x512 RGB PNG images with 8-bit PNG masks in a temporary folder and prints the milliseconds
per pair of decoding, of the mask value statistics and of each extractor. The throughput of the whole
command against plain decoding is ``bench_check_data.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def build(root: Path, n: int, noise: float) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:512, :512]
    out = []
    for i in range(n):
        cy, cx, r = rng.integers(100, 412), rng.integers(100, 412), rng.integers(30, 90)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
        img = np.clip(rng.normal(90, noise, (512, 512, 3)) + 80 * mask[..., None], 0, 255).astype(np.uint8)
        ip, mp_ = root / "images" / f"{i:05d}.png", root / "masks" / f"{i:05d}.png"
        Image.fromarray(img).save(ip)
        Image.fromarray(mask).save(mp_)
        out.append((str(ip), str(mp_)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--noise", type=float, default=25.0, help="pixel noise std: lower compresses better, decodes faster")
    args = ap.parse_args()
    from segdoctor.io.readers import read_file
    from segdoctor.stats import pair as pair_stats

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = build(root, args.pairs, args.noise)
        image, mask = read_file(items[0][0]), read_file(items[0][1])
        rec: dict = {}
        rec["mask_info"], label = pair_stats.mask_record(mask)
        data = pair_stats.PairData(image, mask, label)
        reps = 200
        for fn in pair_stats.EXTRACTORS:
            fn(data, dict(rec))  # first call pays lazy imports (scipy.ndimage: ~0.3 s once per process)
            t = time.perf_counter()
            for _ in range(reps):
                image.extra.clear()  # no cached downsampled copies: each extractor pays as if first
                fn(data, dict(rec))
            print(f"{fn.__name__:>20}: {(time.perf_counter() - t) / reps * 1000:.3f} ms/pair (no cached copies)")
        t = time.perf_counter()
        for _ in range(reps):
            pair_stats.mask_record(mask)
        print(f"{'mask_record':>20}: {(time.perf_counter() - t) / reps * 1000:.3f} ms/pair")

        t = time.perf_counter()
        for ip, mp_ in items:
            read_file(ip), read_file(mp_)
        print(f"{'decoding':>20}: {(time.perf_counter() - t) / len(items) * 1000:.3f} ms/pair (image + mask)")


if __name__ == "__main__":
    main()
