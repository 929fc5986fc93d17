"""The fast decoders (segdoctor.io.codecs) change nothing but the speed.

For every format, mode and bit depth the readers accept, plus corrupt files and the real datasets, the
per-pair record computed with imagecodecs decoding is compared with the one Pillow alone gives (the
reference: the readers with the fast path switched off). Records must be identical: same keys, same
numbers, same array dtypes, same error texts.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segdoctor.io.readers as readers
from segdoctor.io import codecs
from segdoctor.io.readers import IMAGE_EXTENSIONS, read_file
from segdoctor.stats.pair import analyse_pair

from conftest import realdata_path

RNG = np.random.default_rng(7)
H, W = 37, 45  # odd sizes: row padding and chroma subsampling edges


def _same(a, b, where="record") -> None:
    """Deep equality: arrays by dtype, shape and bytes; floats NaN-aware; containers element by element."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {sorted(map(str, a))} != {sorted(map(str, b))}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{where}: NaN != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _pillow_only(monkeypatch):
    monkeypatch.setattr(readers, "_file_bytes", lambda source, suffix: None)


def _records(monkeypatch, image, mask):
    fast = analyse_pair(image, mask)
    with monkeypatch.context() as m:
        _pillow_only(m)
        reference = analyse_pair(image, mask)
    return fast, reference


def _decoded_fields(dec):
    return {"array": dec.array, "format": dec.format, "mode": dec.mode, "bits": dec.bits, "palette": dec.palette,
            "exif_orientation": dec.exif_orientation, "extra": dec.extra}


def _read_both(monkeypatch, path):
    def read(p):
        try:
            return _decoded_fields(read_file(p))
        except readers.UnreadableFile as exc:
            return {"error": str(exc)}

    fast = read(path)
    with monkeypatch.context() as m:
        _pillow_only(m)
        reference = read(path)
    return fast, reference


def _takes_fast_path(path: Path) -> bool:
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        return codecs.fast_pixels(im, im.format, data) is not None


# --- a PNG writer for what Pillow cannot write (bit depths, filters, interlace, chunk order) ---------------

