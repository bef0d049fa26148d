"""Where output goes: stdout, or a file that appears only complete (README: "Output").

A file is written beside its place and renamed into it when complete, so a reader (or an
interrupted command) sees the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO

from . import signals
from .errors import UsageError


@contextlib.contextmanager
def destination(output: str | None, flag: str = "--output") -> Iterator[IO[bytes]]:
    """stdout, or a file that appears only complete: written beside it, then renamed into place.

    Paths that are not regular files (/dev/null, a FIFO, /dev/stdout) are written directly. A
    symbolic link is followed: its target is replaced. Writes that fail (a full disk, a file size
    limit, a closed stdout) are usage errors naming the destination, as a folder is.
    """
    target = os.path.realpath(output) if output and output != "-" else None
    name = f"{flag} {output}" if target else "stdout"
    try:
        if target is None or _is_stdout(target):  # also /dev/stdout: appended as the shell's >> opened it
            sys.stdout.flush()
            yield sys.stdout.buffer
            return
        if os.path.isdir(target):
            raise UsageError(f"{name} is a folder; name a file")
        if os.path.exists(target) and not os.path.isfile(target):
            with open(target, "wb") as stream:
                yield stream
            return
        with _replacing(target) as stream:
            yield stream
    except OSError as e:
        if broken_pipe(e):
            raise
        reason = e.strerror or str(e).split(" (os error")[0]  # polars' errors carry only a message
        raise UsageError(f"cannot write {name}: {reason}") from None


def _is_stdout(path: str) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _replacing(target: str) -> Iterator[IO[bytes]]:
    """A new file beside ``target`` that replaces it when complete: a new file gets the mode the
    umask gives (as the shell's ``>``), a replaced one keeps its mode (and owner, where allowed).
    Ctrl-C at any moment leaves ``target`` old or complete, and no temporary file."""
    folder, base = os.path.split(target)
    temporary = None
    try:
        with signals.held():  # created and noted for removal together
            temporary, handle = _new_file(folder, f".{base[:200]}")  # names end at 255 bytes
        with contextlib.suppress(FileNotFoundError):
            old = os.stat(target)
            os.fchmod(handle, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(OSError):
                os.fchown(handle, old.st_uid, old.st_gid)
        with os.fdopen(handle, "wb") as stream:
            yield stream
        with signals.held():
            os.replace(temporary, target)
            temporary = None
    except BaseException:
        if temporary:
            with signals.held():
                os.unlink(temporary)
        raise


def _new_file(folder: str, prefix: str) -> tuple[str, int]:
    """A file of a new name in ``folder``, created with the mode the umask gives."""
    while True:
        path = os.path.join(folder, f"{prefix}.{os.urandom(4).hex()}.part")
        with contextlib.suppress(FileExistsError):
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)


def broken_pipe(error: BaseException) -> bool:
    """Whether ``error`` says the reader of the output left (`| head`)."""
    return isinstance(error, BrokenPipeError) or (isinstance(error, OSError) and "Broken pipe" in str(error))  # polars'
