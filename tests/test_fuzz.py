"""The front door under fuzzing: any expression text, option value or input file ends with exit
0, 2, 3, 4 or 5 — never a traceback (an internal error, exit 1), never a hang."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from diffcli.cli import app

from .test_language import DENIAL_OF_SERVICE, EXPLOITS

runner = CliRunner()
ALLOWED = {0, 2, 3, 4, 5}
fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
formula_text = st.text(alphabet="xyz0123456789.+-*/^%()<>=!, eisnqrtlogmaxpf_[]'\"@#$\\:;", max_size=50)


def ends_cleanly(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code in ALLOWED, (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    if result.exit_code:  # our one line (after any notes), or typer's usage message (one line in the real binary)
        lines = result.stderr.splitlines()
        assert any(line.startswith(("diffcli: error:", "Usage:")) for line in lines), (args, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


@fuzz
@given(st.one_of(formula_text, st.text(max_size=40)))
@example("__import__('os').system('id')")
@example("9**9**9")
def test_any_expression(text):
    ends_cleanly(["grad", text, "--at", "x=1,y=2,z=3", "--format", "json"])


def test_exploit_and_denial_of_service_seeds():
    for text in [*EXPLOITS, *DENIAL_OF_SERVICE, "sin((7**(exp(exp(exp(10*e)))))+1)"]:
        ends_cleanly(["value", text, "--at", "x=1,y=2", "--format", "json"])


option_value = st.one_of(st.text(max_size=20), st.from_regex(r"[xyz]=[-0-9.e:,pi/()]{0,12}", fullmatch=True))


@fuzz
@given(
    st.sampled_from(
        [
            "--at",
            "--grid",
            "--wrt",
            "--tangent",
            "--aux",
            "--format",
            "--precision",
            "--dtype",
            "--device",
            "--batch-size",
            "--map",
            "--order",
        ]
    ),
    option_value,
    st.sampled_from(["grad", "jvp", "derivative", "hessian", "check"]),
)
def test_any_option_value(option, value, command):
    at = [] if option == "--at" else ["--at", "x=0.5,y=2"]
    ends_cleanly([command, "x*y", *at, option, value, "--format", "csv"])


@fuzz
@given(st.binary(max_size=200) | st.text(alphabet='xyz,\n\t"0123456789.-eE nanif', max_size=200).map(str.encode))
def test_any_input_file(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("fuzz") / "input.csv"
    path.write_bytes(content)
    ends_cleanly(["grad", "x*y", "--input", str(path), "--format", "csv"])


def random_scan(rng: random.Random) -> list[str]:
    """A ``scan`` command line as users and scripts write them, clashing names and bad values included."""
    updates = rng.choice(
        [["x = r*x*(1-x)"], ["x = x + h*v", "v = v - h*sin(x)"], ["x = max(x, r) - 1/x"], ["x = x"], ["x = r"]]
    )
    args = ["scan", *updates, "--init", rng.choice(["x=0.2,v=1", "x=0.2", "x=1e308,v=0", "v=1", "x=nan,v=1"])]
    args += ["--steps", rng.choice(["0", "1", "7", "50", "-1", "1000000000000", "x"])]
    names = ["r", "h", "value", "grad_r", "step", "x0", "v0", "q"]
    if rng.random() < 0.9:
        args += ["--at", ",".join(f"{n}={rng.choice(['0.5', '2', '-1', '0', '1e300'])}" for n in rng.sample(names, 3))]
    if rng.random() < 0.2:
        args += ["--grid", rng.choice(["r=0:4:5", "h=0.1:0.2:3", "r=1:2:10000000000000000000"])]
    if rng.random() < 0.3:
        args += ["--output-expr", rng.choice(["loss=(x-0.5)**2", "r=x", "value=x", "step=x", "e=x+v", "x=x", "bad"])]
    if rng.random() < 0.3:
        args += ["--wrt", rng.choice(["r", "x0", "r,x0", "h,v0", "q", "x", "r,r"])]
    for flag, chance in (("--trajectory", 0.2), ("--check", 0.2)):
        if rng.random() < chance:
            args.append(flag)
    if rng.random() < 0.2 or "1000000000000" in args:  # forward mode would run those steps (a user's choice)
        args += ["--method", "reverse" if "1000000000000" in args else rng.choice(["auto", "forward", "sideways"])]
    if rng.random() < 0.2:
        args += [rng.choice(["--rtol", "--atol"]), rng.choice(["1e-6", "0", "nan", "inf", "-1"])]
    if rng.random() < 0.2:
        args += ["--dtype", rng.choice(["float32", "float64", "int8"])]
    return [*args, "--format", rng.choice(["csv", "json", "ndjson", "table", "tsv"])]


def random_check(rng: random.Random) -> list[str]:
    """A ``check`` command line, now and then with bad options."""
    text = rng.choice(["sin(x)*exp(-y**2)", "abs(x)", "x**y", "log(x)", "max(x, y)", "x % y", "gamma(x)", "1/x"])
    args = ["check", text, "--at", f"x={rng.choice(['0', '1', '-1', '0.5', '1e-300'])},y={rng.choice(['2', '0'])}"]
    if rng.random() < 0.3:
        args += ["--order", rng.choice(["1", "2", "3", "0"])]
    if rng.random() < 0.3:
        args += ["--wrt", rng.choice(["x", "y", "z", "x,x"])]
    if rng.random() < 0.2:
        args += [rng.choice(["--rtol", "--atol"]), rng.choice(["1e-6", "nan", "-1", "inf"])]
    if rng.random() < 0.2:
        args += ["--grid", rng.choice(["x=0:1:5", "x=-1:1:10000000000000000000"])]
    return [*args, "--format", rng.choice(["csv", "json", "table"])]


@pytest.mark.slow
def test_random_scan_and_check_command_lines():
    count = int(os.environ.get("DIFFCLI_FUZZ_COMMANDS", "150"))
    rng = random.Random(int(os.environ.get("DIFFCLI_FUZZ_SEED", "3")))
    for _ in range(count):
        ends_cleanly((random_scan if rng.random() < 0.7 else random_check)(rng))
