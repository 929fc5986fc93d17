"""Allocator setting for segdoctor's own processes (the CLI and the scan workers), glibc only.

Every scanned pair allocates the same few large buffers (the decoded image, about 1 MB for 512x512
RGB, its statistics' temporaries), and the dataset-wide studies allocate stacks of maps of several
MB. glibc serves blocks above its mmap threshold (128 KiB, raised only after a larger block has been
freed) with a fresh mmap, which the kernel zero-fills page by page on first touch and unmaps on
free: measured at 15-20% of a scan worker's time on 512x512 PNG pairs, and a third of the alignment
study's. With the threshold at 32 MiB (glibc's own ceiling for its dynamic threshold) those blocks
are reused from the heap.

Only processes segdoctor owns call this: scan workers, and ``segdoctor check-data`` run from the
command line (``check-model`` leaves TensorFlow's process to the defaults). ``check_data(...)`` called
from a user's Python program leaves that program's allocator alone.
Memory stays bounded: at most ``TRIM_THRESHOLD`` of freed heap is kept for reuse; blocks above
``MMAP_THRESHOLD`` (very large images) are still mmapped and returned on free.
"""

from __future__ import annotations

import sys

#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks below this come from the heap
MMAP_THRESHOLD = 32 << 20
#: freed heap kept for reuse instead of being returned to the system
TRIM_THRESHOLD = 64 << 20

_applied = False


def tune_allocator() -> bool:
    """Apply the setting to this process once (True if applied, now or before; False where not glibc)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _applied = ok
    return ok
