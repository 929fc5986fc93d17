"""Peak memory and throughput of ``check-data`` as the dataset grows (run by hand, not in tests).

    python benchmarks/bench_memory.py [--pairs 20000] [--size 64] [--jobs N] [--engine local|dask]
    python benchmarks/bench_memory.py --pairs 2000,20000      # several sizes: peak memory should stay flat

Builds N small pairs (RGB PNG images, 8-bit PNG masks holding {0, 255} so that several checks find
something and list every file) in a temporary folder, then runs the whole command (scan, checks, HTML
and JSON reports) in a fresh child process and reports:

- peak RSS of the run's process tree, sampled every 50 ms with psutil (the run plus its workers, summed);
- ru_maxrss of the run's main process and the largest of its workers (from getrusage, no psutil needed);
- pairs per second for the scan and for the whole command;
- the mean pickled size of a per-pair record (what the client keeps per pair).

The target (issue 6) is a peak under 1 GB for 20,000 pairs, independent of N.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def build(root: Path, n: int, size: int) -> None:
    """N distinct pairs; a few templates shifted per pair keep building fast at 20,000 pairs."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    templates = []
    for _ in range(16):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = int(rng.integers(size // 8, size // 3))
        mask = (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r).astype(np.uint8) * 255
        base = rng.integers(30, 100, (size, size, 3)).astype(np.uint8)
        templates.append((np.where(mask[..., None] > 0, base + 120, base).astype(np.uint8), mask))
    for i in range(n):
        img, mask = templates[i % len(templates)]
        shift = (i // len(templates)) % size
        Image.fromarray(np.roll(img, shift, axis=1)).save(root / "images" / f"{i:06d}.png", compress_level=1)
        Image.fromarray(np.roll(mask, shift, axis=1)).save(root / "masks" / f"{i:06d}.png", compress_level=1)


def run_child(root: str, jobs: int, engine: str, out: str) -> None:
    """The measured run: the full check-data command, reports included, in this fresh process."""
    from segdoctor.commands.data import check_data
    from segdoctor.report.html import write_html
    from segdoctor.report.json_writer import write_json

    timings: dict[str, float] = {}

    def progress(done: int, total: int, label: str) -> None:
        if done == total:
            timings["scan"] = time.perf_counter() - start

    start = time.perf_counter()
    report = check_data(root, jobs=jobs, engine=engine, progress=progress)
    write_json(report, Path(out) / "report.json")
    write_html(report, Path(out) / "report.html")
    total = time.perf_counter() - start
    records = report.context.records
    sample = records[:: max(1, len(records) // 200)]
    stats = {
        "pairs": len(records),
        "scan_s": timings.get("scan", total),
        "total_s": total,
        "self_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_maxrss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "record_bytes": float(np.mean([len(pickle.dumps(r)) for r in sample])) if sample else 0.0,
        "findings": [f.code for f in report.findings],
    }
    print(json.dumps(stats))


def measure(root: Path, jobs: int, engine: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, __file__, "--child", str(root), "--jobs", str(jobs), "--engine", engine, "--out", out]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        peak = _sample_tree_peak(proc)
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"the measured run failed with status {proc.returncode}")
    stats = json.loads(stdout.strip().splitlines()[-1])
    stats["tree_peak_mib"] = peak
    return stats


def _sample_tree_peak(proc: subprocess.Popen) -> float | None:
    """Largest summed RSS of ``proc`` and all its descendants while it runs (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    peak = 0
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        total = 0
        try:
            for p in [parent, *parent.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        peak = max(peak, total)
        time.sleep(0.05)
    return peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="20000", help="number of pairs, or a comma-separated list of sizes")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--engine", choices=("local", "dask"), default="local")
    ap.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child, args.jobs, args.engine, args.out)
        return
    print(f"engine={args.engine} jobs={args.jobs} size={args.size}x{args.size}")
    print(f"{'pairs':>8} {'tree peak':>10} {'main':>8} {'worker':>8} {'scan/s':>8} {'total/s':>8} {'record':>8}")
    for n in (int(x) for x in args.pairs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ds"
            t0 = time.perf_counter()
            build(root, n, args.size)
            built = time.perf_counter() - t0
            s = measure(root, args.jobs, args.engine)
        tree = f"{s['tree_peak_mib']:7.0f} MiB" if s["tree_peak_mib"] is not None else "   (psutil)"
        print(f"{n:>8} {tree:>10} {s['self_maxrss_mib']:5.0f} MiB {s['children_maxrss_mib']:5.0f} MiB "
              f"{n / s['scan_s']:8.0f} {n / s['total_s']:8.0f} {s['record_bytes']:6.0f} B"
              f"   (built in {built:.0f} s; findings {', '.join(s['findings'])})")


if __name__ == "__main__":
    main()
