"""`diffcli serve`: a warm server whose answers are byte for byte the cold ones, for its user only."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcli import client, server


def diffcli(*args: str, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "diffcli", *args], input=stdin, capture_output=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The environment of a user whose server runs (and is warm)."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path_factory.mktemp("runtime"))}
    env.pop("DIFFCLI_NO_SERVER", None)
    started = diffcli("serve", "--background", "--idle", "300", env=env)
    assert started.returncode == 0, started.stderr  # and it returned once the server was warm
    yield env
    assert diffcli("serve", "--stop", env=env).returncode == 0


CASES = [
    ["grad", "x*x", "--at", "x=2", "--format", "json"],
    ["hessian", "x**2*y", "--grid", "x=0:1:3", "--at", "y=2", "--format", "csv"],
    ["jacobian", "u=x*y", "v=x+y", "--at", "x=2,y=3", "--format", "table"],
    ["value", "log(x)", "--at", "x=-1", "--format", "json"],
    ["grad", "max(x, y)", "--at", "x=1,y=1"],
    ["grad", "x*y", "--at", "x=1"],
    ["value", "__import__('os').system('id')"],
    ["value", "9**9**9"],
    ["grad", "x", "--qqq"],
    ["check", "relu(x)", "--at", "x=0", "--format", "json"],
    ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=3.7", "--check", "-f", "json"],
    ["--help"],
    ["grad", "--help"],
    ["--version"],
    ["value", "x+é", "--at", "x=1"],
    ["value", "x", "--grid", "x=0:1:10000000000000000000"],
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a)[:40])
def test_answers_are_byte_identical_to_a_cold_run(served, args):
    warm = diffcli(*args, env=served)
    cold = diffcli(*args, env={**served, "DIFFCLI_NO_SERVER": "1"})
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)


def test_stdin_and_the_working_folder_are_the_clients(served, tmp_path):
    (tmp_path / "pts.csv").write_text("x,y\n1,2\n3,4\n")
    env = {**served, "PWD": str(tmp_path)}
    by_path = subprocess.run(
        [sys.executable, "-m", "diffcli", "grad", "x*y", "--input", "pts.csv"],
        cwd=tmp_path,
        capture_output=True,
        env=env,
        timeout=120,
    )
    piped = diffcli("grad", "x*y", "--input", "-", env=served, stdin=b"x,y\n1,2\n3,4\n")
    assert by_path.stdout == piped.stdout == b"x,y,value,grad_x,grad_y\n1.0,2.0,2.0,2.0,1.0\n3.0,4.0,12.0,4.0,3.0\n"
    requests = b'{"id": 1, "op": "grad", "expr": "x*x", "at": {"x": 3}}\n'
    assert json.loads(diffcli("run", env=served, stdin=requests).stdout)["grad"] == {"x": 6.0}


def test_a_plain_process_is_served_warm(served):
    """The console script's process (no pytest around it) is served, not refused: the server
    started with -P in / has the same context as a client started anywhere."""
    code = "import sys; from diffcli import client; sys.exit(client.through_server(['--version']) is None)"
    for folder in ("/", os.getcwd()):
        proc = subprocess.run([sys.executable, "-c", code], cwd=folder, env=served, capture_output=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith(b"diffcli "), proc.stderr


def test_the_server_answers_and_only_its_user_can_reach_it(served, capfd):
    os.environ["XDG_RUNTIME_DIR"] = served["XDG_RUNTIME_DIR"]
    try:
        assert client.through_server(["--version"]) == 0  # answered by the server, not cold
        path = client.socket_path()
    finally:
        del os.environ["XDG_RUNTIME_DIR"]
    assert "diffcli" in capfd.readouterr().out
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def ask(served: dict[str, str], **changes: object) -> dict[str, object]:
    """The server's first reply to a header that differs from this process's own by ``changes``."""
    header = {
        "version": client.__version__,
        "install": client.install(),
        "context": client.context(),
        "argv": ["--version"],
        "env": {**served, "DIFFCLI_NO_SERVER": ""},
    }
    header.update(changes)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection, open(os.devnull, "r+b") as null:
        connection.connect(str(Path(served["XDG_RUNTIME_DIR"]) / "diffcli.sock"))
        socket.send_fds(connection, [json.dumps(header).encode()], [null.fileno()] * 3 + [os.open(".", os.O_PATH)])
        reply = json.loads(connection.recv(4096))
        if reply.get("started"):
            reply.update(json.loads(connection.recv(4096)))
        return reply


def test_only_the_same_installation_in_the_same_context_is_served(served):
    assert ask(served) == {"started": True, "exit": 0}
    assert "another installation" in ask(served, version="0.0.0")["refused"]
    other = client.install()
    other[-1] += "1"  # a file or folder of the installation changed since the server started
    assert "another installation" in ask(served, install=other)["refused"]
    for key, value in [("umask", 0o077), ("ids", [12345]), ("limits", {}), ("namespaces", {"mnt": "mnt:[1]"})]:
        assert ask(served, context={**client.context(), key: value})["refused"] == f"another context: {key}"
    settings = {**client.context()["settings"], "PYTHONIOENCODING": "ascii"}
    assert "settings" in ask(served, context={**client.context(), "settings": settings})["refused"]


def test_a_silent_connection_holds_up_nobody(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as silent:
        silent.connect(str(Path(served["XDG_RUNTIME_DIR"]) / "diffcli.sock"))
        start = time.monotonic()
        assert ask(served) == {"started": True, "exit": 0}
        assert time.monotonic() - start < client.CONNECT_SECONDS
        time.sleep(server.HEADER_SECONDS + 0.5)
        assert silent.recv(16) == b""  # dropped


@pytest.mark.parametrize("limit", ["ulimit -f 1", "umask 077; ulimit -t 1000"])
def test_a_client_under_other_limits_runs_cold(served, tmp_path, limit):
    """Under ``ulimit -f 1`` (1 KiB) a warm server would write the whole file; cold, it fails."""
    target = tmp_path / "out.csv"
    command = f"{limit}; {sys.executable} -m diffcli value x --grid x=0:1:10000 --output {target}"
    proc = subprocess.run(["bash", "-c", command], env=served, capture_output=True, text=True, timeout=120)
    if limit.startswith("ulimit -f"):
        assert proc.returncode == 2 and "cannot write --output" in proc.stderr and "File too large" in proc.stderr
        assert not target.exists()
    else:
        assert proc.returncode == 0 and target.stat().st_mode & 0o777 == 0o600  # the client's umask


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_client_in_a_read_only_namespace_runs_cold(served, tmp_path):
    target = tmp_path / "out.csv"
    command = (
        f"mount --bind -o ro {tmp_path} {tmp_path} && {sys.executable} -m diffcli value x --at x=1 --output {target}"
    )
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", command], env=served, capture_output=True, text=True)
    assert proc.returncode == 2 and "Read-only file system" in proc.stderr and not target.exists()


def test_a_platform_without_unix_sockets_runs_cold(monkeypatch, capsys):
    from typer.testing import CliRunner

    from diffcli.cli import app

    for missing in ("SO_PEERCRED", "send_fds", "AF_UNIX"):
        with monkeypatch.context() as patched:
            patched.delattr(socket, missing)
            assert client.through_server(["--version"]) is None
            result = CliRunner().invoke(app, ["serve"])
            assert result.exit_code == 2 and "needs Unix sockets" in result.stderr
    monkeypatch.delattr(os, "getuid")
    assert client.through_server(["--version"]) is None and capsys.readouterr().err == ""


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.0])
def test_ctrl_c_reaches_the_command_and_the_server_goes_on(served, seconds):
    command = [sys.executable, "-m", "diffcli", "value", "sin(x)", "--grid", "x=0:1:1000000000", "--format", "csv"]
    with subprocess.Popen(command, env=served, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        try:
            time.sleep(seconds)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert (proc.returncode, err) == (130, b"diffcli: interrupted\n")
    assert diffcli("grad", "x*x", "--at", "x=2", "--format", "json", env=served).returncode == 0


def test_a_stale_socket_runs_cold_and_is_replaced(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("DIFFCLI_NO_SERVER", None)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(str(tmp_path / "diffcli.sock"))
    stale.close()  # the file stays, nobody listens
    cold = diffcli("grad", "x*x", "--at", "x=2", "--format", "json", env=env)
    assert cold.returncode == 0 and json.loads(cold.stdout)["grad"] == {"x": 4.0}
    assert diffcli("serve", "--background", "--idle", "60", env=env).returncode == 0
    assert diffcli("serve", "--stop", env=env).returncode == 0


def test_a_socket_folder_planted_as_a_link_is_never_used(tmp_path):
    """The /tmp folder made beforehand as a symbolic link (by another user, to a folder they
    control): the server refuses it, and a client runs cold and sends nothing to a socket there."""
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DIFFCLI_NO_SERVER")}
    env["TMPDIR"] = str(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    planted = tmp_path / f"diffcli-{os.getuid()}"
    planted.symlink_to(theirs)
    if os.getuid() == 0:  # as it would be: the link and its folder another user's
        os.lchown(planted, 65534, 65534)
        os.chown(theirs, 65534, 65534)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(theirs / "diffcli.sock"))
    listener.listen(4)
    listener.settimeout(0.1)
    refused = diffcli("serve", "--idle", "5", env=env)
    assert refused.returncode == 2 and b"cannot serve there" in refused.stderr
    cold = diffcli("grad", "x*x", "--at", "x=2", "--format", "json", env=env)
    assert cold.returncode == 0 and json.loads(cold.stdout)["grad"] == {"x": 4.0}
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody connected
    listener.close()


def test_a_server_of_another_uid_gets_nothing(tmp_path, monkeypatch, capfd):
    """Past every check of the folder (here: skipped), the client still asks the kernel who
    listens (SO_PEERCRED) and sends nothing to another uid."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(tmp_path / "diffcli.sock"))
    listener.listen(4)
    monkeypatch.setattr(client, "open_folder", lambda **_: os.open(tmp_path, os.O_RDONLY))
    monkeypatch.setattr(client, "peer_uid", lambda connection: os.getuid() + 1)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert client.through_server(["--version"]) is None
    connection = listener.accept()[0]
    connection.settimeout(1)
    assert connection.recv(1 << 16) == b""  # connected, checked, closed: not a byte sent
    assert "is served by uid" in capfd.readouterr().err
    listener.close()


