"""Scan engines: where the per-pair statistics are computed.

``local`` is a process pool on this machine (no extra dependency). ``dask`` maps batches of pairs over a
Dask cluster (``pip install 'segdoctor[dask]'``). Both return one record per pair in the order of the
pairs, so the checks and the report cannot tell which engine ran.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from segdoctor.errors import UsageError
from segdoctor.io.dataset import Pair
from segdoctor.stats.pair import Record

ENGINES = ("local", "dask")

ProgressFn = Callable[[int, int, str], None]


def validate_engine(engine: str, scheduler: str | None) -> None:
    """One-line usage errors for engine options that cannot work together."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: unknown engine; expected one of {', '.join(ENGINES)}.")
    if scheduler and engine != "dask":
        raise UsageError(f"--scheduler {scheduler}: a scheduler address needs --engine dask.")


def scan_records(
    pairs: Sequence[Pair],
    *,
    engine: str = "local",
    scheduler: str | None = None,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    extractors: Collection[str] | None = None,
) -> list[Record]:
    """One statistics record per pair, computed by ``engine`` (``extractors``: the extractors to run, None: all)."""
    validate_engine(engine, scheduler)
    if engine == "dask":
        from segdoctor.engines.dask_engine import scan_pairs_dask

        return scan_pairs_dask(pairs, scheduler=scheduler, jobs=jobs, progress=progress, extractors=extractors)
    from segdoctor.scan import scan_pairs

    return scan_pairs(pairs, jobs=jobs, progress=progress, extractors=extractors)
