"""Line charts as SVG, without matplotlib: the layout is computed here, ``lines.svg.j2`` renders it.

Training curves are the report's most frequent figure. Drawing them with matplotlib costs its import
(0.4-0.9 s) plus about 0.1 s a figure, more than everything else ``check-history`` does; an SVG of a
few hundred points is a few milliseconds, scales without blur and is a few kilobytes. The chart reads
the ``lines`` figure data that ``segdoctor.report.figures`` documents (``x``, ``series`` with ``axis``
left/right, ``spans``, ``vlines``, ``log``/``y2log``, labels).
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

    def __init__(self, values: np.ndarray, *, log: bool, y0: float, y1: float, integer: bool = False) -> None:
        finite = values[np.isfinite(values)]
        if log:
            finite = finite[finite > 0]
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
        self.ticks: list[tuple[float, str]] = []
        if self.log:
            first, last = math.ceil(self.lo - 1e-9), math.floor(self.hi + 1e-9)
            decades = list(range(first, last + 1))
            stride = max(1, math.ceil(len(decades) / 6))
            mults = (1, 2, 5) if len(decades) <= 2 else (1,)
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
    """Everything ``lines.svg.j2`` draws, in pixels."""
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
                      "path": _path(px, py), "markers": markers})

    def clip_x(v: float) -> float:
        return min(max(xaxis.pixel(v), x0), x1)

    spans = []
    for sp in d.get("spans", ()):
        a, b = clip_x(float(sp["start"])), clip_x(float(sp["end"]))
        spans.append({"x": min(a, b), "width": max(abs(b - a), 1.0), "label": str(sp.get("label", "")),
                      "color": sp.get("color", "#f4a261")})
    vlines = [{"x": clip_x(float(v["x"])), "label": str(v.get("label", ""))} for v in d.get("vlines", ())]

    # legend below the plot, wrapped into rows: it never hides a curve
    legend, row, cursor = [], 0, float(x0)
    for item in drawn:
        if not item["label"]:
            continue
        text = item["label"] if len(item["label"]) <= 60 else item["label"][:59] + "…"
        width = 34 + CHAR_WIDTH * len(text)
        if cursor + width > x1 and cursor > x0:
            row, cursor = row + 1, float(x0)
        legend.append({"x": cursor, "row": row, "label": text, "color": item["color"], "dash": item["dash"]})
        cursor += width
    legend_top = y0 + X_AXIS_SPACE
    height = legend_top + (row + 1) * LEGEND_ROW + 4 if legend else y0 + X_AXIS_SPACE
    for item in legend:
        item["y"] = legend_top + item["row"] * LEGEND_ROW + LEGEND_ROW / 2

    return {
        "width": WIDTH, "height": height, "title": figure.title, "x0": x0, "x1": x1, "y0": y0, "y1": y1,
        "xticks": [(xaxis.pixel(v), lab) for v, lab in xaxis.ticks],
        "yticks": [(y0 + (v - yaxis.lo) / (yaxis.hi - yaxis.lo) * (y1 - y0), lab) for v, lab in yaxis.ticks],
        "y2ticks": [] if y2axis is None else [(y0 + (v - y2axis.lo) / (y2axis.hi - y2axis.lo) * (y1 - y0), lab)
                                              for v, lab in y2axis.ticks],
        "xlabel": str(d.get("xlabel", "")), "ylabel": str(d.get("ylabel", "")),
        "y2label": str(d.get("y2label", "")) if y2axis is not None else "",
        "series": drawn, "spans": spans, "vlines": vlines, "legend": legend,
    }


def lines_svg(figure: Figure) -> bytes:
    """The ``lines`` figure as a standalone SVG document (text autoescaped by the template)."""
    from segdoctor.report.html import environment

    return environment().get_template("lines.svg.j2").render(**lines_layout(figure)).encode("utf-8")
