"""The front door under fuzzing: any expression text, option value or input file ends with exit
0, 2, 3, 4 or 5 — never a traceback (an internal error, exit 1), never a hang."""

from __future__ import annotations

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
    if result.exit_code:  # our one line, or typer's usage message (one line in the real binary)
        assert result.stderr.startswith(("diffcli: error:", "Usage:")), (args, result.stderr)


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
