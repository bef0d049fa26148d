"""The hard points of the language, each with its documented convention (README, "Conventions"),
and what `check` says of them."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from typer.testing import CliRunner

from diffcli.cli import app

runner = CliRunner()
nan, inf = math.nan, math.inf


def grad(expr: str, **at: float) -> tuple[float, float, str]:
    """(value, grad_x, stderr) at one point."""
    point = ",".join(f"{k}={v}" for k, v in at.items())
    result = runner.invoke(app, ["grad", expr, "--at", point, "--wrt", "x", "--format", "csv"])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    return float(row["value"]), float(row["grad_x"]), result.stderr


# expression, point, value, derivative, whether stderr says "not differentiable"
CASES = [
    ("abs(x)", {"x": 0}, 0.0, 0.0, True),  # a subgradient: sign(0) = 0
    ("relu(x)", {"x": 0}, 0.0, 0.0, True),  # as torch and JAX
    ("max(x, y)", {"x": 1, "y": 1}, 1.0, 0.5, True),  # a tie splits the derivative
    ("min(x, y)", {"x": 1, "y": 1}, 1.0, 0.5, True),
    ("sign(x)", {"x": 0}, 0.0, nan, True),  # does not exist: NaN
    ("floor(x)", {"x": 2}, 2.0, 0.0, True),  # 0 at the jump, as everywhere
    ("heaviside(x)", {"x": 0}, 0.5, nan, True),
    ("heaviside(x, 1)", {"x": 0}, 1.0, nan, True),
    ("clamp(x, 0, 1)", {"x": 1}, 1.0, 0.5, True),  # ½ at the bounds (a tie of min/max)
    ("sqrt(x)", {"x": 0}, 0.0, inf, False),  # the one-sided derivative, infinite
    ("x**0.5", {"x": 0}, 0.0, inf, False),
    ("log(x)", {"x": 0}, -inf, inf, False),
    ("log(x)", {"x": -1}, nan, nan, False),  # no derivative where the value is not a number
    ("x**y", {"x": -2, "y": 3}, -8.0, 12.0, False),  # integer powers of negatives are real
    ("x**y", {"x": -2, "y": 0.5}, nan, nan, False),
    ("x**y", {"x": 0, "y": 0}, 1.0, nan, False),  # 0**0 = 1, as IEEE pow and SymPy
    ("where(x > 0, log(x), 0)", {"x": -1}, 0.0, 0.0, False),  # the branch not taken is never evaluated
    ("x if x > 0 else -x", {"x": 0}, 0.0, -1.0, True),  # the taken branch's derivative
    ("x if x < 0 else 2*x if x < 1 else 3*x", {"x": 0.5}, 1.0, 2.0, False),
    ("x if x < 0 else 2*x if x < 1 else 3*x", {"x": 1}, 3.0, 3.0, True),
]


@pytest.mark.parametrize(("expr", "at", "value", "derivative", "kink"), CASES)
def test_convention(expr, at, value, derivative, kink):
    got_value, got_derivative, stderr = grad(expr, **at)
    assert got_value == pytest.approx(value, nan_ok=True)
    assert got_derivative == pytest.approx(derivative, nan_ok=True)
    assert ("not differentiable" in stderr) == kink


def check(*args: str):
    result = runner.invoke(app, ["check", *args, "--format", "json"])
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_check_agrees_on_a_smooth_function_to_1e_12():
    code, rows, _ = check("sin(x)*exp(-y**2)", "--grid", "x=-2:2:50", "--grid", "y=-2:2:50", "--order", "2")
    assert code == 0 and all(r["ok"] for r in rows)
    autograd = [r for r in rows if r["engine"] == "autograd"]
    assert len(autograd) == 6 and max(r["max_abs"] for r in autograd) <= 1e-12
    finite = [r for r in rows if r["engine"] == "finite differences"]
    assert len(finite) == 6 and max(r["max_abs"] for r in finite) <= 1e-8


def test_check_reports_a_kink_and_exits_5():
    code, rows, stderr = check("relu(x)", "--at", "x=0", "--at", "x=1")
    assert code == 5 and "disagreement" in stderr
    finite = next(r for r in rows if r["engine"] == "finite differences")
    assert not finite["ok"] and finite["at"] == {"x": 0.0} and finite["max_abs"] == pytest.approx(0.5)
    assert finite["kinks"] == 1


def test_check_shows_autograd_leaking_nan_through_a_branch():
    # torch.where's backward multiplies the branch not taken by 0, and 0 * inf is NaN
    code, rows, _ = check("where(x > 0, sqrt(x), 0)", "--at", "x=-1")
    autograd = next(r for r in rows if r["engine"] == "autograd")
    assert code == 5 and not autograd["ok"]


def test_check_of_a_constant_has_nothing_to_compare():
    assert check("2 + 3") == (0, [], "")


def test_check_tolerances_follow_the_dtype():
    code, rows, _ = check("exp(x)*cos(y) + x*y**3", "--grid", "x=-1:1:7", "--grid", "y=-1:1:7", "--dtype", "float32")
    assert code == 0 and all(r["ok"] for r in rows)
    code, _, _ = check(
        "exp(x)*cos(y) + x*y**3",
        "--grid",
        "x=-1:1:7",
        "--grid",
        "y=-1:1:7",
        "--rtol",
        "1e-20",
        "--atol",
        "1e-20",
        "--dtype",
        "float32",
    )
    assert code == 5


def test_an_engine_that_cannot_estimate_its_error_gives_no_verdict():
    import polars as pl
    import torch

    from diffcli.check import Report

    report, frame = Report(rtol=1e-9, atol=1e-9), pl.DataFrame({"x": [1.0, 2.0, 3.0]})
    exact, got = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.5, 1.5, nan])
    found = report.compare("f", "grad_x", "finite differences", exact, got, frame, slack=torch.tensor([inf, nan, inf]))
    assert found.failures == 2  # row 1: a NaN error estimate is no licence; row 2: NaN against 1.0
    assert found.at == {"x": 3.0}  # the worst


def test_float32_is_within_float32_accuracy_of_float64():
    args = [
        "hessian",
        "sin(x)*exp(-y**2) + log(1 + z**2)*x*y",
        "--grid",
        "x=-2:2:9",
        "--grid",
        "y=-2:2:9",
        "--grid",
        "z=-2:2:9",
        "--format",
        "csv",
    ]
    wide = list(csv.DictReader(io.StringIO(runner.invoke(app, args).stdout)))
    narrow = list(csv.DictReader(io.StringIO(runner.invoke(app, [*args, "--dtype", "float32"]).stdout)))
    for a, b in zip(wide, narrow):
        scale = max(abs(float(v)) for v in a.values())
        for column in a:
            assert abs(float(a[column]) - float(b[column])) <= 1e-5 * scale, column
