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
    ("x % 2", {"x": 2}, 0.0, 1.0, True),  # d/dx is 1 on both sides of the jump
    ("x % y", {"x": 7.5, "y": 0.1}, 7.5 % 0.1, 1.0, False),
    ("hypot(x, y)", {"x": 0, "y": 0}, 0.0, 0.0, True),  # the subgradient of least norm, as JAX
    ("sqrt(x**2 + y**2)", {"x": 0, "y": 0}, 0.0, 0.0, True),  # the same function, the same answer
    ("max(x, y, z)", {"x": 1, "y": 1, "z": 1}, 1.0, 1 / 3, True),  # an n-way tie: 1/n each
]


def test_mod_differentiates_in_its_divisor_exactly():
    # 7.5 % 0.1 is 0.0999…59 = 7.5 - 74·0.1 (the double 0.1 is a little over 1/10): d/dy = -74
    result = runner.invoke(app, ["grad", "x % y", "--at", "x=7.5,y=0.1", "--format", "json"])
    assert json.loads(result.stdout)["grad"] == {"x": 1.0, "y": -74.0}


def test_a_jvp_along_an_n_way_tie_is_the_one_sided_value():
    args = ["jvp", "max(x, y, z)", "--at", "x=1,y=1,z=1", "--tangent", "x=1,y=1,z=1", "--format", "json"]
    assert json.loads(runner.invoke(app, args).stdout)["jvp"] == pytest.approx(1.0)


def test_hessians_at_kinks_are_nan_where_the_first_derivative_jumps():
    result = runner.invoke(app, ["hessian", "abs(x) + relu(y)", "--at", "x=0,y=0", "--format", "csv"])
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert math.isnan(float(row["hessian_x_x"])) and math.isnan(float(row["hessian_y_y"]))
    assert float(row["hessian_x_y"]) == 0.0


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
    extended = [r for r in rows if r["engine"] == "extended precision"]
    assert len(extended) == 6 and max(r["max_rel"] for r in extended) <= 1e-14
    finite = [r for r in rows if r["engine"] == "finite differences"]
    assert len(finite) == 6 and max(r["max_abs"] for r in finite) <= 1e-8


def test_check_reports_a_kink_and_exits_5():
    code, rows, stderr = check("relu(x)", "--at", "x=0", "--at", "x=1")
    assert code == 5 and "disagreement" in stderr
    finite = next(r for r in rows if r["engine"] == "finite differences")
    assert not finite["ok"] and finite["at"] == {"x": 0.0} and finite["max_abs"] == pytest.approx(0.5)
    assert finite["kinks"] == 1


def test_check_of_a_branch_that_autograd_gets_wrong_passes():
    # torch.where's backward would multiply the branch not taken by 0, and 0 * inf is NaN;
    # diffcli's own derivative is 0 there, and both references agree
    code, rows, _ = check("where(x > 0, sqrt(x), 0)", "--at", "x=-1")
    assert code == 0 and all(r["ok"] for r in rows)


@pytest.mark.parametrize("order", ["1", "2"])
@pytest.mark.parametrize(
    ("expr", "grid"),
    [
        ("log(x)", "x=1e-12:1e-3:40"),
        ("sqrt(x)", "x=1e-12:1:40"),
        ("1/x", "x=1e-8:1e-3:40"),
        ("asin(x)", "x=0.5:0.999999999999:40"),
        ("log1p(x)", "x=-0.999999999999:1:40"),
        ("x*sin(1/x)", "x=0.01:1:40"),
    ],
)
def test_check_passes_healthy_functions_at_their_domain_edges(expr, grid, order):
    code, rows, _ = check(expr, "--grid", grid, "--order", order)
    assert code == 0, [r for r in rows if not r["ok"]]


@pytest.mark.parametrize(("expr", "at"), [("asinh(x)", "x=1e160"), ("sigmoid(x)", "x=20"), ("lgamma(x)", "x=0.5")])
def test_check_sees_lost_digits_that_finite_differences_cannot(monkeypatch, expr, at):
    """With each function's derivative put back to its textbook form, check exits 5."""
    import torch

    from diffcli import special

    textbook = {
        "asinh(x)": ("dasinh", lambda u: 1 / torch.sqrt(1 + u * u)),
        "sigmoid(x)": ("dsigmoid", lambda u: torch.sigmoid(u) * (1 - torch.sigmoid(u))),
        "lgamma(x)": ("polygamma", lambda n, x: torch.special.polygamma(int(n), x)),
    }[expr]
    monkeypatch.setattr(special, *textbook)
    code, rows, _ = check(expr, "--at", at, "--order", "2", "--rtol", "1e-12")
    assert code == 5
    assert any(r["engine"] == "extended precision" and not r["ok"] for r in rows)
    monkeypatch.undo()
    assert check(expr, "--at", at, "--order", "2", "--rtol", "1e-12")[0] == 0


@pytest.mark.parametrize("tolerance", ["nan", "-1", "inf"])
def test_check_refuses_tolerances_that_pass_everything(tolerance):
    result = runner.invoke(app, ["check", "x**2", "--at", "x=1", "--rtol", tolerance])
    assert result.exit_code == 2 and "--rtol" in result.stderr


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
    # row 1: infinite estimate, no verdict; row 2: a NaN estimate is no licence; row 3: no number
    # and no estimate (no step fitted the domain), no verdict
    assert found.failures == 1
    assert found.at == {"x": 2.0}  # the worst


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


@pytest.mark.parametrize(
    ("expr", "where"),
    [
        ("log(x)", ["--at", "x=1e-18"]),
        ("sqrt(x)", ["--at", "x=1e-20"]),
        ("1/x", ["--at", "x=1e-20"]),
        ("cbrt(x)", ["--at", "x=1e-20"]),
        ("log(x)", ["--grid", "x=1e-300:1e-200:10"]),
        ("exp(x)", ["--at", "x=708"]),
        ("gamma(x)", ["--at", "x=171"]),
        ("tanh(x)", ["--grid", "x=10:700:15"]),
        ("sigmoid(x)", ["--grid", "x=-700:700:15"]),
        ("softplus(x)", ["--grid", "x=10:700:15"]),
        ("atan2(y, x)", ["--grid", "x=-2:2:4", "--grid", "y=-2:2:4"]),
        ("erf(x)", ["--at", "x=2e154", "--at", "x=1e200", "--at", "x=30"]),
        ("log(x) + acosh(x) + atanh(x)", ["--grid", "x=-3.05:3.1:12"]),  # outside the domains: no verdict
    ],
)
def test_check_does_not_cry_wolf_in_the_tails(expr, where):
    code, rows, _ = check(expr, *where, "--order", "2")
    assert code == 0, [r for r in rows if not r["ok"]]


def test_atan2_of_constants_without_a_value():
    result = runner.invoke(app, ["value", "x*atan2(0, 0) + atan2(inf, 0)", "--at", "x=1", "--format", "json"])
    assert json.loads(result.stdout)["value"] == pytest.approx(math.pi / 2)
