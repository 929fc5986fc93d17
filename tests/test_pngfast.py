"""The compiled PNG path (segdoctor.io.pngfast, segdoctor._speedups) returns libpng's pixels or nothing.

tests/test_codecs.py compares whole records against Pillow alone; this file drives the PNG path
directly: every colour type and bit depth it takes, every filter type on every kind of row (first
row, one-pixel rows), many IDAT chunks, and each malformation libpng refuses, which must send the file
back to libpng or Pillow instead of returning pixels.
"""

from __future__ import annotations

import shutil
import struct
import sysconfig
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segdoctor.io.readers as readers
from segdoctor import speedups
from segdoctor.io import codecs, pngfast
from segdoctor.io.readers import read_file

from test_codecs import _chunk, _read_both, _same, png_file

RNG = np.random.default_rng(11)
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _compiler() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None


needs_speedups = pytest.mark.skipif(not speedups.available(),
                                    reason="segdoctor._speedups is not built (no C compiler when segdoctor was installed)")


def test_the_compiled_module_is_built_where_a_compiler_exists():
    if not _compiler():
        pytest.skip("no C compiler here: segdoctor installs without its compiled helpers and decodes with libpng")
    assert speedups.available(), "a C compiler is present but segdoctor._speedups was not built: reinstall segdoctor"


def _libpng(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.png_decode(data)


def _samples(h: int, w: int, colour: int, depth: int) -> np.ndarray:
    top = 2**depth
    a = RNG.integers(0, top, (h, w, CHANNELS[colour]))
    # smooth regions too: runs of equal values make every filter type's predictions matter
    a[: h // 2, : w // 2] = a[0, 0]
    return a


@needs_speedups
@pytest.mark.parametrize("colour", [0, 2, 4, 6])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (2, 1), (3, 2), (5, 13), (17, 64)])
def test_every_layout_and_filter_decodes_like_libpng(tmp_path, colour, depth, size):
    h, w = size
    samples = _samples(h, w, colour, depth)
    data = png_file(tmp_path / "f.png", samples, depth, colour).read_bytes()  # filter types cycle 0-4 by row
    got = pngfast.decode(data)
    assert got is not None
    ref = _libpng(data)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert np.array_equal(got, ref)
    assert np.array_equal(got.reshape(h, w, -1), samples.astype(got.dtype))


@needs_speedups
def test_each_filter_type_from_the_first_row_on(tmp_path):
    # png_file cycles the filter type with the row; starting the cycle at each type puts every type on row 0,
    # where the row above counts as zeros
    import test_codecs

    samples = _samples(6, 9, 2, 8)
    original = test_codecs._filter_rows
    for start in range(5):
        def rows(r, bpp, s, _start=start):
            return original(r, bpp, s + _start)

        test_codecs._filter_rows = rows
        try:
            data = png_file(tmp_path / f"s{start}.png", samples, 8, 2).read_bytes()
        finally:
            test_codecs._filter_rows = original
        assert np.array_equal(pngfast.decode(data), _libpng(data)), start


@needs_speedups
def test_files_written_by_pillow(tmp_path):
    for mode, shape in (("L", (64, 80)), ("RGB", (64, 80, 3)), ("RGBA", (31, 17, 4)), ("LA", (9, 33, 2))):
        a = RNG.integers(0, 256, shape).astype(np.uint8)
        a[10:20] = 7
        path = tmp_path / f"{mode}.png"
        Image.fromarray(a, mode).save(path)
        data = path.read_bytes()
        assert np.array_equal(pngfast.decode(data), np.asarray(Image.open(path))), mode


def _rewrite(data: bytes, fn) -> bytes:
    """Apply ``fn(chunks)`` to the list of (type, payload) chunks and write the file again with right CRCs."""
    chunks, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        chunks.append((data[pos + 4: pos + 8], data[pos + 8: pos + 8 + n]))
        pos += 12 + n
    return data[:8] + b"".join(_chunk(c, d) for c, d in fn(chunks))


