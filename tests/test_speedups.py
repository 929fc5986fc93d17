"""The compiled helpers (segdoctor._speedups) give exactly what their numpy twins give.

Each statistic is computed twice, once with the helpers and once with ``segdoctor.speedups.native``
switched off, on inputs chosen to reach every branch: strided views, every channel count, maps narrower
than the eight-pixel fast path, values at 0 and 255, clean, resized and noisy label maps. Then whole
per-pair records are compared on generated files and on the real datasets.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segdoctor import speedups
from segdoctor.stats.downsample import gray_float, gray_grid
from segdoctor.stats.image_stats import channel_moments, image_value_statistics
from segdoctor.stats.labels import label_value_stats
from segdoctor.stats.objects import component_summary
from segdoctor.stats.pair import analyse_pair

from conftest import realdata_path
from test_codecs import _same, generated_files

pytestmark = pytest.mark.skipif(not speedups.available(),
                                reason="segdoctor._speedups is not built (no C compiler when segdoctor was installed)")

RNG = np.random.default_rng(5)


def _both(monkeypatch, fn, *args):
    fast = fn(*args)
    with monkeypatch.context() as m:
        m.setattr(speedups, "native", None)
        reference = fn(*args)
    return fast, reference


def _label_maps():
    yy, xx = np.mgrid[:61, :83]
    disk = ((yy - 30) ** 2 + (xx - 40) ** 2 < 400).astype(np.uint8)
    maps = {
        "disk 0/1": disk,
        "disk 0/255": disk * 255,
        "three classes": disk + (xx > 60).astype(np.uint8) * 2,
        "constant": np.full((9, 17), 7, np.uint8),
        "3x3": RNG.integers(0, 3, (3, 3)).astype(np.uint8),
        "3 wide": RNG.integers(0, 2, (20, 3)).astype(np.uint8),
        "9 wide": np.repeat(disk[:, 30:39], 1, axis=0),
        "16 wide": disk[:, 32:48].copy(),
        "noise": RNG.integers(0, 256, (40, 64)).astype(np.uint8),
        "few values noise": RNG.choice(np.array([0, 1, 2, 254, 255], np.uint8), (33, 47)),
    }
    big = np.asarray(Image.fromarray(disk * 255).resize((166, 122), Image.BILINEAR))
    maps["bilinear resize"] = big
    jpeg = disk * 255
    import io

    buf = io.BytesIO()
    Image.fromarray(jpeg).save(buf, format="JPEG", quality=60)
    maps["jpeg"] = np.asarray(Image.open(buf))
    ramp = np.tile(np.arange(40, dtype=np.uint8), (12, 1))
    maps["ramp"] = ramp
    maps["vertical ramp"] = ramp.T.copy()
    stripes = np.zeros((30, 72), np.uint8)
    stripes[:, ::9] = 3
    maps["stripes"] = stripes
    return maps


@pytest.mark.parametrize("name", list(_label_maps()))
def test_label_stats_match(monkeypatch, name):
    lab = _label_maps()[name]
    (fast, mono), (ref, ref_mono) = _both(monkeypatch, label_value_stats, np.ascontiguousarray(lab))
    _same(fast.values, ref.values, "values")
    _same(fast.counts, ref.counts, "counts")
    _same(fast.interior, ref.interior, "interior")
    _same(fast.between, ref.between, "between")
    assert (fast.n_distinct, fast.other_count, mono) == (ref.n_distinct, ref.other_count, ref_mono)


def test_label_stats_match_on_random_maps(monkeypatch):
    for k in range(200):
        h, w = int(RNG.integers(3, 40)), int(RNG.integers(3, 40))
        lab = RNG.integers(0, int(RNG.integers(1, 6)), (h, w)).astype(np.uint8)
        lab[: h // 2] = lab[0, 0]  # wide uniform areas: the eight-pixel path
        (fast, mono), (ref, ref_mono) = _both(monkeypatch, label_value_stats, lab)
        for field in ("values", "counts", "interior", "between"):
            _same(getattr(fast, field), getattr(ref, field), f"map {k} {field}")
        assert mono == ref_mono, k


def test_a_strided_map_takes_the_numpy_path(monkeypatch):
    lab = RNG.integers(0, 3, (20, 30)).astype(np.uint8)
    view = lab[:, ::2]
    (fast, mono), (ref, ref_mono) = _both(monkeypatch, label_value_stats, view)
    _same(fast.counts, ref.counts)
    assert mono == ref_mono


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4, 5])
def test_moments_and_gray_match(monkeypatch, channels):
    shape = (37, 45) if channels is None else (37, 45, channels)
    a = RNG.integers(0, 256, shape).astype(np.uint8)
    a[..., :5] = 0
    a[-3:] = 255
    for view in (a, a[::3, ::2], a[1::4, ::5], a[:, ::-1]):
        fast, ref = _both(monkeypatch, channel_moments, view)
        _same(fast, ref, "moments")
        if view.ndim == 3:
            fast, ref = _both(monkeypatch, gray_float, view)
            _same(fast, ref, "gray")
    if channels and channels >= 3:
        fast, ref = _both(monkeypatch, gray_float, a[..., ::-1])  # channels in reverse order: negative strides
        _same(fast, ref, "gray reversed")


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(512, 512), (256, 256), (300, 512), (513, 257), (100, 90)])
def test_gray_grid_and_value_range_match(monkeypatch, channels, shape):
    # (512, 512) and (256, 256) take the pooled compiled pass (a strided sample of exactly 256x256)
    a = RNG.integers(0, 256, shape if channels is None else (*shape, channels)).astype(np.uint8)
    a[: shape[0] // 3] = 17
    fast, ref = _both(monkeypatch, gray_grid, a)
    _same(fast, ref, "gray grid")
    fast, ref = _both(monkeypatch, image_value_statistics, a)
    _same(fast, ref, "value statistics")
    fast, ref = _both(monkeypatch, image_value_statistics, np.full(shape, 200, np.uint8))
    _same(fast, ref, "constant image")


def _blobs(shape, n, values, rng):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    m = np.zeros(shape, np.uint8)
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(1, max(2, min(shape) // 4))
        m[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.choice(values)
    return m


@pytest.mark.parametrize("case", range(40))
def test_components_match(monkeypatch, case):
    # binary and multi-class maps (the numpy path labels up to 3 values one by one and more in one skimage
    # pass), thin diagonal structures (8-connectivity), specks, sizes that stride or not, snapped values
    rng = np.random.default_rng(case)
    shape = [(64, 64), (300, 200), (512, 512), (37, 91), (1, 50), (50, 1)][case % 6]
    values = [np.array([1]), np.array([1, 2]), np.array([1, 2, 3, 4, 5]), np.arange(1, 80), np.array([255, 7])][case % 5]
    m = _blobs(shape, int(rng.integers(1, 40)), values, rng)
    if case % 4 == 0:
        noise = rng.random(shape) < 0.02
        m[noise] = rng.choice(values, int(noise.sum()))
    if case % 7 == 0:
        d = np.arange(min(shape))
        m[d, d] = values[0]  # a one-pixel diagonal line: one component under 8-connectivity
    fast, ref = _both(monkeypatch, component_summary, m)
    _same(fast, ref, "components")
    keep = np.unique(m)[:3]
    fast, ref = _both(monkeypatch, lambda a: component_summary(a, values=keep), m)
    _same(fast, ref, "components of snapped values")
    fast, ref = _both(monkeypatch, lambda a: component_summary(a, skip_zero=False), m)
    _same(fast, ref, "components with the background")


def test_kernels_refuse_wrong_buffers():
    native = speedups.native
    with pytest.raises(ValueError):
        native.u8_histograms(np.zeros((4, 4), np.uint16), np.zeros(256, np.int64))
    with pytest.raises(ValueError):
        native.u8_histograms(np.zeros((4, 4, 2), np.uint8), np.zeros(256, np.int64))  # 2 channels need 512
    with pytest.raises(ValueError):
        native.u8_gray(np.zeros((4, 4), np.uint8), np.zeros(16, np.float32))  # (H, W, C) only
    with pytest.raises(ValueError):
        native.u8_gray(np.zeros((4, 4, 3), np.uint8), np.zeros(15, np.float32))
    with pytest.raises(ValueError):
        native.u8_gray(np.zeros((5, 4, 3), np.uint8), np.zeros(4, np.float32), True)  # odd height
    with pytest.raises(ValueError):
        native.u8_minmax(np.zeros(0, np.uint8))
    assert native.u8_minmax(np.array([7, 3, 250, 9] * 40, np.uint8)) == (3, 250)
    with pytest.raises(ValueError):
        native.u8_components(np.zeros((4, 4), np.uint8), np.zeros(255, np.uint8))
    with pytest.raises((ValueError, BufferError)):
        native.u8_components(np.zeros((4, 4), np.uint8)[:, ::2], np.zeros(256, np.uint8))
    values, sizes = native.u8_components(np.array([[1, 0, 1], [0, 1, 0], [2, 2, 0]], np.uint8), np.ones(256, np.uint8))
    # the 1s and the 0s each join through diagonals: three components, numbered by their first pixels
    assert list(values) == [1, 0, 2] and np.frombuffer(sizes, np.int64).tolist() == [3, 4, 2]
    z = [np.zeros(256, np.int64) for _ in range(3)]
    with pytest.raises(ValueError):
        native.u8_label_stats(np.zeros((2, 5), np.uint8), *z)
    with pytest.raises((ValueError, BufferError)):
        native.u8_label_stats(np.zeros((6, 6), np.uint8)[:, ::2], *z)
    with pytest.raises(ValueError):
        native.u8_label_stats(np.zeros((6, 6), np.uint8), z[0], z[1], np.zeros(255, np.int64))


def test_pair_records_match_on_generated_files(tmp_path, monkeypatch):
    files = generated_files(tmp_path)
    names = sorted(files)
    for i, name in enumerate(names):
        image, mask = files[name][0], files[names[(i * 7) % len(names)]][0]
        fast, reference = _both(monkeypatch, analyse_pair, image, mask)
        _same(fast, reference, f"{name} + {mask.name}")
        fast, reference = _both(monkeypatch, analyse_pair, mask, image)
        _same(fast, reference, f"{mask.name} + {name}")


@pytest.mark.realdata
def test_pair_records_match_on_real_datasets(monkeypatch):
    from segdoctor.io.readers import IMAGE_EXTENSIONS

    root = realdata_path()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    assert paths
    for path in paths[::3]:
        fast, reference = _both(monkeypatch, analyse_pair, path, path)
        _same(fast, reference, str(path.relative_to(root)))


def test_the_environment_switch_turns_them_off():
    code = ("import io, numpy as np; from PIL import Image; from segdoctor import speedups; "
            "from segdoctor.io import pngfast; b = io.BytesIO(); Image.fromarray(np.zeros((4, 4), np.uint8)).save(b, "
            "format='PNG'); print(speedups.available(), pngfast.decode(b.getvalue()) is None)")
    env = dict(os.environ, SEGDOCTOR_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_version_says_whether_they_are_in_use():
    run = [sys.executable, "-m", "segdoctor", "--version"]
    out = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1] == "compiled helpers: in use"
    env = dict(os.environ, SEGDOCTOR_PURE_PYTHON="1")
    out = subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[1].startswith("compiled helpers: not in use")
