"""Draws report figures from stored numbers. matplotlib is imported here only, and only when drawing a chart
as a PNG (the report draws lines, bars and histograms as SVG; lr-find's curve is the one PNG chart); image grids
(``pairs``, ``arrays``, and check-pipeline's ``samples``) are composed with Pillow.

Each figure kind has one renderer ``(Figure) -> PNG bytes``; ``lines``, ``bar`` and ``histogram`` also
have an SVG renderer (``segdoctor.report.svg``, no matplotlib), which the report uses. Kinds:

- ``bar``: ``labels``, ``values``, optional ``ylabel``, ``log``, ``highlight`` (labels to colour)
- ``histogram``: precomputed ``edges`` + ``counts`` or ``series`` of such, optional ``xlabel``, ``log``, ``vlines``
- ``lines``: ``x`` and ``series`` (``label``, ``y``, ``axis`` left/right), ``spans`` to shade, ``vlines``
- ``pairs``: ``items`` of ``{"image": path, "mask": path, "caption": str}`` drawn as image | mask | overlay
- ``arrays``: ``rows`` of ``{"caption": str, "panels": [{"title": str, "array": ndarray, "cmap": "gray" or "viridis",
  optional "vmin", "vmax"}]}``; the first row's panel titles head the columns
- ``lr_range``: a learning-rate range test: ``lrs``, batch ``losses``, ``smoothed``, optional ``span`` [low, high]
  (the good range), ``marks`` (``x``, ``label``, ``color``), ``constant_loss``, ``start_loss``; log x axis
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from segdoctor.findings import Figure

log = logging.getLogger(__name__)

Renderer = Callable[[Figure], bytes]
RENDERERS: dict[str, Renderer] = {}


def _svg(name: str) -> Renderer:
    def draw(figure: Figure) -> bytes:
        from segdoctor.report import svg

        return getattr(svg, name)(figure)

    return draw


#: kinds the report embeds as SVG, drawn without importing matplotlib (``render_png`` still draws them as PNG)
SVG_RENDERERS: dict[str, Renderer] = {"lines": _svg("lines_svg"), "bar": _svg("bar_svg"), "histogram": _svg("histogram_svg")}

#: kinds drawn with Pillow (image grids): no matplotlib style, no matplotlib import
PILLOW_KINDS = frozenset({"pairs", "samples", "arrays"})

_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_PALETTE = ["#3b6ea8", "#d1603d", "#5a9e6f", "#8e6bb8", "#c9a227", "#4aa3a3", "#b5527d", "#777777"]


def renderer(kind: str) -> Callable[[Renderer], Renderer]:
    def deco(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn

    return deco


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()


def render_png(figure: Figure) -> bytes | None:
    """PNG bytes for a figure, or None (logged) when it cannot be drawn: a figure never costs the report."""
    fn = RENDERERS.get(figure.kind)
    if fn is None:
        log.warning("no renderer for figure kind %r", figure.kind)
        return None
    try:
        if figure.kind in PILLOW_KINDS:
            return fn(figure)
        plt = _plt()
        with plt.style.context("default"), plt.rc_context(_STYLE):
            return fn(figure)
    except Exception as exc:  # drawing must not lose the report
        log.warning("could not draw figure %r: %s", figure.title, exc)
        return None


def render_svg(figure: Figure) -> bytes | None:
    """SVG bytes for the kinds drawn without matplotlib (``lines``), else None; a failure is logged, never raised."""
    fn = SVG_RENDERERS.get(figure.kind)
    if fn is None:
        return None
    try:
        return fn(figure)
    except Exception as exc:  # drawing must not lose the report
        log.warning("could not draw figure %r: %s", figure.title, exc)
        return None


def data_uri(figure: Figure) -> str | None:
    """The figure as a data URI for the report: SVG where the kind has an SVG renderer (no matplotlib), else PNG."""
    if figure.kind in SVG_RENDERERS:
        svg = render_svg(figure)
        return None if svg is None else "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    png = render_png(figure)
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


#: bar charts label at most this many bars
MAX_BAR_LABELS = 64


@renderer("bar")
def _bar(figure: Figure) -> bytes:
    plt = _plt()
    d = figure.data
    labels = [str(x) for x in d["labels"]]
    values = [float(v) for v in d["values"]]
    highlight = {str(x) for x in d.get("highlight", ())}
    width = min(10.0, max(4.0, 0.35 * len(labels) + 2))
    fig, ax = plt.subplots(figsize=(width, 3.0))
    colors = [_PALETTE[1] if lab in highlight else _PALETTE[0] for lab in labels]
    if len(values) <= 4 * MAX_BAR_LABELS:
        ax.bar(range(len(values)), values, color=colors)
    else:  # thousands of bars: one line collection instead of a patch per bar (seconds each thousand)
        positive = [v for v in values if v > 0]
        floor = min(positive) / 2 if d.get("log") and positive else 0.0
        ax.vlines(range(len(values)), floor, [max(v, floor) for v in values], colors=colors, linewidth=1)
    # one label per bar up to MAX_BAR_LABELS; beyond, every k-th (laying out thousands of labels takes minutes)
    step = max(1, -(-len(labels) // MAX_BAR_LABELS))
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(labels[::step], rotation=45 if len(labels) > 8 else 0, ha="right" if len(labels) > 8 else "center")
    if d.get("log"):
        ax.set_yscale("log")
    ax.set_ylabel(d.get("ylabel", ""))
    ax.set_xlabel(d.get("xlabel", ""))
    ax.set_title(figure.title)
    return _save(fig)


@renderer("histogram")
def _histogram(figure: Figure) -> bytes:
    plt = _plt()
    d = figure.data
    series = d.get("series") or [{"label": "", "edges": d["edges"], "counts": d["counts"]}]
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    for i, s in enumerate(series):
        edges = np.asarray(s["edges"], dtype=float)
        counts = np.asarray(s["counts"], dtype=float)
        ax.stairs(counts, edges, fill=len(series) == 1, alpha=0.8 if len(series) == 1 else 1.0,
                  color=_PALETTE[i % len(_PALETTE)], label=s.get("label") or None, linewidth=1.5)
    for v in d.get("vlines", ()):
        ax.axvline(float(v["x"]), color="#b22222", linestyle="--", linewidth=1)
        ax.annotate(str(v.get("label", "")), (float(v["x"]), 1), xycoords=("data", "axes fraction"),
                    va="top", ha="left", fontsize=8, color="#b22222")
    if d.get("log"):
        ax.set_yscale("log")
    ax.set_xlabel(d.get("xlabel", ""))
    ax.set_ylabel(d.get("ylabel", "count"))
    ax.set_title(figure.title)
    if any(s.get("label") for s in series):
        ax.legend(fontsize=8)
    return _save(fig)


@renderer("lines")
def _lines(figure: Figure) -> bytes:
    plt = _plt()
    d = figure.data
    x = np.asarray(d["x"], dtype=float)
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    ax2 = None
    handles = []
    for i, s in enumerate(d["series"]):
        target = ax
        if s.get("axis") == "right":
            if ax2 is None:
                ax2 = ax.twinx()
                ax2.grid(False)
                ax2.set_ylabel(d.get("y2label", ""))
                if d.get("y2log"):
                    ax2.set_yscale("log")
            target = ax2
        xs = np.asarray(s.get("x", x), dtype=float)
        (h,) = target.plot(xs, np.asarray(s["y"], dtype=float), label=s.get("label", ""),
                           color=s.get("color", _PALETTE[i % len(_PALETTE)]),
                           linestyle=s.get("style", "-"), marker="o" if len(xs) <= 30 else None, markersize=3)
        handles.append(h)
    for span in d.get("spans", ()):
        ax.axvspan(float(span["start"]), float(span["end"]), color=span.get("color", "#f4a261"), alpha=0.25)
        ax.annotate(str(span.get("label", "")), (float(span["start"]), 0.98), xycoords=("data", "axes fraction"),
                    va="top", fontsize=8, color="#9c4a00")
    for v in d.get("vlines", ()):
        ax.axvline(float(v["x"]), color="#b22222", linestyle="--", linewidth=1)
        ax.annotate(str(v.get("label", "")), (float(v["x"]), 0.02), xycoords=("data", "axes fraction"),
                    fontsize=8, color="#b22222")
    if d.get("log"):
        ax.set_yscale("log")
    ax.set_xlabel(d.get("xlabel", ""))
    ax.set_ylabel(d.get("ylabel", ""))
    ax.set_title(figure.title)
    if any(h.get_label() for h in handles):
        ax.legend(handles=handles, fontsize=8, loc="best")
    return _save(fig)


def _overlay(image: np.ndarray, label: np.ndarray, *, stretch: bool = True) -> np.ndarray:
    """Blend a label map over a grayscale copy of the image; background (0) stays clear. ``stretch=False`` for an
    image that is already a uint8 RGB display copy."""
    from segdoctor.report.thumbnails import colourise, to_display_rgb

    base = (to_display_rgb(image) if stretch else np.asarray(image)).astype(np.float32)
    gray = base.mean(axis=2, keepdims=True).repeat(3, axis=2)
    colour = colourise(label).astype(np.float32)
    fg = (label != 0)[..., None] if label.ndim == 2 else np.any(label != 0, axis=-1)[..., None]
    out = np.where(fg, 0.45 * gray + 0.55 * colour, gray)
    return np.clip(out, 0, 255).astype(np.uint8)


#: side of the box each image | mask | overlay panel is fitted into, and the gaps of the pair grid (pixels)
PANEL = 220
_GAP, _MARGIN = 8, 12


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (FreeType)
    except (TypeError, OSError):  # Pillow without FreeType: its fixed bitmap font
        return ImageFont.load_default()


def _wrap(text: str, font, width: int, max_lines: int = 2) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels (greedy, at spaces); the last line ends in "..." when cut."""
    lines: list[str] = []
    for word in str(text).split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += " ..."
    out = []
    for line in lines:
        while len(line) > 1 and font.getlength(line) > width:
            line = line[:-4] + "..." if len(line) > 4 else line[:-1]
        out.append(line)
    return out or [""]


