"""Charts as SVG, without matplotlib: the layout is computed here, ``chart.svg.j2`` renders it.

Curves, bar charts and histograms are most of a report's figures. Drawing them with matplotlib costs
its import (0.4-0.9 s) plus 0.1-0.5 s a figure, more than everything else ``check-history`` does and
most of what ``check-model`` adds to TensorFlow; an SVG of a few hundred points takes milliseconds,
scales without blur and is a few kilobytes. The charts read the figure data that
``segdoctor.report.figures`` documents for the ``lines``, ``bar`` and ``histogram`` kinds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segdoctor.findings import Figure

WIDTH = 700
PLOT_HEIGHT = 220
TOP = 30
LEFT = 64
RIGHT_WITH_AXIS = 76
RIGHT_PLAIN = 16
X_AXIS_SPACE = 40
LEGEND_ROW = 18
CHAR_WIDTH = 6.6  # px per character at the 11 px legend font, for the legend layout
PALETTE = ["#3b6ea8", "#d1603d", "#5a9e6f", "#8e6bb8", "#c9a227", "#4aa3a3", "#b5527d", "#777777"]
DASHES = {"-": "", "--": "6 3", ":": "1.5 3", "-.": "6 3 1.5 3"}


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    if not math.isfinite(raw) or raw <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * magnitude >= raw * 0.999:
            return m * magnitude
    return 10 * magnitude


def _label(value: float, step: float) -> str:
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 1e5 or a < 1e-3:
        return f"{value:.2g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step > 0 and round(step / 10.0 ** -decimals, 6) % 1:  # 2.5 x 10^k needs one more digit
        decimals += 1
    return f"{value:,.{min(decimals, 6)}f}"


def _log_label(value: float) -> str:
    return f"{value:g}" if 1e-3 <= value < 1e5 else f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")


class Axis:
    """A value axis: the range shown and its ticks; maps values to pixel rows (``y0`` bottom, ``y1`` top)."""

    def __init__(self, values: np.ndarray, *, log: bool, y0: float, y1: float, integer: bool = False,
                 include_zero: bool = False) -> None:
        finite = values[np.isfinite(values)]
        if log:
            finite = finite[finite > 0]
        elif include_zero:
            finite = np.r_[finite, 0.0]
        self.log = bool(log) and finite.size > 0
        self.y0, self.y1 = y0, y1
        if finite.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = float(finite.min()), float(finite.max())
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
            pad = 0.5 if self.log else (abs(lo) * 0.1 or 0.5)
            lo, hi = lo - pad, hi + pad
        pad = 0.05 * (hi - lo)  # matplotlib's default margins
        self.lo, self.hi = lo - pad, hi + pad
        if include_zero and not self.log and lo >= 0:
            self.lo = 0.0  # bars and histograms stand on the axis
        elif include_zero and self.log:
            self.lo = math.floor(lo + 1e-9) - (1.0 if lo - math.floor(lo + 1e-9) < 0.05 else 0.0)  # ... from a decade below
        self.ticks: list[tuple[float, str]] = []
        if self.log:
            first, last = math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9)
            decades = list(range(first, last + 1))
            stride = max(1, math.ceil(len(decades) / 6))
            mults = (1, 2, 5) if len(decades) <= 2 else (1,)
            if self.hi - self.lo < 0.7:  # under a decade: every multiple
                mults = tuple(range(1, 10))
            for d in range(first - 1, last + 1):
                if (d - first) % stride:
                    continue
                for m in mults:
                    v = math.log10(m) + d
                    if self.lo <= v <= self.hi:
                        self.ticks.append((v, _log_label(m * 10.0 ** d)))
        else:
            step = _nice_step(self.hi - self.lo, 5)
            if integer:
                step = max(1.0, round(step))
            k = math.ceil(self.lo / step - 1e-9)
            while k * step <= self.hi + 1e-9 * step and len(self.ticks) < 12:
                v = k * step
                self.ticks.append((v, _label(v if abs(v) > 1e-12 * step else 0.0, step)))
                k += 1

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Pixel coordinates (NaN where the value cannot be drawn: non-finite, or not positive on a log axis)."""
        v = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.log:
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
            v = np.where(np.isfinite(v), v, np.nan)
        return self.y0 + (v - self.lo) / (self.hi - self.lo) * (self.y1 - self.y0)

    def pixel(self, value: float) -> float:
        return float(self.transform(np.array([value]))[0])