def _plain(tmp_path) -> bytes:
    return png_file(tmp_path / "plain.png", _samples(12, 10, 2, 8), 8, 2).read_bytes()


def _one_idat(chunks):
    stream = b"".join(d for c, d in chunks if c == b"IDAT")
    out = [x for x in chunks if x[0] != b"IDAT"]
    out.insert(1, (b"IDAT", stream))
    return out


def _with_stream(chunks, stream: bytes):
    out = [x for x in chunks if x[0] != b"IDAT"]
    out.insert(1, (b"IDAT", stream))
    return out


def _raw_rows(data: bytes) -> bytes:
    return zlib.decompress(b"".join(d for c, d in _chunks(data) if c == b"IDAT"))


def _chunks(data: bytes):
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4: pos + 8], data[pos + 8: pos + 8 + n]))
        pos += 12 + n
    return out


def _malformed(data: bytes, tmp: Path) -> dict[str, bytes]:
    raw = _raw_rows(data)
    rowbytes = 10 * 3
    bad_filter = bytearray(raw)
    bad_filter[2 * (rowbytes + 1)] = 5
    idat_at = data.index(b"IDAT")
    bad_crc = bytearray(data)
    bad_crc[idat_at + 6] ^= 0x40  # a bit of the first IDAT's data: its CRC no longer matches
    ihdr_crc = bytearray(data)
    ihdr_crc[29] ^= 1
    return {
        "filter type 5": _rewrite(data, lambda ch: _with_stream(ch, zlib.compress(bytes(bad_filter)))),
        "rows missing": _rewrite(data, lambda ch: _with_stream(ch, zlib.compress(raw[: -(rowbytes + 1)]))),
        "too much data": _rewrite(data, lambda ch: _with_stream(ch, zlib.compress(raw + raw[: rowbytes + 1]))),
        "zlib checksum": _rewrite(data, lambda ch: _with_stream(ch, zlib.compress(raw)[:-1] + b"\x00")),
        "IDAT CRC": bytes(bad_crc),
        "IHDR CRC": bytes(ihdr_crc),
        "no IEND": data[:-12],
        "cut in the data": data[: idat_at + 20],
        "two data runs": _rewrite(data, lambda ch: ch[:2] + [(b"tIME", bytes(7))] + ch[2:]),
        "unknown critical chunk": _rewrite(data, lambda ch: ch[:1] + [(b"ABCD", b"x")] + ch[1:]),
        "palette in a grey file": _rewrite(
            png_file(tmp / "g.png", _samples(4, 4, 0, 8), 8, 0).read_bytes(),
            lambda ch: ch[:1] + [(b"PLTE", bytes(6))] + ch[1:]),
        "chunk type with a digit": _rewrite(data, lambda ch: ch[:1] + [(b"ab1d", b"x")] + ch[1:]),
        "interlaced": png_file(tmp / "i.png", _samples(9, 9, 2, 8), 8, 2, interlace=True).read_bytes(),
        "palette image": png_file(tmp / "p.png", _samples(4, 4, 0, 8), 8, 3,
                                  palette=RNG.integers(0, 256, (256, 3))).read_bytes(),
        "4-bit grey": png_file(tmp / "b.png", _samples(4, 4, 0, 4), 4, 0).read_bytes(),
    }


@needs_speedups
def test_whatever_libpng_would_refuse_is_left_to_it(tmp_path):
    data = _plain(tmp_path)
    assert pngfast.decode(data) is not None
    assert pngfast.decode(_rewrite(data, _one_idat)) is not None  # one IDAT or many: the same stream
    for name, bad in _malformed(data, tmp_path).items():
        assert pngfast.decode(bad) is None, name


@needs_speedups
def test_malformed_files_read_as_they_did_before(tmp_path, monkeypatch):
    # the reader's answer for each malformed file (pixels, or the reason it is unreadable) is the one the
    # Pillow path gives
    for name, bad in _malformed(_plain(tmp_path), tmp_path).items():
        path = tmp_path / f"{name.replace(' ', '_')}.png"
        path.write_bytes(bad)
        fast, reference = _read_both(monkeypatch, path)
        _same(fast, reference, name)


