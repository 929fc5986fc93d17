"""The fixed copy on disk: where it may go, how it is built, and how it appears all at once.

``check_out_folder`` refuses an ``--out`` that is, contains or lies inside the dataset, an existing
non-empty folder (``--overwrite`` replaces only a previous ``segdoctor fix`` output), and a folder
segdoctor cannot write in. ``Staging`` builds the copy in a hidden sibling folder of ``--out`` and
renames it into place at the end, so that a failure (a full disk, a read-only file system, Ctrl-C)
leaves no half-written folder that looks complete.

Untouched files are hard links where the file system allows (``--copy`` forces copies) and copies
otherwise; new files are only ever created (``open(..., 'xb')`` in a fresh folder), never opened for
writing when they exist, so nothing can be written *through* a hard link into an original.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from segdoctor.io.outputs import OutputError

MANIFEST_NAME = "segdoctor-fix.json"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


def check_out_folder(data: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """The resolved ``--out`` folder, or ``OutputError`` (one line, exit status 2) when it must not be written."""
    text = str(out)
    if "://" in text and not text.lower().startswith("file://"):
        raise OutputError(f"--out {text}: a URL; segdoctor fix writes to a local folder.")
    target = Path(os.path.realpath(Path(text).expanduser()))
    source = Path(os.path.realpath(Path(str(data)).expanduser()))
    if _inside(target, source):
        raise OutputError(f"--out {text}: {'is' if target == source else 'lies inside'} the dataset {data}; "
                          "segdoctor fix never writes into what it reads. Expected a folder outside it, e.g. "
                          f"{source.parent / (source.name + '-fixed')}.")
    if _inside(source, target):
        raise OutputError(f"--out {text}: contains the dataset {data}; expected a new folder outside it, e.g. "
                          f"{source.parent / (source.name + '-fixed')}.")
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise OutputError(f"--out {text}: is a file; expected a new or empty folder.")
        try:
            entries = os.listdir(target)
        except OSError as exc:
            raise OutputError(f"--out {text}: cannot be listed ({_reason(exc)}); expected a new or empty folder.") from None
        if entries and not overwrite:
            raise OutputError(f"--out {text}: exists and is not empty ({len(entries)} entries); choose a new folder, "
                              "or pass --overwrite to replace a previous segdoctor fix output.")
        if entries and not (target / MANIFEST_NAME).is_file():
            raise OutputError(f"--out {text}: --overwrite replaces only a previous segdoctor fix output (a folder "
                              f"holding {MANIFEST_NAME}); this folder holds other files, which segdoctor never deletes.")
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"--out {text}: the folder {parent} does not exist; expected a path in an existing folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {text}: cannot write in {parent} (permission denied or read-only file system); "
                          "expected a writable folder.")
    return target


@dataclass
class CopyStats:
    linked: int = 0
    copied: int = 0
    written: int = 0
    skipped: list[str] = field(default_factory=list)  # special files (FIFOs, sockets, devices) not copied


class Staging:
    """A hidden sibling folder of the output that becomes the output in one rename (``commit``)."""

    def __init__(self, target: Path, *, hard_links: bool = True) -> None:
        self.target = target
        self.hard_links = hard_links
        self.stats = CopyStats()
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{target.name}.segdoctor-", dir=target.parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)  # a plain folder once renamed (mkdtemp makes it private)
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError, where: str = "") -> OutputError:
        extra = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
        return OutputError(f"--out {self.target}: could not write{(' ' + where) if where else ''} "
                           f"({_reason(exc)}){extra}; nothing was written there.")

    # -- the copy of the dataset -------------------------------------------------------------------
    def copy_tree(self, root: Path, skip: Collection[str]) -> None:
        """Every file under ``root`` (hidden ones too), at the same relative path, except those in ``skip``
        (relative POSIX paths of the files that repairs replace). Folder links are followed (their files
        copied), with the same loop guard as discovery; file links become real files."""
        skip = set(skip)
        seen: set[tuple[int, int]] = set()
        for own in (self.path, self.target):  # a folder link inside the dataset must not lead into the output
            try:
                st = os.stat(own)
                seen.add((st.st_dev, st.st_ino))
            except OSError:
                pass
        stack = [(Path(root), "")]
        while stack:
            folder, rel = stack.pop()
            try:
                st = folder.stat()
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot be read ({_reason(exc)}); segdoctor fix copies the whole "
                                  "dataset and needs every folder readable.") from None
            self._mkdir(rel)
            for e in entries:
                sub = f"{rel}/{e.name}" if rel else e.name
                try:
                    is_dir = e.is_dir()  # follows links
                except OSError:
                    is_dir = False
                if is_dir:
                    if e.is_symlink() and _links_to_ancestor(e.path, folder):
                        self.stats.skipped.append(sub + "/ (a link to a folder above it)")
                        continue
                    stack.append((Path(e.path), sub))
                    continue
                if sub in skip:
                    continue
                self.place(Path(e.path), sub)

    def _mkdir(self, rel: str) -> None:
        try:
            (self.path / rel).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, rel) from None

    def place(self, source: Path, rel: str) -> None:
        """An untouched file at ``rel``: a hard link to ``source`` (its target, for a link) or a copy."""
        dest = self.path / rel
        self._mkdir(str(Path(rel).parent) if "/" in rel else "")
        try:
            mode = os.stat(source).st_mode
        except FileNotFoundError:
            if os.path.islink(source):  # a dangling link: recreated as it is
                try:
                    os.symlink(os.readlink(source), dest)
                except OSError as exc:
                    raise self._error(exc, rel) from None
                self.stats.copied += 1
                return
            raise OutputError(f"{source}: vanished while being copied; run segdoctor fix again.") from None
        except OSError as exc:
            raise OutputError(f"{source}: cannot be read ({_reason(exc)}).") from None
        if not stat.S_ISREG(mode):
            self.stats.skipped.append(f"{rel} (not a regular file)")
            return
        if self.hard_links:
            try:
                os.link(source, dest, follow_symlinks=True)
                self.stats.linked += 1
                return
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
                    raise self._error(exc, rel) from None
                # another file system, links not permitted ... : copy instead
        try:
            shutil.copy2(source, dest, follow_symlinks=True)
        except OSError as exc:
            if exc.filename is not None and Path(exc.filename) == Path(source):
                raise OutputError(f"{source}: cannot be read ({_reason(exc)}).") from None
            raise self._error(exc, rel) from None
        self.stats.copied += 1

    def write(self, rel: str, data: bytes) -> None:
        """A new file (a repaired one, or the manifest) at ``rel``; created, never overwritten."""
        self._mkdir(str(Path(rel).parent) if "/" in rel else "")
        try:
            with open(self.path / rel, "xb") as fh:
                fh.write(data)
        except OSError as exc:
            raise self._error(exc, rel) from None
        self.stats.written += 1

    def open_new(self, rel: str):
        """A new file opened for writing (streamed manifests)."""
        try:
            return open(self.path / rel, "x", encoding="utf-8")
        except OSError as exc:
            raise self._error(exc, rel) from None

    # -- the switch --------------------------------------------------------------------------------
    def commit(self) -> None:
        """Make the staging folder the output: the previous (empty, or earlier fix) folder goes in one step."""
        target = self.target
        old = None
        try:
            if target.exists():
                if any(target.iterdir()):
                    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.segdoctor-old-", dir=target.parent))
                    os.rmdir(old)
                    os.rename(target, old)
                else:
                    os.rmdir(target)
            try:
                os.rename(self.path, target)
            except OSError:
                if old is not None:
                    os.rename(old, target)  # put the previous output back
                raise
        except OSError as exc:
            raise self._error(exc) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)  # unlinks names only: hard-linked originals stay

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _links_to_ancestor(link: str, folder: Path) -> bool:
    target = os.path.realpath(link)
    here = os.path.realpath(folder)
    return here == target or here.startswith(target.rstrip(os.sep) + os.sep)
