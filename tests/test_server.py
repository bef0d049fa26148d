"""`diffcli serve`: a warm server whose answers are byte for byte the cold ones, for its user only."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffcli import client


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
    assert started.returncode == 0, started.stderr
    diffcli("--version", env=env)  # waits for the warm-up
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


def test_the_server_answers_and_only_its_user_can_reach_it(served, capfd):
    os.environ["XDG_RUNTIME_DIR"] = served["XDG_RUNTIME_DIR"]
    try:
        assert client.through_server(["--version"]) == 0  # answered by the server, not cold
        path = client.socket_path()
    finally:
        del os.environ["XDG_RUNTIME_DIR"]
    assert "diffcli" in capfd.readouterr().out
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_another_version_is_refused(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as connection:
        connection.connect(str(Path(served["XDG_RUNTIME_DIR"]) / "diffcli.sock"))
        socket.send_fds(connection, [json.dumps({"version": "0.0.0", "argv": []}).encode()], [0, 1, 2])
        assert "refused" in json.loads(connection.recv(4096))


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