@needs_speedups
def test_ancillary_chunks_after_the_data_are_skipped(tmp_path):
    data = _plain(tmp_path)
    with_time = _rewrite(data, lambda ch: ch[:-1] + [(b"tIME", bytes(7))] + ch[-1:])
    assert np.array_equal(pngfast.decode(with_time), pngfast.decode(data))


# --- Pillow's header parse skipped: only for files where it would add nothing ----------------------

@needs_speedups
def test_plain_files_skip_pillow_and_read_the_same(tmp_path, monkeypatch):
    rgb = _samples(12, 10, 2, 8).astype(np.uint8)
    cases = {
        "pillow.png": (lambda p: Image.fromarray(rgb).save(p), True),
        "gray16.png": (lambda p: Image.fromarray(RNG.integers(0, 65536, (8, 9)).astype(np.uint16)).save(p), True),
        "quiet chunks.png": (lambda p: png_file(p, rgb, 8, 2, before=[
            (b"gAMA", struct.pack(">I", 45455)), (b"sRGB", b"\x00"), (b"cHRM", bytes(32)),
            (b"pHYs", struct.pack(">IIB", 2835, 2835, 1)), (b"bKGD", bytes(6)), (b"tIME", bytes(7))]), True),
        "text before.png": (lambda p: png_file(p, rgb, 8, 2, before=[(b"tEXt", b"Software\x00x")]), False),
        "icc profile.png": (lambda p: png_file(p, rgb, 8, 2, before=[(b"iCCP", b"p\x00\x00" + zlib.compress(b"x"))]),
                            False),
        "short pHYs.png": (lambda p: png_file(p, rgb, 8, 2, before=[(b"pHYs", b"\x00" * 5)]), False),
        "short gAMA.png": (lambda p: png_file(p, rgb, 8, 2, before=[(b"gAMA", b"\x00")]), False),
        "transparency.png": (lambda p: png_file(p, rgb, 8, 2, before=[(b"tRNS", bytes(6))]), False),
        "exif after.png": (lambda p: png_file(p, rgb, 8, 2, after=[(b"eXIf", b"II*\x00")]), False),
        "private after.png": (lambda p: png_file(p, rgb, 8, 2, after=[(b"prVt", b"x")]), True),
    }
    for name, (write, plain) in cases.items():
        path = tmp_path / name
        write(path)
        assert (codecs.plain_png(path.read_bytes(), readers.MAX_PIXELS) is not None) == plain, name
        fast, reference = _read_both(monkeypatch, path)
        _same(fast, reference, name)


@needs_speedups
def test_bad_crc_before_the_data_still_gets_pillows_reason(tmp_path, monkeypatch):
    data = bytearray(png_file(tmp_path / "ok.png", _samples(6, 6, 0, 8), 8, 0,
                              before=[(b"tIME", bytes(7))]).read_bytes())
    data[33 + 8] ^= 1  # first byte of tIME's data
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    assert codecs.plain_png(bytes(data), readers.MAX_PIXELS) is None
    fast, reference = _read_both(monkeypatch, path)
    assert "error" in reference
    _same(fast, reference, "bad ancillary CRC")


@needs_speedups
def test_oversized_header_is_left_to_the_pixel_limit(tmp_path, monkeypatch):
    path = png_file(tmp_path / "big.png", _samples(4, 4, 0, 8), 8, 0)
    assert codecs.plain_png(path.read_bytes(), 15) is None  # 16 pixels over a limit of 15: the usual path decides


