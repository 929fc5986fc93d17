"""The fastest correct pixel decoder per file: imagecodecs where it returns Pillow's pixels, else none.

``segdoctor.io.readers`` opens every image with Pillow, which reads the headers only (format, mode,
palette, EXIF) and so fills the ``Decoded`` facts the checks read. Then, for the common encodings,
the pixels come from imagecodecs (libpng, libjpeg-turbo, libtiff with zlib-ng/libdeflate), which
decodes straight into a numpy array: no Pillow internal 32-bit pixel store and no copy out of it.
Measured per 512x512 file on 2 cores: RGB PNG 1.1-1.7x faster, 8-bit PNG masks 1.2-1.7x, JPEG
1.5-1.8x, uncompressed TIFF about 10x (``benchmarks/bench_check_data.py`` for the whole command).

A file takes this path only where the two decoders provably agree, which ``tests/test_codecs.py``
checks record by record against the Pillow path on every mode and bit depth the readers accept:

- PNG: 8-bit L/RGB/LA/RGBA and 16-bit L, not interlaced, no tRNS (libpng would add an alpha channel),
  a single image (no APNG), no EXIF/XMP anywhere (Pillow reads those from chunks it finds only while
  decoding), and nothing after the image data that Pillow would parse.
- JPEG (not MPO): L or RGB, no Adobe APP14 marker (its colour transform), ending with an EOI marker
  (Pillow refuses a truncated file; libjpeg would fill it in).
- TIFF: one page, L/RGB/RGBA (8-bit), I;16 (little-endian), F (float32), BlackIsZero or RGB,
  contiguous planes, uncompressed/LZW/deflate/PackBits, no EXIF orientation (Pillow turns such a
  page upright while decoding).

PNG pixels come from ``segdoctor.io.pngfast`` (libdeflate and a compiled unfilter, 1.6-1.7x as fast as
libpng) where segdoctor's C helpers are built, else from libpng. A PNG whose headers hold nothing
Pillow would report or refuse (``plain_png``: most PNGs) skips Pillow's header parse as well.

Palette PNGs (read as indices), 1/2/4-bit, 16-bit colour (Pillow reduces it to 8 bits), CMYK,
multi-page TIFFs, GIF, BMP, WebP and everything else keep Pillow's (or tifffile's) decoding. Any
surprise from a codec (an error, an unexpected shape or dtype) sends the file to Pillow too, so an
unreadable file gets Pillow's reason, as before.
"""

from __future__ import annotations

import functools
import logging
import struct
import threading
from typing import Any

import numpy as np

from segdoctor import speedups
from segdoctor.io import pngfast

#: files up to this size are read into memory for the fast decoders (a larger one streams through Pillow)
MAX_FAST_BYTES = 64 << 20

#: suffixes whose files may take the fast path (the format Pillow finds decides)
FAST_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})

_PNG_MODES = {(8, 0): ("L", 1), (16, 0): ("I;16", 1), (8, 2): ("RGB", 3), (8, 4): ("LA", 2), (8, 6): ("RGBA", 4)}
#: info keys through which Pillow finds an EXIF orientation in a PNG
_PNG_EXIF_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")

_TIFF_COMPRESSIONS = frozenset({1, 5, 8, 32946, 32773})  # none, LZW, Adobe deflate, deflate, PackBits
# mode -> (photometric, bits per sample, sample format, channels, dtype)
_TIFF_MODES = {
    "L": (1, (8,), 1, 1, np.uint8),
    "I;16": (1, (16,), 1, 1, np.uint16),
    "F": (1, (32,), 3, 1, np.float32),
    "RGB": (2, (8, 8, 8), 1, 3, np.uint8),
    "RGBA": (2, (8, 8, 8, 8), 1, 4, np.uint8),
}

_local = threading.local()
_filter_installed = False


