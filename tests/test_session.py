"""`diffcli run`: NDJSON requests answered in order, one line each, as the commands would answer."""

from __future__ import annotations

import json
import select
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from diffcli.cli import app
from diffcli.session import Session

runner = CliRunner()


def ask(*requests: object) -> list[dict]:
    lines = "".join(json.dumps(r) + "\n" if not isinstance(r, str) else r + "\n" for r in requests)
    result = runner.invoke(app, ["run"], input=lines)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("request_", "args"),
    [
        ({"op": "grad", "expr": "x**2*sin(y)", "at": {"x": 1, "y": 2}}, ["grad", "x**2*sin(y)", "--at", "x=1,y=2"]),
        ({"op": "hessian", "expr": "x*y**2", "at": {"x": 1.5, "y": -2}}, ["hessian", "x*y**2", "--at", "x=1.5,y=-2"]),
        (
            {"op": "jacobian", "expr": ["u=x*y", "v=x+y"], "at": {"x": 2, "y": 3}},
            ["jacobian", "u=x*y", "v=x+y", "--at", "x=2,y=3"],
        ),
        (
            {"op": "vjp", "expr": ["u=x*y", "v=x+y"], "at": {"x": 2, "y": 3}, "cotangent": {"u": 1}},
            ["vjp", "u=x*y", "v=x+y", "--at", "x=2,y=3", "--cotangent", "u=1"],
        ),
        (
            {"op": "derivative", "expr": "x**3*y", "wrt": "x,x,y", "at": {"x": 2, "y": 5}},
            ["derivative", "x**3*y", "--wrt", "x,x,y", "--at", "x=2,y=5"],
        ),
        (
            {"op": "grad", "expr": "x*x", "at": {"x": 2}, "aux": {"cube": "x**3"}, "precision": 3},
            ["grad", "x*x", "--at", "x=2", "--aux", "cube=x**3", "--precision", "3"],
        ),
        (
            {"op": "taylor", "expr": "exp(x)*sin(y)", "at": {"x": 0, "y": 1}, "order": 3},
            ["taylor", "exp(x)*sin(y)", "--at", "x=0,y=1", "--order", "3"],
        ),
        (
            {"op": "scan", "expr": "x = r*x*(1-x)", "init": {"x": 0.2}, "steps": 50, "at": {"r": 2.8}, "wrt": "r,x0"},
            ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8", "--wrt", "r,x0"],
        ),
        (
            {
                "op": "scan",
                "expr": ["x = y", "y = x + y"],
                "init": {"x": 0, "y": 1},
                "steps": 3,
                "trajectory": True,
                "outputs": {"s": "x*y"},
            },
            [
                "scan",
                "x = y",
                "y = x + y",
                "--init",
                "x=0,y=1",
                "--steps",
                "3",
                "--trajectory",
                "--output-expr",
                "s=x*y",
            ],
        ),
    ],
)
def test_answers_are_what_the_command_prints(request_, args):
    (answer,) = ask({"id": 7, **request_})
    expected = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    assert answer == {"id": 7, **(expected if isinstance(expected, dict) else {"results": expected})}
    assert list(answer)[0] == "id"


def test_several_points_and_grids():
    (answer,) = ask({"id": "g", "op": "value", "expr": "x*y", "grid": ["x=0:1:3"], "at": {"y": 2}})
    assert [r["value"] for r in answer["results"]] == [0.0, 1.0, 2.0]
    (answer,) = ask({"op": "value", "expr": "x", "at": [{"x": 1}, {"x": 2}]})
    assert answer["id"] is None and [r["value"] for r in answer["results"]] == [1.0, 2.0]


def test_bad_requests_get_error_objects_and_the_stream_goes_on():
    answers = ask(
        "not json",
        {"id": 1, "op": "grad", "expr": "x +* 2", "at": {"x": 1}},
        {"id": 2, "op": "grad", "expr": "x*y", "at": {"x": 1}},
        {"id": 3, "op": "nope", "expr": "x"},
        {"id": 4, "op": "grad", "expr": "x", "at": {"x": "one"}},
        {"id": 5, "op": "grad", "expr": "__import__('os').system('id')", "at": {}},
        {"id": 6, "op": "grad", "expr": "x", "at": {"x": 1}, "surprise": True},
        [1, 2],
        {"id": 7, "op": "grad", "expr": "x*x", "at": {"x": 3}},
    )
    codes = [a.get("error", {}).get("code") for a in answers]
    assert codes == [2, 3, 2, 2, 2, 3, 2, 2, None]
    assert answers[1]["error"]["position"] == 3 and answers[2]["error"]["message"].startswith("no value for y")
    assert answers[-1] == {"id": 7, "at": {"x": 3.0}, "value": 9.0, "grad": {"x": 6.0}}


