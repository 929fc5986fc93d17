"""The data context: the dataset, its per-pair records, the user's options and derived summaries.

Checks read from here; expensive aggregates are computed once on first use and shared by every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from segdoctor.io.dataset import Dataset, Pair
from segdoctor.stats.pair import Record


@dataclass
class DataOptions:
    num_classes: int | None = None
    jobs: int | None = None
    sample: int | None = None
    # how the dataset was discovered (repeated in the `segdoctor fix` command the report suggests)
    images: str | None = None
    masks: str | None = None
    mask_pattern: str | None = None


@dataclass
class DataContext:
    """Everything a data check may read. ``records[i]`` belongs to ``dataset.pairs[i]``."""

    dataset: Dataset
    records: list[Record]
    options: DataOptions = field(default_factory=DataOptions)
    cache: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, compute):
        """``compute(self)`` once per context; later calls return the stored result (None included)."""
        if key not in self.cache:
            self.cache[key] = compute(self)
        return self.cache[key]

    def display(self, pair: Pair, which: str = "mask") -> str:
        return self.dataset.display(pair.mask if which == "mask" else pair.image)

    def items(self):
        """(pair, record) for every pair."""
        return zip(self.dataset.pairs, self.records)

    def masks(self):
        """(pair, record, mask_info) for every pair whose mask decoded."""
        for pair, rec in self.items():
            info = rec.get("mask_info")
            if info is not None:
                yield pair, rec, info

    def images(self):
        """(pair, record, image_info) for every pair whose image decoded."""
        for pair, rec in self.items():
            info = rec.get("image_info")
            if info is not None:
                yield pair, rec, info

    @cached_property
    def n_masks(self) -> int:
        """Pairs whose mask decoded (the denominator of every mask finding)."""
        return sum(1 for _ in self.masks())

    @cached_property
    def labels(self):
        """Dataset-wide mask encoding summary (see ``segdoctor.stats.encoding``)."""
        from segdoctor.stats.encoding import summarise_labels

        return summarise_labels(self)
