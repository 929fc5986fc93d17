"""Properties of the scale machinery: URL paths behave like posix paths, batching loses nothing,
printable names round-trip, and per-pair records stay small whatever the image size."""

from __future__ import annotations

import os
import pickle
from pathlib import PurePosixPath

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segdoctor.io.dataset import Pair, printable
from segdoctor.scan import work_items
from segdoctor.stats.pair import analyse_pair
from tests import _synth

fsspec = pytest.importorskip("fsspec")

segment = st.text(alphabet=st.characters(blacklist_characters="/\\\0", blacklist_categories=("Cs",)),
                  min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(st.lists(segment, min_size=1, max_size=5), st.integers(min_value=0, max_value=4))
def test_remote_path_matches_pure_posix_path(parts, cut):
    from segdoctor.io.remote import RemotePath

    fs = fsspec.filesystem("memory")
    full = "/" + "/".join(parts)
    p, q = RemotePath(fs, full), PurePosixPath(full)
    assert (p.name, p.stem, p.suffix, p.parts) == (q.name, q.stem, q.suffix, q.parts)
    assert p.parent.path == str(q.parent)
    base = RemotePath(fs, "/" + "/".join(parts[: min(cut, len(parts) - 1)]))
    assert p.relative_to(base) == q.relative_to(PurePosixPath(base.path))
    assert base in p.parents or base == p
    assert pickle.loads(pickle.dumps(p)) == p  # how a remote file travels to a worker
    if "::" not in full:  # fsspec reads '::' in a URL as chaining; workers get the object, not the URL
        assert RemotePath.from_url(str(p)) == p


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_printable_is_valid_utf8_and_keeps_utf8_names(raw):
    name = os.fsdecode(raw)
    shown = printable(name)
    shown.encode("utf-8")  # never raises
    try:
        assert shown == raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "\\x" in shown


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=1, max_value=64))
def test_batches_cover_every_pair_once_in_order(n, size):
    from segdoctor.engines.dask_engine import _batches

    pairs = [Pair(None, None, key=str(i)) for i in range(n)]
    batches = list(_batches(work_items(pairs), size))
    assert [i for b in batches for i, _, _ in b] == list(range(n))
    assert all(1 <= len(b) <= size for b in batches)


def test_work_items_are_made_lazily():
    class Exploding(list):
        def __getitem__(self, i):  # enumerate() must not index ahead
            raise AssertionError("indexed")

    items = work_items(Exploding([Pair(None, None)] * 3))
    assert next(items)[0] == 0


@pytest.mark.parametrize("kind", ["binary", "multiclass", "colour", "float"])
def test_records_hold_no_per_pixel_data(tmp_path, kind):
    """A record's size does not grow with the image: 512x512 within a small margin of 64x64."""
    sizes = []
    for side in (64, 512):
        if kind == "binary":
            mask = _synth.binary_mask(1, size=side, fg=255)
        elif kind == "multiclass":
            mask = _synth.multiclass_mask(1, size=side, classes=(0, 1, 2, 3, 4))
        elif kind == "colour":
            mask = _synth.voc_palette(5)[_synth.multiclass_mask(1, size=side, classes=(0, 1, 2, 3, 4))]
        else:
            mask = _synth.binary_mask(1, size=side).astype(np.float32) * 0.7
        ext = ".npy" if kind == "float" else ".png"
        ip = _synth.save(tmp_path / f"i{side}{kind}.png", _synth.image_rgb(1, size=side))
        mp = _synth.save(tmp_path / f"m{side}{kind}{ext}", mask)
        rec = analyse_pair(str(ip), str(mp))
        assert "mask_info" in rec and "image_info" in rec
        sizes.append(len(pickle.dumps(rec)))
    assert sizes[1] < sizes[0] + 2048, sizes
    assert sizes[1] < 16 * 1024, sizes


def test_batch_sizer_targets_task_duration_and_balances_the_tail():
    from segdoctor.engines.dask_engine import FIRST_BATCH, MAX_BATCH, TARGET_TASK_SECONDS, BatchSizer

    sizer = BatchSizer(threads=2)
    assert sizer.size(remaining=100_000) == FIRST_BATCH  # nothing measured yet
    sizer.observe(pairs=100, seconds=0.1)  # 1 ms a pair
    assert sizer.size(remaining=100_000) == int(TARGET_TASK_SECONDS / 0.001)
    assert sizer.size(remaining=80) == 10  # 80 left over 2 threads x 4 tasks in flight
    assert sizer.size(remaining=3) == 1
    fast = BatchSizer(threads=1)
    fast.observe(pairs=1000, seconds=1e-4)
    assert fast.size(remaining=10**7) == MAX_BATCH
    assert BatchSizer(threads=2, fixed=7).size(remaining=3) == 7