def test_the_private_folder_in_tmp(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DIFFCLI_NO_SERVER")}
    env["TMPDIR"] = str(tmp_path)
    assert diffcli("serve", "--background", "--idle", "60", env=env).returncode == 0
    folder = tmp_path / f"diffcli-{os.getuid()}"
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((folder / "diffcli.sock").stat().st_mode) == 0o600
    finally:
        assert diffcli("serve", "--stop", env=env).returncode == 0


@pytest.mark.skipif(
    os.getuid() != 0 or not os.access("/usr/bin/python3", os.X_OK), reason="needs root and a system python"
)
def test_another_user_cannot_connect(served):
    path = str(Path(served["XDG_RUNTIME_DIR"]) / "diffcli.sock")
    code = f"import socket; socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).connect({path!r})"
    proc = subprocess.run(["/usr/bin/python3", "-c", code], user=65534, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "PermissionError" in proc.stderr


def test_refused_clients_do_not_keep_a_server_alive(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    env.pop("DIFFCLI_NO_SERVER", None)
    assert diffcli("serve", "--background", "--idle", "3", env=env).returncode == 0
    served, refused = {"XDG_RUNTIME_DIR": str(tmp_path)}, 0
    with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
        for _ in range(40):  # refused twice a second, for far longer than the idle time
            assert "refused" in ask(served, version="0.0.0")
            refused += 1
            time.sleep(0.5)
    assert 3 <= refused < 40  # it stopped after its idle time all the same
