"""``diffcli serve``: a warm process that runs its user's commands, so that they skip the import.

The server listens on a Unix socket that only its user can reach (a 0600 socket in a folder
checked to be the user's alone, every caller's uid checked, and the client checks the server's).
For each client it takes the client's stdin, stdout and stderr (passed as file descriptors),
working folder, environment and arguments, runs the command exactly as the console script would,
and answers the exit code. It runs a command only for a client of the same installation and
context (``client.install``, ``client.context``: limits, umask, namespaces, ...); any other runs
cold. Commands run one at a time; a connection that says nothing for ``HEADER_SECONDS`` is
dropped without holding up the others. A client's Ctrl-C interrupts its command. The server stops
after ``idle`` seconds without a command, on ``diffcli serve --stop``, or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

from . import __version__, client, signals
from .errors import UsageError

IDLE_SECONDS = 900.0
HEADER_SECONDS = 1.0  # a client sends its command at once; one that does not is dropped
QUIET_SECONDS = 0.2  # memory is given back when no command follows within this (it takes 50 ms)
STOP_SECONDS = 10.0  # how long ``serve --stop`` waits for a server busy with a command
_running = False  # whether a client's command runs (its interrupts count only then)
Runner = Callable[[list[str]], int]  # one command line -> its exit code (cli.run)


def serve(run: Runner, idle: float = IDLE_SECONDS) -> None:
    """Warm up, then listen until idle or stopped (Ctrl-C: KeyboardInterrupt); a stale socket (no
    server behind it) is replaced. The socket appears only once the server is warm, so a client
    never waits for it."""
    if not client.supported():
        raise UsageError("the warm server needs Unix sockets that pass file descriptors (Linux)")
    try:
        folder = client.open_folder(create=True)
    except OSError as e:
        raise UsageError(
            f"cannot serve there: {e}", hint="set XDG_RUNTIME_DIR to a folder of yours (mode 0700)"
        ) from None
    try:
        if running():
            raise UsageError(f"a server is already running on {client.socket_path()}", hint="diffcli serve --stop")
        identity = client.install(), client.context()
        signals.install(signal.SIGUSR1, when=lambda: _running)  # a client's Ctrl-C, during its command only
        _steady_malloc()
        _warm_up(run)
        listener = _listen(folder)
        try:
            sys.stderr.write(f"diffcli: serving on {client.socket_path()} (stops after {idle:g} s idle)\n")
            sys.stderr.flush()
            _loop(listener, run, identity, idle)
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(client.SOCKET, dir_fd=folder)
    finally:
        os.close(folder)


def _listen(folder: int) -> socket.socket:
    if running():  # another one started while this one warmed up
        raise UsageError(f"a server is already running on {client.socket_path()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(client.SOCKET, dir_fd=folder)  # stale: nobody answers on it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old_mask = os.umask(0o177)
    try:
        listener.bind(client.address(folder))
    finally:
        os.umask(old_mask)
    os.chmod(client.SOCKET, 0o600, dir_fd=folder)
    listener.listen(16)
    return listener


def _loop(listener: socket.socket, run: Runner, identity: tuple[list[str], dict[str, object]], idle: float) -> None:
    """Serve connections whose command has arrived, one at a time; drop silent ones; stop after
    ``idle`` seconds without a command run (refusals and probes do not count)."""
    waiting: dict[socket.socket, float] = {}  # connection -> when it is dropped
    last = time.monotonic()
    used = False  # memory of the last command not yet given back
    try:
        while True:
            now = time.monotonic()
            for connection in [c for c, deadline in waiting.items() if deadline <= now]:
                del waiting[connection]
                connection.close()
            if not waiting:
                if now - last >= idle:
                    return
                if used and now - last >= QUIET_SECONDS:
                    _release_memory()
                    used = False
            deadlines = [*waiting.values()] or [last + idle, *([last + QUIET_SECONDS] if used else [])]
            ready = select.select([listener, *waiting], [], [], max(min(deadlines) - now, 0.0))[0]
            for ready_one in ready:
                if ready_one is listener:
                    connection = listener.accept()[0]
                    waiting[connection] = time.monotonic() + HEADER_SECONDS
                    continue
                del waiting[ready_one]
                with ready_one:
                    outcome = _handle(ready_one, run, identity)
                if outcome == "stop":
                    return
                if outcome == "ran":
                    last, used = time.monotonic(), True
    finally:
        for connection in waiting:
            connection.close()


def start_in_background(idle: float) -> None:
    """Start ``diffcli serve`` detached and return once it answers (warm), or say why it did not."""
    import subprocess
    import tempfile

    if running():
        raise UsageError(f"a server is already running on {client.socket_path()}")
    with tempfile.TemporaryFile() as errors:
        started = subprocess.Popen(  # -P and /: no module of the working folder is ever imported
            [sys.executable, "-P", "-m", "diffcli", "serve", "--idle", repr(idle)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not running():
            if started.poll() is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip().splitlines()
                raise UsageError(f"the server did not start: {said[-1] if said else f'exit {started.returncode}'}")
            if time.monotonic() > deadline:
                raise UsageError("the server did not start within 120 s")
            time.sleep(0.05)
    sys.stderr.write(f"diffcli: serving on {client.socket_path()}\n")


def running() -> bool:
    """Whether a server of this user answers on the socket."""
    try:
        with client.connection(client.CONNECT_SECONDS):
            return True
    except OSError:
        return False


def stop() -> bool:
    """Ask the running server to stop; whether one was running."""
    try:
        with client.connection(STOP_SECONDS) as connection:
            connection.send(json.dumps({"version": __version__, "stop": True}).encode())
            connection.recv(4096)
            return True
    except TimeoutError:
        raise UsageError(f"the server did not answer within {STOP_SECONDS:g} s (busy with a command?)") from None
    except OSError:
        return False


def refusal(header: dict[str, object], identity: tuple[list[str], dict[str, object]]) -> str | None:
    """Why this server may not run the client's command (None: it may)."""
    install, context = identity
    if header.get("version") != __version__ or header.get("install") != install:
        return f"another installation (this server: diffcli {__version__}, {sys.executable})"
    theirs = header.get("context")
    if not isinstance(theirs, dict):
        return "no context"
    differ = sorted(k for k in {*context, *theirs} if context.get(k) != theirs.get(k))
    return f"another context: {', '.join(differ)}" if differ else None