def test_without_the_compiled_module_libpng_decodes(tmp_path, monkeypatch):
    path = png_file(tmp_path / "f.png", _samples(9, 7, 2, 8), 8, 2)
    before = read_file(path).array
    monkeypatch.setattr(speedups, "native", None)
    assert not speedups.available()
    assert pngfast.decode(path.read_bytes()) is None
    assert codecs.plain_png(path.read_bytes(), readers.MAX_PIXELS) is None
    assert np.array_equal(read_file(path).array, before)


@needs_speedups
def test_unfilter_checks_its_buffers():
    from segdoctor._speedups import png_unfilter

    out = np.empty(6, np.uint8)
    with pytest.raises(ValueError):
        png_unfilter(b"\x00" * 6, out, 2, 3, 1)  # 2 rows of 3 need 8 input bytes
    with pytest.raises(ValueError):
        png_unfilter(b"\x00" * 8, np.empty(5, np.uint8), 2, 3, 1)
    with pytest.raises(ValueError):
        png_unfilter(b"\x00" * 8, out, 2, 3, 0)
    with pytest.raises(ValueError, match="row 2"):
        png_unfilter(b"\x00abc\x09abc", out, 2, 3, 1)
    with pytest.raises(TypeError):
        png_unfilter(b"\x00" * 8, b"\x00" * 6, 2, 3, 1)  # read-only output
    png_unfilter(b"\x01\x01\x01\x01\x02\x01\x01\x01", out, 2, 3, 1)
    assert out.tolist() == [1, 2, 3, 2, 3, 4]


def _png_all_rows(rows: np.ndarray, ftype: int) -> bytes:
    """An 8-bit grey PNG whose every row uses filter ``ftype`` (vectorised encoder: the recon values are known)."""
    h, w = rows.shape
    r = rows.astype(np.int64)
    a = np.zeros_like(r)
    a[:, 1:] = r[:, :-1]
    b = np.zeros_like(r)
    b[1:] = r[:-1]
    c = np.zeros_like(r)
    c[1:, 1:] = r[:-1, :-1]
    if ftype == 4:
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    elif ftype == 3:
        pred = (a + b) // 2
    else:
        pred = {0: 0 * a, 1: a, 2: b}[ftype]
    body = np.concatenate([np.full((h, 1), ftype), (r - pred) % 256], axis=1).astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(body)) + _chunk(b"IEND", b"")


@needs_speedups
@pytest.mark.parametrize("ftype", [0, 1, 2, 3, 4])
def test_one_filter_on_every_row_over_many_neighbour_values(ftype):
    # 64 rows of 4096 random bytes: about 250,000 (left, up, up-left) triples through each predictor
    rows = np.random.default_rng(ftype).integers(0, 256, (64, 4096)).astype(np.uint8)
    rows[10:20] = rows[9]  # equal neighbours: the predictors' tie rules
    rows[30:40, ::2] = 255
    data = _png_all_rows(rows, ftype)
    got = pngfast.decode(data)
    assert np.array_equal(got, rows)
    assert np.array_equal(got, _libpng(data))


@needs_speedups
def test_a_header_promising_huge_pixels_allocates_nothing(tmp_path):
    # 2**20 x 2**20 RGBA pixels from a few bytes of data: left to libpng (and the readers' pixel limit)
    data = png_file(tmp_path / "small.png", _samples(2, 2, 6, 8), 8, 6).read_bytes()
    huge = _rewrite(data, lambda ch: [(b"IHDR", struct.pack(">IIBBBBB", 1 << 20, 1 << 20, 8, 6, 0, 0, 0))] + ch[1:])
    assert pngfast.layout(huge) is not None
    assert pngfast.decode(huge) is None


@needs_speedups
def test_large_images_stream_through_libpng(tmp_path, monkeypatch):
    path = png_file(tmp_path / "f.png", _samples(20, 30, 2, 8), 8, 2)
    expected = read_file(path).array
    monkeypatch.setattr(pngfast, "MAX_RAW_BYTES", 20 * (30 * 3 + 1) - 1)  # one byte short of these rows
    assert pngfast.decode(path.read_bytes()) is None
    assert np.array_equal(read_file(path).array, expected)
