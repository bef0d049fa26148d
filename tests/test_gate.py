"""Scripts and CI: --expect as a gate, check --allow-kinks, usage errors where a vector is missing,
the formulas alone, and help that reads as commands are typed."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from diffcli.cli import app

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env={"DIFFCLI_NO_SERVER": "1", **(env or {})})


def test_expect_passes_and_fails_where_it_should():
    point = ["grad", "x**2*sin(y)", "--at", "x=1,y=2"]
    exact = 2 * math.sin(2)
    ok = invoke(*point, "--expect", f"grad_x={exact!r}", "--rtol", "1e-12")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["grad"]["x"] == exact
    off = invoke(*point, "--expect", f"grad_x={exact * (1 + 1e-9)!r}", "--rtol", "1e-12", "--atol", "0")
    assert off.exit_code == 5 and json.loads(off.stdout)["grad"]["x"] == exact  # the results are still written
    assert off.stderr.count("\n") == 1 and "grad_x: 1 of 1 rows off; row 1 gave 1.8185948536513634" in off.stderr
    several = invoke(*point, "--expect", "value=0.9092974268256817,grad_y=0", "--expect", "grad_x=1.8185948536513634")
    assert several.exit_code == 5 and "grad_y" in several.stderr and "grad_x" not in several.stderr
    unknown = invoke(*point, "--expect", "grad_z=1")
    assert unknown.exit_code == 2 and "'grad_z', which is not a result column" in unknown.stderr and not unknown.stdout


def test_expect_per_row_of_an_input_and_from_a_file_of_expected_rows(tmp_path):
    (tmp_path / "pts.csv").write_text("x,y\n1,2\n3,4\n-1,0.5\n")
    rows = ["grad", "x*y", "-i", str(tmp_path / "pts.csv"), "-f", "csv"]
    assert invoke(*rows, "--expect", "value=2").exit_code == 5  # only the first row gives 2
    first = invoke(*rows)
    (tmp_path / "want.csv").write_text(first.stdout)
    assert invoke(*rows, "--expect-file", str(tmp_path / "want.csv")).exit_code == 0
    (tmp_path / "want.json").write_text(json.dumps([{"grad_x": 2.0}, {"grad_x": 4.0}, {"grad_x": 0.5}]))
    assert invoke(*rows, "--expect-file", str(tmp_path / "want.json")).exit_code == 0
    (tmp_path / "off.json").write_text(json.dumps([{"grad_x": 2.0}, {"grad_x": 4.5}, {"grad_x": 0.5}]))
    off = invoke(*rows, "--expect-file", str(tmp_path / "off.json"))
    assert off.exit_code == 5 and "grad_x: 1 of 3 rows off; row 2 gave 4.0, expected 4.5" in off.stderr
    (tmp_path / "short.json").write_text(json.dumps([{"grad_x": 2.0}]))
    short = invoke(*rows, "--expect-file", str(tmp_path / "short.json"))
    assert short.exit_code == 5 and "has 1 rows, the results 3" in short.stderr


def test_expect_gates_a_scan():
    scan = ["scan", "x = r*x", "--init", "x=1", "--steps", "3", "--at", "r=2", "--wrt", "r"]
    assert invoke(*scan, "--expect", "value=8,grad_r=12").exit_code == 0
    assert invoke(*scan, "--expect", "grad_r=13").exit_code == 5


def test_check_allows_documented_kinks_when_asked():
    kink = ["check", "relu(x)", "--at", "x=0", "--at", "x=2", "-f", "json"]
    strict, allowed = invoke(*kink), invoke(*kink, "--allow-kinks")
    assert strict.exit_code == 5 and allowed.exit_code == 0
    assert [r["kinks"] for r in json.loads(allowed.stdout)] == [1, 1]  # still reported
    assert invoke("check", "abs(x-1)", "--at", "x=0.5", "--allow-kinks").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jvp", "x*y", "--at", "x=1,y=2"], "jvp needs a tangent"),
        (["vjp", "u=x*y", "--at", "x=1,y=2"], "vjp needs a cotangent"),
        (["value", "x", "--at", "x=1e400"], "overflows a double"),
    ],
)
def test_what_would_silently_give_a_wrong_answer_is_a_usage_error(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.stderr and not result.stdout


def test_a_grid_of_one_value_is_its_start_as_torch_linspace():
    import torch

    got = json.loads(invoke("value", "x", "--grid", "x=0:1:1").stdout)
    assert got["at"]["x"] == torch.linspace(0, 1, 1).item() == 0.0
    three = json.loads(invoke("value", "x", "--grid", "x=0:1:3").stdout)
    assert [r["at"]["x"] for r in three] == torch.linspace(0, 1, 3, dtype=torch.float64).tolist()


def test_formulas_alone_need_no_point():
    result = invoke("grad", "x**2*sin(y)", "--symbolic", "--latex", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"quantity": "value", "symbolic": "x**2*sin(y)", "latex": "x^{2} \\sin{\\left(y \\right)}"},
        {"quantity": "grad_x", "symbolic": "2*x*sin(y)", "latex": "2 x \\sin{\\left(y \\right)}"},
        {"quantity": "grad_y", "symbolic": "x**2*cos(y)", "latex": "x^{2} \\cos{\\left(y \\right)}"},
    ]
    assert invoke("grad", "x**2*sin(y)").exit_code == 2  # without --symbolic, a point is still needed


def test_help_reads_as_commands_are_typed():
    grad = invoke("grad", "--help").stdout
    assert "Usage: diffcli grad [OPTIONS] EXPR\n" in grad and "{" not in grad and "<int>" not in grad
    assert "<str>" not in grad and "--expect COLUMN=VALUE" in grad
    assert "UPDATE..." in invoke("scan", "--help").stdout and "<list" not in invoke("scan", "--help").stdout
    top = invoke("--help").stdout
    assert "5 a check or --expect failed" in top and "141" in top


def test_debug_is_taken_after_the_subcommand_too(capsys, monkeypatch):
    from diffcli.cli import run

    monkeypatch.setenv("DIFFCLI_NO_SERVER", "1")
    assert run(["value", "x", "--at", "x=1", "--debug"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 1.0
    assert run(["value", "--", "--debug"]) == 2  # after --, the expression --debug (which needs a value)
    assert "no value for debug" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("diffcli grad x --format js", ["json"]),
        ("diffcli scan x --method f", ["forward"]),
        ("diffcli completion z", ["zsh"]),
        ("diffcli value x --dtype float", ["float64", "float32"]),
    ],
)
def test_option_values_complete(words, expected):
    env = {"_DIFFCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    import contextlib
    import io
    import os

    from diffcli.cli import run

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            run(words.split()[1:])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert out.getvalue().split() == expected


def test_the_progress_line_says_the_share_done_and_the_time_left():
    import re
    import time

    from diffcli import cli

    progress = cli._Progress(after=1.0)
    progress.shown, progress.start = True, time.monotonic() - 4  # as on a terminal, 4 s into the run
    progress.update(rows=2_000, done=0.25)
    (task,) = progress.bar.tasks
    progress.close()
    found = re.fullmatch(r"2,000 rows, (\d+) rows/s, 25% done, (\d+) s left", task.description)
    assert found and 480 <= int(found[1]) <= 500 and 11 <= int(found[2]) <= 12, task.description


def test_families_come_from_every_option_and_only_for_indexed_names(tmp_path):
    def csv(*args: str) -> str:
        result = invoke(*args, "-f", "csv")
        assert result.exit_code == 0, result.stderr
        return result.stdout

    assert csv("jvp", "sum(x[i]^2, i, 1, 3)", "--at", "x=1", "--tangent", "x=1").splitlines()[1] == "1.0,3.0,6.0"
    assert csv("jvp", "sum(x[i]^2, i, 1, 3)", "--at", "x=1", "--tangent", "x=1,x[2]=0").splitlines()[1] == "1.0,3.0,4.0"
    assert csv("value", "x[1]*x[2]", "--grid", "x[2]=0:1:2", "--at", "x=3").splitlines()[1:] == [
        "3.0,0.0,0.0",
        "3.0,1.0,3.0",
    ]
    assert csv("derivative", "x[1]^2*x[2]", "--wrt", "x", "--at", "x=2").splitlines()[1] == "2.0,8.0,4.0"
    (tmp_path / "fam.csv").write_text("x[1],x[2],label\n1,2,a\n")
    mapped = csv("grad", "x[1]*x[2]", "-i", str(tmp_path / "fam.csv"), "--map", "x[1]=x[2]")
    assert mapped.splitlines()[1] == "1,2.0,a,4.0,2.0,2.0"  # x_1 from column x[2], x_2 from its own column
    stray = invoke("grad", "x[1]*x[2]", "-i", str(tmp_path / "fam.csv"), "--map", "xx=x[2]")
    assert stray.exit_code == 2 and "xx is not a variable" in stray.stderr
    plain = invoke("value", "y - x_0", "--at", "x=2,y=10")  # x_0 written as a name: not the family x's
    assert plain.exit_code == 2 and "no value for x_0" in plain.stderr
    (tmp_path / "x.csv").write_text("x\n2\n")
    scan = csv("scan", "s = s + x[1]*x[2]", "--init", "s=0", "--steps", "2", "-i", str(tmp_path / "x.csv"))
    assert scan.splitlines() == ["x,value,grad_x_1,grad_x_2,grad_s0", "2.0,8.0,4.0,4.0,1.0"]


def test_expected_rows_in_diffclis_own_json(tmp_path):
    point = ["hessian", "u=x^2*y", "--at", "x=1,y=2", "--prefix", "d_"]
    (tmp_path / "h.json").write_text(invoke(*point, "--format", "json").stdout)  # one object, nested results
    assert invoke(*point, "--expect-file", str(tmp_path / "h.json")).exit_code == 0
    off = invoke("hessian", "u=x^2*y + 1e-3*x*y", *point[2:], "--expect-file", str(tmp_path / "h.json"))
    assert off.exit_code == 5 and "d_hessian_x_y: 1 of 1 rows off; row 1 gave 2.001, expected 2.0" in off.stderr
    (tmp_path / "g.ndjson").write_text(invoke("grad", "x^2", "--at", "x=1", "--format", "ndjson").stdout)
    wrong = invoke("grad", "x", "--at", "x=1", "--expect-file", str(tmp_path / "g.ndjson"))
    assert wrong.exit_code == 5 and "grad_x" in wrong.stderr  # the nested gradient is compared, not skipped


def test_expect_takes_nan_and_refuses_a_column_given_twice():
    assert invoke("value", "log(x)", "--at", "x=-1", "--expect", "value=nan").exit_code == 0
    twice = invoke("value", "x", "--at", "x=1", "--expect", "value=1", "--expect", "value=2")
    assert twice.exit_code == 2 and "twice" in twice.stderr
    alone = invoke("grad", "x^2", "--symbolic", "--expect", "value=1")
    assert alone.exit_code == 2 and "give a point" in alone.stderr


def test_the_second_review_on_families_and_diffclis_own_json(tmp_path):
    assert invoke("value", "x[1]", "--at", "x[01]=2").exit_code == 0  # x[01] is x[1]
    (tmp_path / "a.csv").write_text("a\n3\n")
    mapped = invoke("value", "x[0]*x[1]", "-i", str(tmp_path / "a.csv"), "--map", "x=a", "-f", "csv")
    assert mapped.exit_code == 0 and mapped.stdout.splitlines()[1] == "3.0,9.0"  # --map fills a family too
    (tmp_path / "c.ndjson").write_text('{"x": 1, "at": {"x": 5}}\n')
    both = invoke("value", "x", "-i", str(tmp_path / "c.ndjson"))
    assert both.exit_code == 4 and "both in its" in both.stderr  # never a silent choice between them
