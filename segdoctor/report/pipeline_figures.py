"""The figure of batch samples (image | mask | overlay) for check-pipeline, drawn from the small display copies
the pipeline records kept (``Figure("samples", ...)``: items of ``image`` uint8 RGB, ``label`` array or None,
``caption``). Importing this module registers the renderer."""

from __future__ import annotations

from segdoctor.findings import Figure
from segdoctor.report.figures import pair_grid, renderer


@renderer("samples")
def _samples(figure: Figure) -> bytes:
    rows = []
    for item in figure.data["items"]:
        label = item.get("label")
        if label is not None and label.ndim == 3 and label.shape[2] > 4:
            label = None
        rows.append((item["image"], label, item.get("caption", "")))
    # the display copies are stretched already: the overlay blends them as they are
    return pair_grid(rows, figure.title, caption_chars=80, compact=True, stretch=False)
