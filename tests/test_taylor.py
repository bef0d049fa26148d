"""Taylor mode (series.py, taylor.py) against mpmath's Taylor coefficients at 50 digits, against
SymPy's symbolic derivatives, and through the CLI (``derivative --order N``, ``taylor``)."""

from __future__ import annotations

import json
import math

import mpmath
import pytest
import sympy
import torch

from diffcli.language import parse, symbol
from diffcli.taylor import expand
from tests.test_accuracy import UNARY

POINTS = {  # inside each function's domain, away from its edges
    "asin": [-0.7, 0.3],
    "acos": [-0.7, 0.3],
    "atanh": [-0.7, 0.3],
    "acosh": [1.5, 4.0],
    "asec": [-3.0, 1.5, 4.0],
    "acsc": [-3.0, 1.5, 4.0],
    "sinc": [-1.3, 0.0, 1e-9, 0.4, 0.99, 1.0, 2.5, 40.0],
    "sech": [-1.3, 0.4, 30.0],
    "log": [0.2, 3.0],
    "log2": [0.2, 3.0],
    "log10": [0.2, 3.0],
    "log1p": [-0.6, 3.0],
    "sqrt": [0.2, 3.0],
    "pow": [0.2, 3.0],
    "gamma": [0.3, 4.5, -1.5],
    "lgamma": [0.3, 4.5, -1.5],
}


def coefficients(text: str, x: float, order: int) -> list[float]:
    column = torch.tensor([x], dtype=torch.float64)
    series = expand(parse(text).expr, ["x"], order, {"x": column}, column)
    return [float(series.coefficient((k,))[0]) / series.basis.step**k for k in range(order + 1)]


def assert_close(got: list[float], want: list, rtol: float) -> None:
    scale = max(abs(w) for w in want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= rtol * max(abs(w), 1e-300) or abs(g - w) <= 1e-15 * scale, (k, g, float(w))


@pytest.mark.parametrize("name", sorted(UNARY))
def test_every_function_has_a_taylor_rule_that_matches_mpmath(name):
    text, f, _ = UNARY[name]
    for x in POINTS.get(name, [-1.3, 0.4, 2.5]):
        with mpmath.workdps(50):
            want = mpmath.taylor(f, mpmath.mpf(x), 8)
        assert_close(coefficients(text, x, 8), want, 1e-12)


@pytest.mark.parametrize("x", [0.3, -2.0, 5.0, 20.0])
def test_tanh_to_order_30_keeps_ten_digits_everywhere(x):
    with mpmath.workdps(60):
        want = mpmath.taylor(mpmath.tanh, mpmath.mpf(x), 30)
    assert_close(coefficients("tanh(x)", x, 30), want, 1e-10)


def test_high_orders_of_smooth_compositions():
    with mpmath.workdps(60):
        want = mpmath.taylor(lambda z: mpmath.exp(mpmath.sin(z)), mpmath.mpf(0.3), 50)
    assert_close(coefficients("exp(sin(x))", 0.3, 50), want, 1e-12)
    with mpmath.workdps(60):
        want = mpmath.taylor(lambda z: 1 / (1 + z**2), mpmath.mpf(0.5), 20)
    assert_close(coefficients("1/(1+x^2)", 0.5, 20), want, 1e-13)


@pytest.mark.parametrize(
    "text",
    ["x**2*sin(y) + atan2(y, x)", "exp(x*y)/(1 + y**2)", "hypot(x, y)*log(x + 3)", "max(x, y)**3 + abs(x - 2*y)"],
)
def test_mixed_partials_match_sympy(text):
    x, y = symbol("x"), symbol("y")
    expr = parse(text).expr
    at = {"x": torch.tensor([0.7], dtype=torch.float64), "y": torch.tensor([1.9], dtype=torch.float64)}
    series = expand(expr, ["x", "y"], 4, at, at["x"])
    for a in range(5):
        for b in range(5 - a):
            exact = sympy.diff(expr, x, a, y, b).subs({x: sympy.Float(0.7), y: sympy.Float(1.9)}).evalf(30)
            got = float(series.coefficient((a, b))[0]) * series.basis.factor((a, b))
            assert got == pytest.approx(float(exact), rel=1e-12, abs=1e-13), (a, b)


def test_branches_and_kinks_follow_the_first_derivative_conventions():
    # the branch taken at the point, and ties weighed 1/n
    assert coefficients("where(x > 0, x**3, -x)", 2.0, 3) == pytest.approx([8, 12, 6, 1])
    assert coefficients("where(x > 0, x**3, -x)", -2.0, 3) == pytest.approx([2, -1, 0, 0])
    assert coefficients("abs(x)**3", -1.0, 3) == pytest.approx([1, -3, 3, -1])
    assert coefficients("x % 3", 7.5, 2) == pytest.approx([1.5, 1, 0])


def test_derivative_order_30_through_the_cli(cli):
    result = cli("derivative", "tanh(x)", "--order", "30", "--at", "x=0.3", "--format", "json")
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)["derivative"]
    with mpmath.workdps(60):
        want = mpmath.diff(mpmath.tanh, mpmath.mpf(0.3), 30)
    assert got == pytest.approx(float(want), rel=1e-10)