class _QuietCodec(logging.Filter):
    """Drops imagecodecs' warnings (libpng's "CRC error", "known incorrect sRGB profile" ...) while segdoctor
    decodes: a file the codec cannot decode goes to Pillow, whose reason is the one reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_local, "quiet", False)


def _codecs():
    global _filter_installed
    import imagecodecs

    if not _filter_installed:
        logging.getLogger("imagecodecs").addFilter(_QuietCodec())
        _filter_installed = True
    return imagecodecs


def preload() -> None:
    """Import the decoders now (before forking workers, so that each worker does not pay ~25 ms)."""
    try:
        codecs = _codecs()
        codecs.png_decode, codecs.jpeg8_decode, codecs.tiff_decode  # noqa: B018  (imagecodecs loads lazily)
        codecs.deflate_decode, codecs.deflate_crc32  # noqa: B018  (segdoctor.io.pngfast)
    except Exception:  # not installed or broken: every file goes through Pillow
        pass


def _decode(name: str, data: bytes) -> np.ndarray:
    fn = getattr(_codecs(), name)
    _local.quiet = True
    try:
        return fn(data)
    finally:
        _local.quiet = False


def orientation(im: Any) -> int:
    """The EXIF orientation Pillow reports (1 when there is none or it cannot be read)."""
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def fast_pixels(im: Any, fmt: str, data: bytes) -> tuple[np.ndarray, int] | None:
    """(pixels, EXIF orientation) decoded by imagecodecs for an image Pillow has opened (headers read, pixels
    not), or None when this file must be decoded by Pillow. Never raises."""
    try:
        if fmt == "PNG":
            return _png(im, data)
        if fmt == "JPEG":
            return _jpeg(im, data)
        if fmt == "TIFF":
            return _tiff(im, data)
    except Exception:
        return None
    return None


def _expected(a: np.ndarray, height: int, width: int, channels: int, dtype: Any) -> bool:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return a.shape == shape and a.dtype == np.dtype(dtype)


# --- PNG ------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _pillow_png_chunks() -> frozenset[bytes]:
    """Chunk types Pillow parses (after the image data too, while decoding): one of those after IDAT may
    change what Pillow reports, so such a file stays with Pillow."""
    from PIL import PngImagePlugin

    return frozenset(n[len("chunk_"):].encode("ascii") for n in dir(PngImagePlugin.PngStream) if n.startswith("chunk_"))


def _png_image_data_is_plain(data: bytes) -> bool:
    """Contiguous IDAT chunks, then IEND, with nothing Pillow parses in between; every chunk complete."""
    parsed = _pillow_png_chunks()
    pos, n = 8, len(data)
    seen_idat = after_idat = False
    while pos + 8 <= n:
        length, cid = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > n:
            return False
        if cid == b"IDAT":
            if after_idat:
                return False
            seen_idat = True
        elif cid == b"IEND":
            return seen_idat
        elif seen_idat:
            after_idat = True
            if cid in parsed:
                return False
        pos += 12 + length
    return False


#: chunks Pillow parses before the image data without reporting anything segdoctor reads, each with the
#: shortest length it accepts (it raises "Truncated ... chunk" below that)
_PILLOW_QUIET_CHUNKS = {b"PLTE": 0, b"gAMA": 4, b"sRGB": 1, b"pHYs": 9, b"cHRM": 32}


def plain_png(data: bytes, max_pixels: int) -> tuple[np.ndarray, str] | None:
    """(pixels, Pillow's mode) of a PNG whose headers hold nothing Pillow would report or refuse, decoded
    without opening it with Pillow at all; None for every other file (it then takes the usual path).

    Pillow's header parse reads every chunk before the image data, verifies its CRC and fills ``info``.
    A file qualifies when each of those chunks is one Pillow ignores (bKGD, tIME, sBIT ...) or one
    of ``_PILLOW_QUIET_CHUNKS`` long enough for Pillow, every CRC there is right, nothing after the data
    is a chunk Pillow parses, the mode is one ``_png`` decodes, and the size is within ``max_pixels``:
    then Pillow would open it with that mode, no transparency, EXIF, XMP or frames, and ``_png`` would
    return exactly these pixels (``tests/test_pngfast.py`` compares the two paths)."""
    if not speedups.available():
        return None
    try:
        lay = pngfast.layout(data)
        if lay is None or lay.width * lay.height > max_pixels:
            return None
        from PIL import PngImagePlugin

        mode = PngImagePlugin._MODES.get((lay.depth, lay.colour), (None,))[0]
        if mode is None or _PNG_MODES.get((lay.depth, lay.colour), (None,))[0] != mode:
            return None
        parsed = _pillow_png_chunks()
        for cid, offset, length in lay.before:
            shortest = _PILLOW_QUIET_CHUNKS.get(cid)
            if (cid in parsed and (shortest is None or length < shortest)) or not pngfast.crc_ok(data, offset, length):
                return None
        if any(cid in parsed for cid in lay.after):
            return None
        a = pngfast.decode(data, lay)
    except Exception:
        return None
    return None if a is None else (a, mode)


def _png(im: Any, data: bytes) -> tuple[np.ndarray, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height, bit_depth, color_type, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    mode, channels = _PNG_MODES.get((bit_depth, color_type), (None, 0))
    if mode is None or mode != im.mode or interlace != 0 or (width, height) != im.size:
        return None
    if "transparency" in im.info or any(k in im.info for k in _PNG_EXIF_KEYS) or getattr(im, "n_frames", 1) != 1:
        return None
    if not _png_image_data_is_plain(data):
        return None
    a = pngfast.decode(data)  # libdeflate and the compiled unfilter, where installed
    if a is None:
        a = _decode("png_decode", data)
    if not _expected(a, height, width, channels, np.uint16 if bit_depth == 16 else np.uint8):
        return None
    return a, 1  # no EXIF or XMP anywhere in the file: Pillow reports orientation 1


# --- JPEG -----------------------------------------------------------------------------------------

def _jpeg(im: Any, data: bytes) -> tuple[np.ndarray, int] | None:
    if im.mode not in ("L", "RGB") or "adobe" in im.info or not data.endswith(b"\xff\xd9"):
        return None
    width, height = im.size
    turn = orientation(im)  # JPEG keeps EXIF/XMP in its header segments: Pillow has read them
    a = _decode("jpeg8_decode", data)
    if not _expected(a, height, width, 1 if im.mode == "L" else 3, np.uint8):
        return None
    return a, turn


# --- TIFF -----------------------------------------------------------------------------------------

def _tiff_single_page(data: bytes) -> bool:
    """A classic (not Big) TIFF whose first image file directory is its last."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack_from(order + "H", data, 2)[0] != 42:
        return False
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    count = struct.unpack_from(order + "H", data, ifd)[0]
    end = ifd + 2 + 12 * count
    if end + 4 > len(data):
        return False
    return struct.unpack_from(order + "I", data, end)[0] == 0


def _tag(tags: Any, code: int, default: Any) -> Any:
    value = tags.get(code, default)
    return tuple(value) if isinstance(value, (tuple, list)) else value


def _tiff(im: Any, data: bytes) -> tuple[np.ndarray, int] | None:
    spec = _TIFF_MODES.get(im.mode)
    if spec is None or not _tiff_single_page(data):
        return None
    photometric, bits, sample_format, channels, dtype = spec
    tags = im.tag_v2
    bits_found = _tag(tags, 258, (1,))
    if isinstance(bits_found, int):
        bits_found = (bits_found,) * channels
    formats = _tag(tags, 339, 1)
    formats = set(formats) if isinstance(formats, tuple) else {formats}
    if (_tag(tags, 262, None) != photometric or bits_found != bits or formats != {sample_format}
            or _tag(tags, 259, 1) not in _TIFF_COMPRESSIONS or _tag(tags, 284, 1) != 1 or _tag(tags, 266, 1) != 1):
        return None
    extra = _tag(tags, 338, ())
    extra = extra if isinstance(extra, tuple) else (extra,)
    if extra != ((2,) if channels == 4 else ()):  # RGBA only with unassociated alpha ("RGBA" in Pillow)
        return None
    width, height = im.size
    if orientation(im) != 1:  # Pillow's libtiff decoding turns such a page upright; the codec does not
        return None
    a = _decode("tiff_decode", data)
    if not _expected(a, height, width, channels, dtype):
        return None
    return a, 1
