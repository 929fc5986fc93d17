"""Charts drawn as SVG without matplotlib (lines, bar, histogram): valid documents, every series drawn,
user text escaped, what is drawn capped for long and wide logs."""

from __future__ import annotations

import base64
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from segdoctor.findings import Figure
from segdoctor.report.figures import SVG_RENDERERS, data_uri, render_svg
from segdoctor.stats import curves

from conftest import REPO

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = 'val_</text><script>alert(1)</script>"&\'dice'


def _svg(fig: Figure) -> ET.Element:
    data = render_svg(fig)
    assert data is not None, fig.title
    root = ET.fromstring(data)
    assert root.tag == NS + "svg"
    assert not list(root.iter(NS + "script")) and not list(root.iter(NS + "foreignObject"))
    return root


def _texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(NS + "text")]


def _drawn_paths(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.iter(NS + "path") if p.get("d")]


LINE_CASES = {
    "plain": {"x": [1, 2, 3, 4], "series": [{"label": "loss", "y": [0.5, 0.4, 0.3, 0.35]},
                                           {"label": "val_loss", "y": [0.6, 0.5, 0.45, 0.5], "style": "--"}]},
    "gaps and infinities": {"x": [1, 2, 3, 4, 5], "series": [{"label": "loss", "y": [0.5, math.nan, math.inf, 0.3, 0.2]}]},
    "log with lr axis": {"x": list(range(1, 61)), "log": True, "y2log": True,
                         "series": [{"label": "loss", "y": list(np.geomspace(10, 0.01, 60))},
                                    {"label": "learning rate", "y": [1e-3] * 30 + [1e-5] * 30, "axis": "right", "style": ":"}],
                         "spans": [{"start": 10, "end": 20, "label": "rising"}], "vlines": [{"x": 30.5, "label": "LR 0.001→1e-05"}]},
    "one point": {"x": [1], "series": [{"label": "dice", "y": [4e-11]}]},
    "constant": {"x": [1, 2, 3], "series": [{"label": "acc", "y": [0.9, 0.9, 0.9]}]},
    "negative": {"x": [1, 2, 3], "series": [{"label": "loss", "y": [-0.2, -0.5, -0.9]}]},
    "nothing finite": {"x": [1, 2], "series": [{"label": "loss", "y": [math.nan, math.nan]}]},
    "own x per series": {"x": [1, 100], "series": [{"label": "loss", "x": [1, 50, 100], "y": [3, 2, 1]}]},
}


@pytest.mark.parametrize("case", sorted(LINE_CASES))
def test_line_charts(case):
    data = {"xlabel": "epoch", "ylabel": "value", **LINE_CASES[case]}
    root = _svg(Figure(kind="lines", title=f"Loss <{case}>", data=data))
    drawable = [s for s in data["series"] if any(math.isfinite(v) for v in s["y"])]
    assert len(_drawn_paths(root)) == len(drawable)
    assert f"Loss <{case}>" in _texts(root)
    assert {s["label"] for s in data["series"]} <= set(_texts(root))  # the legend names every series


def test_bar_and_histogram_charts():
    bar = Figure(kind="bar", title="Mask values", data={"labels": [str(v) for v in range(40)], "values": list(range(1, 41)),
                                                      "log": True, "highlight": ["3"], "ylabel": "pixels (log)"})
    root = _svg(bar)
    rects = [r for r in root.iter(NS + "rect") if r.get("fill") in ("#3b6ea8", "#d1603d")]
    assert len(rects) == 40 and sum(r.get("fill") == "#d1603d" for r in rects) == 1
    hist = Figure(kind="histogram", title="Probabilities", data={
        "series": [{"label": HOSTILE, "edges": list(np.linspace(0, 1, 11)), "counts": [0, 1, 5, 0, 0, 0, 0, 0, 2, 9]},
                   {"label": "background", "edges": list(np.linspace(0, 1, 11)), "counts": [9, 2] + [0] * 8}],
        "log": True, "vlines": [{"x": 0.5, "label": "threshold 0.5"}], "xlabel": "p"})
    root = _svg(hist)
    assert len(_drawn_paths(root)) == 2 and HOSTILE in _texts(root) and "threshold 0.5" in _texts(root)
    single = Figure(kind="histogram", title="Sizes", data={"edges": [0, 1, 2, 3], "counts": [3, 0, 1]})
    filled = [p for p in _drawn_paths(_svg(single)) if p.get("fill") not in (None, "none")]
    assert len(filled) == 1


