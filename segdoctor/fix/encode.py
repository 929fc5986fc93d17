"""Lossless encoding of a repaired array in the format its output file will have, verified by decoding it back.

PNG (8/16-bit grey, palette, RGB, RGBA), NPY (any numeric dtype, exactly) and TIFF (any dtype, through
tifffile). Every other source format (JPEG, WebP, GIF, BMP) is written as PNG under the same stem.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np

#: source extensions kept on output (lossless formats that hold any repaired mask); others become .png
KEPT_SUFFIXES = frozenset({".png", ".npy", ".tif", ".tiff"})


class EncodeError(ValueError):
    """The repaired array cannot be stored losslessly in the output's format."""


def output_name(rel: str) -> str:
    """The output path of a repaired file: the same path, or the same stem with .png for lossy formats."""
    p = PurePath(rel)
    return rel if p.suffix.lower() in KEPT_SUFFIXES else str(p.with_suffix(".png"))


def format_for(name: str) -> str:
    suffix = PurePath(name).suffix.lower()
    return {".npy": "NPY", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, "PNG")


def _png_image(a: np.ndarray, palette: Sequence[int] | None):
    from PIL import Image

    if a.dtype.kind not in "biu":
        raise EncodeError(f"{a.dtype} values cannot be stored as PNG")
    if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
        raise EncodeError(f"values {int(a.min())}..{int(a.max())} do not fit a 16-bit PNG")
    if a.ndim == 2:
        small = not a.size or int(a.max()) <= 255
        if palette is not None and small:
            im = Image.fromarray(a.astype(np.uint8))
            im.putpalette(list(palette))  # an 'L' image given a palette becomes a 'P' image, indices unchanged
            return im
        if a.dtype.itemsize == 1:  # uint8 (and bool) stay 8-bit; wider integers keep 16 bits
            return Image.fromarray(a.astype(np.uint8))
        return Image.fromarray(a.astype(np.uint16))
    if a.ndim == 3 and a.shape[2] in (3, 4) and (not a.size or int(a.max()) <= 255):
        return Image.fromarray(a.astype(np.uint8))
    if a.ndim == 3 and a.shape[2] == 2 and (not a.size or int(a.max()) <= 255):
        return Image.fromarray(a.astype(np.uint8))
    raise EncodeError(f"an array of shape {a.shape} and dtype {a.dtype} cannot be stored as PNG")


def encode(array: np.ndarray, fmt: str, *, palette: Sequence[int] | None = None,
           png_info: dict | None = None) -> bytes:
    """The bytes of ``array`` in ``fmt`` ('PNG', 'NPY' or 'TIFF'), checked to decode to the same values.

    ``palette``: a flat RGB list for index masks that were palette PNGs (kept as palette PNGs, SD109).
    ``png_info``: extra keyword arguments for Pillow's PNG writer (``icc_profile``, ``exif``).
    """
    a = np.ascontiguousarray(np.asarray(array))
    buf = io.BytesIO()
    if fmt == "NPY":
        np.save(buf, a, allow_pickle=False)
    elif fmt == "TIFF":
        import tifffile

        tifffile.imwrite(buf, a, photometric="rgb" if a.ndim == 3 and a.shape[2] in (3, 4) else "minisblack")
    elif fmt == "PNG":
        _png_image(a, palette).save(buf, format="PNG", **(png_info or {}))
    else:
        raise EncodeError(f"unknown output format {fmt}")
    data = buf.getvalue()
    back = decode_bytes(data, fmt)
    same_values = back.shape == a.shape and np.array_equal(back, a, equal_nan=a.dtype.kind == "f")
    if not same_values:
        raise EncodeError(f"the {fmt} writer did not keep the values of a {a.dtype} array of shape {a.shape}")
    return data


def decode_bytes(data: bytes, fmt: str) -> np.ndarray:
    """The array a reader gets back from ``data`` (palette PNGs as indices, as segdoctor reads them)."""
    buf = io.BytesIO(data)
    if fmt == "NPY":
        return np.load(buf, allow_pickle=False)
    if fmt == "TIFF":
        import tifffile

        return tifffile.imread(buf)
    from PIL import Image

    with Image.open(buf) as im:
        return np.array(im)
