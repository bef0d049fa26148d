"""``diffcli propagate`` and ``Formula.propagate``: against hand formulas, the ``uncertainties``
package (linear propagation with correlations), SymPy's derivatives at 50 digits (second order),
exact variances of Gaussian quadratic forms, closed forms (exp of a Gaussian), and Monte Carlo."""

from __future__ import annotations

import json
import math
import os

import mpmath
import numpy as np
import pytest
import sympy
import uncertainties
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from uncertainties import umath

import diffcli
from diffcli.cli import app

runner = CliRunner()


def invoke(*args: str, stdin: str | None = None):
    return runner.invoke(app, list(args), input=stdin)


def one(*args: str) -> dict:
    result = invoke(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ---- first order: the GUM's law of propagation -------------------------------------------


def test_energy_matches_the_hand_formula():
    m, g, h, um, ug, uh = 2.0, 9.81, 3.0, 0.1, 0.01, 0.2
    expected = math.sqrt((g * h * um) ** 2 + (m * h * ug) ** 2 + (m * g * uh) ** 2)
    answer = one("propagate", "m*g*h", "--at", "m=2±0.1,g=9.81±0.01,h=3±0.2")
    assert answer["value"] == pytest.approx(m * g * h, rel=1e-15)
    assert answer["sigma"] == pytest.approx(expected, rel=1e-12)
    assert answer["relative"] == pytest.approx(expected / (m * g * h), rel=1e-12)
    shares = {"m": (g * h * um) ** 2, "g": (m * h * ug) ** 2, "h": (m * g * uh) ** 2}
    for name, part in shares.items():
        assert answer["contribution"][name] == pytest.approx(part / expected**2, rel=1e-12)
    assert answer["at"] == {"m": 2.0, "u_m": 0.1, "g": 9.81, "u_g": 0.01, "h": 3.0, "u_h": 0.2}


@pytest.mark.parametrize("spelling", ["m=2+-0.1,g=9.81+-0.01,h=3+-0.2", "m=2 ± 0.1,g=9.81±1e-2,h=3±(1/5)"])
def test_plus_minus_spellings(spelling):
    assert one("propagate", "m*g*h", "--at", spelling)["sigma"] == pytest.approx(4.905366958750386, rel=1e-15)


def test_sigma_option_and_columns_give_the_same_numbers(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("m,u_m,g,h,dh\n2,0.1,9.81,3,0.2\n2.5,0.05,9.81,1.5,0.1\n")
    by_column = invoke("propagate", "m*g*h", "--input", str(path), "--sigma", "g=0.01,h=dh", "-f", "json")
    assert by_column.exit_code == 0, by_column.output
    rows = json.loads(by_column.stdout)
    for row in rows:
        at = row["at"]
        points = one(
            "propagate", "m*g*h", "--at", f"m={at['m']},g={at['g']},h={at['h']}",
            "--sigma", f"m={at['u_m']},g=0.01,h={at['dh']}",
        )  # fmt: skip
        assert points["sigma"] == row["sigma"]
        assert points["contribution"] == row["contribution"]


def test_map_names_the_uncertainty_column(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("mass,dm\n2,0.1\n")
    answer = one("propagate", "3*m", "--input", str(path), "--map", "m=mass", "--map", "u_m=dm")
    assert answer["sigma"] == pytest.approx(0.3, rel=1e-15)


def test_a_point_without_plus_minus_is_exact_among_points_with():
    result = invoke("propagate", "2*x", "--at", "x=1±0.5", "--at", "x=3", "-f", "json")
    assert result.exit_code == 0, result.output
    assert [r["sigma"] for r in json.loads(result.stdout)] == [1.0, 0.0]


def correlated_oracle(means, sigmas, correlation, functions):
    """Each output's standard deviation and the outputs' correlations from ``uncertainties``."""
    covariance = np.outer(sigmas, sigmas) * correlation
    inputs = uncertainties.correlated_values(means, covariance.tolist())
    outputs = [f(*inputs) for f in functions]
    return [o.std_dev for o in outputs], uncertainties.correlation_matrix(outputs)


FORMULAS = [  # (diffcli text, the same with uncertainties' functions)
    ("x*y*exp(z)", lambda x, y, z: x * y * umath.exp(z)),
    ("sin(x)/y + z**2", lambda x, y, z: umath.sin(x) / y + z**2),
    ("atan2(y, x) * log(z)", lambda x, y, z: umath.atan2(y, x) * umath.log(z)),
    ("sqrt(x**2 + y**2) - cosh(z/3)", lambda x, y, z: umath.sqrt(x**2 + y**2) - umath.cosh(z / 3)),
]


@pytest.mark.parametrize("text, function", FORMULAS)
def test_correlated_inputs_match_uncertainties(text, function):
    means, sigmas = [1.3, -0.7, 2.1], [0.05, 0.02, 0.1]
    correlation = np.array([[1, 0.4, -0.3], [0.4, 1, 0.2], [-0.3, 0.2, 1]])
    (expected,), _ = correlated_oracle(means, sigmas, correlation, [function])
    f = diffcli.formula(text)
    data = {"x": means[0], "y": means[1], "z": means[2]}
    answer = f.propagate(
        data,
        sigma=dict(zip("xyz", sigmas)),
        correlation={("x", "y"): 0.4, ("x", "z"): -0.3, "y,z": 0.2},
    )
    assert answer["sigma"][0] == pytest.approx(expected, rel=1e-12)
    assert sum(answer[f"contribution_{v}"][0] for v in "xyz") == pytest.approx(1.0, rel=1e-12)


def test_several_outputs_their_correlation_matches_uncertainties():
    means, sigmas = [2.0, 9.81, 3.0], [0.1, 0.01, 0.2]
    correlation = np.array([[1, 0.3, 0], [0.3, 1, -0.2], [0, -0.2, 1]])
    functions = [lambda m, g, h: m * g * h, lambda m, g, h: m * g, lambda m, g, h: umath.sqrt(2 * g * h)]
    deviations, correlations = correlated_oracle(means, sigmas, correlation, functions)
    result = invoke(
        "propagate", "E=m*g*h", "P=m*g", "v=sqrt(2*g*h)", "--at", "m=2±0.1,g=9.81±0.01,h=3±0.2",
        "--corr", "m,g=0.3", "--corr", "g,h=-0.2", "-f", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    answer = dict(zip(header.split(","), map(float, row.split(","))))
    for name, expected in zip("EPv", deviations):
        assert answer[f"sigma_{name}"] == pytest.approx(expected, rel=1e-12)
    for (i, a), (j, b) in [((0, "E"), (1, "P")), ((0, "E"), (2, "v")), ((1, "P"), (2, "v"))]:
        assert answer[f"correlation_{a}_{b}"] == pytest.approx(correlations[i][j], rel=1e-12, abs=1e-14)


def test_a_covariance_file_equals_sigma_and_corr(tmp_path):
    csv_file = tmp_path / "cov.csv"
    csv_file.write_text(",m,g\nm,0.01,0.0003\ng,0.0003,0.0001\n")
    json_file = tmp_path / "cov.json"
    json_file.write_text('{"m": {"m": 0.01, "g": 0.0003}, "g": {"m": 0.0003, "g": 0.0001}}')
    unlabelled = tmp_path / "cov.tsv"
    unlabelled.write_text("m\tg\n0.01\t0.0003\n0.0003\t0.0001\n")
    expected = one("propagate", "m*g", "--at", "m=2±0.1,g=9.81±0.01", "--corr", "m,g=0.3")
    for path in (csv_file, json_file, unlabelled):
        answer = one("propagate", "m*g", "--at", "m=2,g=9.81", "--cov", str(path))
        assert answer["sigma"] == pytest.approx(expected["sigma"], rel=1e-14)
    api = diffcli.formula("m*g").propagate(
        {"m": 2.0, "g": 9.81}, covariance={"m": {"m": 0.01, "g": 0.0003}, "g": {"m": 0.0003, "g": 0.0001}}
    )
    assert api["sigma"][0] == pytest.approx(expected["sigma"], rel=1e-14)


def test_families_take_one_uncertainty_for_all_members():
    answer = one("propagate", "x[1] + 2*x[2]", "--at", "x=1±0.1")
    assert answer["sigma"] == pytest.approx(math.sqrt(0.1**2 + 0.2**2), rel=1e-15)


# ---- second order ---------------------------------------------------------------------------


def test_a_vanishing_first_derivative():
    second = invoke("propagate", "x**2", "--at", "x=0±1", "--order", "2", "-f", "json")
    assert second.exit_code == 0
    assert json.loads(second.stdout)["sigma"] == pytest.approx(math.sqrt(2), rel=1e-15)
    first = invoke("propagate", "x**2", "--at", "x=0±1", "-f", "json")
    assert json.loads(first.stdout)["sigma"] == 0.0
    assert "sigma is 0 at first order in 1 of 1 rows" in first.stderr
    assert "--order 2 adds the second-order terms" in first.stderr


def gum_second_order(text, point, sigmas, correlation):
    """gᵀCg + ½ tr(HCHC) + gᵀC t (t_i = Σ_jk C_jk f_ijk) with SymPy's derivatives at 50 digits."""
    mpmath.mp.dps = 50
    names = sorted(point)
    symbols = [sympy.Symbol(n, real=True) for n in names]
    f = sympy.sympify(text, locals=dict(zip(names, symbols)))
    at = {s: sympy.Float(point[n], 60) for s, n in zip(symbols, names)}
    n = len(names)

    def value(e):
        return mpmath.mpf(sympy.N(e.subs(at), 50))

    g = [value(sympy.diff(f, a)) for a in symbols]
    h = [[value(sympy.diff(f, a, b)) for b in symbols] for a in symbols]
    third = [[[value(sympy.diff(f, a, b, c)) for c in symbols] for b in symbols] for a in symbols]
    u = [mpmath.mpf(sigmas[k]) for k in names]
    c = [[mpmath.mpf(correlation[i][j]) * u[i] * u[j] for j in range(n)] for i in range(n)]
    first = sum(g[i] * c[i][j] * g[j] for i in range(n) for j in range(n))
    hc = [[sum(h[i][k] * c[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    trace = sum(hc[i][k] * hc[k][i] for i in range(n) for k in range(n))
    t = [sum(c[j][k] * third[i][j][k] for j in range(n) for k in range(n)) for i in range(n)]
    cross = sum(g[i] * c[i][j] * t[j] for i in range(n) for j in range(n))
    return first + trace / 2 + cross


@pytest.mark.parametrize(
    "text", ["exp(x)*sin(y)", "x**3*y - y**2", "log(x + y**2)", "x/(1 + y**2)", "cos(x*y)", "sqrt(x)*atan(y)"]
)
@pytest.mark.parametrize("rho", [0.0, 0.6])
def test_second_order_matches_sympy_at_50_digits(text, rho):
    point, sigmas = {"x": 1.2, "y": 0.7}, {"x": 0.05, "y": 0.08}
    expected = gum_second_order(text, point, sigmas, [[1, rho], [rho, 1]])
    answer = diffcli.formula(text).propagate(
        point, sigma=sigmas, correlation={("x", "y"): rho} if rho else None, order=2
    )
    assert answer["sigma"][0] ** 2 == pytest.approx(float(expected), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    b=st.lists(st.floats(-3, 3).filter(lambda v: abs(v) > 1e-3), min_size=3, max_size=3),  # every input appears
    a=st.lists(st.floats(-3, 3), min_size=6, max_size=6),
    u=st.lists(st.floats(0.01, 2), min_size=3, max_size=3),
    r=st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3),
)
def test_second_order_is_exact_for_gaussian_quadratics(b, a, u, r):
    """For f = bᵀx + xᵀAx and x ~ N(0, C): Var f = bᵀCb + 2 tr(ACAC), whatever C."""
    matrix = np.array([[a[0], a[1], a[2]], [a[1], a[3], a[4]], [a[2], a[4], a[5]]])
    correlation = np.array([[1, r[0], r[1]], [r[0], 1, r[2]], [r[1], r[2], 1]])
    if np.linalg.eigvalsh(correlation).min() < 1e-9:
        return
    cov = np.outer(u, u) * correlation
    exact = b @ cov @ b + 2 * np.trace(matrix @ cov @ matrix @ cov)
    names = ["x", "y", "z"]
    text = " + ".join(
        [f"({float(b[i])!r})*{names[i]}" for i in range(3)]
        + [f"({float(matrix[i, j])!r})*{names[i]}*{names[j]}" for i in range(3) for j in range(3)]
    )
    answer = diffcli.formula(text).propagate(
        dict.fromkeys(names, 0.0),
        sigma=dict(zip(names, u)),
        correlation={("x", "y"): r[0], ("x", "z"): r[1], ("y", "z"): r[2]},
        order=2,
    )
    assert answer["sigma"][0] ** 2 == pytest.approx(exact, rel=1e-9, abs=1e-12 * max(1.0, np.abs(cov).max()))
    shares = sum(answer[f"contribution_{n}"][0] for n in names)
    if exact > 1e-6:
        assert shares == pytest.approx(1.0, rel=1e-9)


def test_orders_converge_as_their_truncation_says():
    """exp(x), x ~ N(0, u²): Var = e^{2u²} - e^{u²}. First order is off by O(u⁴), second by O(u⁶)."""
    f = diffcli.formula("exp(x)")
    errors = {1: [], 2: []}
    for u in (0.1, 0.05):
        true = math.expm1(2 * u * u) - math.expm1(u * u)
        for order in (1, 2):
            got = f.propagate({"x": 0.0}, sigma={"x": u}, order=order)["sigma"][0] ** 2
            errors[order].append(abs(got - true))
    assert errors[1][0] / errors[1][1] == pytest.approx(16, rel=0.05)  # u⁴
    assert errors[2][0] / errors[2][1] == pytest.approx(64, rel=0.05)  # u⁶


def test_a_negative_second_order_variance_is_nan_with_a_note():
    result = invoke("propagate", "sin(x)", "--at", "x=0±1.5", "--order", "2", "-f", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["sigma"] is None
    assert "sigma is NaN in 1 of 1 rows: the second-order variance is negative there" in result.stderr


# ---- Monte Carlo -----------------------------------------------------------------------------


def test_check_agrees_on_smooth_formulas_within_its_error():
    f = diffcli.formula("m*g*h")
    answer = f.propagate({"m": 2.0, "g": 9.81, "h": 3.0}, sigma={"m": 0.1, "g": 0.01, "h": 0.2}, check=True, coverage=2)
    assert answer["mc_agrees"][0]
    exact_variance = (4.01 * 96.2362 * 9.04) - 58.86**2  # E[m²]E[g²]E[h²] - (E[m]E[g]E[h])²
    n = 100_000
    assert abs(answer["mc_sigma"][0] - math.sqrt(exact_variance)) < 5 * answer["sigma"][0] / math.sqrt(2 * n)
    assert abs(answer["mc_mean"][0] - 58.86) < 5 * answer["sigma"][0] / math.sqrt(n)
    result = invoke("propagate", "sin(x)*y", "--at", "x=0.4±0.02,y=3±0.1", "--check")
    assert result.exit_code == 0, result.output


def test_check_flags_a_reciprocal_near_its_pole():
    result = invoke("propagate", "1/x", "--at", "x=0.1±0.05", "--check", "-f", "json")
    assert result.exit_code == 5
    assert json.loads(result.stdout)["mc_agrees"] is False
    assert "propagate --check: 1 of 1 results disagree with Monte Carlo" in result.stderr
    assert "row 1, value: 10 ± 5 analytic" in result.stderr


def test_check_names_draws_outside_the_domain():
    result = invoke("propagate", "log(x)", "--at", "x=0.1±0.05", "--check")
    assert result.exit_code == 5
    assert "draws outside the formula's domain" in result.stderr


def test_check_is_seeded_and_independent_of_batches():
    args = ["propagate", "x*exp(y)", "--at", "x=1±0.1", "--at", "x=2±0.3", "--grid", "y=0:1:3", "--check", "-f", "csv"]
    whole = invoke(*args)
    batched = invoke(*args, "--batch-size", "1")
    assert whole.exit_code == 0, whole.output
    assert whole.stdout == batched.stdout
    other = invoke(*args, "--seed", "7")
    assert other.stdout != whole.stdout


def test_check_interval_of_a_linear_formula():
    answer = diffcli.formula("3*x - y").propagate(
        {"x": 1.0, "y": 2.0}, sigma={"x": 0.1, "y": 0.2}, check=True, coverage=2, samples=400_000
    )
    sigma = math.sqrt(0.3**2 + 0.2**2)
    assert answer["expanded"][0] == pytest.approx(2 * sigma, rel=1e-15)
    assert answer["mc_low"][0] == pytest.approx(1 - 2 * sigma, abs=0.02 * sigma)
    assert answer["mc_high"][0] == pytest.approx(1 + 2 * sigma, abs=0.02 * sigma)
    assert answer["mc_agrees"][0]


# ---- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["m*g", "--at", "m=2,g=9.81"], 2, "propagate needs the inputs' uncertainties"),
        (["m*g", "--at", "m=2±-0.1,g=9.81"], 2, "--at m: an uncertainty is a finite number, 0 or more"),
        (["m*g", "--at", "m=2±inf,g=9.81"], 2, "--at m: an uncertainty is a finite number, 0 or more"),
        (["x", "--at", "x=1", "--sigma", "x=1e400"], 2, "--sigma x: '1e400' overflows a double"),
        (["x[1]*y", "--at", "x[1]=1,y=2", "--sigma", "x=0.1,y=0.1", "--corr", "x,y=0.5"], 2, "x is a family"),
        (["m*g", "--at", "m=2,g=9.81", "--sigma", "m=0.1,m=0.2"], 2, "--sigma m: its uncertainty is given twice"),
        (["x", "--grid", "x=0:1:3", "--sigma", "x=0.1", "--plot-output", "/nonexistent/b.png"], 2, "no such folder"),
        (["x", "--at", "x=1±0.1", "--check", "--seed", str(2**64)], 2, "--seed must be an integer from 0"),
        (["x", "--at", "x=1±0.1", "--samples", "1000"], 2, "--samples sets the Monte Carlo of --check"),
        (["m*g", "--at", "m=2±0.1,g=9.81±1", "--corr", "m,g=1.3"], 2, "between -1 and 1"),
        (["m*g", "--at", "m=2±0.1,g=9.81", "--corr", "m,g=0.3"], 2, "--corr g,m: g has no uncertainty"),
        (["m*g", "--at", "m=2±0.1,g=9.81", "--sigma", "z=0.1"], 2, "z has an uncertainty, but it is not a variable"),
        (["m*g", "--at", "m=2±0.1,g=9.81", "--sigma", "m=0.1"], 2, "m's uncertainty is given twice"),
        (["m*g", "--at", "m=2,g=9.81", "--sigma", "m=dm"], 2, "'dm' is not a number (nor a column"),
        (["m*g", "--at", "m=2±0.1,g=1±0.1", "--order", "3"], 2, "--order must be 1 or 2"),
        (["m*g", "--at", "m=2±0.1,g=1±0.1", "--coverage", "0"], 2, "--coverage must be a positive number"),
        (["m*g", "--at", "m=2±0.1,g=1±0.1", "--check", "--samples", "5"], 2, "--samples must be an integer"),
        (["m*g", "--at", "m=2±0.1,g=1±0.1", "--check", "--check-tolerance", "-1"], 2, "--check-tolerance"),
        (["m*g", "--at", "m=2,g=1", "--cov", "/nonexistent.csv"], 4, "/nonexistent.csv: cannot read"),
        (
            [
                "x*y*z",
                "--at",
                "x=1±0.1,y=2±0.1,z=3±0.1",
                "--corr",
                "x,y=0.9",
                "--corr",
                "y,z=0.9",
                "--corr",
                "x,z=-0.9",
            ],
            2,
            "not possible together",
        ),
        (["m*(", "--at", "m=2±0.1"], 3, "error"),
    ],
)
def test_errors(args, code, message):
    result = invoke("propagate", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 3  # a line, with a caret or a hint


def test_a_covariance_file_that_is_not_symmetric(tmp_path):
    path = tmp_path / "cov.csv"
    path.write_text(",m,g\nm,0.01,0.0003\ng,0.0004,0.0001\n")
    result = invoke("propagate", "m*g", "--at", "m=2,g=9.81", "--cov", str(path))
    assert result.exit_code == 4
    assert f"{path}: not symmetric: (m, g) is 0.0003, (g, m) is 0.0004" in result.stderr


def test_a_negative_uncertainty_in_a_file_names_file_row_and_column(tmp_path):
    path = tmp_path / "lab.csv"
    path.write_text("m,u_m\n1,0.1\n2,-0.1\n")
    output = tmp_path / "out.csv"
    result = invoke("propagate", "3*m", "--input", str(path), "--output", str(output))
    assert result.exit_code == 4
    assert f"{path}: row 2, column 'u_m': an uncertainty is 0 or more, got -0.1" in result.stderr
    assert not output.exists()


def test_its_own_output_reads_back_as_input(tmp_path):
    first = invoke("propagate", "m*g", "--at", "m=2±0.1,g=9.81±0.02", "--at", "m=3±0.2,g=9.8±0.01", "-f", "csv")
    path = tmp_path / "out.csv"
    path.write_text(first.stdout)
    again = invoke("propagate", "m*g", "--input", str(path), "--prefix", "again_", "-f", "csv")
    assert again.exit_code == 0, again.output
    header, *rows = again.stdout.splitlines()
    names = header.split(",")
    for row in rows:
        values = dict(zip(names, row.split(",")))
        assert values["sigma"] == values["again_sigma"]


def test_expect_gates_the_uncertainty():
    ok = invoke("propagate", "m*g*h", "--at", "m=2±0.1,g=9.81±0.01,h=3±0.2", "--expect", "sigma=4.905366958750386")
    assert ok.exit_code == 0
    off = invoke("propagate", "m*g*h", "--at", "m=2±0.1,g=9.81±0.01,h=3±0.2", "--expect", "sigma=4.8")
    assert off.exit_code == 5
    assert "sigma: 1 of 1 rows off" in off.stderr


def test_symbolic_formulas_alone():
    result = invoke("propagate", "x*y", "--sigma", "x=0.1,y=0.2", "--symbolic", "-f", "csv")
    assert result.exit_code == 0, result.output
    assert "sigma,sqrt(u_x**2*y**2 + u_y**2*x**2)" in result.stdout


def test_table_shows_each_input_with_its_uncertainty_and_share():
    result = invoke("propagate", "m*g", "--at", "m=2±0.1,g=9.81±0.01", "-f", "table")
    assert result.exit_code == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ m "))
    share = (9.81 * 0.1) ** 2 / ((9.81 * 0.1) ** 2 + (2 * 0.01) ** 2)
    assert "0.1" in row and repr(share)[:12] in row


def test_float32():
    answer = one("propagate", "m*g*h", "--at", "m=2±0.1,g=9.81±0.01,h=3±0.2", "--dtype", "float32")
    assert answer["sigma"] == pytest.approx(4.905366958750386, rel=1e-6)


def test_other_commands_refuse_plus_minus():
    result = invoke("grad", "x", "--at", "x=2±0.1")
    assert result.exit_code == 2
    assert "'2±0.1' is not a number" in result.stderr


# ---- the Python API and run ------------------------------------------------------------------


def test_api_kinds_and_errors():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"m": [2.0, 3.0], "dm": [0.1, 0.2]})
    out = diffcli.formula("5*m").propagate(frame, sigma={"m": "dm"})
    assert out.columns == ["m", "dm", "value", "sigma", "relative", "contribution_m"]
    assert out["sigma"].to_list() == pytest.approx([0.5, 1.0], rel=1e-15)
    with pytest.raises(diffcli.UsageError, match="sigma 'm': the data has no column 'nope'"):
        diffcli.formula("5*m").propagate(frame, sigma={"m": "nope"})
    with pytest.raises(diffcli.UsageError, match="correlation"):
        diffcli.formula("m*g").propagate({"m": 1, "g": 2}, sigma={"m": 1, "g": 1}, correlation={"m": 0.3})
    with pytest.raises(diffcli.DataError, match="data column 'dm', row 1: an uncertainty is 0 or more"):
        diffcli.formula("5*m").propagate({"m": [1.0, 2.0], "dm": [0.1, -1.0]}, sigma={"m": "dm"})


def test_run_answers_as_the_command():
    from diffcli.session import Session

    request = {
        "id": 1, "op": "propagate", "expr": "m*g", "at": {"m": 2, "g": 9.81}, "sigma": {"m": 0.1, "g": 0.01},
        "correlation": {"m,g": 0.3}, "coverage": 2,
    }  # fmt: skip
    answer = json.loads(Session().answer(json.dumps(request).encode()))
    command = one(
        "propagate", "m*g", "--at", "m=2,g=9.81", "--sigma", "m=0.1,g=0.01", "--corr", "m,g=0.3", "--coverage", "2"
    )
    for key in ("value", "sigma", "relative", "expanded", "contribution"):
        assert answer[key] == command[key]
    bad = json.loads(Session().answer(b'{"id": 2, "op": "propagate", "expr": "m", "at": {"m": 1}}'))
    assert bad["error"]["code"] == 2
    assert "propagate needs the inputs' uncertainties" in bad["error"]["message"]
    assert '"sigma"' in bad["error"]["message"]


# ---- the band plot, and real pipes -------------------------------------------------------------


def test_plot_draws_the_band_over_a_grid(tmp_path):
    pytest.importorskip("matplotlib")
    import struct

    path = tmp_path / "band.png"
    result = invoke(
        "propagate", "v**2*sin(2*t)/9.81", "--grid", "t=0.1:1.4:50", "--at", "v=20", "--sigma", "t=0.1",
        "--order", "2", "--plot-output", str(path), "-f", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 51  # the rows still go to stdout
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (960, 600)
    text = invoke("propagate", "exp(x)", "--grid", "x=0:1:20", "--sigma", "x=0.1", "--plot")
    assert text.exit_code == 0, text.output
    assert "value + sigma" in text.stdout and "value - sigma" in text.stdout
    assert "u_x" not in text.stdout  # the drawing instead of the rows


def test_band_edges_are_value_plus_and_minus_sigma():
    from diffcli import plots

    answer = diffcli.formula("exp(x)").propagate({"x": np.linspace(0, 1, 5)}, sigma={"x": 0.1})
    drawn = plots.band(answer, "x", ["value"], ["sigma"])
    curves = dict(drawn._with_band("value"))
    np.testing.assert_array_equal(curves["value + sigma"], answer["value"] + answer["sigma"])
    np.testing.assert_array_equal(curves["value - sigma"], answer["value"] - answer["sigma"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["x", "--at", "x=1±0.1", "--plot"], "--plot draws the value and its ±sigma band over one --grid"),
        (["x", "--grid", "x=0:1:3", "--sigma", "x=0.1", "--plot-output", "band.bmp"], "--plot-output band.bmp"),
    ],
)
def test_plot_errors(args, message):
    result = invoke("propagate", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_through_real_pipes(tmp_path):
    import subprocess
    import sys

    rows = "m,u_m,g,u_g\n2,0.1,9.81,0.01\n3,0.2,9.80,0.02\n"
    got = subprocess.run(
        f"{sys.executable} -m diffcli propagate 'm*g' --input - --format ndjson | "
        f"{sys.executable} -m diffcli propagate 'm*g' --input - --prefix again_ --format csv",
        shell=True, input=rows, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DIFFCLI_NO_SERVER": "1"},
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    import csv

    lines = list(csv.DictReader(got.stdout.splitlines()))  # the nested contributions came through as JSON text
    assert len(lines) == 2
    for row in lines:
        m, um, g, ug = (float(row[k]) for k in ("m", "u_m", "g", "u_g"))
        assert float(row["again_sigma"]) == pytest.approx(math.hypot(g * um, m * ug), rel=1e-14)
        assert row["sigma"] == row["again_sigma"]


def test_dask_frames_give_the_local_numbers():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"m": [2.0, 2.5, 3.0, 1.0], "u_m": [0.1, 0.05, 0.2, 0.0], "g": 9.81})
    f = diffcli.formula("m*g")
    local = f.propagate(frame, sigma={"g": 0.01}, check=True, samples=1000)
    distributed = f.propagate(dd.from_pandas(frame, npartitions=2), sigma={"g": 0.01}, check=True, samples=1000)
    pd.testing.assert_frame_equal(distributed.compute(), local)
    kinks = diffcli.formula("abs(m - 2)").kinks(dd.from_pandas(frame, npartitions=2)).compute()
    assert kinks["kink_f1"].tolist() == [True, False, False, False]


# ---- found by review -----------------------------------------------------------------------------


def test_check_with_prefix_and_suffix():
    result = invoke(
        "propagate", "a=x*y", "b=x/y", "--at", "x=1±0.1,y=2±0.1", "--prefix", "p_", "--suffix", "_s",
        "--check", "--samples", "1000", "-f", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["p_mc_agrees_s"] == {"a": True, "b": True}
    assert answer["p_mc_mean_s"]["a"] == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize(
    "point, dtype", [("x=1e200±1e190", "float64"), ("x=1e-200±1e-201", "float64"), ("x=1e25±1e24", "float32")]
)
def test_check_has_no_false_alarm_at_extreme_magnitudes(point, dtype):
    result = invoke("propagate", "x", "--at", point, "--dtype", dtype, "--check", "--samples", "1000", "-f", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["mc_sigma"] == pytest.approx(answer["sigma"], rel=0.1)


@pytest.mark.parametrize(
    "text, message",
    [
        (",x,y\nx,0.01,0.2\ny,0.2,0.04\n", "(x, y) is 0.2, more than the variances allow"),
        (",x,x\nx,0.01,0.002\nx,0.002,0.04\n", "x is named twice"),
        ("[[0.01, 0.002], [0.002, 0.04]]", "expected an object of objects"),
    ],
)
def test_impossible_covariance_files(tmp_path, text, message):
    path = tmp_path / "cov.txt"
    path.write_text(text)
    result = invoke("propagate", "x+2*y", "--at", "x=1,y=2", "--cov", str(path))
    assert result.exit_code in (2, 4)
    assert message in result.stderr
    assert str(path) in result.stderr or "--cov" in result.stderr


def test_covariance_files_as_labs_write_them(tmp_path):
    expected = one("propagate", "x+2*y", "--at", "x=1±0.1,y=2±0.2", "--corr", "x,y=0.1")
    corner = tmp_path / "corner.csv"
    corner.write_text("name,x,y,z\nx,0.01,0.002,0\ny,0.002,0.04,0\nz,0,0,1\n")
    result = invoke("propagate", "x+2*y", "--at", "x=1,y=2", "--cov", str(corner), "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sigma"] == pytest.approx(expected["sigma"], rel=1e-14)
    assert "z not in the formula (left out)" in result.stderr


def test_underscored_variables_are_not_families(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("my_var,u_my_var,u_my\n2.0,0.1,5\n")
    assert one("propagate", "2*my_var", "--input", str(path))["sigma"] == pytest.approx(0.2, rel=1e-15)


def test_nan_sigma_at_a_kink_is_not_called_only_a_negative_variance():
    result = invoke("propagate", "abs(x)", "--at", "x=0±0.1", "--order", "2")
    assert "or a second derivative undefined (at a kink)" in result.stderr


def test_plot_counts_its_rows():
    result = invoke("propagate", "1/x", "--grid", "x=0.1:0.2:5", "--sigma", "x=0.05", "--plot", "--check")
    assert result.exit_code == 5
    assert "5 of 5 results disagree" in result.stderr


def test_run_writes_sigma_into_at_and_notes_a_failed_check():
    from diffcli.session import Session

    session = Session()
    request = {"id": 1, "op": "propagate", "expr": "1/x", "at": {"x": 0.1}, "sigma": {"x": 0.05}, "check": True}
    answer = json.loads(session.answer(json.dumps(request).encode()))
    assert answer["at"] == {"x": 0.1, "u_x": 0.05}
    assert answer["mc_agrees"] is False
    assert "1 of 1 results disagree with Monte Carlo" in answer["notes"][0]
    for bad, message in [({"order": 0}, '"order" must be 1 or 2'), ({"samples": 1000}, '"samples" sets')]:
        request = {"id": 2, "op": "propagate", "expr": "x", "at": {"x": 1, "u_x": 0.1}, **bad}
        error = json.loads(session.answer(json.dumps(request).encode()))["error"]
        assert error["code"] == 2 and message in error["message"]


def test_check_where_the_analytic_value_is_not_a_number():
    """sin(x)/x at 0: the formula has no value there, but its draws do; 1/x at 0: inf against draws."""
    answer = diffcli.formula("sin(x)/x").propagate({"x": 0.0}, sigma={"x": 0.1}, check=True, coverage=2)
    assert np.isnan(answer["value"][0]) and answer["mc_agrees"][0]
    assert answer["mc_mean"][0] == pytest.approx(1 - 0.01 / 6, abs=1e-4)  # E[sin x / x] ≈ 1 - u²/6
    pole = invoke("propagate", "1/x", "--at", "x=0±0.1", "--check")
    assert pole.exit_code == 5
    assert "inf ± inf analytic" in pole.stderr and "nan ± nan" not in pole.stderr


def test_check_below_the_dtypes_resolution_is_no_false_alarm():
    for point, dtype in (("x=1e6±1e-3", "float32"), ("x=1e17±1", "float64")):
        assert invoke("propagate", "x+5", "--at", point, "--dtype", dtype, "--check").exit_code == 0


def test_covariance_names_not_in_the_formula_are_left_out_everywhere(tmp_path):
    matrix = {"x": {"x": 0.01, "y": 0.001, "q": 0.001}, "y": {"x": 0.001, "y": 0.01}, "q": {"q": 1, "x": 0.001}}
    path = tmp_path / "cov.json"
    path.write_text(json.dumps(matrix))
    command = one("propagate", "x*y", "--at", "x=1,y=2", "--cov", str(path))
    api = diffcli.formula("x*y").propagate({"x": 1.0, "y": 2.0}, covariance=matrix)
    from diffcli.session import Session

    request = {"id": 1, "op": "propagate", "expr": "x*y", "at": {"x": 1, "y": 2}, "covariance": matrix}
    answer = json.loads(Session().answer(json.dumps(request).encode()))
    assert command["sigma"] == api["sigma"][0] == answer["sigma"]
    assert answer["notes"] == ['"covariance": q not in the formula (left out)']
    absent = tmp_path / "absent.csv"
    absent.write_text("a,b\n1,0\n0,1\n")
    result = invoke("propagate", "x*y", "--at", "x=1,y=2", "--cov", str(absent))
    assert result.exit_code == 4 and "none of its names is a variable of the formula" in result.stderr


def test_plot_output_naming_a_folder_fails_before_any_row(tmp_path):
    (tmp_path / "d.png").mkdir()
    result = invoke(
        "propagate", "x**2", "--grid", "x=0:1:5", "--sigma", "x=0.1", "--plot-output", str(tmp_path / "d.png")
    )
    assert result.exit_code == 2 and result.stdout == ""