def _chunk(cid: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + cid + data + struct.pack(">I", zlib.crc32(cid + data) & 0xFFFFFFFF)


def _pack_row(row: np.ndarray, bit_depth: int) -> bytes:
    if bit_depth == 16:
        return row.astype(">u2").tobytes()
    if bit_depth == 8:
        return row.astype(np.uint8).tobytes()
    per = 8 // bit_depth
    flat = row.astype(np.uint8).ravel()
    flat = np.concatenate([flat, np.zeros((-flat.size) % per, np.uint8)]).reshape(-1, per)
    shifts = np.arange(per - 1, -1, -1) * bit_depth
    return (flat << shifts).sum(axis=1).astype(np.uint8).tobytes()


def _filter_rows(rows: list[bytes], bpp: int, start: int) -> bytes:
    """Each scanline with a filter type cycling through all five (so libpng and Pillow unfilter every kind)."""
    out, prior = bytearray(), bytes(len(rows[0])) if rows else b""
    for k, raw in enumerate(rows):
        ftype = (start + k) % 5
        line = bytearray(len(raw))
        for i, x in enumerate(raw):
            a = raw[i - bpp] if i >= bpp else 0
            b = prior[i]
            c = prior[i - bpp] if i >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (x - pred) & 0xFF
        out += bytes([ftype]) + line
        prior = raw
    return bytes(out)


def png_file(path: Path, samples: np.ndarray, bit_depth: int, color_type: int, *, interlace: bool = False,
             before: list[tuple[bytes, bytes]] = (), after: list[tuple[bytes, bytes]] = (),
             palette: np.ndarray | None = None) -> Path:
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    samples = samples.reshape(samples.shape[0], samples.shape[1], channels)
    h, w = samples.shape[:2]
    bpp = max(1, channels * bit_depth // 8)
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        body = b""
        for n, (x0, y0, dx, dy) in enumerate(passes):
            sub = samples[y0::dy, x0::dx]
            if sub.size:
                body += _filter_rows([_pack_row(r.reshape(-1), bit_depth) for r in sub], bpp, n)
    else:
        body = _filter_rows([_pack_row(r.reshape(-1), bit_depth) for r in samples], bpp, 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    for cid, data in before:
        out += _chunk(cid, data)
    if palette is not None:
        out += _chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    z = zlib.compress(body, 6)
    for i in range(0, len(z), 97):  # several IDAT chunks
        out += _chunk(b"IDAT", z[i:i + 97])
    for cid, data in after:
        out += _chunk(cid, data)
    path.write_bytes(out + _chunk(b"IEND", b""))
    return path


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'


def _gray(dtype=np.uint8, top=255):
    return RNG.integers(0, top + 1, (H, W)).astype(dtype)


def _mask(values=(0, 1, 2), dtype=np.uint8):
    m = np.zeros((H, W), dtype)
    m[5:20, 6:30] = values[1]
    m[22:33, 10:40] = values[-1]
    return m


def generated_files(root: Path) -> dict[str, tuple[Path, bool]]:
    """name -> (file, whether the fast path must take it)."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[Path, bool]] = {}

    def pil(name, array, fast, fmt=None, mode=None, **kw):
        p = root / name
        im = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
        im.save(p, format=fmt, **kw)
        files[name] = (p, fast)

    rgb = RNG.integers(0, 256, (H, W, 3)).astype(np.uint8)
    rgba = RNG.integers(0, 256, (H, W, 4)).astype(np.uint8)
    # PNG written by Pillow (its adaptive filters)
    pil("gray8.png", _gray(), True)
    pil("mask8.png", _mask(), True)
    pil("mask255.png", _mask((0, 255, 255)), True)
    pil("gray16.png", _gray(np.uint16, 65535), True)
    pil("rgb8.png", rgb, True)
    pil("rgba8.png", rgba, True)
    pil("la8.png", np.dstack([_gray(), _gray()]), True, mode=None)
    pil("bilevel.png", _gray() > 128, False)
    pal = Image.fromarray(_mask((0, 1, 2))).convert("P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    pal.save(root / "palette.png")
    files["palette.png"] = (root / "palette.png", False)
    pal.save(root / "palette_trns.png", transparency=0)
    files["palette_trns.png"] = (root / "palette_trns.png", False)
    Image.fromarray(_gray()).save(root / "gray_trns.png", transparency=7)
    files["gray_trns.png"] = (root / "gray_trns.png", False)
    Image.fromarray(rgb).save(root / "rgb_trns.png", transparency=(1, 2, 3))
    files["rgb_trns.png"] = (root / "rgb_trns.png", False)
    Image.fromarray(rgb).save(root / "rgb_exif.png", exif=_exif(6))
    files["rgb_exif.png"] = (root / "rgb_exif.png", False)
    Image.fromarray(_gray()).save(root / "gray_text.png", pnginfo=_text("Software", "segdoctor test"))
    files["gray_text.png"] = (root / "gray_text.png", True)  # a plain text chunk before the image data: fine
    Image.fromarray(_gray()).save(root / "gray_xmp.png", pnginfo=_text("XML:com.adobe.xmp", XMP.decode(), itxt=True))
    files["gray_xmp.png"] = (root / "gray_xmp.png", False)
    frames = [Image.fromarray(_gray()) for _ in range(2)]
    frames[0].save(root / "animated.png", save_all=True, append_images=frames[1:])
    files["animated.png"] = (root / "animated.png", False)
    # PNG written byte by byte: every filter type, bit depths Pillow does not write, interlace, chunk order
    files["w_gray8_filters.png"] = (png_file(root / "w_gray8_filters.png", _gray(), 8, 0), True)
    files["w_gray16_filters.png"] = (png_file(root / "w_gray16_filters.png", _gray(np.uint16, 65535), 16, 0), True)
    files["w_rgb8_filters.png"] = (png_file(root / "w_rgb8_filters.png", rgb, 8, 2), True)
    files["w_rgba8_filters.png"] = (png_file(root / "w_rgba8_filters.png", rgba, 8, 6), True)
    files["w_la8_filters.png"] = (png_file(root / "w_la8_filters.png", np.dstack([_gray(), _gray()]), 8, 4), True)
    for bits in (1, 2, 4):
        files[f"w_gray{bits}.png"] = (png_file(root / f"w_gray{bits}.png", _gray(top=2**bits - 1), bits, 0), False)
        files[f"w_palette{bits}.png"] = (png_file(root / f"w_palette{bits}.png", _gray(top=2**bits - 1), bits, 3,
                                                  palette=RNG.integers(0, 256, (2**bits, 3))), False)
    files["w_rgb16.png"] = (png_file(root / "w_rgb16.png", RNG.integers(0, 65536, (H, W, 3)), 16, 2), False)
    files["w_rgba16.png"] = (png_file(root / "w_rgba16.png", RNG.integers(0, 65536, (H, W, 4)), 16, 6), False)
    files["w_la16.png"] = (png_file(root / "w_la16.png", RNG.integers(0, 65536, (H, W, 2)), 16, 4), False)
    files["w_interlaced8.png"] = (png_file(root / "w_interlaced8.png", rgb, 8, 2, interlace=True), False)
    files["w_interlaced_mask.png"] = (png_file(root / "w_interlaced_mask.png", _mask(), 8, 0, interlace=True), False)
    files["w_exif_after.png"] = (png_file(root / "w_exif_after.png", _gray(), 8, 0, after=[(b"eXIf", _exif(8)[6:])]), False)
    files["w_text_after.png"] = (png_file(root / "w_text_after.png", _gray(), 8, 0,
                                          after=[(b"tEXt", b"Raw profile type exif\x00junk")]), False)
    files["w_private_after.png"] = (png_file(root / "w_private_after.png", _gray(), 8, 0, after=[(b"prVt", b"x")]), True)
    files["w_gamma_srgb.png"] = (png_file(root / "w_gamma_srgb.png", rgb, 8, 2,
                                          before=[(b"gAMA", struct.pack(">I", 45455)), (b"sRGB", b"\x00"),
                                                  (b"pHYs", struct.pack(">IIB", 2835, 2835, 1))]), True)
    files["w_rgb_suggested_palette.png"] = (png_file(root / "w_rgb_suggested_palette.png", rgb, 8, 2,
                                                     palette=RNG.integers(0, 256, (16, 3))), True)
    # JPEG
    for sub, name in ((0, "444"), (1, "422"), (2, "420")):
        pil(f"rgb_{name}.jpg", rgb, True, quality=90, subsampling=sub)
    pil("gray.jpeg", _gray(), True, quality=85)
    pil("rgb_progressive.jpg", rgb, True, quality=80, progressive=True, optimize=True)
    pil("mask.jpg", _mask((0, 255, 128)), True, quality=75)
    pil("rgb_exif6.jpg", rgb, True, exif=_exif(6))
    pil("rgb_xmp.jpg", rgb, True, xmp=XMP)
    pil("cmyk.jpg", rgb, False, mode="CMYK")
    Image.fromarray(rgb).save(root / "trailing.jpg")
    (root / "trailing.jpg").write_bytes((root / "trailing.jpg").read_bytes() + b"\x00\x00junk")
    files["trailing.jpg"] = (root / "trailing.jpg", False)
    # TIFF
    for comp in (None, "tiff_lzw", "tiff_adobe_deflate", "packbits"):
        tag = comp or "raw"
        pil(f"gray8_{tag}.tif", _gray(), True, compression=comp)
        pil(f"rgb8_{tag}.tif", rgb, True, compression=comp)
        pil(f"rgba8_{tag}.tif", rgba, True, compression=comp)
    pil("gray16.tif", _gray(np.uint16, 65535), True)
    pil("mask16.tif", _mask((0, 1, 300), np.uint16), True)
    pil("float32.tif", RNG.normal(0, 1, (H, W)).astype(np.float32), True)
    nan = RNG.normal(0, 1, (H, W)).astype(np.float32)
    nan[3, 4], nan[5, 6] = np.nan, np.inf
    pil("float32_nan.tif", nan, True)
    pil("gray_exif.tif", _gray(), False, exif=_exif(3))
    pil("gray_exif1.tiff", _gray(), True, exif=_exif(1))
    pil("rgb_jpeg.tif", rgb, False, compression="jpeg")
    pil("int32.tif", RNG.integers(-5, 5, (H, W)).astype(np.int32), False)
    pil("bilevel.tif", _gray() > 100, False)
    pil("cmyk.tif", rgb, False, mode="CMYK")
    import tifffile

    tifffile.imwrite(root / "gray16_be.tif", _gray(np.uint16, 65535), byteorder=">")
    files["gray16_be.tif"] = (root / "gray16_be.tif", False)
    tifffile.imwrite(root / "miniswhite.tif", _gray(), photometric="miniswhite")
    files["miniswhite.tif"] = (root / "miniswhite.tif", False)
    tifffile.imwrite(root / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate")
    files["planar.tif"] = (root / "planar.tif", False)
    tifffile.imwrite(root / "pages.tif", np.stack([_gray(), _gray()]))
    files["pages.tif"] = (root / "pages.tif", False)
    tifffile.imwrite(root / "tiled.tif", _gray(), tile=(16, 16))
    files["tiled.tif"] = (root / "tiled.tif", True)
    tifffile.imwrite(root / "float_predictor.tif", RNG.normal(0, 1, (H, W)).astype(np.float32), compression="zlib",
                     predictor=True)
    files["float_predictor.tif"] = (root / "float_predictor.tif", True)
    # formats without a fast decoder, for completeness
    pil("rgb.bmp", rgb, False)
    pil("mask.gif", _mask(), False)
    pil("rgb.webp", rgb, False, lossless=True)
    np.save(root / "mask.npy", _mask())
    files["mask.npy"] = (root / "mask.npy", False)
    return files


def _text(key: str, value: str, itxt: bool = False):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    (info.add_itxt if itxt else info.add_text)(key, value)
    return info


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return generated_files(tmp_path_factory.mktemp("codecs"))


def test_every_accepted_extension_is_covered(files):
    assert {p.suffix.lower() for p, _ in files.values()} >= IMAGE_EXTENSIONS


def test_the_fast_path_takes_exactly_the_files_it_can_decode_identically(files):
    for name, (path, fast) in files.items():
        if path.suffix.lower() in codecs.FAST_SUFFIXES:
            assert _takes_fast_path(path) == fast, name


def test_decoded_files_are_identical_to_pillows(files, monkeypatch):
    for name, (path, _) in files.items():
        fast, reference = _read_both(monkeypatch, path)
        _same(fast, reference, name)


def test_pair_records_are_identical_to_pillows(files, monkeypatch):
    names = sorted(files)
    masks = [n for n in names if n.startswith(("mask", "w_gray8", "gray8", "palette", "w_palette", "gray16"))]
    for i, name in enumerate(names):
        image = files[name][0]
        mask = files[masks[i % len(masks)]][0]
        fast, reference = _records(monkeypatch, image, mask)
        _same(fast, reference, f"{name} + {mask.name}")
        fast, reference = _records(monkeypatch, mask, image)  # every file judged as a mask too
        _same(fast, reference, f"{mask.name} + {name} (as mask)")


def _corruptions(data: bytes):
    n = len(data)
    for cut in sorted({8, 16, 33, 40, n // 3, n // 2, n - 40, n - 13, n - 12, n - 4, n - 2, n - 1}):
        if 0 < cut < n:
            yield f"cut{cut}", data[:cut]
    rng = np.random.default_rng(n)
    for k in range(12):
        b = bytearray(data)
        pos = int(rng.integers(8, n))
        b[pos] ^= int(rng.integers(1, 256))
        yield f"flip{pos}", bytes(b)
    yield "garbage_tail", data + b"\x00" * 7 + b"garbage"


@pytest.mark.parametrize("name", ["rgb8.png", "mask8.png", "gray16.png", "w_rgba8_filters.png", "rgb_420.jpg",
                                  "gray.jpeg", "rgb_progressive.jpg", "rgb8_raw.tif", "rgb8_tiff_lzw.tif",
                                  "float32.tif", "gray16.tif"])
def test_corrupt_files_get_the_same_record(files, monkeypatch, tmp_path, name):
    path = files[name][0]
    for label, data in _corruptions(path.read_bytes()):
        bad = tmp_path / f"{label}{path.suffix}"
        bad.write_bytes(data)
        fast, reference = _records(monkeypatch, bad, bad)
        _same(fast, reference, f"{name} {label}")


def test_codec_warnings_stay_quiet(tmp_path, caplog):
    # a bad CRC in an ancillary chunk: Pillow refuses the file, libpng only warns
    data = bytearray((png_file(tmp_path / "ok.png", _gray(), 8, 0)).read_bytes())
    chunk = b"gAMA" + struct.pack(">I", 45455)
    data[33:33] = struct.pack(">I", 4) + chunk + struct.pack(">I", (zlib.crc32(chunk) ^ 1) & 0xFFFFFFFF)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        with pytest.raises(readers.UnreadableFile):
            read_file(tmp_path / "bad.png")
        codecs._decode("png_decode", bytes(data))  # directly: the codec's warning is dropped while segdoctor decodes
    assert not [r for r in caplog.records if r.name == "imagecodecs"]


@pytest.mark.realdata
def test_real_datasets_give_identical_records(monkeypatch):
    root = realdata_path()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    assert paths
    taken = 0
    for path in paths:
        fast, reference = _records(monkeypatch, path, path)
        _same(fast, reference, str(path.relative_to(root)))
        taken += path.suffix.lower() in codecs.FAST_SUFFIXES and _takes_fast_path(path)
    assert taken >= len(paths) // 2  # most real files take the fast path: the test compares it, not Pillow with itself
