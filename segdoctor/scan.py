"""Runs ``analyse_pair`` over a dataset in parallel worker processes, in bounded memory, with progress."""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence

from segdoctor.allocator import tune_allocator
from segdoctor.io.dataset import Pair
from segdoctor.io.remote import RemotePath
from segdoctor.stats.alignment import map_retention
from segdoctor.stats.pair import Record, analyse_pair

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]


WorkItem = tuple[int, "str | RemotePath | None", "str | RemotePath | None"]


def _portable(path) -> str | RemotePath | None:
    # Local paths travel as strings (cheapest to pickle). Remote paths travel with their filesystem
    # object, which pickles with its storage options; a URL string would be re-parsed by fsspec, which
    # reads '::' in a key as URL chaining.
    if path is None:
        return None
    return path if isinstance(path, RemotePath) else str(path)


def work_items(pairs: Sequence[Pair], start: int = 0) -> Iterator[WorkItem]:
    """(index, image, mask) ready to send to a worker, made one at a time; indices count from ``start``."""
    for i, p in enumerate(pairs, start):
        yield i, _portable(p.image), _portable(p.mask)


def register_extractors() -> None:
    """Import the check families so that their statistics extractors are registered in this process.

    A forked worker inherits them; a spawned worker or a Dask worker starts empty and would
    silently compute fewer statistics than the local engine.
    """
    import segdoctor.checks  # noqa: F401


def _preload_worker_modules() -> None:
    """Import, before forking, the modules the workers load lazily (scipy.ndimage: 0.15-0.25 s; the decoders).

    Forked workers then share the loaded module instead of each importing it again: the same wall time
    once, and nothing on every later scan in this process."""
    try:
        import scipy.ndimage  # noqa: F401
    except ImportError:  # the extractor reports it per file, as it would without the preload
        pass
    from segdoctor.io.codecs import preload

    preload()  # imagecodecs and its PNG/JPEG/TIFF modules: ~25 ms a worker would otherwise pay


#: in a worker process: the extractors this scan runs (None: all), set by ``_init_worker``
_EXTRACTORS: frozenset[str] | None = None


def _init_worker(extractors: frozenset[str] | None) -> None:
    global _EXTRACTORS
    tune_allocator()
    register_extractors()
    _EXTRACTORS = extractors


def _work(item: WorkItem) -> tuple[int, Record]:
    i, image, mask = item
    return i, analyse_pair(image, mask, _EXTRACTORS)


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


#: a spawned worker (TensorFlow loaded: check-model --data) starts a fresh interpreter and imports numpy, scipy,
#: Pillow and segdoctor, 1-2 s before its first pair; a pair takes 2-10 ms. Below this many pairs the scan
#: finishes sooner in this process (64 pairs: 0.2 s instead of 2.6 s, measured by bench_check_model.py).
SPAWN_MIN_PAIRS = 256


def _context():
    # Forking a process that has loaded TensorFlow (check-model --data) can deadlock; spawn then.
    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("spawn")


def scan_pairs(pairs: Sequence[Pair], *, jobs: int | None = None, progress: ProgressFn | None = None,
               extractors: Collection[str] | None = None) -> list[Record]:
    """One record per pair, in the order of ``pairs``; ``extractors`` names the extractors to run (None: all)."""
    chosen = None if extractors is None else frozenset(extractors)
    n = len(pairs)
    records: list[Record | None] = [None] * n
    retain = map_retention(n)
    jobs = default_jobs() if not jobs or jobs < 1 else jobs
    done = 0
    ctx = _context()
    if jobs == 1 or n < 8 or (ctx.get_start_method() != "fork" and n < SPAWN_MIN_PAIRS):
        for i, image, mask in work_items(pairs):
            rec = analyse_pair(image, mask, chosen)
            records[i] = retain(i, rec)
            done += 1
            if progress:
                progress(done, n, "scanning")
    else:
        chunk = max(1, min(16, n // (jobs * 8) or 1))
        if ctx.get_start_method() == "fork":
            _preload_worker_modules()
        # Guided scheduling: the last pairs go out one small task at a time, so that workers finish together
        # instead of one idling while another works through a last full chunk.
        tail = min(n, 2 * jobs * chunk) if chunk > 1 else 0
        with ctx.Pool(processes=jobs, initializer=_init_worker, initargs=(chosen,)) as pool:
            head = pool.imap_unordered(_work, work_items(pairs[: n - tail]), chunksize=chunk)
            rest = pool.imap_unordered(_work, work_items(pairs[n - tail:], n - tail), chunksize=1)
            for i, rec in itertools.chain(head, rest):
                records[i] = retain(i, rec)
                done += 1
                if progress:
                    progress(done, n, "scanning")
    return [r if r is not None else {} for r in records]
