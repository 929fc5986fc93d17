"""Datasets behind fsspec URLs (s3://, gs://, memory://, file://...): listing for discovery, and reading.

Plain local paths never come here: they keep the ``os.scandir`` / ``Image.open(path)`` fast path.
A URL root becomes a ``RemotePath``, which offers the small part of the ``pathlib`` interface that
discovery and pairing use, so the pairing rules are the same code for both. Files travel to worker
processes (and Dask workers) as URL strings; each worker opens them through fsspec itself, with the
credentials of its own environment.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from functools import total_ordering
from pathlib import PurePath, PurePosixPath
from typing import Any

import numpy as np

from segdoctor.errors import DatasetError

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")

#: a remote file larger than this is not fetched (a segmentation sample is megabytes, not gigabytes)
MAX_REMOTE_BYTES = 2**31


def is_url(path: object) -> bool:
    """True for ``scheme://...`` strings and ``RemotePath``; False for plain local paths."""
    if isinstance(path, RemotePath):
        return True
    return isinstance(path, str) and bool(_URL_RE.match(path))


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise DatasetError("reading datasets from URLs needs fsspec: pip install 'segdoctor[dask]' "
                           "(plus s3fs, gcsfs, adlfs ... for the storage you use).") from None
    return fsspec


def url_to_fs(url: str) -> tuple[Any, str]:
    """(filesystem, path inside it) for ``url``; a one-line DatasetError when the scheme is unusable."""
    fsspec = _fsspec()
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        # fsspec says which package a protocol needs ("Install s3fs to access S3")
        raise DatasetError(f"{url}: cannot open this URL ({exc}).") from None


@total_ordering
class RemotePath:
    """A file or folder inside an fsspec filesystem, with the pathlib surface discovery relies on.

    ``str()`` is the full URL, so anything that stringifies a path (the scan, report thumbnails)
    hands on something ``read_file`` can open anywhere.
    """

    __slots__ = ("fs", "path")

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        path = path.rstrip("/") if path not in ("/", "") else path
        self.path = path

    @classmethod
    def from_url(cls, url: str) -> RemotePath:
        fs, path = url_to_fs(url)
        return cls(fs, path)

    # pure path operations -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix if self.name else ""

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem if self.name else ""

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self.path).parts

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.fs, posixpath.dirname(self.path))

    @property
    def parents(self) -> tuple[RemotePath, ...]:
        out, p = [], self
        while p.path not in ("", "/") and p.parent.path != p.path:
            p = p.parent
            out.append(p)
        return tuple(out)

    def __truediv__(self, other: str | PurePath) -> RemotePath:
        rel = PurePosixPath(str(other).replace("\\", "/")).as_posix()
        return RemotePath(self.fs, posixpath.normpath(posixpath.join(self.path, rel)))

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        if not isinstance(other, RemotePath) or other.fs is not self.fs:
            raise ValueError(f"{self} is not inside {other}")
        return PurePosixPath(self.path).relative_to(PurePosixPath(other.path))

    def as_posix(self) -> str:
        return str(self)

    def is_absolute(self) -> bool:
        return True

    def expanduser(self) -> RemotePath:
        return self

    def resolve(self) -> RemotePath:
        return self  # object stores have no links; file:// loops are bounded by the depth limit

    # filesystem queries -----------------------------------------------------------------------
    def exists(self) -> bool:
        try:
            return bool(self.fs.exists(self.path))
        except Exception as exc:  # credentials, network: "no such folder" would send the user the wrong way
            raise DatasetError(f"{self}: cannot reach it ({type(exc).__name__}: {exc}).") from None

    def is_dir(self) -> bool:
        try:
            return bool(self.fs.isdir(self.path))
        except Exception:
            return False

    def entries(self) -> tuple[list[RemotePath], list[RemotePath]]:
        """(sub-folders, files) directly inside this folder, hidden names left out, sorted."""
        try:
            listing = self.fs.ls(self.path, detail=True)
        except Exception:
            return [], []
        dirs: list[RemotePath] = []
        files: list[RemotePath] = []
        for entry in listing:
            child = RemotePath(self.fs, entry["name"])
            if not child.name or child.name.startswith(".") or child.path == self.path:
                continue
            (dirs if entry.get("type") == "directory" else files).append(child)
        return sorted(dirs), sorted(files)

    # identity ---------------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def _key(self) -> tuple[str, str]:
        return (str(self.fs.protocol), self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and self._key() == other._key()

    def __lt__(self, other: RemotePath) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def list_files(folder: RemotePath, *, recursive: bool, max_depth: int, accept: Callable[[str], bool]) -> list[RemotePath]:
    """Files below ``folder`` whose name ``accept`` takes, down to ``max_depth`` folder levels."""
    out: list[RemotePath] = []
    seen: set[RemotePath] = set()
    stack = [(folder, 0)]
    while stack:
        d, depth = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        dirs, files = d.entries()
        out.extend(f for f in files if accept(f.name))
        if recursive and depth < max_depth:
            stack.extend((s, depth + 1) for s in dirs)
    return sorted(out)


def subdirs(folder: RemotePath) -> list[RemotePath]:
    return folder.entries()[0]


def open_url(url: str | RemotePath):
    """A seekable binary file object for ``url`` and its size in bytes."""
    fs, path = (url.fs, url.path) if isinstance(url, RemotePath) else url_to_fs(url)
    size = fs.size(path)
    return fs.open(path, "rb"), int(size or 0)


def load_npy(stream, *, max_elements: int) -> np.ndarray:
    """``np.load`` from a stream, refusing headers that claim more elements than allowed or than the file holds.

    A local ``.npy`` is memory-mapped, so a lying header costs nothing; a stream would allocate the
    claimed size before noticing the data is missing.
    """
    from numpy.lib import format as npy_format

    start = stream.tell()
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(stream)
    else:
        shape, _, dtype = npy_format.read_array_header_2_0(stream)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if n > max_elements:
        raise ValueError(f"header claims shape {tuple(shape)}, above the size limit")
    stream.seek(start)
    return np.load(stream, allow_pickle=False)
