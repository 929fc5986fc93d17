"""segdoctor's optional compiled helpers (``segdoctor/_speedups.c``), or None where they are not built.

The module is built at install time when a C compiler is present (pyproject.toml marks the extension
optional). Each helper has a numpy twin that gives the same result, bit for bit: the PNG unfilter
(``segdoctor.io.pngfast``; without it PNGs decode through libpng), the channel histograms of
``stats.image_stats.channel_moments`` and the value range of ``image_value_statistics``, the gray copies
of ``stats.downsample.gray_float`` and ``gray_grid``, the mask counts of ``stats.labels.label_value_stats``
and the connected components of ``stats.objects.component_summary``. ``tests/test_speedups.py`` compares
each pair.

Set ``SEGDOCTOR_PURE_PYTHON=1`` to run without them (the results are the same, only slower).
"""

from __future__ import annotations

import os

native = None
if os.environ.get("SEGDOCTOR_PURE_PYTHON", "") in ("", "0"):
    try:
        from segdoctor import _speedups as native  # noqa: F811
    except ImportError:  # not built: no C compiler when segdoctor was installed
        native = None


def available() -> bool:
    """True when the compiled helpers are in use."""
    return native is not None
