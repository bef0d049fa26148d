"""The console script's front: hand the command to a warm ``diffcli serve`` if one may answer it.

This module imports only the standard library, so a command answered by the server costs a
Python start and a socket round trip instead of importing torch and SymPy. The client passes its
arguments, working folder, environment and its stdin, stdout and stderr themselves (as file
descriptors), so the server's answer is byte for byte what a cold run prints.

The command runs cold instead wherever a warm answer could differ from a cold one or reach
another user (README: "A warm server"): no server, a server of another installation (``install``)
or running under other limits, identity, namespaces or import settings (``context``), a socket
folder that is not this user's alone, or a server process of another uid (checked with
``SO_PEERCRED`` before anything is sent), and on platforms without these facilities.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct
import sys
from collections.abc import Iterator

from . import __version__

CONNECT_SECONDS = 2.0  # to connect and hear back whether the server takes the command
SOCKET = "diffcli.sock"
# Environment variables read when Python, torch, polars or SymPy start: a server started under
# other values would answer differently (PYTHONIOENCODING changes what stderr prints).
IMPORT_SETTINGS = (
    "PYTHON", "LANG", "LC_", "LD_", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "POLARS_", "TORCH", "PYTORCH_",
    "CUDA_", "NVIDIA_", "SYMPY_", "MPMATH_", "NUMPY_",
)  # fmt: skip


# The interpreter flags that change what a command prints (not -P, which the server starts with).
FLAGS = ("utf8_mode", "optimize", "dev_mode", "bytes_warning", "ignore_environment")


def supported() -> bool:
    """Whether this platform has what the server needs: Unix sockets that pass descriptors and
    name the peer's uid (Linux). Elsewhere every command runs cold."""
    names = ("AF_UNIX", "SOCK_SEQPACKET", "SO_PEERCRED", "send_fds", "recv_fds")
    return all(hasattr(socket, n) for n in names) and hasattr(os, "getuid")


def socket_folder() -> str:
    """``$XDG_RUNTIME_DIR``, else a folder of this user's in ``$TMPDIR`` or /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return runtime
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"diffcli-{os.getuid()}")


def socket_path() -> str:
    return os.path.join(socket_folder(), SOCKET)


def open_folder(*, create: bool = False) -> int:
    """A descriptor of the socket folder, opened without following a link, after checking on the
    descriptor itself that it is a folder of this user's that nobody else may enter. ``create``
    (the server) makes the /tmp folder if needed and closes a folder of its own made too open.
    OSError otherwise, with the reason."""
    path = socket_folder()
    owned = not os.environ.get("XDG_RUNTIME_DIR")
    if create and owned:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)  # mkdir never follows a link planted in its place
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except NotADirectoryError:
        raise NotADirectoryError(f"{path} is {'a symbolic link' if os.path.islink(path) else 'not a folder'}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise PermissionError(f"{path} belongs to uid {info.st_uid}, not to this user")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            if not (create and owned):
                raise PermissionError(f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o})")
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def address(folder: int) -> str:
    """The socket's path through the folder's descriptor (/proc/self/fd/N/diffcli.sock), so that
    the folder checked is the folder used, whatever happens to its name meanwhile."""
    through = f"/proc/self/fd/{folder}"
    return os.path.join(through, SOCKET) if os.path.isdir(through) else socket_path()


def working_folder() -> int:
    """A descriptor of the working folder (``O_PATH``: it needs no permission to read it, and
    stays valid if the folder is renamed), for ``fchdir``."""
    return os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def peer_uid(connection: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket."""
    return struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]


