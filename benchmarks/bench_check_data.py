"""Throughput of ``check-data`` against plain decoding of the same files (run by hand, not in tests).

    python benchmarks/bench_check_data.py [--pairs 600] [--size 512] [--jobs N] [--repeat 3] [--data DIR]

Builds a dataset of RGB PNG images with 8-bit PNG masks (in a temporary folder, or in ``--data DIR``
when given, where it is kept and reused), then measures, alternately and ``--repeat`` times:

1. plain Pillow decoding as usually written: every image and mask opened with Pillow and converted
   with ``np.asarray`` in a process pool of the same size, in a fresh interpreter (default allocator);
2. the same with segdoctor's allocator setting in the workers (see below);
3. the fastest decoding: the same files decoded by imagecodecs (libpng/libjpeg-turbo/libtiff) into
   numpy arrays, with segdoctor's allocator setting: the floor for any tool that reads every pixel;
4. ``segdoctor check-data DIR --jobs N --report none`` in this process, every check on (discovery,
   per-pair statistics, every check; without the HTML report, a fixed cost that is not throughput).

The file list is made beforehand (not timed). Prints the median throughputs and the ratios of
check-data to each baseline (issue 15's target: >= 1.3x plain Pillow decoding). Runs alternate so that
a busy machine slows all of them alike; read the ratios, not the absolute numbers.

Allocator: glibc serves each decoded image (about 1 MB) with a fresh mmap unless the process has
already freed a larger block, which makes plain decoding 20-25% slower or not depending on what the
parent process did before forking. segdoctor's processes fix this (``segdoctor.allocator``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def _decode_fastest(path: str) -> int:
    import imagecodecs

    with open(path, "rb") as fh:
        data = fh.read()
    suffix = path.rsplit(".", 1)[-1].lower()
    decode = {"png": imagecodecs.png_decode, "jpg": imagecodecs.jpeg8_decode, "jpeg": imagecodecs.jpeg8_decode,
              "tif": imagecodecs.tiff_decode, "tiff": imagecodecs.tiff_decode}.get(suffix)
    if decode is None:
        return _decode(path)
    return int(decode(data).shape[0])


def _plain_worker_init(tuned: bool) -> None:
    if tuned:
        from segdoctor.allocator import tune_allocator

        tune_allocator()


def _preload_fastest() -> None:
    import imagecodecs

    imagecodecs.png_decode, imagecodecs.jpeg8_decode, imagecodecs.tiff_decode  # noqa: B018  (lazy modules)


def plain_decode(root: Path, jobs: int, *, tuned: bool = True, fastest: bool = False) -> float:
    files = sorted(str(p) for p in root.rglob("*.png"))
    if fastest:
        _preload_fastest()  # imported before forking, as segdoctor's scan does
    start = time.perf_counter()
    with mp.get_context("fork").Pool(jobs, initializer=_plain_worker_init, initargs=(tuned,)) as pool:
        for _ in pool.imap_unordered(_decode_fastest if fastest else _decode, files, chunksize=8):
            pass
    return time.perf_counter() - start


def _plain_default_in_fresh_process(root: Path, jobs: int) -> float:
    """Plain decoding with the default allocator, in a new interpreter (this one was tuned by the first
    check-data run, and forked workers inherit that)."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--plain-default-only", "--data", str(root), "--jobs", str(jobs)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def segdoctor_scan(root: Path, jobs: int) -> float:
    """``segdoctor check-data ROOT --jobs N --report none --quiet``, run in this process as the command line runs
    it (discovery, scan, every check; the HTML report is a fixed cost, not throughput, and is left out)."""
    import contextlib
    import io

    from segdoctor.cli import main

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["check-data", str(root), "--jobs", str(jobs), "--report", "none", "--quiet"])
    elapsed = time.perf_counter() - start
    if code not in (0, 1):
        raise SystemExit(f"check-data failed with exit status {code}")
    return elapsed


def measure(root: Path, pairs: int, jobs: int, repeat: int) -> dict[str, float]:
    segdoctor_scan(root, jobs)  # warm-up: imports and first-call costs are not throughput
    times: dict[str, list[float]] = {"plain": [], "plain_default_allocator": [], "fastest": [], "segdoctor": []}
    for _ in range(repeat):
        times["plain_default_allocator"].append(_plain_default_in_fresh_process(root, jobs))
        times["segdoctor"].append(segdoctor_scan(root, jobs))
        times["plain"].append(plain_decode(root, jobs))
        times["fastest"].append(plain_decode(root, jobs, fastest=True))
    return {k: pairs / statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, help="build the dataset here (kept) or reuse it when present")
    ap.add_argument("--plain-default-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_default_only:
        print(plain_decode(args.data, args.jobs, tuned=False))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "bench"
        if not root.exists():
            build(root, args.pairs, args.size)
        pairs = len(list((root / "images").glob("*.png")))
        r = measure(root, pairs, args.jobs, args.repeat)
    print(f"pairs={pairs} size={args.size} jobs={args.jobs} repeat={args.repeat} (medians of alternating runs)")
    sd = r["segdoctor"]
    print(f"segdoctor check-data                       : {sd:8.1f} pairs/s")
    print(f"plain Pillow decode (as usually written)   : {r['plain_default_allocator']:8.1f} pairs/s   "
          f"check-data / it: {sd / r['plain_default_allocator']:5.2f}  (target >= 1.3)")
    print(f"plain Pillow decode (segdoctor's allocator): {r['plain']:8.1f} pairs/s   check-data / it: {sd / r['plain']:5.2f}")
    print(f"fastest decode (imagecodecs)               : {r['fastest']:8.1f} pairs/s   check-data / it: {sd / r['fastest']:5.2f}")


if __name__ == "__main__":
    main()