def test_user_text_is_escaped_not_markup():
    fig = Figure(kind="lines", title=HOSTILE, data={"x": [1, 2], "series": [{"label": HOSTILE, "y": [1, 2]}],
                                                   "spans": [{"start": 1, "end": 2, "label": HOSTILE}]})
    root = _svg(fig)
    assert _texts(root).count(HOSTILE) >= 3  # title, span label, legend: as text


def test_the_report_embeds_svg_for_charts_and_png_for_pictures():
    assert set(SVG_RENDERERS) == {"lines", "bar", "histogram"}
    uri = data_uri(Figure(kind="bar", title="b", data={"labels": ["0", "1"], "values": [3, 1]}))
    assert uri.startswith("data:image/svg+xml;base64,") and b"<svg" in base64.b64decode(uri.split(",", 1)[1])


def test_drawing_charts_imports_no_matplotlib():
    code = ("import sys; from segdoctor.findings import Figure; from segdoctor.report.figures import data_uri; "
            "data_uri(Figure(kind='lines', title='t', data={'x': [1, 2], 'series': [{'label': 'a', 'y': [1, 2]}]})); "
            "data_uri(Figure(kind='histogram', title='h', data={'edges': [0, 1, 2], 'counts': [1, 2]})); "
            "data_uri(Figure(kind='bar', title='b', data={'labels': ['x'], 'values': [1]})); "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_envelope_keeps_spikes_and_gaps_within_the_budget():
    y = np.sin(np.arange(200_000) / 500.0)
    y[123_457] = 50.0  # a one-epoch spike
    y[50_000:60_000] = np.nan  # a long NaN episode
    xs, ys = curves.envelope(np.arange(1, y.size + 1, dtype=float), y, max_points=1000)
    assert xs.size <= 1000 and np.nanmax(ys) == 50.0
    assert np.isnan(ys[(xs > 51_000) & (xs < 59_000)]).all()
    assert np.all(np.diff(xs) >= 0)  # still in epoch order
    short_x, short_y = curves.envelope(np.arange(5.0), np.arange(5.0), max_points=1000)
    assert short_y.tolist() == [0, 1, 2, 3, 4]


def test_curve_figures_cap_columns_and_points():
    from segdoctor.checks.history import FIGURE_POINTS, FIGURE_SERIES, HistoryContext
    from segdoctor.io.history import history_from_mapping

    n = 5000
    cols = {"loss": np.linspace(1, 0.1, n), "lr": np.full(n, 1e-3)}
    cols.update({f"dice_{k}": np.linspace(0, 0.9, n) for k in range(300)})
    ctx = HistoryContext(history_from_mapping(cols))
    fig = ctx.metric_figure(focus=("dice_250",))
    labels = [s["label"] for s in fig.data["series"]]
    assert labels[0] == "dice_250" and len(labels) == FIGURE_SERIES + 1 and labels[-1] == "learning rate"
    assert f"{FIGURE_SERIES} of 300 columns drawn" in fig.caption
    assert all(len(s["y"]) <= FIGURE_POINTS for s in fig.data["series"])
    assert render_svg(fig) is not None


def _grid_rows():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[10:40, 20:50] = 1
    return [(image, mask, "first pair"), (image[..., 0], None, "no mask"), (None, mask, "no image"),
            (image, mask[:30], "sizes differ: no overlay"), (image.astype(np.float32) / 255, mask * 3, HOSTILE)]


def test_pair_grids_are_drawn_without_matplotlib(tmp_path):
    # image | mask | overlay grids are composed with Pillow: a check-data report imports no matplotlib
    code = ("import sys, numpy as np; from segdoctor.findings import Figure; from segdoctor.report.figures import "
            "data_uri, pair_grid; import segdoctor.report.pipeline_figures; "
            "img = np.zeros((40, 50, 3), np.uint8); m = np.zeros((40, 50), np.uint8); m[5:20, 5:20] = 1; "
            "assert pair_grid([(img, m, 'c')], 't')[:8] == b'\\x89PNG\\r\\n\\x1a\\n'; "
            "assert data_uri(Figure('samples', 't', {'items': [{'image': img, 'label': m, 'caption': 'c'}]}))"
            ".startswith('data:image/png;base64,'); "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_pair_grid_layout():
    import io

    from PIL import Image

    from segdoctor.report.figures import PANEL, pair_grid

    rows = _grid_rows()
    im = Image.open(io.BytesIO(pair_grid(rows, "Suspect pairs")))
    assert im.width >= 3 * PANEL and im.height >= len(rows) * PANEL
    a = np.asarray(im.convert("RGB"))
    # the first row's overlay panel holds the label colour blended over the image; the missing panels are grey
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50
    small = Image.open(io.BytesIO(pair_grid(rows, "t", compact=True)))
    assert small.height < im.height


def test_array_grids_are_drawn_without_matplotlib():
    code = ("import sys, numpy as np; from segdoctor.findings import Figure; from segdoctor.report.figures import "
            "data_uri; p = np.linspace(0, 1, 64).reshape(8, 8); "
            "rows = [{'caption': 'a.png: Dice 0.1', 'panels': [{'title': 'image', 'array': p, 'cmap': 'gray'}, "
            "{'title': 'probability', 'array': p, 'cmap': 'viridis', 'vmin': 0, 'vmax': 1}, "
            "{'title': 'overlay (TP green, FP red, FN blue)', 'array': np.zeros((8, 8, 3), np.uint8)}]}]; "
            "assert data_uri(Figure('arrays', 'Worst images by Dice', {'rows': rows})).startswith('data:image/png'); "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_array_panels_are_coloured_as_imshow_does():
    from segdoctor.report.figures import _colour_panel

    ramp = np.linspace(0.0, 1.0, 256)[None, :]
    gray = _colour_panel({"array": ramp, "cmap": "gray"})
    assert gray[0, 0] == 0 and gray[0, -1] == 255 and np.all(np.diff(gray[0].astype(int)) >= 0)
    assert _colour_panel({"array": ramp * 0 + 0.5, "cmap": "gray", "vmin": 0, "vmax": 1})[0, 0] == 128
    v = _colour_panel({"array": ramp, "cmap": "viridis", "vmin": 0, "vmax": 1})
    assert v.shape == (1, 256, 3) and tuple(v[0, 0]) == (68, 1, 84) and tuple(v[0, -1]) == (253, 231, 37)
    rgb = _colour_panel({"array": np.full((2, 2, 3), 2.0)})  # float RGB is clipped to [0, 1] like imshow
    assert rgb.dtype == np.uint8 and rgb.max() == 255
    assert _colour_panel({"array": np.full((3, 3), 7.0), "cmap": "gray"}).max() == 0  # a flat panel: no division


def test_long_column_titles_wrap_inside_their_column():
    from segdoctor.report.figures import _font, _wrap

    font = _font(12)
    lines = _wrap("overlay (TP green, FP red, FN blue)", font, 120)
    assert len(lines) == 2 and all(font.getlength(t) <= 120 for t in lines)
    assert _wrap("a " * 200, font, 50)[-1].endswith("...")
