"""One writer per run directory, and writes that fail before the work rather than after it (docs/results.md,
'Run directory').

``neft train`` and ``neft evaluate`` hold a lock file beside the run directory (``.NAME.neft-lock`` in its parent,
so that replacing the directory keeps it) while they write it: a second process that would write the same
directory is refused while the first runs, never left to replace its files. A lock whose process is gone (killed,
crashed) is taken over. Whether the directory can be written is checked up front, before the Monte Carlo or
training work, so a read-only folder ends in one clear error instead of a lost evaluation.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["RunLockedError", "hold", "lock_path", "check_writable", "disk_error", "staged_writes"]


class RunLockedError(FileExistsError):
    """Another live process holds the run directory's lock."""


def lock_path(directory: str | Path) -> Path:
    """The lock file of a run directory: ``.NAME.neft-lock`` beside it (any spelling of the path, one lock)."""
    directory = Path(os.path.abspath(directory))
    return directory.parent / f".{directory.name}.neft-lock"


def disk_error(path: str | Path, error: OSError) -> OSError:
    """An ``OSError`` for a failed write of ``path`` whose message says what to do (one line, the path named): for a
    file where a folder must be (``path`` or a folder above it), to give a folder instead."""
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        where = "it is" if error.errno == errno.EEXIST else "a folder above it is"
        failure = OSError(f"cannot write {str(path)!r}: {where} a file, not a folder; give the path of a folder "
                          "(a new one, or one that exists)")
        failure.errno = error.errno
        return failure
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EDQUOT: "the disk quota is exceeded"}.get(error.errno, error.strerror or str(error))
    failure = OSError(f"cannot write {str(path)!r}: {reason}; free space or make it writable, or choose another "
                      "directory")
    failure.errno = error.errno  # the message alone, without the "[Errno N]" prefix
    return failure


@contextlib.contextmanager
def staged_writes() -> Iterator[Callable[[str | Path], Path]]:
    """Write several files all or none: inside the block, ``stage(path)`` returns a hidden temporary
    ``.{stem}.tmp{suffix}`` beside ``path`` to write instead; when the block ends, each temporary replaces its path
    in the order staged (stage the file that marks the whole as finished last). When the block raises, every
    temporary is removed and no path is touched, so a failed write (full disk) leaves nothing behind that would
    block the same command's rerun.

    Raises:
        OSError: a write failed, from :func:`disk_error` naming the file being written (the folder of the first
            staged file when the error does not say); other errors pass unchanged.
    """
    staged: list[tuple[Path, Path]] = []

    def stage(path: str | Path) -> Path:
        path = Path(path)
        staged.append((path.with_name(f".{path.stem}.tmp{path.suffix}"), path))
        return staged[-1][0]

    try:
        yield stage
        for temporary, path in staged:
            temporary.replace(path)
    except BaseException as error:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            named = {str(temporary): path for temporary, path in staged}
            where = named.get(str(error.filename), staged[0][1].parent if staged else error.filename)
            raise disk_error(where, error) from None
        raise


def check_writable(directory: str | Path) -> None:
    """Create and delete a small file in ``directory`` (which must exist).

    Raises:
        OSError: it cannot be written (read-only, no permission, full disk), from :func:`disk_error`.
    """
    try:
        handle, name = tempfile.mkstemp(dir=directory, prefix=".neft-write-check-")
        try:
            os.write(handle, b"neft")
        finally:
            os.close(handle)
            os.unlink(name)
    except OSError as error:
        raise disk_error(directory, error) from None


def _alive(owner: dict) -> bool:
    """Whether the process that wrote a lock still runs (assumed so on another host, where it cannot be told)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


@contextlib.contextmanager
def hold(directory: str | Path, what: str) -> Iterator[None]:
    """Hold the lock of run directory ``directory`` while ``what`` (e.g. ``"neft train"``) writes it; creates the
    parent folder if needed. Under ``torchrun`` only rank 0 (the writer) takes it.

    Raises:
        RunLockedError: (a ``FileExistsError``) another live process holds it; the message names that process
            and the lock file to delete if no such process runs any more.
        OSError: the parent folder cannot be written (:func:`disk_error`).
    """
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    path = lock_path(directory)
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": what}
    for _ in range(2):  # a second try after clearing a stale lock
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                found = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                found = {}
            if _alive(found):
                raise RunLockedError(f"{str(directory)!r} is being written by {found.get('command', 'another neft')}"
                                     f" (process {found.get('pid', '?')} on {found.get('host', '?')}); wait for it "
                                     f"to finish, or delete {str(path)!r} if no such process runs any more") from None
            path.unlink(missing_ok=True)  # its process is gone: a stale lock
            continue
        except OSError as error:
            raise disk_error(path.parent, error) from None
        with os.fdopen(handle, "w") as file:
            json.dump(owner, file)
        break
    else:  # another process took the stale lock first
        raise RunLockedError(f"{str(directory)!r} is being written by another process; wait for it to finish")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
