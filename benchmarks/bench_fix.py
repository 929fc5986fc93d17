"""Time and peak memory of ``segdoctor fix`` against ``segdoctor check-data`` on the same dataset (run by hand).

    python benchmarks/bench_fix.py [--pairs 2000,20000] [--size 64] [--jobs N] [--repeat 3] [--engine local|dask]

Builds N pairs whose masks hold {0, 255} (every mask is repaired: SD101), then runs, alternately and in
fresh processes, ``check-data DIR --report none`` and ``fix DIR --out OUT --report none`` (which checks,
repairs every mask, links every image and checks the copy again). Prints the median wall time of each, their
ratio, and the peak memory of each run's process tree: the sum of the processes' PSS (proportional set
size: a page shared by the main process and its forked workers counts once, split between them; summed
RSS would count it once per process), sampled every 50 ms with psutil. A fix costs about two scans plus
the repairs; its memory should grow with N no faster than check-data's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import REPO, build  # noqa: E402


def _sample_tree_peak(proc: subprocess.Popen) -> float | None:
    """Largest summed PSS (MiB) of ``proc`` and its descendants while it runs (None without psutil)."""
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
                    total += p.memory_full_info().pss
                except (psutil.Error, AttributeError):
                    pass
        except psutil.Error:
            break
        peak = max(peak, total)
        time.sleep(0.05)
    return peak / 2**20


def run(argv: list[str]) -> tuple[float, float | None]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "segdoctor", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    peak = _sample_tree_peak(proc)
    _, err = proc.communicate()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"segdoctor {' '.join(argv[:1])} failed ({proc.returncode}): {err.strip()[-500:]}")
    return time.perf_counter() - start, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="2000", help="number of pairs, or a comma-separated list of sizes")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", choices=("local", "dask"), default="local")
    args = ap.parse_args()
    common = ["--jobs", str(args.jobs), "--engine", args.engine, "--report", "none", "-q"]
    print(f"engine={args.engine} jobs={args.jobs} size={args.size}x{args.size} repeat={args.repeat}")
    print(f"{'pairs':>8} {'check-data':>11} {'fix':>8} {'ratio':>6} {'peak check':>11} {'peak fix':>9}")
    for n in (int(x) for x in args.pairs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ds"
            build(root, n, args.size)
            check, fix, peaks_c, peaks_f = [], [], [], []
            for _ in range(args.repeat):  # alternate, so that load from elsewhere hits both alike
                t, p = run(["check-data", str(root), *common])
                check.append(t)
                peaks_c.append(p or 0)
                out = Path(tmp) / "fixed"
                t, p = run(["fix", str(root), "--out", str(out), *common])
                fix.append(t)
                peaks_f.append(p or 0)
                shutil.rmtree(out)
        c, f = statistics.median(check), statistics.median(fix)
        print(f"{n:>8} {c:10.1f}s {f:7.1f}s {f / c:6.2f} {max(peaks_c):8.0f} MiB {max(peaks_f):6.0f} MiB")


if __name__ == "__main__":
    main()
