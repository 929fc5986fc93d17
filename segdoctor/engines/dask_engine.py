"""The Dask engine: per-pair statistics as map tasks on a Dask cluster, merged into records here.

Pairs go out in batches sized so that a task runs about ``TARGET_TASK_SECONDS`` (a 64x64 pair decodes
in well under a millisecond, a large TIFF in a second: a fixed count would be all overhead for one and
badly balanced for the other), and only a bounded number of tasks is in flight at once, so neither the
client nor the scheduler holds the whole dataset's work at any moment. Records are small, so merging them on the
client is the reduce. Without a scheduler address a ``LocalCluster`` of worker processes is started
on 127.0.0.1 for this run.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

from segdoctor.errors import SegDoctorError, UsageError
from segdoctor.io.dataset import Pair
from segdoctor.scan import WorkItem, default_jobs, register_extractors, work_items
from segdoctor.stats.pair import Record, analyse_pair

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str], None]

#: how long a task should run: long enough to hide the per-task cost of the scheduler (several ms on
#: a busy machine), short enough to balance the load and keep the progress bar moving
TARGET_TASK_SECONDS = 0.25
#: pairs in the first tasks, before any timing is known
FIRST_BATCH = 4
MAX_BATCH = 1024
#: tasks in flight per worker thread: keeps every worker busy while the client merges results
IN_FLIGHT_PER_THREAD = 4
CONNECT_TIMEOUT = "10s"


class EngineError(SegDoctorError):
    """The Dask cluster could not run the scan (workers without segdoctor, workers lost)."""


def analyse_batch(items: Sequence[WorkItem], extractors: frozenset[str] | None = None
                  ) -> tuple[list[tuple[int, Record]], float]:
    """The map task, run on a Dask worker: (index, record) for a batch of pairs, and the seconds it took."""
    register_extractors()
    start = time.perf_counter()
    results = [(i, analyse_pair(image, mask, extractors)) for i, image, mask in items]
    return results, time.perf_counter() - start


class BatchSizer:
    """Pairs per task from the decoding time measured so far (or a fixed size when given)."""

    def __init__(self, threads: int, fixed: int | None = None) -> None:
        self.threads = threads
        self.fixed = fixed
        self.pairs = 0
        self.seconds = 0.0

    def observe(self, pairs: int, seconds: float) -> None:
        self.pairs += pairs
        self.seconds += seconds

    def size(self, remaining: int) -> int:
        if self.fixed:
            return self.fixed
        if self.pairs == 0 or self.seconds <= 0:
            return FIRST_BATCH
        per_pair = self.seconds / self.pairs
        size = int(TARGET_TASK_SECONDS / max(per_pair, 1e-6))
        # several tasks per thread for what is left, so that the last ones finish together
        tail = max(1, remaining // (self.threads * IN_FLIGHT_PER_THREAD))
        return max(1, min(size, MAX_BATCH, tail))


def _distributed():
    try:
        import distributed
    except ImportError as exc:
        raise UsageError(f"--engine dask needs Dask: pip install 'segdoctor[dask]' ({exc}).") from None
    return distributed


@contextmanager
def _quiet_dask_logs():
    """Dask logs its cluster's life at INFO; that is noise in segdoctor's output unless debugging."""
    logger = logging.getLogger("distributed")
    old = logger.level
    if not logging.getLogger("segdoctor").isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


@contextmanager
def _no_port_warning():
    # The scheduler's HTTP endpoint (bound to 127.0.0.1 here) falls back to a free port when 8787 is
    # taken and warns about it on stderr; the port is irrelevant to a scan.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        yield


@contextmanager
def dask_client(scheduler: str | None, jobs: int | None):
    """A client for ``scheduler``, or for a loopback LocalCluster of ``jobs`` worker processes."""
    distributed = _distributed()
    with _quiet_dask_logs():
        yield from _open_client(distributed, scheduler, jobs)


def _open_client(distributed, scheduler: str | None, jobs: int | None):
    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {scheduler}: cannot connect ({exc}); expected the address of a running "
                             "Dask scheduler, e.g. tcp://10.0.0.5:8786.") from None
        with client:
            yield client
        return
    workers = jobs if jobs and jobs > 0 else default_jobs()
    # Workers keep scratch files; a private temporary folder, removed afterwards, leaves nothing behind.
    # One thread per worker process: decoding holds the GIL often enough that processes scale better.
    import dask

    with tempfile.TemporaryDirectory(prefix="segdoctor-dask-") as scratch, \
            dask.config.set({"temporary-directory": scratch}), _no_port_warning(), distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, silence_logs=logging.ERROR, local_directory=scratch,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def _batches(items: Iterator[WorkItem], size: int | Callable[[], int]) -> Iterator[list[WorkItem]]:
    """Consecutive batches of ``items``; ``size`` may be a function asked before each batch."""
    while batch := list(islice(items, size() if callable(size) else size)):
        yield batch


def _absolute(items: Iterator[WorkItem]) -> Iterator[WorkItem]:
    # a worker's working folder is not ours (and on a cluster not even on this machine)
    for i, image, mask in items:
        yield (i, os.path.abspath(image) if isinstance(image, str) else image,
               os.path.abspath(mask) if isinstance(mask, str) else mask)


def _check_reachable(pairs: Sequence[Pair]) -> None:
    """Refuse datasets that only exist inside this process (fsspec's memory://)."""
    for pair in pairs[:1]:
        path = pair.image or pair.mask
        protocols = getattr(getattr(path, "fs", None), "protocol", ())
        if "memory" in (protocols if isinstance(protocols, (tuple, list)) else (protocols,)):
            raise UsageError(f"{path}: a memory:// dataset lives in this process and Dask workers cannot read it; "
                             "use --engine local.")


def scan_pairs_dask(
    pairs: Sequence[Pair],
    *,
    scheduler: str | None = None,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    batch_pairs: int | None = None,
    extractors: Collection[str] | None = None,
) -> list[Record]:
    """One record per pair, in the order of ``pairs``, computed on a Dask cluster."""
    chosen = None if extractors is None else frozenset(extractors)
    distributed = _distributed()
    n = len(pairs)
    records: list[Record | None] = [None] * n
    from segdoctor.stats.alignment import map_retention

    retain = map_retention(n)
    if n == 0:
        return []
    _check_reachable(pairs)
    with dask_client(scheduler, jobs) as client:
        threads = max(1, sum(client.nthreads().values()))
        sizer = BatchSizer(threads, batch_pairs)
        sent = 0
        batches = _batches(_absolute(work_items(pairs)), lambda: sizer.size(n - sent))
        run_id = uuid.uuid4().hex[:8]
        submitted = 0

        def submit(batch: list[WorkItem]):
            nonlocal submitted, sent
            submitted += 1
            sent += len(batch)
            return client.submit(analyse_batch, batch, chosen, key=f"segdoctor-scan-{run_id}-{submitted}", retries=1)

        first = [submit(b) for b in islice(batches, threads * IN_FLIGHT_PER_THREAD)]
        window = distributed.as_completed(first, loop=client.loop)
        done = 0
        for future in window:
            try:
                results, seconds = future.result()
            except Exception as exc:
                raise EngineError(f"the Dask workers could not run the scan ({type(exc).__name__}: {exc}); "
                                  "every worker needs segdoctor installed, in the same version as here.") from None
            future.release()
            sizer.observe(len(results), seconds)
            for i, rec in results:
                records[i] = retain(i, rec)
            done += len(results)
            if progress:
                progress(done, n, "scanning")
            nxt = next(batches, None)
            if nxt is not None:
                window.add(submit(nxt))
    log.info("scanned %d pairs on Dask in %d tasks", n, submitted)
    return [r if r is not None else {} for r in records]