def test_order_zero_is_the_value(cli):
    result = cli("derivative", "x**3", "--order", "0", "--at", "x=2", "--format", "json")
    assert json.loads(result.stdout) == {"at": {"x": 2.0}, "value": 8.0, "derivative": 8.0}


def test_taylor_command_names_its_coefficients(cli):
    result = cli("taylor", "exp(x)*sin(y)", "--at", "x=0,y=1", "--order", "2", "--format", "csv")
    header, row = result.stdout.splitlines()
    assert header.split(",") == [
        "x", "y", "value", "taylor_1", "taylor_x", "taylor_y", "taylor_x^2", "taylor_x*y", "taylor_y^2",
    ]  # fmt: skip
    s, c = math.sin(1), math.cos(1)
    assert [float(v) for v in row.split(",")[3:]] == pytest.approx([s, s, c, s / 2, c, -s / 2], rel=1e-15)


def test_taylor_limits_are_usage_errors(cli):
    assert cli("taylor", "x", "--at", "x=1", "--order", "101").returncode == 2
    assert cli("taylor", "a+b+c+d+e+f", "--at", "a=1,b=1,c=1,d=1,e=1,f=1", "--order", "20").returncode == 2


def cli_numbers(cli, *args: str) -> list[float]:
    """The numbers of the one CSV row that ``diffcli ARGS --format csv`` prints."""
    result = cli(*args, "--format", "csv")
    assert result.returncode == 0, result.stderr
    return [float(v) for v in result.stdout.splitlines()[1].split(",")]


@pytest.mark.parametrize(("name", "f"), [("lgamma", lambda z: mpmath.log(mpmath.gamma(z))), ("gamma", mpmath.gamma)])
def test_gamma_and_lgamma_past_order_20(name, f):
    with mpmath.workdps(60):
        want = mpmath.taylor(f, mpmath.mpf(2), 24)
    assert_close(coefficients(f"{name}(x)", 2.0, 24), want, 1e-12)


def test_powers_where_the_base_is_0_follow_the_symbolic_derivatives():
    assert coefficients("x**100", 0.0, 3) == [0.0, 0.0, 0.0, 0.0]
    assert coefficients("x**2.5", 0.0, 3) == [0.0, 0.0, 0.0, math.inf]  # x**2.5 has no third derivative at 0
    assert coefficients("sqrt(x)", 0.0, 2) == [0.0, math.inf, -math.inf]  # the one-sided derivatives
    assert coefficients("x**65 - x**2", 2.0, 2) == pytest.approx([2.0**65 - 4, 65 * 2.0**64 - 4, 2080 * 2.0**63 - 1])


def test_a_per_point_power_along_the_series(cli):
    # y is not expanded: x**y is a power with one exponent per point, also at a negative base and at 0
    assert cli_numbers(cli, "taylor", "x**y", "--at", "x=-2,y=3", "--wrt", "x", "--order", "2")[3:] == [-8, 12, -6]
    assert cli_numbers(cli, "taylor", "x**y", "--at", "x=0,y=2", "--wrt", "x", "--order", "2")[3:] == [0, 0, 1]


