"""The console script's front: hand the command to a warm ``diffcli serve`` if one is running.

This module imports only the standard library, so a command answered by the server costs a
Python start and a socket round trip instead of importing torch and SymPy. The client passes its
arguments, working folder, environment and its stdin, stdout and stderr themselves (as file
descriptors), so the server's answer is byte for byte what a cold run prints. If no server runs,
or it is of another version, or it fails before starting the command, the command runs cold.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import sys

from . import __version__

CONNECT_SECONDS = 2.0  # to connect and hear back whether the server takes the command


def socket_path() -> str:
    """``$XDG_RUNTIME_DIR/diffcli.sock``, else ``diffcli.sock`` in a 0700 folder of this user's in /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "diffcli.sock")
    return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"diffcli-{os.getuid()}", "diffcli.sock")


def private(path: str) -> bool:
    """Whether the folder of ``path`` belongs to this user alone (so nobody else can plant a socket)."""
    try:
        info = os.stat(os.path.dirname(path))
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def through_server(args: list[str]) -> int | None:
    """The exit code of ``args`` run by the server, or None where the command must run cold."""
    path = socket_path()
    if not os.path.exists(path) or not private(path):
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.settimeout(CONNECT_SECONDS)
        connection.connect(path)
        header = {"version": __version__, "argv": args, "cwd": os.getcwd(), "env": dict(os.environ)}
        socket.send_fds(connection, [json.dumps(header).encode()], [0, 1, 2])
        reply = json.loads(connection.recv(4096) or b"{}")
    except (OSError, ValueError):
        connection.close()
        return None  # no server, a stale socket, or a broken one: cold
    if not reply.get("started"):
        connection.close()
        return None  # another version
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
    connection.close()
    if "exit" in reply:
        return int(reply["exit"])
    if interrupted:  # a second Ctrl-C, or the answer lost as the server hung up: still an interrupt
        return 130
    sys.stderr.write("diffcli: error: the server stopped during the command\n")
    return 1


def main() -> None:
    args = sys.argv[1:]
    try:
        if args[:1] != ["serve"] and not os.environ.get("DIFFCLI_NO_SERVER"):
            code = through_server(args)
            if code is not None:
                os._exit(code)
        from .cli import main as cold

        cold()
    except KeyboardInterrupt:  # before any command started: still no traceback
        sys.stderr.write("diffcli: interrupted\n")
        os._exit(130)
