"""Throughput of ``check-data`` against plain decoding of the same files (run by hand, not in tests).

    python benchmarks/bench_check_data.py [--pairs 600] [--size 512] [--jobs N]

Builds a dataset of RGB PNG images with 8-bit PNG masks in a temporary folder, then measures
(1) decoding every image and mask with Pillow in a process pool of the same size, and
(2) the full check-data scan with every check on; prints both throughputs and the ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def build(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 10, size // 4))]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        base = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
        img = np.where(mask[..., None] == 1, base + 100, base).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:05d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:05d}.png")


def _decode(path: str) -> int:
    with Image.open(path) as im:
        return int(np.asarray(im).shape[0])


def plain_decode(root: Path, jobs: int) -> float:
    files = sorted(str(p) for p in root.rglob("*.png"))
    start = time.perf_counter()
    with mp.get_context("fork").Pool(jobs) as pool:
        for _ in pool.imap_unordered(_decode, files, chunksize=8):
            pass
    return time.perf_counter() - start


def segdoctor_scan(root: Path, jobs: int) -> float:
    from segdoctor.commands.data import check_data

    start = time.perf_counter()
    check_data(root, jobs=jobs)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        build(root, args.pairs, args.size)
        t_plain = min(plain_decode(root, args.jobs) for _ in range(2))
        t_scan = min(segdoctor_scan(root, args.jobs) for _ in range(2))
    plain, scan = args.pairs / t_plain, args.pairs / t_scan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pairs={args.pairs} size={args.size} jobs={args.jobs}")
    print(f"plain Pillow decode : {plain:8.1f} pairs/s")
    print(f"segdoctor check-data: {scan:8.1f} pairs/s")
    print(f"ratio               : {scan / plain:8.2f}  (target >= 0.70)")
    print(f"peak RSS (parent)   : {peak:8.0f} MiB")


if __name__ == "__main__":
    main()