@pytest.mark.parametrize(
    ("text", "at", "want"),
    [
        ("asinh(x)", {"x": 1e200}, [1e-200]),
        ("acosh(x)", {"x": 1e200}, [1e-200]),
        ("atan(x)", {"x": 1e100}, [1e-200]),
        ("atan2(y, x)", {"x": 1e200, "y": 1e200}, [-5e-201, 5e-201]),
        ("atan2(y, x)", {"x": 1e-200, "y": 1e-200}, [-5e199, 5e199]),
        ("hypot(x, y)", {"x": 1e200, "y": 1e200}, [0.5**0.5, 0.5**0.5]),
        ("hypot(x, y)", {"x": 1e-200, "y": 1e-200}, [0.5**0.5, 0.5**0.5]),
    ],
)
def test_first_coefficients_neither_overflow_nor_underflow(text, at, want):
    columns = {k: torch.tensor([v], dtype=torch.float64) for k, v in at.items()}
    series = expand(parse(text).expr, sorted(at), 2, columns, columns["x"])
    units = [tuple(int(i == j) for i in range(len(at))) for j in range(len(at))]
    got = [float(series.coefficient(u)[0]) * series.basis.factor(u) for u in units]
    assert got == pytest.approx(want, rel=1e-14)


def test_high_orders_keep_coefficients_in_range(cli):
    # e^-400 / 100! would underflow: the series' variable is scaled by a power of two near sqrt(N)
    got = cli_numbers(cli, "derivative", "exp(x)", "--order", "100", "--at", "x=-400")[2]
    assert got == pytest.approx(math.exp(-400), rel=1e-13)
    # 35! overflows float32: the factor that turns coefficients into derivatives is applied in float64
    assert cli_numbers(cli, "derivative", "exp(x)", "--order", "35", "--at", "x=0", "--dtype", "float32")[2] == 1.0
    got = cli_numbers(cli, "derivative", "sin(x)", "--order", "36", "--at", "x=1", "--dtype", "float32")[2]
    assert got == pytest.approx(math.sin(1), rel=1e-6)


def test_taylor_mode_keeps_the_conventions_at_kinks():
    assert coefficients("abs(x)", 0.0, 2)[:2] == [0.0, 0.0] and math.isnan(coefficients("abs(x)", 0.0, 2)[2])
    assert math.isnan(coefficients("sign(x)", 0.0, 1)[1])  # sign' at 0 is NaN, as grad says
    columns = {"x": torch.zeros(1, dtype=torch.float64), "y": torch.zeros(1, dtype=torch.float64)}
    series = expand(parse("hypot(x, y)").expr, ["x", "y"], 2, columns, columns["x"])
    assert series.parts[1].flatten().tolist() == [0.0, 0.0] and series.parts[2].isnan().all()


def test_a_mixed_partial_in_many_variables_needs_only_its_box(cli):
    names = [f"x{i}" for i in range(9)]
    at = ",".join(f"{n}=2" for n in names)
    assert cli_numbers(cli, "derivative", "*".join(names), "--wrt", ",".join(names), "--at", at)[-1] == 1.0


def test_second_review_findings(cli):
    # gamma's reflection past order 20 (the cot polynomial's coefficients pass 2^63)
    got = cli_numbers(cli, "derivative", "gamma(x)", "--at", "x=-1.5", "--order", "21")[2]
    with mpmath.workdps(60):
        assert got == pytest.approx(float(mpmath.diff(mpmath.gamma, mpmath.mpf(-1.5), 21)), rel=1e-12)
    # a power at a zero base leaves the coefficients it has no part in alone
    assert cli_numbers(cli, "derivative", "x**2.5 + sin(y)", "--wrt", "y,y,y", "--at", "x=0,y=1")[3] == pytest.approx(
        -math.cos(1), rel=1e-15
    )
    assert cli_numbers(cli, "derivative", "x**2.5*y", "--wrt", "x,x,y", "--at", "x=0,y=1")[3] == 0.0
    # the series does not overflow before its result: e^700 and its 100th derivative
    got = cli_numbers(cli, "derivative", "exp(x)", "--order", "100", "--at", "x=700")[2]
    assert got == pytest.approx(math.exp(700), rel=1e-13)
    # printed coefficients are computed unscaled: log's 100th at 1e-3 is -1e298
    assert cli_numbers(cli, "taylor", "log(x)", "--at", "x=1e-3", "--order", "100")[-1] == pytest.approx(
        -1e298, rel=1e-12
    )
    # acosh next to 1 keeps (x - 1)(x + 1) exact
    got = cli_numbers(cli, "taylor", "acosh(x)", "--at", "x=1.000001", "--order", "1")[-1]
    with mpmath.workdps(60):
        assert got == pytest.approx(float(mpmath.diff(mpmath.acosh, mpmath.mpf(1.000001))), rel=1e-14)
