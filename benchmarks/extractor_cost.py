"""Per-pair cost of the statistics extractors, and check-data throughput against plain Pillow decoding.

Run by hand:  python benchmarks/extractor_cost.py [--pairs 400] [--jobs 2]
Builds 512x512 RGB PNG images with 8-bit PNG masks in a temporary folder, then prints
(1) milliseconds per pair of each extractor (in this process), and (2) pairs/s of plain decoding
(``np.asarray(Image.open(...))`` of image and mask) and of ``check_data`` with every check, both in
--jobs processes, and their ratio (issue 6 asks for >= 0.7), and check_data with the extractors
switched off, to tell their share from the rest of the scan.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


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


def _decode(item):
    i, m = item
    with Image.open(i) as a, Image.open(m) as b:
        return np.asarray(a).shape, np.asarray(b).shape


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--noise", type=float, default=25.0, help="pixel noise std: lower compresses better, decodes faster")
    args = ap.parse_args()
    from segdoctor.commands.data import check_data
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

        with mp.get_context("fork").Pool(args.jobs) as pool:
            t = time.perf_counter()
            list(pool.imap_unordered(_decode, items, chunksize=8))
            decode_rate = len(items) / (time.perf_counter() - t)
        t = time.perf_counter()
        check_data(root, jobs=args.jobs)
        check_rate = len(items) / (time.perf_counter() - t)
        # the same without the registered extractors (forked workers inherit the emptied list)
        saved = list(pair_stats.EXTRACTORS)
        pair_stats.EXTRACTORS.clear()
        try:
            t = time.perf_counter()
            check_data(root, jobs=args.jobs)
            bare_rate = len(items) / (time.perf_counter() - t)
        finally:
            pair_stats.EXTRACTORS.extend(saved)
        print(f"plain decoding: {decode_rate:.0f} pairs/s; check-data (all checks): {check_rate:.0f} pairs/s; "
              f"ratio {check_rate / decode_rate:.2f}; check-data without the extractors: {bare_rate:.0f} pairs/s "
              f"(ratio {bare_rate / decode_rate:.2f})")


if __name__ == "__main__":
    main()
