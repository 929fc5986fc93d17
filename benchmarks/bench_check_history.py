"""Wall time and peak memory of ``segdoctor check-history`` in a fresh process (run by hand, not in tests).

    python benchmarks/bench_check_history.py [--repeat 5] [--cases small,1k,200k,...]

Each case writes a training log to a temporary folder, then runs, alternately and ``--repeat`` times,

1. the baseline ``python -c "import numpy"`` (what any numpy tool pays to start), and
2. ``python -m segdoctor check-history LOG --report OUT.html -q`` (reading, every SD6xx check, the
   HTML report with its figures),

each in a new interpreter, and prints the medians, the time beyond the baseline and the peak RSS of
the check-history process. Targets (issue 15 and 11): a log of up to 1,000 epochs in under 1 s, a
200,000-epoch log in under 3 s; wide logs (400 and 5,000 columns) and a 1,000,000-row CSV in seconds,
with memory near the file's size.

Cases: ``small`` (the 95-epoch val_loss_oscillation log from ../shared/realdata when present, else a
generated one), ``1k`` (1,000 epochs, loss/val_loss/Dice/IoU/LR), ``200k`` (CSV) and ``200k-json``,
``wide400`` and ``wide5000`` (100 epochs of per-class metrics), ``frozen400`` (400 metrics frozen:
one SD610 finding each), ``1m`` (1,000,000 rows, 5 columns).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REALDATA = Path(os.environ.get("SEGDOCTOR_REALDATA", REPO.parent / "shared" / "realdata"))
CASES = ("small", "1k", "200k", "200k-json", "wide400", "wide5000", "frozen400", "1m")


def _columns(epochs: int, width: int, *, frozen: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """A plausible training log: falling losses, rising per-class overlaps, a step LR schedule."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    tau = max(epochs / 5, 1)
    cols = {
        "loss": 0.5 * np.exp(-t / tau) + 0.05 + rng.normal(0, 0.005, epochs),
        "val_loss": 0.55 * np.exp(-t / tau) + 0.08 + rng.normal(0, 0.01, epochs),
        "lr": np.where(t < epochs // 2, 1e-3, 1e-4),
    }
    names = ("dice_class_{}", "val_dice_class_{}", "iou_class_{}", "val_iou_class_{}", "precision_{}")
    k = 0
    while len(cols) < width:
        if frozen:
            values = np.full(epochs, 0.2 + 0.6 * (k % 97) / 97)
        else:
            values = np.clip(0.9 - 0.8 * np.exp(-t / tau) + rng.normal(0, 0.01, epochs), 0, 1)
        cols[names[k % len(names)].format(k // len(names))] = values
        k += 1
    return cols


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    names = list(cols)
    table = np.column_stack([np.arange(len(cols["loss"]))] + [cols[n] for n in names])
    header = "epoch," + ",".join(names)
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt=["%d"] + ["%.17g"] * len(names))


def build(case: str, folder: Path) -> Path:
    if case == "small":
        real = REALDATA / "histories" / "val_loss_oscillation.csv"
        if real.is_file():
            return real
        path = folder / "small.csv"
        write_csv(path, _columns(95, 4))
        return path
    if case == "200k-json":
        path = folder / "200k.json"
        path.write_text(json.dumps({k: v.tolist() for k, v in _columns(200_000, 6).items()}))
        return path
    epochs, width, frozen = {"1k": (1000, 7, False), "200k": (200_000, 6, False), "wide400": (100, 400, False),
                             "wide5000": (100, 5000, False), "frozen400": (100, 400, True),
                             "1m": (1_000_000, 5, False)}[case]
    path = folder / f"{case}.csv"
    write_csv(path, _columns(epochs, width, frozen=frozen))
    return path


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-500:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    ap.add_argument("--build", nargs=2, metavar=("CASE", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build:
        print(build(args.build[0], Path(args.build[1])))
        return
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown case(s): {', '.join(sorted(unknown))}")
    print(f"repeat={args.repeat} (medians of alternating runs; baseline: python -c 'import numpy')")
    print(f"{'case':<10} {'file MB':>8} {'numpy s':>8} {'history s':>10} {'beyond':>7} {'peak MB':>8}  target")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in cases:
            # built in a child: a child's peak RSS starts at its parent's, so this process stays small
            log = Path(subprocess.run([sys.executable, __file__, "--build", case, str(folder)], check=True,
                                      capture_output=True, text=True).stdout.strip())
            out = folder / f"{case}.html"
            base, runs, peaks = [], [], []
            for _ in range(args.repeat):
                base.append(timed([sys.executable, "-c", "import numpy"])[0])
                wall, peak = timed([sys.executable, "-m", "segdoctor", "check-history", str(log), "--report", str(out), "-q"])
                runs.append(wall)
                peaks.append(peak)
            b, r = statistics.median(base), statistics.median(runs)
            target = {"small": "< 1 s", "1k": "< 1 s", "200k": "< 3 s", "200k-json": "< 3 s"}.get(case, "")
            print(f"{case:<10} {log.stat().st_size / 1e6:8.1f} {b:8.2f} {r:10.2f} {r - b:7.2f} {max(peaks):8.0f}  {target}")


if __name__ == "__main__":
    main()
