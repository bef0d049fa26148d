"""``diffcli serve``: a warm process that runs its user's commands, so that they skip the import.

The server listens on a Unix socket that only its user can reach (a 0600 socket in a private
folder, and every caller's uid checked). For each client it takes the client's stdin, stdout and
stderr (passed as file descriptors), working folder, environment and arguments, runs the command
exactly as the console script would, and answers the exit code. Commands run one at a time. A
client's Ctrl-C interrupts its command. The server stops after ``idle`` seconds without a
command, on ``diffcli serve --stop``, or on Ctrl-C.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
from collections.abc import Iterator

from . import __version__
from .client import socket_path
from .errors import UsageError

IDLE_SECONDS = 900.0


def serve(idle: float = IDLE_SECONDS) -> None:
    """Listen until idle, stopped or interrupted; a stale socket (no server behind it) is replaced."""
    path = socket_path()
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if os.stat(folder).st_uid != os.getuid():
        raise UsageError(f"{folder} belongs to another user; set XDG_RUNTIME_DIR")
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.chmod(folder, 0o700)  # our own folder in /tmp: private, whatever the umask made it
    if running(path):
        raise UsageError(f"a server is already running on {path}", hint="diffcli serve --stop")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # stale: nobody answers on it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_mask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_mask)
    os.chmod(path, 0o600)
    listener.listen(16)
    try:
        _warm_up()
        sys.stderr.write(f"diffcli: serving on {path} (stops after {idle:g} s idle)\n")
        listener.settimeout(idle)
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                return
            with connection:
                if _handle(connection) == "stop":
                    return
    except KeyboardInterrupt:
        return
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def running(path: str) -> bool:
    """Whether a server answers on ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def stop() -> bool:
    """Ask the running server to stop; whether one was running."""
    path = socket_path()
    if not running(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(path)
        connection.send(json.dumps({"version": __version__, "stop": True}).encode())
        connection.recv(4096)
    return True


def _handle(connection: socket.socket) -> str | None:
    pid, uid, gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if uid != os.getuid():
        return None  # another user: no answer at all
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    try:
        header = json.loads(message)
        if header.get("version") != __version__:
            connection.send(json.dumps({"refused": f"the server is diffcli {__version__}"}).encode())
            return None
        if header.get("stop"):
            connection.send(b'{"stopping":true}')
            return "stop"
        if len(fds) != 3:
            return None
        connection.send(b'{"started":true}')
        with _interruptible(connection):
            code = _run_as(header, fds)
        connection.send(json.dumps({"exit": code}).encode())
    except (OSError, ValueError, KeyboardInterrupt):
        pass  # the client went away: the next one is served
    finally:
        for fd in fds:
            os.close(fd)
    return None


def _run_as(header: dict, fds: list[int]) -> int:  # type: ignore[type-arg]
    """Run the command with the client's stdin, stdout, stderr, folder and environment."""
    from . import cli

    saved = [os.dup(n) for n in (0, 1, 2)]
    folder, environment = os.getcwd(), dict(os.environ)
    streams = sys.stdin, sys.stdout, sys.stderr
    try:
        for n, fd in enumerate(fds):
            os.dup2(fd, n)
        # fresh buffers for every client, buffered as Python buffers its own standard streams
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
        os.chdir(header["cwd"])
        os.environ.clear()
        os.environ.update(header["env"])
        return cli.run(list(header["argv"]))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdin, sys.stdout, sys.stderr = streams
        for n, fd in enumerate(saved):
            os.dup2(fd, n)
            os.close(fd)
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)


@contextlib.contextmanager
def _interruptible(connection: socket.socket) -> Iterator[None]:
    """While the command runs, a word (or the client's disappearance) interrupts it like Ctrl-C."""
    wake_read, wake_write = os.pipe()  # wakes the watcher the moment the command ends

    def watch() -> None:
        ready = select.select([connection.fileno(), wake_read], [], [])[0]
        if connection.fileno() in ready and wake_read not in ready:
            with contextlib.suppress(OSError):
                connection.recv(16)  # the word read, so closing later is an end of file, not a reset
            _thread.interrupt_main()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.write(wake_write, b"x")
        watcher.join()
        os.close(wake_read)
        os.close(wake_write)


def _warm_up() -> None:
    """Import everything and run one command, into /dev/null, so the first client is fast too."""
    with open(os.devnull, "r+b") as null:
        fd = null.fileno()
        _run_as(
            {
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "argv": ["hessian", "x*sin(y)", "--at", "x=1,y=2", "--format", "csv"],
            },
            [fd, fd, fd],
        )
