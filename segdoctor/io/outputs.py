"""Where segdoctor may write, and how: output paths are checked before any analysis, files are replaced atomically.

Users point segdoctor at their only copy of a dataset, a model or a training log. An output path
(``--report``, ``--json``, ``fix --out``) that resolves to one of those inputs, symlinks and hard
links included, or that lies inside an input folder, is refused with one line (exit status 2)
before anything runs. A report is written to a temporary file in the same folder and renamed over
the old one, so a full disk or a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from segdoctor.errors import UsageError

#: option values that mean "do not write this output"
SKIP_VALUES = frozenset({"-", "none", ""})


class OutputError(UsageError):
    """An output path that must not or cannot be written (exit status 2)."""


def wants_output(value: str | os.PathLike | None) -> bool:
    """False for a missing option and for the values that mean "skip" ('-', 'none')."""
    return value is not None and str(value) not in SKIP_VALUES


def _is_url(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isalnum() and head.lower() != "file"


def _local(text: str) -> str:
    return text[len("file://"):] if text.lower().startswith("file://") else text


def output_path(value: str | os.PathLike) -> Path:
    """The absolute file an output option names: ``~`` expanded (a shell leaves ``--report=~/x.html`` as it
    is), symlinks followed, so that the write lands where an ``open(path, "w")`` would."""
    return Path(os.path.realpath(Path(str(value)).expanduser()))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # same device and inode: hard links and symlinks alike
    except OSError:
        return False


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.relative_to(folder)
        return True
    except ValueError:
        return False


def _check_writable_folder(flag: str, value: str, folder: Path) -> None:
    if not folder.is_dir():
        raise OutputError(f"{flag} {value}: the folder {folder} does not exist; expected a path in an existing folder.")
    # access(2) answers for the effective user and reports a read-only mount (EROFS) even to root, without
    # creating anything in the folder (its mtime stays as it was)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {value}: cannot write in {folder} (permission denied or read-only file system); "
                          f"expected a writable folder, or '{flag} none' to skip this output.")


def guard_outputs(outputs: Sequence[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> dict[str, Path]:
    """Refuse every output that would destroy an input or cannot be written; return ``{flag: resolved path}``.

    ``outputs``: (option, value) pairs such as ``("--report", "r.html")``; skipped values are left out.
    ``inputs``: (option, path) pairs of everything the run reads, files or folders; URLs are ignored.
    An output is refused when it is the same file as an input (hard links included), lies inside an
    input folder, is the same path as another output, is a folder or a special file, or its folder is
    missing or not writable. Raises ``OutputError`` (exit status 2) with one line naming the path.
    """
    resolved_inputs: list[tuple[str, str, Path]] = []
    for flag, value in inputs:
        if value is None or not str(value) or _is_url(str(value)):
            continue
        resolved_inputs.append((flag, str(value), output_path(_local(str(value)))))
    chosen: dict[str, Path] = {}
    for flag, value in outputs:
        if not wants_output(value):
            continue
        text = str(value)
        target = output_path(text)
        for other_flag, other in chosen.items():
            if other == target or _same_file(other, target):
                raise OutputError(f"{flag} {text}: the same file as {other_flag}; expected two different paths.")
        for in_flag, in_value, source in resolved_inputs:
            label = f"{in_flag} {in_value}" if in_flag.startswith("--") else f"the input {in_value}"
            if target == source or _same_file(target, source):
                raise OutputError(f"{flag} {text}: is {label}; writing there would destroy it. "
                                  "Expected a path outside everything segdoctor reads.")
            if source.is_dir() and _inside(target, source):
                raise OutputError(f"{flag} {text}: lies inside {label}; segdoctor never writes into what it reads. "
                                  "Expected a path outside that folder.")
        if target.exists() or target.is_symlink():
            mode = os.stat(target).st_mode if target.exists() else 0
            if stat.S_ISDIR(mode):
                raise OutputError(f"{flag} {text}: is a folder; expected a file path such as {Path(text) / 'report.html'}.")
            if not stat.S_ISREG(mode):
                raise OutputError(f"{flag} {text}: is not a regular file (a device, pipe or socket); expected a file path.")
        _check_writable_folder(flag, text, target.parent)
        chosen[flag] = target
    return chosen


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The old file stays intact until the new one is complete; on any failure the temporary file is
    removed and ``OutputError`` names the path and the reason. The new file gets the permissions a
    plain ``open(path, "w")`` would give it (the umask's), or the old file's when it replaces one.
    """
    target = output_path(path)
    folder = target.parent
    try:
        old_mode = stat.S_IMODE(os.stat(target).st_mode) if target.exists() else None
    except OSError:
        old_mode = None
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if old_mode is None:
            umask = os.umask(0)
            os.umask(umask)
            old_mode = 0o666 & ~umask
        os.chmod(tmp_name, old_mode)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"{path}: could not write the file ({reason}); the previous file, if any, is unchanged.") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return target


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