def _path(px: np.ndarray, py: np.ndarray) -> str:
    """An SVG path through the drawable points; NaN breaks the line, as in matplotlib."""
    ok = np.isfinite(px) & np.isfinite(py)
    if not ok.any():
        return ""
    starts = ok & ~np.r_[False, ok[:-1]]  # a drawable point after a gap starts a new sub-path
    parts = []
    for i in np.flatnonzero(ok).tolist():
        parts.append(f"{'M' if starts[i] else 'L'}{px[i]:.1f} {py[i]:.1f}")
    return "".join(parts)


def lines_layout(figure: Figure) -> dict[str, Any]:
    """``lines``: ``x`` and ``series`` (``label``, ``y``, ``axis`` left/right, ``color``, ``style``), ``spans``,
    ``vlines``, ``log``/``y2log``."""
    d = figure.data
    x = np.asarray(d["x"], dtype=float)
    series = list(d.get("series", ()))
    left_series = [s for s in series if s.get("axis") != "right"]
    right_series = [s for s in series if s.get("axis") == "right"]
    right = RIGHT_WITH_AXIS if right_series else RIGHT_PLAIN
    x0, x1 = LEFT, WIDTH - right
    y0, y1 = TOP + PLOT_HEIGHT, TOP

    def xs_of(s: dict) -> np.ndarray:
        return np.asarray(s.get("x", x), dtype=float)

    all_x = np.concatenate([xs_of(s) for s in series]) if series else x
    extra_x = [float(v["x"]) for v in d.get("vlines", ())] + [float(sp[k]) for sp in d.get("spans", ()) for k in ("start", "end")]
    xaxis = Axis(np.r_[all_x, extra_x] if extra_x else all_x, log=False, y0=x0, y1=x1, integer=True)
    ys_left = [np.asarray(s["y"], dtype=float) for s in left_series]
    yaxis = Axis(np.concatenate(ys_left) if ys_left else np.zeros(0), log=bool(d.get("log")), y0=y0, y1=y1)
    y2axis = None
    if right_series:
        ys_right = np.concatenate([np.asarray(s["y"], dtype=float) for s in right_series])
        y2axis = Axis(ys_right, log=bool(d.get("y2log")), y0=y0, y1=y1)

    drawn = []
    for i, s in enumerate(series):
        axis = y2axis if s.get("axis") == "right" else yaxis
        px = xaxis.transform(xs_of(s))
        py = axis.transform(np.asarray(s["y"], dtype=float))
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        markers = []
        if px.size <= 30:
            markers = [(float(a), float(b)) for a, b in zip(px, py) if math.isfinite(a) and math.isfinite(b)]
        drawn.append({"label": str(s.get("label", "")), "color": color, "dash": DASHES.get(s.get("style", "-"), ""),
                      "path": _path(px, py), "markers": markers, "fill": ""})

    def clip_x(v: float) -> float:
        return min(max(xaxis.pixel(v), x0), x1)

    spans = []
    for sp in d.get("spans", ()):
        a, b = clip_x(float(sp["start"])), clip_x(float(sp["end"]))
        spans.append({"x": min(a, b), "width": max(abs(b - a), 1.0), "label": str(sp.get("label", "")),
                      "color": sp.get("color", "#f4a261")})
    vlines = [{"x": clip_x(float(v["x"])), "label": str(v.get("label", "")), "top": False} for v in d.get("vlines", ())]

    return _frame(figure.title, x0, x1, y0, y1, xaxis=xaxis, yaxis=yaxis, y2axis=y2axis, series=drawn, spans=spans,
                  vlines=vlines, xlabel=str(d.get("xlabel", "")), ylabel=str(d.get("ylabel", "")),
                  y2label=str(d.get("y2label", "")))


