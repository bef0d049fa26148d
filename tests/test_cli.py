"""The command line as a user and a pipeline see it: CliRunner in-process, real pipes outside."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffcli.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def data(*args: str):
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_grad_json_is_the_documented_object():
    assert data("grad", "x*x", "--at", "x=2") == {"at": {"x": 2.0}, "value": 4.0, "grad": {"x": 4.0}}


def test_grid_csv_has_a_row_per_point():
    result = invoke("grad", "x*x", "--grid", "x=0:10:100", "--format", "csv")
    lines = result.stdout.splitlines()
    assert lines[0] == "x,value,grad_x" and len(lines) == 101
    for line in lines[1:]:
        x, value, grad = map(float, line.split(","))
        assert value == x * x and grad == 2 * x


def test_branch_points():
    got = data("grad", "x*x if x % 2 == 0 else x", *[a for x in "1234" for a in ("--at", f"x={x}")])
    assert [p["value"] for p in got] == [1, 4, 3, 16] and [p["grad"]["x"] for p in got] == [1, 4, 1, 8]


def test_hessian_jvp_aux_derivative_jacobian():
    assert data("hessian", "x*x", "--at", "x=2")["hessian"] == {"x": {"x": 2.0}}
    assert data("jvp", "x*x", "--at", "x=2", "--tangent", "x=1") == {"at": {"x": 2.0}, "value": 4.0, "jvp": 4.0}
    assert data("grad", "x*x", "--at", "x=2", "--aux", "cube=x**3")["aux"] == {"cube": 8.0}
    assert data("derivative", "x**3*y", "--wrt", "x,x,y", "--at", "x=2,y=5")["derivative"] == 12.0
    assert data("derivative", "sin(x)", "--order", "3", "--at", "x=0")["derivative"] == -1.0
    assert data("jacobian", "u=x*y", "v=x+y", "--at", "x=2,y=3")["jacobian"] == {
        "u": {"x": 3.0, "y": 2.0},
        "v": {"x": 1.0, "y": 1.0},
    }
    assert data("vjp", "u=x*y", "v=x+y", "--at", "x=2,y=3", "--cotangent", "u=1")["vjp"] == {"x": 3.0, "y": 2.0}


def test_where_has_finite_gradients():
    got = data("grad", "where(x > 0, sqrt(x), 0)", "--at", "x=0", "--at", "x=-1")
    assert all(math.isfinite(p["grad"]["x"]) for p in got)


def test_non_finite_is_strict_json_null_with_a_note():
    result = invoke("value", "log(x)", "--at", "x=-1", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"at": {"x": -1.0}, "value": None}
    assert "value is not finite in 1 of 1 rows" in result.stderr


def test_points_combine_as_a_product_and_at_accepts_expressions():
    got = data("value", "x + 10*y", "--at", "x=1", "--at", "x=2", "--at", "y=pi/pi")
    assert [p["value"] for p in got] == [11.0, 12.0]
    got = data("value", "x - y", "--at", "x=1,y=2", "--at", "y=5,x=3")  # the same names, in any order
    assert [p["value"] for p in got] == [-1.0, -2.0]
    got = data("value", "x*y", "--grid", "x=0:1:2", "--grid", "y=1:3:3")
    assert [(p["at"]["x"], p["at"]["y"]) for p in got] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["grad", "x*y", "--at", "x=1"], 2, "y"),
        (["grad", "x*y", "--at", "x=1,y=2", "--device", "cuda"], 2, "CUDA"),
        (["grad", "x", "--at", "x=1", "--dtype", "float16"], 2, "dtype"),
        (["grad", "x", "--at", "x=1", "--format", "xml"], 2, "format"),
        (["grad", "x", "--at", "x=1,y=2", "--at", "x=3"], 2, "x"),
        (["grad", "x", "--at", "x=foo(1)"], 2, "--at x"),
        (["grad", "x", "--at", "1x=1"], 2, "identifier"),
        (["grad", "x", "--grid", "x=0:1"], 2, "start:stop:count"),
        (["value", "__import__('os').system('id')"], 3, "underscore"),
        (["value", "9**9**9"], 3, "too large"),
        (["grad", "x +", "--at", "x=1"], 3, "syntax"),
        (["jvp", "x", "--at", "x=1", "--tangent", "q=1"], 2, "q"),
        (["value", "x", "--at", "__import__('os').getpid()=1"], 2, "identifier"),
        (["value", "x", "--at", "x=1", "--precision", "0"], 2, "precision"),
        (["value", "x", "--at", "x=1", "--output", "/nonexistent/folder/out.csv"], 2, "cannot write"),
    ],
)
def test_errors_are_one_message_and_the_right_code(args, code, needle):
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("diffcli: error:") and needle in result.stderr
    assert "Traceback" not in result.output


def test_symbolic_and_latex():
    got = data("grad", "x**2*sin(y)", "--at", "x=1,y=2", "--symbolic", "--latex")
    assert got["symbolic"] == {"value": "x**2*sin(y)", "grad": {"x": "2*x*sin(y)", "y": "x**2*cos(y)"}}
    assert got["latex"]["grad"]["y"] == r"x^{2} \cos{\left(y \right)}"


def test_precision_and_tsv():
    result = invoke("value", "1/3", "--precision", "4", "--format", "tsv")
    assert result.stdout == "value\n0.3333\n"


def test_table_for_one_point_shows_the_hessian_matrix():
    result = invoke("hessian", "x**2*y", "--at", "x=1,y=2", "--format", "table")
    assert result.exit_code == 0
    assert "hessian x" in result.stdout and "hessian y" in result.stdout and "4.0" in result.stdout


def test_table_escapes_markup():
    result = invoke("value", "x", "--at", "x=1", "--format", "table", "--aux", "b=x")
    assert result.exit_code == 0 and "b (aux)" in result.stdout


def test_output_file_is_written_whole_or_not_at_all(tmp_path: Path):
    target = tmp_path / "out.csv"
    result = invoke("grad", "x*x", "--grid", "x=0:1:5", "--output", str(target))
    assert result.exit_code == 0 and target.read_text().startswith("x,value,grad_x\n")
    result = invoke("grad", "x*y", "--grid", "x=0:1:5", "--output", str(tmp_path / "bad.json"))
    assert result.exit_code == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_special_files_are_written_directly():
    result = invoke("value", "x", "--at", "x=1", "--output", os.devnull)
    assert result.exit_code == 0 and os.path.exists(os.devnull)


def test_output_modes_and_links_are_kept(tmp_path: Path):
    """A new file gets the umask's mode (as the shell's ``>``), a replaced one keeps its own, and
    writing through a symbolic link replaces its target, the link staying a link."""
    old_mask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.csv"
        assert invoke("value", "x", "--at", "x=1", "--output", str(fresh)).exit_code == 0
        assert fresh.stat().st_mode & 0o777 == 0o644
        private = tmp_path / "private.csv"
        private.write_text("old\n")
        private.chmod(0o600)
        assert invoke("value", "x", "--at", "x=2", "--output", str(private)).exit_code == 0
        assert private.stat().st_mode & 0o777 == 0o600 and private.read_text().startswith("x,value")
        link = tmp_path / "link.csv"
        link.symlink_to(private)
        assert invoke("value", "x", "--at", "x=3", "--output", str(link)).exit_code == 0
        assert link.is_symlink() and private.read_text() == "x,value\n3.0,3.0\n"
    finally:
        os.umask(old_mask)


@pytest.mark.parametrize(
    ("target", "needle"), [(".", "is a folder"), ("/dev/full", "No space left on device")], ids=["folder", "full"]
)
def test_outputs_that_cannot_be_written_are_usage_errors(tmp_path, target, needle):
    for fmt in ("csv", "json", "parquet", "table"):
        result = invoke("value", "x", "--grid", "x=0:1:100000", "--format", fmt, "--output", target)
        assert result.exit_code == 2 and needle in result.stderr and "\n" not in result.stderr.strip(), fmt


def test_huge_grids_are_refused_by_a_stated_limit():
    result = invoke("value", "x", "--grid", "x=0:1:10000000000000000000")
    assert result.exit_code == 2 and "at most 2**53" in result.stderr
    result = invoke("value", "x*y", "--grid", "x=0:1:1000000000", "--grid", "y=0:1:1000000000")
    assert result.exit_code == 2 and "multiply to more than 2**53" in result.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--steps", "10", "--trajectory", "--at", "step=1,r=2"], "'step' would appear twice"),
        (["--steps", "3", "--output-expr", "r=x", "--at", "r=2"], "'r' would appear twice"),
        (["--steps", "3", "--at", "r=2,grad_r=3", "--output-expr", "v=x+grad_r"], "'grad_r' would appear twice"),
        (["--steps", "1000000000000", "--method", "reverse", "--at", "r=2"], "GiB, more than this machine has"),
    ],
)
def test_scan_name_clashes_and_impossible_memory_are_usage_errors(args, needle):
    result = invoke("scan", "x = r*x*(1-x)", "--init", "x=0.2", *args)
    assert result.exit_code == 2 and needle in result.stderr, result.output


# Real processes: pipes, exit codes and what gets imported.


def test_output_to_dev_stdout_appends_as_the_shell_opened_it(tmp_path):
    log = tmp_path / "log"
    log.write_text("old\n")
    command = f"{sys.executable} -m diffcli value 'x*x' --at x=3 --format csv --output /dev/stdout >> {log}"
    assert subprocess.run(command, shell=True, timeout=120).returncode == 0
    assert log.read_text() == "old\nx,value\n3.0,9.0\n"


@pytest.mark.parametrize("idle", ["inf", "nan", "0", "-1"])
def test_serve_idle_must_be_a_positive_number(idle):
    result = invoke("serve", "--idle", idle)
    assert result.exit_code == 2 and "--idle must be a positive number" in result.stderr


@pytest.mark.parametrize(
    ("shell", "code", "needle"),
    [
        ("diffcli value x --at x=1 >&-", 2, "cannot write stdout: Bad file descriptor"),
        ("diffcli value x --input - <&-", 4, "stdin: cannot read: Bad file descriptor"),
        ("diffcli value x --at x=1 -o out.csv >&- <&-", 0, ""),
    ],
)
def test_closed_standard_streams(tmp_path, shell, code, needle):
    command = shell.replace("diffcli", f"{sys.executable} -m diffcli")
    proc = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == code and needle in proc.stderr and "Traceback" not in proc.stderr
    if code == 0:  # the output file did not take stdout's number
        assert (tmp_path / "out.csv").read_text() == "x,value\n1.0,1.0\n"


@pytest.mark.parametrize("delay", [0.2, 0.8, 1.5])
def test_ctrl_c_during_the_imports_is_130(delay):
    command = [sys.executable, "-m", "diffcli", "grad", "x*y", "--at", "x=1,y=2"]
    env = {**os.environ, "DIFFCLI_NO_SERVER": "1"}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) in ((130, b"diffcli: interrupted\n"), (0, b"")), (proc.returncode, err)


def test_ctrl_c_while_a_pipe_is_slow_ends_at_once():
    """The reading thread may take the signal; the main thread still ends the command at once."""
    command = [sys.executable, "-m", "diffcli", "value", "x", "--input", "-", "--format", "csv"]
    env = {**os.environ, "DIFFCLI_NO_SERVER": "1"}
    with subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        proc.stdin.write(b"x\n1\n")
        proc.stdin.flush()  # and the pipe stays open, as a slow producer's
        assert proc.stdout.readline() == b"x,value\n" and proc.stdout.readline() == b"1.0,1.0\n"
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        code = proc.wait(timeout=30)
        assert time.monotonic() - start < 3 and code == 130 and proc.stderr.read() == b"diffcli: interrupted\n"
        proc.stdin.close()
