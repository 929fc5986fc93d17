"""Runs the repair tasks on the same engines as the check-data scan: local worker processes or a Dask cluster.

Results stream back one at a time (in completion order), so that the process writing the output holds
only the files in flight, however large the dataset.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Sequence
from itertools import islice

from segdoctor.fix.apply import Result, repair_batch, repair_one

ProgressFn = Callable[[int, int, str], None]

#: tasks per Dask map task, and batches in flight per worker thread
DASK_BATCH = 8
IN_FLIGHT_PER_THREAD = 4


def map_repairs(tasks: Sequence[tuple], *, encode_output: bool = True, engine: str = "local",
                scheduler: str | None = None, jobs: int | None = None,
                progress: ProgressFn | None = None) -> Iterator[Result]:
    """``repair_one`` of every task (``FileTask.portable`` tuples), yielded as each completes."""
    n = len(tasks)
    if n == 0:
        return
    results = (_dask(tasks, encode_output, scheduler, jobs) if engine == "dask"
               else _local(tasks, encode_output, jobs))
    for done, result in enumerate(results, 1):
        if progress:
            progress(done, n, "repairing")
        yield result


def _local(tasks: Sequence[tuple], encode_output: bool, jobs: int | None) -> Iterator[Result]:
    from segdoctor.scan import _context, default_jobs

    jobs = default_jobs() if not jobs or jobs < 1 else jobs
    work = functools.partial(repair_one, encode_output=encode_output)
    if jobs == 1 or len(tasks) < 4:
        yield from map(work, tasks)
        return
    chunk = max(1, min(8, len(tasks) // (jobs * 8) or 1))
    with _context().Pool(processes=min(jobs, len(tasks))) as pool:
        yield from pool.imap_unordered(work, tasks, chunksize=chunk)


def _dask(tasks: Sequence[tuple], encode_output: bool, scheduler: str | None, jobs: int | None) -> Iterator[Result]:
    from segdoctor.engines.dask_engine import EngineError, _distributed, dask_client

    distributed = _distributed()
    batches = (list(tasks[i:i + DASK_BATCH]) for i in range(0, len(tasks), DASK_BATCH))
    run_id = uuid.uuid4().hex[:8]
    with dask_client(scheduler, jobs) as client:
        threads = max(1, sum(client.nthreads().values()))
        count = 0

        def submit(batch):
            nonlocal count
            count += 1
            return client.submit(repair_batch, batch, encode_output, key=f"segdoctor-fix-{run_id}-{count}", retries=1)

        window = distributed.as_completed([submit(b) for b in islice(batches, threads * IN_FLIGHT_PER_THREAD)],
                                          loop=client.loop)
        for future in window:
            try:
                results = future.result()
            except Exception as exc:
                raise EngineError(f"the Dask workers could not run the repairs ({type(exc).__name__}: {exc}); "
                                  "every worker needs segdoctor installed, in the same version as here.") from None
            future.release()
            yield from results
            nxt = next(batches, None)
            if nxt is not None:
                window.add(submit(nxt))