def _legend(series: list[dict], x0: float, x1: float, top: float) -> tuple[list[dict], float]:
    """Legend entries below the plot, wrapped into rows (it never hides a curve); returns them and the bottom."""
    legend, row, cursor = [], 0, float(x0)
    for item in series:
        if not item["label"]:
            continue
        text = item["label"] if len(item["label"]) <= 60 else item["label"][:59] + "…"
        width = 34 + CHAR_WIDTH * len(text)
        if cursor + width > x1 and cursor > x0:
            row, cursor = row + 1, float(x0)
        legend.append({"x": cursor, "row": row, "label": text, "color": item["color"], "dash": item["dash"],
                       "fill": item.get("fill", "")})
        cursor += width
    for item in legend:
        item["y"] = top + item["row"] * LEGEND_ROW + LEGEND_ROW / 2
    return legend, (top + (row + 1) * LEGEND_ROW + 4 if legend else top)


def _ticks(axis: Axis | None, y0: float, y1: float) -> list[tuple[float, str]]:
    if axis is None:
        return []
    return [(y0 + (v - axis.lo) / (axis.hi - axis.lo) * (y1 - y0), lab) for v, lab in axis.ticks]


def _frame(title: str, x0: float, x1: float, y0: float, y1: float, *, xaxis: Axis | None, yaxis: Axis,
           y2axis: Axis | None = None, series: list[dict] = (), bars: list[dict] = (), spans: list[dict] = (),
           vlines: list[dict] = (), xticks: list[tuple[float, str]] | None = None, rotate_xticks: bool = False,
           xlabel: str = "", ylabel: str = "", y2label: str = "") -> dict[str, Any]:
    """Everything ``chart.svg.j2`` draws, in pixels: the plot area, axes, ticks, marks and legend."""
    if xticks is None:
        xticks = [(xaxis.pixel(v), lab) for v, lab in xaxis.ticks] if xaxis is not None else []
    tick_space = 15 + (min(max((len(lab) for _, lab in xticks), default=0), 24) * 4.5 if rotate_xticks else 0)
    xlabel_y = y0 + tick_space + 17
    legend, bottom = _legend(list(series), x0, x1, xlabel_y + (8 if xlabel else -10))
    height = max(bottom, xlabel_y + 8)
    return {
        "width": x1 + (RIGHT_WITH_AXIS if y2axis is not None else RIGHT_PLAIN), "height": height, "title": title,
        "x0": x0, "x1": x1, "y0": y0, "y1": y1, "xticks": xticks, "rotate_xticks": rotate_xticks,
        "yticks": _ticks(yaxis, y0, y1), "y2ticks": _ticks(y2axis, y0, y1), "xlabel": xlabel, "xlabel_y": xlabel_y,
        "ylabel": ylabel, "y2label": y2label if y2axis is not None else "", "series": list(series), "bars": list(bars),
        "spans": list(spans), "vlines": list(vlines), "legend": legend,
    }