def _handle(connection: socket.socket, run: Runner, identity: tuple[list[str], dict[str, object]]) -> str | None:
    """One connection: "ran" a command, "stop", or None (refused, or nonsense from our own user)."""
    if client.peer_uid(connection) != os.getuid():
        return None  # another user: no answer at all
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 4)
        header = json.loads(message)
        if header.get("stop"):
            connection.send(b'{"stopping":true}')
            return "stop"
        refused = refusal(header, identity)
        if refused:
            connection.send(json.dumps({"refused": refused}).encode())
            return None
        argv, env = header.get("argv"), header.get("env")
        if len(fds) != 4 or not isinstance(argv, list) or not isinstance(env, dict):
            return None
        connection.send(b'{"started":true}')
        with _interruptible(connection):
            code = _run_as(run, [str(a) for a in argv], {str(k): str(v) for k, v in env.items()}, fds)
        connection.send(json.dumps({"exit": code}).encode())
        return "ran"
    except Exception:  # a client that went away or sent nonsense: the next one is served
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _run_as(run: Runner, argv: list[str], env: dict[str, str], fds: list[int]) -> int:
    """Run the command with the client's stdin, stdout, stderr, working folder (``fds``) and
    environment; a client's interrupt ends it with 130."""
    global _running
    saved = [os.dup(n) for n in (0, 1, 2)]
    here, environment = client.working_folder(), dict(os.environ)
    streams = sys.stdin, sys.stdout, sys.stderr
    try:
        for n, fd in enumerate(fds[:3]):
            os.dup2(fd, n)
        # fresh streams for every client, set up as Python sets up its own (the encoding settings
        # are the client's: the context check compared them)
        sys.stdin = _stream(0, "r", sys.__stdin__)
        sys.stdout = _stream(1, "w", sys.__stdout__)
        sys.stderr = _stream(2, "w", sys.__stderr__)
        os.fchdir(fds[3])
        os.environ.clear()
        os.environ.update(env)
        signals.clear()
        _running = True
        try:
            return run(argv)
        except KeyboardInterrupt:  # an interrupt that came as the command was returning
            return 130
    finally:
        _running = False
        signals.clear()  # an interrupt held for this command is not the next one's
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        sys.stdin, sys.stdout, sys.stderr = streams
        for n, fd in enumerate(saved):
            os.dup2(fd, n)
            os.close(fd)
        os.fchdir(here)
        os.close(here)
        os.environ.clear()
        os.environ.update(environment)


def _stream(fd: int, mode: str, like: object) -> object:
    """A text stream on ``fd`` with the encoding and errors of the server's own (``like``);
    stdout line-buffered on a terminal, stderr always, as Python's."""
    encoding, errors = getattr(like, "encoding", None), getattr(like, "errors", None)
    stream = open(fd, mode, encoding=encoding, errors=errors, closefd=False)  # noqa: SIM115
    if mode == "w":
        stream.reconfigure(line_buffering=fd == 2 or os.isatty(fd), write_through=getattr(like, "write_through", False))
    return stream


@contextlib.contextmanager
def _interruptible(connection: socket.socket) -> Iterator[None]:
    """While the command runs, a word (or the client's disappearance) interrupts it like Ctrl-C."""
    wake_read, wake_write = os.pipe()  # wakes the watcher the moment the command ends

    def watch() -> None:
        ready = select.select([connection.fileno(), wake_read], [], [])[0]
        if connection.fileno() in ready and wake_read not in ready:
            with contextlib.suppress(OSError):
                connection.recv(16)  # the word read, so closing later is an end of file, not a reset
            if _running:  # to the main thread: a read it waits in is interrupted too
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # type: ignore[arg-type]

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        os.write(wake_write, b"x")
        watcher.join()
        os.close(wake_read)
        os.close(wake_write)


def _steady_malloc() -> None:
    """Keep glibc's threshold for mmap at 1 MiB. By default it rises to the largest block freed,
    after which the batches' buffers come from the heap and stay there: 90 commands reading a
    pipe took the server from 326 to 480 MB; with the threshold fixed, 313 MB (bench/server_leaks.py)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD is -3 in glibc's malloc.h


def _release_memory() -> None:
    """Give back what the commands' batches held, so a long-lived server stays at its size."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


def _warm_up(run: Runner) -> None:
    """Import everything and run one command, into /dev/null, so the first client is fast too."""
    with open(os.devnull, "r+b") as null:
        here = client.working_folder()
        try:
            argv = ["hessian", "x*sin(y)", "--at", "x=1,y=2", "--format", "csv"]
            code = _run_as(run, argv, dict(os.environ), [null.fileno()] * 3 + [here])
        finally:
            os.close(here)
    if code == 130:
        raise KeyboardInterrupt  # Ctrl-C during the warm-up stops the server