def _fit(arr: np.ndarray, box: int) -> "Image.Image":  # noqa: F821
    from PIL import Image

    a = np.asarray(arr)
    im = Image.fromarray(a if a.ndim == 3 else a.astype(np.uint8), "RGB" if a.ndim == 3 else "L").convert("RGB")
    scale = box / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    # nearest neighbour: label maps keep their exact colours and pixels stay visible when small images grow
    return im.resize(size, Image.NEAREST)


def _compose(title: str, headers: list[str], rows: list[tuple[list[np.ndarray | None], str]], *, box: int,
             caption_chars: int) -> bytes:
    """A PNG grid: the title, one header per column, then per row its panels (uint8 RGB or gray arrays, each fitted
    into a ``box``-pixel square; None draws "not available") and a caption under them."""
    from PIL import Image, ImageDraw

    ncols = max([len(panels) for panels, _ in rows] + [len(headers), 1])
    title_font, head_font, caption_font = _font(15), _font(12), _font(11)
    line = caption_font.getbbox("Hg")[3] + 4
    width = 2 * _MARGIN + ncols * box + (ncols - 1) * _GAP
    top = _MARGIN + title_font.getbbox("Hg")[3] + 8
    heads = top
    head_lines = [_wrap(name, head_font, box) for name in headers]
    head_line = head_font.getbbox("Hg")[3] + 3
    top += head_line * max([len(h) for h in head_lines] + [1]) + 3
    row_height = box + line + _GAP
    canvas = Image.new("RGB", (width, top + len(rows) * row_height + _MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((_MARGIN, _MARGIN), str(title), fill="#222222", font=title_font)
    for col, lines in enumerate(head_lines):
        for k, text in enumerate(lines):
            draw.text((_MARGIN + col * (box + _GAP), heads + k * head_line), text, fill="#444444", font=head_font)
    for r, (panels, caption) in enumerate(rows):
        y = top + r * row_height
        for col, arr in enumerate(panels):
            x = _MARGIN + col * (box + _GAP)
            if arr is None or np.asarray(arr).size == 0:
                draw.rectangle((x, y, x + box - 1, y + box - 1), fill="#f2f2f2")
                draw.text((x + box // 2, y + box // 2), "not available", fill="#666666", font=caption_font, anchor="mm")
                continue
            canvas.paste(_fit(arr, box), (x, y))
        draw.text((_MARGIN, y + box + 2), str(caption)[:caption_chars], fill="#333333", font=caption_font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def pair_grid(rows: list[tuple[np.ndarray | None, np.ndarray | None, str]], title: str, *, caption_chars: int = 70,
              compact: bool = False, stretch: bool = True) -> bytes:
    """One row per (image, mask, caption): image | mask (contrast-stretched) | overlay; "not available" where missing.
    Composed with Pillow (no matplotlib: its import alone costs more than the rest of a check-data report).
    ``compact`` draws smaller panels (many rows of small display copies); ``stretch`` as in ``_overlay`` (the
    image panel is contrast-stretched the same way)."""
    from segdoctor.report.thumbnails import mask_display, to_display_rgb

    grid = []
    for image, mask, caption in rows:
        same = image is not None and mask is not None and image.shape[:2] == mask.shape[:2]
        shown = None if image is None else (to_display_rgb(image) if stretch else np.asarray(image))
        grid.append(([shown, mask_display(mask) if mask is not None else None,
                      _overlay(image, mask, stretch=stretch) if same else None], caption))
    return _compose(title, ["image", "mask (contrast-stretched)", "overlay"], grid,
                    box=PANEL * 3 // 4 if compact else PANEL, caption_chars=caption_chars)


@renderer("pairs")
def _pairs(figure: Figure) -> bytes:
    from segdoctor.report.thumbnails import load_thumbnail_pair

    rows = [(*load_thumbnail_pair(item.get("image"), item.get("mask")), item.get("caption", ""))
            for item in figure.data["items"]]
    return pair_grid(rows, figure.title)


#: matplotlib's viridis at 17 evenly spaced points (uint8 RGB); ``_colour_panel`` interpolates between them
_VIRIDIS = np.array([[68, 1, 84], [72, 24, 106], [71, 45, 123], [66, 64, 134], [59, 82, 139], [51, 99, 141],
                     [44, 114, 142], [38, 130, 142], [33, 145, 140], [31, 160, 136], [40, 174, 128], [63, 188, 115],
                     [94, 201, 98], [132, 212, 75], [173, 220, 48], [216, 226, 25], [253, 231, 37]], dtype=np.float64)


def _colour_panel(panel: dict) -> np.ndarray:
    """An ``arrays`` panel as uint8 RGB, as matplotlib's imshow shows it: RGB floats in [0, 1] (clipped), 2-D arrays
    scaled from ``vmin``..``vmax`` (default: their own range) through the ``cmap`` (gray or viridis)."""
    a = np.asarray(panel["array"])
    if a.ndim == 3:
        rgb = a[..., :3].astype(np.float64)
        if a.dtype.kind == "f":
            rgb = np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255.0
        return np.clip(rgb, 0, 255).astype(np.uint8)
    v = np.nan_to_num(a.astype(np.float64))
    lo = float(panel.get("vmin", v.min() if v.size else 0.0))
    hi = float(panel.get("vmax", v.max() if v.size else 1.0))
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(v)
    if panel.get("cmap") == "viridis":
        pos = t * (len(_VIRIDIS) - 1)
        i = np.minimum(pos.astype(np.int64), len(_VIRIDIS) - 2)
        frac = (pos - i)[..., None]
        return np.round(_VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac).astype(np.uint8)
    return np.round(t * 255.0).astype(np.uint8)


@renderer("arrays")
def _arrays(figure: Figure) -> bytes:
    """Rows of labelled panels (check-model's worst images), composed with Pillow like the pair grids."""
    rows = list(figure.data["rows"])
    headers = [p.get("title", "") for p in rows[0]["panels"]] if rows else []
    grid = [([_colour_panel(p) for p in r["panels"]], str(r.get("caption", ""))) for r in rows]
    return _compose(figure.title, headers, grid, box=PANEL * 3 // 4, caption_chars=60)


@renderer("lr_range")
def _lr_range(figure: Figure) -> bytes:
    plt = _plt()
    d = figure.data
    lrs = np.asarray(d["lrs"], dtype=float)
    losses = np.asarray(d["losses"], dtype=float)
    smoothed = np.asarray(d.get("smoothed") or d["losses"], dtype=float)
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    ax.set_xscale("log")
    ax.plot(lrs, losses, color="#b0b0b0", linewidth=0.8, marker="o", markersize=2, label="batch loss")
    ax.plot(lrs, smoothed, color=_PALETTE[0], linewidth=2, label="smoothed")
    span = d.get("span")
    if span and span[0] and span[1]:
        ax.axvspan(float(span[0]), float(span[1]), color="#5a9e6f", alpha=0.15, label="good range")
    if d.get("constant_loss") is not None:
        ax.axhline(float(d["constant_loss"]), color="#777777", linestyle=":", linewidth=1, label="constant prediction")
    for i, m in enumerate(d.get("marks", ())):
        ax.axvline(float(m["x"]), color=m.get("color", "#b22222"), linestyle="--", linewidth=1.2)
        ax.annotate(str(m.get("label", "")), (float(m["x"]), 0.97 - 0.08 * i), xycoords=("data", "axes fraction"),
                    va="top", ha="left", fontsize=8, color=m.get("color", "#b22222"))
    finite = smoothed[np.isfinite(smoothed)]
    if finite.size:
        # the blow-up can reach orders of magnitude above the start: keep the part that matters readable
        start = float(d.get("start_loss") or finite[0])
        low = float(finite.min())
        high = max(start, float(np.nanpercentile(losses[np.isfinite(losses)], 90)) if np.isfinite(losses).any() else start)
        pad = 0.08 * max(high - low, 1e-9)
        ax.set_ylim(low - pad, min(high, start + 2 * max(start - low, 1e-9)) + pad)
    if lrs.size:
        ax.set_xlim(lrs.min(), lrs.max() * 1.05)
    ax.set_xlabel(d.get("xlabel", "learning rate"))
    ax.set_ylabel(d.get("ylabel", "loss"))
    ax.set_title(figure.title)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig)
