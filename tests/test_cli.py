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

from .conftest import first_lines

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
        (["value", "__import__('os').system('id')"], 3, "function"),
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


# Real processes: pipes, exit codes and what gets imported.


def test_ctrl_c_exits_130_without_traceback_or_partial_file(tmp_path):
    target = tmp_path / "big.csv"
    # a billion rows: far from done when Ctrl-C comes (50 million once finished first on a fast machine)
    command = [sys.executable, "-m", "diffcli", "grad", "sin(x)", "--grid", "x=0:1:1000000000", "-o", str(target)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            time.sleep(5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_pipe_to_head_is_clean():
    proc = first_lines("diffcli value x --grid x=0:1:200000 --format ndjson")
    assert len(proc.stdout.splitlines()) == 3 and proc.stderr == ""


def test_usage_error_is_one_line(cli):
    proc = cli("grad", "x", "--qqq")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["diffcli: error: No such option: --qqq (see 'diffcli grad --help')"]
    proc = cli("grad", "x", "y", "--at", "x=1")
    assert proc.returncode == 2 and proc.stderr.startswith("diffcli: error: Got unexpected extra argument")


def test_auto_format_is_json_in_a_pipe(cli):
    proc = cli("grad", "x*x", "--at", "x=2")
    assert json.loads(proc.stdout) == {"at": {"x": 2.0}, "value": 4.0, "grad": {"x": 4.0}}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["completion", "bash"], ["grad", "--help"]])
def test_light_paths_import_neither_torch_nor_sympy(args):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "diffcli", *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported  # the check sees imports at all
    assert not imported & {"torch", "sympy", "numpy", "polars", "rich"}


def test_version(cli):
    from diffcli import __version__

    assert cli("--version").stdout == f"diffcli {__version__}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_completions_are_current(shell, cli):
    committed = Path(__file__).parent.parent / "completions" / f"diffcli.{shell}"
    assert cli("completion", shell).stdout == committed.read_text()


def test_tab_completion_answers(tmp_path):
    env = {
        **os.environ,
        "_DIFFCLI_COMPLETE": "complete_bash",
        "_TYPER_COMPLETE_ARGS": "diffcli gr",
        "COMP_WORDS": "diffcli gr",
        "COMP_CWORD": "1",
    }
    proc = subprocess.run([sys.executable, "-m", "diffcli"], env=env, capture_output=True, text=True, timeout=60)
    assert "grad" in proc.stdout


def test_a_tab_press_imports_neither_torch_nor_sympy():
    env = {
        **os.environ,
        "_DIFFCLI_COMPLETE": "complete_bash",
        "_TYPER_COMPLETE_ARGS": "diffcli gr",
        "COMP_WORDS": "diffcli gr",
        "COMP_CWORD": "1",
        "DIFFCLI_NO_SERVER": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "diffcli"], env=env, capture_output=True, text=True, timeout=60
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "grad" in proc.stdout and "typer" in imported
    assert not imported & {"torch", "sympy", "numpy", "polars", "rich"}


SCAN = ["scan", "x = r*x", "--init", "x=1", "--steps", "2", "--at", "r=2"]


@pytest.mark.parametrize("command", [["grad", "x*r", "--at", "x=1,r=2"], ["check", "x*r", "--at", "x=1,r=2"], SCAN])
@pytest.mark.parametrize(
    ("option", "needle"),
    [
        (["--batch-size", "0"], "--batch-size must be positive"),
        (["--no-header"], "--no-header and --columns go together"),
        (["--delimiter", ";;"], "--delimiter must be one character"),
    ],
)
def test_input_options_are_checked_alike_by_every_command(command, option, needle):
    result = invoke(*command, *option)
    assert result.exit_code == 2 and needle in result.stderr


def test_scan_checks_precision_as_every_command():
    result = invoke(*SCAN, "--precision", "40")
    assert result.exit_code == 2 and "--precision must be between 1 and 17" in result.stderr
