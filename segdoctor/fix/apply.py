"""Repairs one file in a worker process: decode, apply the planned steps, encode losslessly, describe the change.

A task is plain data (``FileTask.portable``) so that it runs the same in a local process pool and on a Dask
worker. The worker never writes: it returns the new file's bytes and a manifest entry, and the process
that owns the output folder writes them (a Dask worker on another machine cannot reach that folder).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from segdoctor.fix.binarise import binarise
from segdoctor.fix.colour import colours_to_ids, single_channel
from segdoctor.fix.encode import EncodeError, encode, format_for
from segdoctor.fix.orient import SWAPS_AXES, apply_exif_orientation, apply_transform, transpose
from segdoctor.fix.remap import remap_ids
from segdoctor.fix.snap import snap_to_colours, snap_to_values

#: values listed one by one in the manifest up to this many distinct values (colours: COLOURS_LISTED)
VALUES_LISTED = 256
COLOURS_LISTED = 64
_CHUNK = 1 << 20

#: a task's outcome: "repaired" (bytes to write), "unchanged" (keep the original file), "failed" (keep it, say why)
Result = tuple[int, str, "bytes | None", dict, "str | None"]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def value_set(a: np.ndarray) -> dict[str, Any]:
    """The distinct values of a label map (or colours of a colour mask), for the manifest."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] >= 3:
        rgb = np.clip(a[..., :3], 0, 255).astype(np.int64)
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        uniq, counts = np.unique(packed, return_counts=True)
        top = uniq[np.argsort(counts)[::-1][:COLOURS_LISTED]]
        return {"distinct_colours": int(len(uniq)),
                "colours": [[int(c >> 16) & 255, int(c >> 8) & 255, int(c) & 255] for c in sorted(top.tolist())]}
    if a.dtype == np.uint8:
        counts = np.bincount(a.ravel(), minlength=256)
        uniq = np.flatnonzero(counts)
    else:
        uniq = np.unique(a[np.isfinite(a)] if a.dtype.kind == "f" else a)
    values = [v.item() for v in uniq[:VALUES_LISTED]]
    out: dict[str, Any] = {"distinct": int(len(uniq)), "values": values}
    if a.ndim == 3:
        out["channels"] = int(a.shape[2])
    return out


def _palette_and_info(path: str, mode: str) -> tuple[list[int] | None, dict]:
    """The palette of a palette PNG (kept on rewrite, SD109) and the ICC profile of an image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            palette = im.getpalette() if mode == "P" else None
            info = {}
            if im.info.get("icc_profile"):
                info["icc_profile"] = im.info["icc_profile"]
            if mode == "P" and isinstance(im.info.get("transparency"), (int, bytes)):
                info["transparency"] = im.info["transparency"]
            return palette, info
    except Exception:  # a .npy or a TIFF Pillow cannot open: no palette to keep
        return None, {}


def _exif_without_orientation(path: str) -> bytes | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            exif.pop(0x0112, None)
            return exif.tobytes() if len(exif) else None
    except Exception:
        return None


def _shape_of(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    from segdoctor.io.readers import UnreadableFile, read_file

    try:
        a = read_file(path).array
    except UnreadableFile:
        return None
    return int(a.shape[0]), int(a.shape[1])


def _run_step(a: np.ndarray, op: str, params: dict, dec) -> tuple[np.ndarray, str | None]:
    """The array after one step, and a note when the step did something other than its plain action."""
    if op == "binarise":
        return binarise(a, threshold=params["threshold"], keep=params.get("keep", ())), None
    if op == "remap":
        return remap_ids(a, params["table"]), None
    if op == "single_channel":
        return single_channel(a), None
    if op == "colours_to_ids":
        if a.ndim != 3 or a.shape[2] < 3:
            return a, "already a single-channel map: left as it is"
        return colours_to_ids(a, params["table"], max_distance=params["max_distance"]), None
    if op == "snap":
        if a.dtype.kind == "f" and not np.all(a[np.isfinite(a)] == np.round(a[np.isfinite(a)])):
            raise EncodeError("soft (fractional) float values: threshold these masks yourself at your class boundary")
        if a.ndim == 3 and a.shape[2] >= 3 and params.get("colours") and not _equal_channels(a):
            return snap_to_colours(a, params["colours"]), None
        if params.get("values"):
            return snap_to_values(a, params["values"]), None
        return a, None
    if op == "transform":
        return apply_transform(a, params["name"]), None
    if op == "transpose":
        return transpose(a), None
    if op == "exif_if_tagged":
        o = int(dec.exif_orientation or 1)
        return (apply_exif_orientation(a, o), None) if o != 1 else (a, None)
    if op == "exif":
        o = int(dec.exif_orientation or 1)
        if o == 1:
            return a, "no orientation tag left to apply"
        mask_shape = _shape_of(params.get("mask"))
        h, w = a.shape[:2]
        if o in SWAPS_AXES and h != w and mask_shape == (h, w):
            # the mask matches the pixels as stored: turning the image would turn it away from its mask
            return a, f"orientation {o} swaps height and width but the mask matches the stored pixels: tag dropped, pixels kept"
        return apply_exif_orientation(a, o), f"orientation {o} applied"
    raise ValueError(f"unknown repair operation {op!r}")


def _changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels (not channel values) that differ between two arrays of one shape."""
    diff = a != b
    return int(np.count_nonzero(diff if diff.ndim == 2 else np.any(diff, axis=-1)))


