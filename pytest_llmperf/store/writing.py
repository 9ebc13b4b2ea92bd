"""Writing files so that nothing written is lost: whole or not at all, never over a file another
session just made, with the mode the user's umask asks for, and durable once written.

Every file is written to a temporary file beside its place and fsynced first.  Then either one
rename puts it in place (:func:`write_atomic`: a reader sees the old file or the new one, never
half of one), or a hard link does, which fails when the name is taken (:func:`create_new`: the
saved runs, where two sessions may pick the same number).  The directory is fsynced after
either, so the new name survives a power cut too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

__all__ = ["create_new", "unwritable", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a half-written file: a temporary
    file beside it, fsync, then one rename (the old file stays whole until then)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path, text)
    try:
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    _sync_directory(path.parent)


def create_new(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` only if no file has that name: False when one has (another
    session made it first), and nothing is replaced.  The file appears whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(path, text)
    try:
        os.link(partial, path)  # atomic, and refuses a name that exists (rename would replace)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        return _create_exclusive(path, text)  # a file system without hard links
    finally:
        with contextlib.suppress(OSError):
            os.unlink(partial)
    _sync_directory(path.parent)
    return True


def unwritable(path: Path, *, directory: bool) -> str | None:
    """Why ``path`` (a file, or with ``directory`` a directory) cannot be written, or None when
    it can: tried by making a nameless file where it would go (a permission, a read-only file
    system or a file where a directory must be all show), without leaving anything behind."""
    place = path if directory else path.parent
    try:
        if path.exists() and path.is_dir() != directory:
            return "it is a file, not a directory" if directory else \
                "it is a directory, not a file"
        while not place.exists() and place.parent != place:
            place = place.parent  # the directories that are missing would be made there
        if not place.is_dir():
            return f"{place} is a file, not a directory"
        with tempfile.TemporaryFile(dir=place):
            pass
    except OSError as exc:
        return f"{place} is not writable ({exc.strerror or exc})"
    return None


def _create_exclusive(path: Path, text: str) -> bool:
    """O_EXCL instead of a link: still never replaces, though a reader may see it growing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    _write_synced(fd, text, path)
    _sync_directory(path.parent)
    return True


def _partial(path: Path, text: str) -> str:
    """``text`` in a synced temporary file beside ``path``, with the mode a plain open would
    give (mkstemp makes 0600, and a report nobody else can read is a lost report)."""
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(partial)
        raise
    _write_synced(fd, text, Path(partial))
    return partial


def _write_synced(fd: int, text: str, path: Path) -> None:
    """``text`` into the open file ``fd`` (at ``path``) and onto the disk; on a failure the
    file is removed, so nothing half-written is left."""
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _sync_directory(directory: Path) -> None:
    """A rename or link is durable only once its directory is; where a directory cannot be
    opened or synced (some file systems), the file itself is already synced."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (setting and
    restoring it would race with other threads creating files)."""
    found = _umask_from_proc()
    if found is not None:
        return found
    current = os.umask(0o022)
    os.umask(current)
    return current


def _umask_from_proc() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None