def test_a_formula_is_compiled_once():
    session = Session()
    for x in range(5):
        session.answer(json.dumps({"op": "grad", "expr": "sin(x)", "at": {"x": x}}).encode())
    session.answer(json.dumps({"op": "grad", "expr": "cos(x)", "at": {"x": 1}}).encode())
    assert len(session.compiled) == 2


def test_a_co_process_gets_each_answer_before_the_next_question():
    command = [sys.executable, "-m", "diffcli", "run"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        for x in (1, 2):
            proc.stdin.write(json.dumps({"id": x, "op": "grad", "expr": "x*x", "at": {"x": x}}).encode() + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready and json.loads(proc.stdout.readline())["grad"] == {"x": 2.0 * x}
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def test_a_request_beyond_the_stated_size_is_refused_at_once():
    """30 million points would be a 4.5 GB line: refused by the stated limit, before any work."""
    big, clash = ask(
        {"id": 1, "op": "value", "expr": "x", "grid": "x=0:1:30000000"},
        {"id": 2, "op": "grad", "expr": "x*x", "at": {"x": 1, "value": 2}},
    )
    assert big["error"]["code"] == 2 and "at most 1,000,000 points" in big["error"]["message"]
    assert clash["error"]["code"] == 2 and "'value' would appear twice" in clash["error"]["message"]


def test_check_answers_with_the_report_and_a_verdict():
    (kink, allowed, smooth) = ask(
        {"id": 1, "op": "check", "expr": "relu(x)", "at": [{"x": 0}, {"x": 1}]},
        {"id": 2, "op": "check", "expr": "relu(x)", "at": [{"x": 0}, {"x": 1}], "allow_kinks": True},
        {"id": 3, "op": "check", "expr": "sin(x)*y", "grid": ["x=-2:2:9"], "at": {"y": 3}, "order": 2},
    )
    expected = json.loads(runner.invoke(app, ["check", "relu(x)", "--at", "x=0", "--at", "x=1", "-f", "json"]).stdout)
    assert kink == {"id": 1, "report": expected, "ok": False}
    assert allowed["ok"] is True and [r["kinks"] for r in allowed["report"]] == [1, 1]
    assert smooth["ok"] is True and {r["quantity"] for r in smooth["report"]} == {
        "grad_x", "grad_y", "hessian_x_x", "hessian_x_y", "hessian_y_x", "hessian_y_y"
    }  # fmt: skip


def test_answers_carry_the_notes_the_command_prints():
    (kink, overflow, reading, quiet) = ask(
        {"id": 1, "op": "grad", "expr": "abs(x)", "at": [{"x": 0}, {"x": 2}]},
        {"id": 2, "op": "value", "expr": "exp(x)", "at": {"x": 1000}},
        {"id": 3, "op": "value", "expr": "1/2x", "at": {"x": 4}},
        {"id": 4, "op": "value", "expr": "x", "at": {"x": 4}},
    )
    assert kink["notes"] == [
        "'abs(x)' is not differentiable at 1 of 2 points (a kink, tie, jump or branch boundary); "
        "the derivatives there follow the conventions in the README"
    ]
    assert overflow["value"] is None and overflow["notes"] == ["value is not finite in 1 of 1 rows (written as null)"]
    assert reading["value"] == 2.0 and "divides by 2 only" in reading["notes"][0]
    assert "notes" not in quiet


def test_families_in_requests():
    (every, one, plain) = ask(
        {"id": 1, "op": "grad", "expr": "sum(x[i]^2, i, 1, 3)", "at": {"x": 1}},
        {"id": 2, "op": "grad", "expr": "sum(x[i]^2, i, 1, 3)", "at": {"x": 1, "x[2]": 5}},
        {"id": 3, "op": "value", "expr": "y - x_0", "at": {"x": 1, "y": 2}},
    )
    assert every["grad"] == {"x_1": 2.0, "x_2": 2.0, "x_3": 2.0}
    assert one["value"] == 27.0 and one["grad"]["x_2"] == 10.0
    assert plain["error"]["code"] == 2


def test_answers_name_the_request_fields_not_flags():
    scan, jvp, dtype = ask(
        {"op": "scan", "expr": "x = r*x", "init": {"x": 1}, "steps": 2, "at": {"r": 2}, "method": "sideways"},
        {"op": "jvp", "expr": "x*y", "at": {"x": 1, "y": 2}},
        {"op": "grad", "expr": "x", "at": {"x": 1}, "dtype": "float16"},
    )
    assert scan["error"]["message"].startswith('"method" must be one of auto, forward, reverse')
    assert '"tangent": {"x": 1}' in jvp["error"]["message"]
    assert dtype["error"]["message"] == "unknown \"dtype\" 'float16'; expected float64 or float32"