def _equal_channels(a: np.ndarray) -> bool:
    rgb = a[..., :3]
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def repair_one(task: tuple, encode_output: bool = True) -> Result:
    """Run one file's repairs: (index, status, new file bytes or None, manifest entry, error or None)."""
    from segdoctor.io.readers import UnreadableFile, read_file

    index, source, rel, output, kind, steps = task
    entry: dict[str, Any] = {"source": rel, "output": output, "kind": kind,
                             "repairs": [{"code": c, "action": action} for c, _, _, action in steps]}
    try:
        entry["sha256_before"] = sha256_file(source)
        dec = read_file(source)
        before = np.asarray(dec.array)
        a = before
        notes = []
        by_code: dict[str, int] = {}
        for code, op, params, _ in steps:
            prev = a
            a, note = _run_step(a, op, params, dec)
            if note:
                notes.append(f"{code}: {note}")
            if a.shape == prev.shape and a is not prev:
                by_code[code] = by_code.get(code, 0) + _changed_pixels(prev, a)
        force = any(op in ("exif", "exif_if_tagged") and dec.exif_orientation != 1 for _, op, _, _ in steps) or (
            output != rel and any(op == "snap" and params.get("lossless") for _, op, params, _ in steps))
        changed = a.shape != before.shape or a.dtype != before.dtype or not np.array_equal(a, before)
        if notes:
            entry["notes"] = notes
        if not changed and not force:
            entry["output"] = rel
            return index, "unchanged", None, entry, None
        fmt = format_for(output)
        palette, info = _palette_and_info(source, dec.mode) if fmt == "PNG" else (None, {})
        if palette is not None and not (a.ndim == 2 and a.dtype == np.uint8):
            palette = None  # the repair made something other than palette indices
        if kind == "image" and fmt == "PNG":
            exif = _exif_without_orientation(source)
            if exif:
                info["exif"] = exif
        data = encode(a, fmt, palette=palette, png_info=info if fmt == "PNG" else None) if encode_output else None
        entry.update({
            "extension_changed": output != rel,
            "format_before": dec.format, "format_after": fmt,
            "shape_before": list(before.shape), "shape_after": list(a.shape),
            "dtype_before": str(before.dtype), "dtype_after": str(a.dtype),
        })
        if kind == "mask":
            entry["values_before"] = value_set(before)
            entry["values_after"] = value_set(a)
        if a.shape == before.shape:
            entry["pixels_changed"] = _changed_pixels(before, a)
        if by_code:
            entry["pixels_changed_by"] = by_code  # per repair whose input and output have the same shape
        if data is not None:
            entry["sha256_after"] = hashlib.sha256(data).hexdigest()
        return index, "repaired", data, entry, None
    except (UnreadableFile, EncodeError, ValueError, OSError, MemoryError) as exc:
        entry["output"] = rel
        return index, "failed", None, entry, str(exc) or type(exc).__name__
    except Exception as exc:  # a bug on one hostile file must not cost the whole output
        entry["output"] = rel
        return index, "failed", None, entry, f"{type(exc).__name__}: {exc}"


def repair_batch(tasks: Sequence[tuple], encode_output: bool = True) -> list[Result]:
    """The Dask map task: a batch of ``repair_one``."""
    return [repair_one(t, encode_output) for t in tasks]
