"""Throughput of ``check-data`` against plain decoding of the same files (run by hand, not in tests).

    python benchmarks/bench_check_data.py [--pairs 600] [--size 512] [--jobs N] [--repeat 3] [--data DIR]
                                          [--content noise|photo]

Builds a dataset of RGB PNG images with 8-bit PNG masks (in a temporary folder, or in ``--data DIR``
when given, where it is kept and reused): ``noise`` (default) draws each image as uniform noise with a
brighter disk where the mask is, which compresses badly and is saved mostly with the Sub and Up
filters; ``photo`` crops, flips and lightly perturbs scikit-image's sample photographs, which Pillow
saves mostly with the Paeth filter, like most real PNGs. Then measures, alternately and ``--repeat``
times:

1. plain Pillow decoding as usually written: every image and mask opened with Pillow and converted
   with ``np.asarray`` in a process pool of the same size, in a fresh interpreter (default allocator);
2. the same with segdoctor's allocator setting in the workers (see below);
3. libpng decoding (imagecodecs: libpng/libjpeg-turbo/libtiff) into numpy arrays, with segdoctor's
   allocator setting;
4. segdoctor's own decoding alone (``segdoctor.io.readers.read_file`` on every file: libdeflate and the
   compiled unfilter where built), the floor for check-data;
5. ``segdoctor check-data DIR --jobs N --report none`` in this process, every check on (discovery,
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


def build(root: Path, n: int, size: int, content: str = "noise") -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    photos = _photos(size) if content == "photo" else []
    for i in range(n):
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 10, size // 4))]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        if photos:
            big = photos[i % len(photos)]
            y0, x0 = rng.integers(0, big.shape[0] - size + 1), rng.integers(0, big.shape[1] - size + 1)
            img = big[y0: y0 + size, x0: x0 + size]
            if rng.random() < 0.5:
                img = img[:, ::-1]
            img = np.clip(img.astype(np.int16) + rng.integers(-2, 3, img.shape), 0, 255).astype(np.uint8)
        else:
            base = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
            img = np.where(mask[..., None] == 1, base + 100, base).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"{i:05d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:05d}.png")


def _photos(size: int) -> list[np.ndarray]:
    """scikit-image's RGB sample photographs, scaled so that the short side is 1.5 * size (room to crop)."""
    import skimage.data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"):
        a = getattr(skimage.data, name)()
        if a.ndim != 3:
            continue
        scale = 1.5 * size / min(a.shape[:2])
        im = Image.fromarray(a[..., :3]).resize((round(a.shape[1] * scale), round(a.shape[0] * scale)), Image.LANCZOS)
        out.append(np.asarray(im))
    return out


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


def _decode_segdoctor(path: str) -> int:
    from segdoctor.io.readers import read_file

    return int(read_file(path).array.shape[0])


def _plain_worker_init(tuned: bool) -> None:
    if tuned:
        from segdoctor.allocator import tune_allocator

        tune_allocator()


def _preload_fastest() -> None:
    import imagecodecs

    imagecodecs.png_decode, imagecodecs.jpeg8_decode, imagecodecs.tiff_decode  # noqa: B018  (lazy modules)


def plain_decode(root: Path, jobs: int, *, tuned: bool = True, fastest: bool = False, own: bool = False) -> float:
    files = sorted(str(p) for p in root.rglob("*.png"))
    if fastest or own:
        _preload_fastest()  # imported before forking, as segdoctor's scan does
    if own:
        from segdoctor.io import readers  # noqa: F401
    start = time.perf_counter()
    fn = _decode_segdoctor if own else _decode_fastest if fastest else _decode
    with mp.get_context("fork").Pool(jobs, initializer=_plain_worker_init, initargs=(tuned,)) as pool:
        for _ in pool.imap_unordered(fn, files, chunksize=8):
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
    times: dict[str, list[float]] = {"plain": [], "plain_default_allocator": [], "fastest": [], "own": [],
                                     "segdoctor": []}
    for _ in range(repeat):
        times["plain_default_allocator"].append(_plain_default_in_fresh_process(root, jobs))
        times["segdoctor"].append(segdoctor_scan(root, jobs))
        times["plain"].append(plain_decode(root, jobs))
        times["fastest"].append(plain_decode(root, jobs, fastest=True))
        times["own"].append(plain_decode(root, jobs, own=True))
    return {k: pairs / statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, help="build the dataset here (kept) or reuse it when present")
    ap.add_argument("--content", choices=("noise", "photo"), default="noise", help="what the images show (see above)")
    ap.add_argument("--plain-default-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_default_only:
        print(plain_decode(args.data, args.jobs, tuned=False))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "bench"
        if not root.exists():
            build(root, args.pairs, args.size, args.content)
        pairs = len(list((root / "images").glob("*.png")))
        r = measure(root, pairs, args.jobs, args.repeat)
    from segdoctor import speedups

    print(f"pairs={pairs} size={args.size} jobs={args.jobs} repeat={args.repeat} (medians of alternating runs); "
          f"compiled helpers: {'yes' if speedups.available() else 'no'}")
    sd = r["segdoctor"]
    print(f"segdoctor check-data                       : {sd:8.1f} pairs/s")
    print(f"plain Pillow decode (as usually written)   : {r['plain_default_allocator']:8.1f} pairs/s   "
          f"check-data / it: {sd / r['plain_default_allocator']:5.2f}  (target >= 1.3)")
    print(f"plain Pillow decode (segdoctor's allocator): {r['plain']:8.1f} pairs/s   check-data / it: {sd / r['plain']:5.2f}")
    print(f"libpng decode (imagecodecs)                : {r['fastest']:8.1f} pairs/s   check-data / it: {sd / r['fastest']:5.2f}")
    print(f"segdoctor's decoding alone (read_file)     : {r['own']:8.1f} pairs/s   check-data / it: {sd / r['own']:5.2f}")


if __name__ == "__main__":
    main()
