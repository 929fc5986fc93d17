"""The context the pipeline checks (SD301-SD307) read, and the helpers they share.

A ``PipelineSource`` is one pipeline (train or val): the records of the samples it yielded (the same records as
the file scan, see ``segdoctor.stats.pipeline``), their thumbnails and summaries computed once. The
``PipelineContext`` holds the train and val sources and, optionally, the files (``--data``) and the model probes
(``--model``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from segdoctor.checks.pipeline_fixes import framework
from segdoctor.context import DataContext, DataOptions
from segdoctor.findings import Figure
from segdoctor.stats.pipeline_alignment import Z_SIGNAL, PairStudy, study_pipeline_pairs
from segdoctor.stats.pipeline_summary import (
    ImageSummary,
    TargetSummary,
    foreground_shares,
    image_summary,
    target_summary,
)

#: samples shown in a finding's figure
EXAMPLES = 4


@dataclass
class PipelineSource:
    """One pipeline (train or val): how it was read and the per-sample records of its batches."""

    split: str
    label: str  # what the user named, for messages
    kind: str  # the kind of object (tf.data.Dataset, generator ...)
    ctx: DataContext  # the samples as a data context: ctx.records[i] is sample ids[i]
    ids: list[str]
    thumbs: dict[str, tuple[np.ndarray, np.ndarray | None]]
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    x_shapes: dict = field(default_factory=dict)
    y_shapes: dict = field(default_factory=dict)
    w_shapes: dict = field(default_factory=dict)

    @property
    def records(self) -> list[dict]:
        return self.ctx.records

    @property
    def framework(self) -> str:
        return framework(self.kind)

    @cached_property
    def targets(self) -> TargetSummary:
        return target_summary(self.records)

    @cached_property
    def images(self) -> ImageSummary:
        return image_summary(self.records)

    @cached_property
    def foreground(self) -> np.ndarray:
        return foreground_shares(self.records)

    @cached_property
    def pair_study(self) -> PairStudy | None:
        from segdoctor.stats.alignment import stored_edges

        idx = []
        for i, rec in enumerate(self.records):
            a = rec.get("align")
            if a is None or a.get("dropped") or not np.any(a["boundary"]):
                continue
            if (rec.get("image_stats") or {}).get("near_constant"):
                continue
            idx.append(i)
        if len(idx) < 3:
            return None
        edges = stored_edges(np.stack([self.records[i]["align"]["edges"] for i in idx]))
        bounds = np.stack([self.records[i]["align"]["boundary"] for i in idx])
        square = np.array([self.records[i]["align"]["square"] for i in idx])
        return study_pipeline_pairs(edges, bounds, square, idx)

    def name(self, i: int) -> str:
        return self.ids[i]


@dataclass
class PipelineContext:
    """What the pipeline checks read."""

    train: PipelineSource
    val: PipelineSource | None = None
    files: DataContext | None = None
    model: Any = None  # segdoctor.io.pipeline_model.ModelProbe
    options: DataOptions = field(default_factory=DataOptions)

    @property
    def sources(self) -> list[PipelineSource]:
        return [s for s in (self.train, self.val) if s is not None]

    @cached_property
    def files_signal(self) -> float | None:
        """Median alignment z of the files' own pairs (``--data``), or None."""
        if self.files is None:
            return None
        from segdoctor.checks.alignment import alignment_study

        study = alignment_study(self.files)
        return None if study is None else float(study.result["signal"])


def pipeline_phrase(src: PipelineSource) -> str:
    return f"the {src.split} pipeline"


def samples_of(src: PipelineSource, idx: list[int]) -> list[str]:
    return [src.ids[i] for i in idx]


def sample_figure(src: PipelineSource, items: list[tuple[int, str]], title: str) -> Figure | None:
    """Image | mask | overlay rows for the given (record index, caption), drawn from the kept thumbnails."""
    rows = []
    for i, caption in items:
        thumb = src.thumbs.get(src.ids[i])
        if thumb is None:
            continue
        rows.append({"image": thumb[0], "label": thumb[1], "caption": f"{src.ids[i]}: {caption}"})
        if len(rows) >= EXAMPLES:
            break
    return Figure("samples", title, {"items": rows}) if rows else None


def figures(*figs: Figure | None) -> list[Figure]:
    return [f for f in figs if f is not None]


def fmt_values(values, limit: int = 8) -> str:
    vals = sorted(values)
    return "{" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals[:limit]) + \
        (", …" if len(vals) > limit else "") + "}"


def files_value_set(ctx: DataContext | None) -> str | None:
    """The files' mask values (``--data``) as a set, for "files {0, 1}; batches {0, 0.0039}"."""
    if ctx is None:
        return None
    s = ctx.labels
    vals = s.class_values or sorted(s.value_table)
    return fmt_values([int(v) if float(v).is_integer() else float(v) for v in vals]) if vals else None


def alignment_figure(study: PairStudy) -> Figure:
    null_z = (study.null - study.null_median) / study.null_scale
    own = study.z_own[np.isfinite(study.z_own)]
    hi = float(max(np.max(own, initial=0), np.percentile(null_z, 99.9) if null_z.size else 0, Z_SIGNAL)) + 1
    lo = float(min(np.min(own, initial=0), np.percentile(null_z, 0.1) if null_z.size else 0)) - 1
    edges = np.linspace(lo, hi, 41)
    c_null, _ = np.histogram(null_z, bins=edges)
    c_own, _ = np.histogram(own, bins=edges)
    return Figure("histogram", "Alignment of each sample vs mismatched pairs of the same batches", {
        "series": [
            {"label": f"mismatched pairs (null, {null_z.size})", "edges": edges.tolist(),
             "counts": (c_null / max(c_null.sum(), 1)).tolist()},
            {"label": f"the batches' pairs ({own.size})", "edges": edges.tolist(),
             "counts": (c_own / max(c_own.sum(), 1)).tolist()},
        ],
        "xlabel": "alignment score (robust z above the null median)", "ylabel": "share",
    }, caption="Image edge strength on the mask's class boundaries (64x64 maps), relative to masks laid over other "
               "images of the same batches or shifted.")
