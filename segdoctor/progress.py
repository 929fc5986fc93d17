"""Progress bars for the ``progress(done, total, label)`` callback that scans and inference report to.

``TqdmProgress`` draws them with ``tqdm.auto``: a widget in Jupyter and Colab, a text bar on a
terminal. The command line shows it on a TTY unless ``-q``; library calls show it when asked
(``check_data(..., progress=True)``). tqdm is imported on the first update, so a run that never
reports progress (``check-history`` without ``--data``) never pays for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[int, int, str], None]

#: a bar appears only for work that lasts longer than this (seconds): short scans stay quiet
DELAY = 1.0


class TqdmProgress:
    """A ``progress(done, total, label)`` callable: one bar per label (``scanning``, ``predicting`` ...)."""

    def __init__(self, enabled: bool = True, *, file: Any = None, delay: float = DELAY) -> None:
        self.enabled = enabled
        self.file = file
        self.delay = delay
        self._bar: Any = None
        self._label: str | None = None

    def __call__(self, done: int, total: int, label: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        if self._bar is None or label != self._label or total != self._bar.total:
            self.close()
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=label or None, delay=self.delay, dynamic_ncols=True,
                             file=self.file if self.file is not None else sys.stderr)
            self._label = label
        self._bar.update(max(0, min(done, total) - self._bar.n))
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the current bar (its last state stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._label = None


def resolve_progress(progress: bool | ProgressFn | None) -> ProgressFn | None:
    """What the library functions accept: a callback, ``True`` for a tqdm bar, ``None``/``False`` for none."""
    if progress is True:
        return TqdmProgress()
    if progress is False or progress is None:
        return None
    return progress
