"""The figure of batch samples (image | mask | overlay) for check-pipeline, drawn from the small display copies
the pipeline records kept (``Figure("samples", ...)``: items of ``image`` uint8 RGB, ``label`` array or None,
``caption``). Importing this module registers the renderer."""

from __future__ import annotations

import numpy as np

from segdoctor.findings import Figure
from segdoctor.report.figures import _plt, _save, renderer
from segdoctor.report.thumbnails import colourise, mask_display


def overlay(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """A label map blended over a gray copy of a display image (background 0 stays clear)."""
    gray = image.astype(np.float32).mean(axis=2, keepdims=True).repeat(3, axis=2)
    colour = colourise(label).astype(np.float32)
    fg = (label != 0)[..., None] if label.ndim == 2 else np.any(label != 0, axis=-1)[..., None]
    return np.clip(np.where(fg, 0.45 * gray + 0.55 * colour, gray), 0, 255).astype(np.uint8)


@renderer("samples")
def _samples(figure: Figure) -> bytes:
    plt = _plt()
    items = list(figure.data["items"])
    height = 2.4 * len(items) + 0.8
    fig, axes = plt.subplots(len(items), 3, figsize=(7.5, height), squeeze=False)
    fig.subplots_adjust(top=1 - 0.8 / height, bottom=0.2 / height, hspace=0.3, wspace=0.05)
    for row, item in enumerate(items):
        image, label = item["image"], item.get("label")
        if label is not None and label.ndim == 3 and label.shape[2] > 4:
            label = None
        same = label is not None and label.shape[:2] == image.shape[:2]
        panels = [("image", image), ("mask (contrast-stretched)", mask_display(label) if label is not None else None),
                  ("overlay", overlay(image, label) if same else None)]
        for col, (title, arr) in enumerate(panels):
            ax = axes[row][col]
            ax.axis("off")
            if arr is None:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", fontsize=8)
            else:
                ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, interpolation="nearest")
            if row == 0:
                ax.set_title(title)
        axes[row][0].text(0, -0.04, str(item.get("caption", ""))[:80], transform=axes[row][0].transAxes,
                          va="top", fontsize=7)
    fig.suptitle(figure.title, y=1 - 0.12 / height)
    return _save(fig)