def bar_layout(figure: Figure) -> dict[str, Any]:
    """``bar``: ``labels`` and ``values``; ``highlight`` labels drawn in the second colour; ``log`` y axis."""
    d = figure.data
    labels = [str(x) for x in d["labels"]]
    values = np.asarray([float(v) for v in d["values"]], dtype=float)
    n = max(len(labels), 1)
    width = int(min(1000, max(400, 35 * n + 200)))
    x0, x1, y0, y1 = LEFT, width - RIGHT_PLAIN, TOP + PLOT_HEIGHT, TOP
    yaxis = Axis(values, log=bool(d.get("log")), y0=y0, y1=y1, include_zero=True)
    highlight = {str(x) for x in d.get("highlight", ())}
    slot = (x1 - x0) / n
    base = y0 if yaxis.log else min(max(yaxis.pixel(0.0), y1), y0)
    bars, xticks = [], []
    for i, (label, value) in enumerate(zip(labels, values)):
        centre = x0 + (i + 0.5) * slot
        top = yaxis.pixel(value)
        if math.isfinite(top):
            top = min(max(top, y1), y0)
            bars.append({"x": centre - 0.4 * slot, "w": 0.8 * slot, "y": min(top, base), "h": abs(base - top),
                         "color": PALETTE[1] if label in highlight else PALETTE[0]})
        xticks.append((centre, label if len(label) <= 24 else label[:23] + "…"))
    return _frame(figure.title, x0, x1, y0, y1, xaxis=None, yaxis=yaxis, bars=bars, xticks=xticks,
                  rotate_xticks=n > 8, xlabel=str(d.get("xlabel", "")), ylabel=str(d.get("ylabel", "")))


def histogram_layout(figure: Figure) -> dict[str, Any]:
    """``histogram``: precomputed ``edges`` + ``counts`` (or ``series`` of them); ``vlines``; ``log`` y axis."""
    d = figure.data
    series = d.get("series") or [{"label": "", "edges": d["edges"], "counts": d["counts"]}]
    x0, x1, y0, y1 = LEFT, 650 - RIGHT_PLAIN, TOP + PLOT_HEIGHT, TOP
    edges = [np.asarray(s["edges"], dtype=float) for s in series]
    counts = [np.asarray(s["counts"], dtype=float) for s in series]
    extra = [float(v["x"]) for v in d.get("vlines", ())]
    xaxis = Axis(np.concatenate(edges + [np.asarray(extra)]), log=False, y0=x0, y1=x1)
    yaxis = Axis(np.concatenate(counts) if counts else np.zeros(0), log=bool(d.get("log")), y0=y0, y1=y1,
                 include_zero=True)
    drawn = []
    single = len(series) == 1
    for i, (s, e, c) in enumerate(zip(series, edges, counts)):
        px = xaxis.transform(e)
        py = yaxis.transform(c)
        py = np.where(np.isfinite(py), np.clip(py, y1, y0), y0)  # empty bins of a log axis sit on the axis
        base = y0 if yaxis.log else min(max(yaxis.pixel(0.0), y1), y0)
        xs = np.repeat(px, 2)[1:-1]
        ys = np.repeat(py, 2)
        path = "".join(f"{'M' if k == 0 else 'L'}{a:.1f} {b:.1f}" for k, (a, b) in enumerate(zip(xs, ys)))
        color = PALETTE[i % len(PALETTE)]
        if single and path:
            path = f"M{px[0]:.1f} {base:.1f}L" + path[1:] + f"L{px[-1]:.1f} {base:.1f}Z"
        drawn.append({"label": str(s.get("label", "") or ""), "color": color, "dash": "", "path": path, "markers": [],
                      "fill": color if single else ""})
    vlines = [{"x": min(max(xaxis.pixel(float(v["x"])), x0), x1), "label": str(v.get("label", "")), "top": True}
              for v in d.get("vlines", ())]
    return _frame(figure.title, x0, x1, y0, y1, xaxis=xaxis, yaxis=yaxis, series=drawn, vlines=vlines,
                  xlabel=str(d.get("xlabel", "")), ylabel=str(d.get("ylabel", "count")))


def _render(layout: dict[str, Any]) -> bytes:
    from segdoctor.report.html import environment

    return environment().get_template("chart.svg.j2").render(**layout).encode("utf-8")


def lines_svg(figure: Figure) -> bytes:
    """The ``lines`` figure as a standalone SVG document (text autoescaped by the template)."""
    return _render(lines_layout(figure))


def bar_svg(figure: Figure) -> bytes:
    return _render(bar_layout(figure))


def histogram_svg(figure: Figure) -> bytes:
    return _render(histogram_layout(figure))