def install() -> list[str]:
    """What identifies this installation: the interpreter and environment (``sys.prefix``: a
    virtual environment), diffcli's files (sizes and times) and the folders its imports come from
    (their times change when a package is installed)."""
    package = os.path.dirname(os.path.abspath(__file__))
    parts = [__version__, sys.prefix, os.path.realpath(sys.executable), sys.version, package]
    for entry in sorted(os.scandir(package), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            info = entry.stat()
            parts.append(f"{entry.name} {info.st_size} {info.st_mtime_ns}")
    # sys.path[0] is the script's or the working folder, not an install — unless -P left it out (the
    # server starts so): then [0] is the first of PYTHONPATH, as the client's [1] is
    for folder in sys.path[0 if sys.flags.safe_path else 1 :]:
        with contextlib.suppress(OSError):
            parts.append(f"{folder} {os.stat(folder).st_mtime_ns}")
    return parts


def context() -> dict[str, object]:
    """What a command's outcome depends on besides its arguments, folder and files: the identity,
    umask and limits of the process, its namespaces, root, cgroup and security settings (a
    sandbox), the interpreter's flags and the import settings of the environment. The server
    answers only where its own context is the client's. (JSON-shaped, as it travels.)"""
    import resource

    mask = os.umask(0o077)
    os.umask(mask)
    found: dict[str, object] = {
        "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())],
        "umask": mask,
        "limits": {n: list(resource.getrlimit(getattr(resource, n))) for n in dir(resource) if n.startswith("RLIMIT_")},
        "flags": [*(getattr(sys.flags, f) for f in FLAGS), *sys.warnoptions],
        "root": list(os.stat("/")[1:3]),
        "settings": {k: v for k, v in os.environ.items() if k.startswith(IMPORT_SETTINGS)},
    }
    with contextlib.suppress(OSError):
        found["namespaces"] = {n: os.readlink(f"/proc/self/ns/{n}") for n in sorted(os.listdir("/proc/self/ns"))}
    for name, path in (("cgroup", "/proc/self/cgroup"), ("security", "/proc/self/attr/current")):
        with contextlib.suppress(OSError), open(path) as file:
            found[name] = file.read()
    with contextlib.suppress(OSError), open("/proc/self/status") as file:
        found["status"] = [line for line in file if line.startswith(("Cap", "NoNewPrivs", "Seccomp"))]
    return found


def _cpu_limited() -> bool:
    """A CPU-time limit (``ulimit -t``) counts the process's whole life: only a cold run keeps it."""
    import resource

    return resource.getrlimit(resource.RLIMIT_CPU)[0] != resource.RLIM_INFINITY


class ForeignServerError(PermissionError):
    """The socket is served by another uid's process."""


@contextlib.contextmanager
def connection(timeout: float) -> Iterator[socket.socket]:
    """A connection to this user's server; OSError if there is none, ForeignServerError if a process
    of another uid listens (nothing has been sent to it)."""
    folder = open_folder()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connected:
            connected.settimeout(timeout)
            connected.connect(address(folder))
            uid = peer_uid(connected)
            if uid != os.getuid():
                raise ForeignServerError(f"{socket_path()} is served by uid {uid}")
            yield connected
    finally:
        os.close(folder)


def through_server(args: list[str]) -> int | None:
    """The exit code of ``args`` run by the server, or None where the command must run cold."""
    if not supported() or _cpu_limited():
        return None
    try:
        with connection(CONNECT_SECONDS) as connected:
            here = working_folder()
            try:
                header = {"version": __version__, "install": install(), "context": context()}
                header.update(argv=args, env=dict(os.environ))
                socket.send_fds(connected, [json.dumps(header).encode()], [0, 1, 2, here])
            finally:
                os.close(here)
            reply = json.loads(connected.recv(4096) or b"{}")
            if not reply.get("started"):
                return None  # another installation or context
            return _wait(connected)
    except ForeignServerError as e:
        sys.stderr.write(f"diffcli: warning: {e}; running without it\n")
        return None
    except (OSError, ValueError):
        return None  # no server, a stale socket, a busy or broken one: cold


def _wait(connection: socket.socket) -> int:
    """The exit code the server sends when the command ends; Ctrl-C meanwhile is passed on."""
    connection.settimeout(None)
    interrupted = False
    while True:
        try:
            reply = json.loads(connection.recv(4096) or b"{}")
            break
        except KeyboardInterrupt:
            interrupted = True
            with contextlib.suppress(OSError):
                connection.send(b"INT")  # the command ends with exit 130, as a cold one would
        except (OSError, ValueError):
            reply = {}
            break
    if "exit" in reply:
        return int(reply["exit"])
    if interrupted:  # a second Ctrl-C, or the answer lost as the server hung up: still an interrupt
        return 130
    sys.stderr.write("diffcli: error: the server stopped during the command\n")
    return 1


def hold_closed_streams() -> None:
    """Standard streams that the caller closed (``<&-``, ``>&-``) get /dev/null in their place, so
    that no file opened later takes their number (an output file written as "stdout"): stdin and
    stdout opened the wrong way round, so that using them fails with EBADF as on a closed one;
    stderr for writing, so that the exit code still tells what happened."""
    streams = ((0, "stdin", os.O_WRONLY, "r"), (1, "stdout", os.O_RDONLY, "w"), (2, "stderr", os.O_WRONLY, "w"))
    for fd, name, flags, mode in streams:
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, flags)  # the lowest free number: ``fd`` itself
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 - the process's own stream
