"""`diffcli scan`: derivatives through recurrences against an independent loop, finite differences
and the closed form of a linear map."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sympy
import torch
from typer.testing import CliRunner

from diffcli.cli import app

runner = CliRunner()


def scan(*args: str) -> dict:
    result = runner.invoke(app, ["scan", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def scan_rows(*args: str) -> list[dict[str, str]]:
    result = runner.invoke(app, ["scan", *args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def logistic(r: float, x0: float, steps: int) -> tuple[float, float, float]:
    """The logistic map and its derivatives by hand: an independent reference."""
    x, dr, dx0 = x0, 0.0, 1.0
    for _ in range(steps):
        x, dr, dx0 = r * x * (1 - x), x * (1 - x) + r * (1 - 2 * x) * dr, r * (1 - 2 * x) * dx0
    return x, dr, dx0


@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_logistic_map_matches_a_hand_written_loop_and_finite_differences(method):
    got = scan(
        "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8", "--wrt", "r,x0", "--method", method
    )
    x, dr, dx0 = logistic(2.8, 0.2, 50)
    assert got["value"] == pytest.approx(x, rel=1e-12)
    assert got["grad"]["r"] == pytest.approx(dr, rel=1e-9)
    assert got["grad"]["x0"] == pytest.approx(dx0, rel=1e-9)
    for column, shift in (("r", lambda h: (2.8 + h, 0.2)), ("x0", lambda h: (2.8, 0.2 + h))):
        central = [(logistic(*shift(h), 50)[0] - logistic(*shift(-h), 50)[0]) / (2 * h) for h in (4e-4, 2e-4, 1e-4)]
        once = [(4 * b - a) / 3 for a, b in zip(central, central[1:])]  # Richardson, twice
        assert got["grad"][column] == pytest.approx((16 * once[1] - once[0]) / 15, rel=1e-9)


@pytest.mark.parametrize("method", ["forward", "reverse"])
def test_euler_oscillator_matches_the_analytic_sensitivities_of_the_discrete_map(method):
    steps, h0 = 10_000, 0.001
    args = ["x = x + h*v", "v = v - h*x", "--init", "x=1,v=0.5", "--steps", str(steps), "--at", f"h={h0}"]
    got = scan(*args, "--method", method)
    h, x0, v0 = sympy.symbols("h x0 v0")
    # [[1, h], [-h, 1]] is rho times a rotation by theta: its N-th power in closed form
    rho, theta = sympy.sqrt(1 + h**2), sympy.atan(h)
    x = rho**steps * (x0 * sympy.cos(steps * theta) + v0 * sympy.sin(steps * theta))
    v = rho**steps * (v0 * sympy.cos(steps * theta) - x0 * sympy.sin(steps * theta))
    at = {h: sympy.Rational(1, 1000), x0: 1, v0: sympy.Rational(1, 2)}
    for name, exact in (("x", x), ("v", v)):
        assert got["value"][name] == pytest.approx(float(exact.subs(at).evalf(30)), rel=1e-9)
        for variable, column in ((h, "h"), (x0, "x0"), (v0, "v0")):
            derivative = float(sympy.diff(exact, variable).subs(at).evalf(30))
            assert got["jacobian"][name][column] == pytest.approx(derivative, rel=1e-9), (name, column)


def test_outputs_trajectory_and_rows():
    got = scan("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8", "--output-expr", "loss=(x-0.5)**2")
    x, dr, _ = logistic(2.8, 0.2, 50)
    assert got["value"] == pytest.approx((x - 0.5) ** 2) and got["grad"]["r"] == pytest.approx(2 * (x - 0.5) * dr)
    rows = scan_rows("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "3", "--grid", "r=1:2:2", "--trajectory")
    # step by step, as lax.scan's ys: every run's step 0, then every run's step 1, ...
    assert [(r["r"], r["step"]) for r in rows] == [(a, str(s)) for s in range(4) for a in ("1.0", "2.0")]
    assert float(rows[6]["value"]) == pytest.approx(logistic(1.0, 0.2, 3)[0])


def test_every_row_of_a_file_is_its_own_run(tmp_path):
    source = tmp_path / "params.csv"
    source.write_text("r,label\n2.5,a\n3.1,b\n")
    rows = scan_rows("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "20", "--input", str(source), "--wrt", "r")
    assert [row["label"] for row in rows] == ["a", "b"]
    for row, r in zip(rows, (2.5, 3.1)):
        assert float(row["grad_r"]) == pytest.approx(logistic(r, 0.2, 20)[1], rel=1e-12)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["x = r*x", "--init", "y=1", "--steps", "3", "--at", "r=1"], "initial value for x"),
        (["x = r*x", "--init", "x=1", "--steps", "3", "--at", "r=1", "--wrt", "q"], "neither a parameter"),
        (["r*x", "--init", "x=1", "--steps", "3", "--at", "r=1"], "assigns a state"),
        (["x = r*x", "--init", "x=1", "--steps", "3"], "no value for r"),
        (["x = r*x", "--init", "x=1", "--steps", "-1", "--at", "r=1"], "--steps"),
        (["x = x0*x", "--init", "x=1", "--steps", "3", "--at", "x0=1"], "initial value of x"),
        (["x = r*x", "--init", "x=1", "--steps", "3", "--at", "r=1", "--method", "sideways"], "--method"),
        (["x = r*x", "--init", "x=1", "--steps", "3", "--at", "r=1", "--method", "reverse", "--trajectory"], "forward"),
        (["x = r*x", "--init", "x=1", "--steps", "3", "--at", "r=1", "--check", "--trajectory"], "--check"),
    ],
)
def test_usage_errors(args, needle):
    result = runner.invoke(app, ["scan", *args])
    assert result.exit_code == 2 and needle in result.stderr


def test_a_chaotic_map_says_how_many_digits_to_expect():
    result = runner.invoke(
        app, ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=3.7", "--format", "json"]
    )
    assert result.exit_code == 0 and "expect about" in result.stderr
    digits = int(result.stderr.split("expect about ")[1].split()[0])
    assert 5 <= digits <= 11  # derivatives grow like e^(0.35*50) ~ 4e7: about 8 digits left of 16
    calm = runner.invoke(app, ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8"])
    assert "expect about" not in calm.stderr


# Reverse mode: the discrete adjoint, chosen where it is cheaper.

LINEAR = ["x = x + h*(a*x + b*v + c)", "v = v + h*(p*x + q*v + s)", "--init", "x=1,v=0"]
PARAMETERS = "b=0.5,c=0.1,p=-1,q=-0.1,s=0.2"


def test_reverse_and_forward_mode_agree_on_jacobians_of_several_outputs_and_rows():
    args = [*LINEAR, "--steps", "300", "--at", f"{PARAMETERS},h=0.01", "--grid", "a=-1:-0.5:4"]
    outputs = ["--output-expr", "energy=x**2+v**2", "--output-expr", "ratio=x/(1+v**2)", "--format", "csv"]
    forward, reverse = (runner.invoke(app, ["scan", *args, *outputs, "--method", m]) for m in ("forward", "reverse"))
    assert forward.exit_code == reverse.exit_code == 0
    rows = [list(csv.DictReader(io.StringIO(r.stdout))) for r in (forward, reverse)]
    assert len(rows[0]) == 4 and "jacobian_ratio_v0" in rows[0][0]
    for a, b in zip(*rows):
        for column in a:
            assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-12, abs=1e-300), column


def test_auto_takes_reverse_mode_only_where_it_is_cheaper_and_fits():
    from diffcli import language
    from diffcli.recurrences import REVERSE_BYTES, Scan

    def recurrence(*updates: str, outputs: tuple[str, ...] = (), wrt: tuple[str, ...] = ()) -> Scan:
        init = {language.parse(u).name: 1.0 for u in updates}
        parsed = [language.parse(u) for u in updates]
        return Scan(parsed, init, outputs=[language.parse(o) for o in outputs], wrt=wrt)

    one_loss = recurrence(*LINEAR[:2], outputs=("loss=x**2+v**2",))  # 2 states, 9 variables, 1 output
    assert one_loss.method("auto", 1000, 1000, False, torch.float64) == "reverse"
    assert one_loss.method("auto", 1000, 1000, True, torch.float64) == "forward"  # --trajectory
    rows = REVERSE_BYTES // (1000 * 2 * 8) + 1
    assert one_loss.method("auto", 1000, rows, False, torch.float64) == "forward"  # too much to keep
    logistic_map = recurrence("x = r*x*(1-x)", wrt=("r", "x0"))  # 2 sensitivities against 2 pulls
    assert logistic_map.method("auto", 10, 1, False, torch.float64) == "forward"
    assert logistic_map.method("reverse", 10**9, 10**9, False, torch.float64) == "reverse"


# scan --check: forward mode against reverse mode and finite differences, and the digits left.


def check(*args: str) -> tuple[int, list[dict], str]:
    result = runner.invoke(app, ["scan", *args, "--check", "--format", "json"])
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_check_of_a_well_conditioned_scan():
    code, rows, err = check("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8", "--wrt", "r,x0")
    assert code == 0 and err == ""
    assert {(r["quantity"], r["engine"]) for r in rows} == {
        (q, e) for q in ("grad_r", "grad_x0") for e in ("reverse mode", "finite differences")
    }
    assert all(r["ok"] and r["digits"] == 15 for r in rows)
    assert max(r["max_rel"] for r in rows if r["engine"] == "finite differences") < 1e-7


def test_check_of_a_chaotic_scan_says_how_many_digits_are_left():
    code, rows, err = check("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=3.7", "--wrt", "r,x0")
    assert code == 0 and all(r["ok"] for r in rows)
    assert {r["digits"] for r in rows} == {7}  # derivatives of e^(0.35*50) ~ 4e7: about 7 of 16 digits left
    assert "expect about 7 correct digits" in err
    # finite differences step by |x / x'| (~1e-8 here) and still find 4 or more of those digits
    assert max(r["max_rel"] for r in rows if r["engine"] == "finite differences") < 1e-4


def test_check_of_several_states_outputs_and_rows():
    code, rows, _ = check(
        *LINEAR,
        "--steps",
        "200",
        "--at",
        f"{PARAMETERS},a=-1",
        "--grid",
        "h=0.01:0.02:3",
        "--output-expr",
        "energy=x**2+v**2",
        "--output-expr",
        "phase=atan2(v, x)",
    )
    assert code == 0 and len(rows) == 2 * 9 * 2 and all(r["ok"] for r in rows)
    assert {r["output"] for r in rows} == {"energy", "phase"}


@pytest.mark.parametrize("engine", ["forward", "reverse"])
def test_check_finds_an_engine_that_is_off_by_a_millionth(monkeypatch, engine):
    from diffcli.recurrences import Scan

    def off(numbers: list) -> list:
        return [numbers[0], *(n * (1 + 1e-6) for n in numbers[1:])]  # the value, then the derivatives

    if engine == "forward":
        forward = Scan.forward
        monkeypatch.setattr(
            Scan, "forward", lambda *a, **k: ((step, off(numbers)) for step, numbers in forward(*a, **k))
        )
    else:
        reverse = Scan.reverse
        monkeypatch.setattr(Scan, "reverse", lambda *a: (off(reverse(*a)[0]), reverse(*a)[1]))
    code, rows, _ = check("x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", "r=2.8")
    failing = {r["engine"] for r in rows if not r["ok"]}
    assert code == 5
    assert failing == ({"reverse mode", "finite differences"} if engine == "forward" else {"reverse mode"})


@pytest.mark.parametrize(("r", "places"), [("2.8", 15), ("3.7", 7)])
def test_the_digits_left_do_not_depend_on_the_scale_of_an_output(r, places):
    args = ["x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--at", f"r={r}", "--output-expr", "big=1e6*x"]
    code, rows, err = check(*args)
    assert code == 0 and {row["digits"] for row in rows} == {places}
    assert ("expect about" in err) == (places < 15)


def test_a_state_assigned_twice_is_refused():
    result = runner.invoke(app, ["scan", "x = r*x", "x = 2*x", "--init", "x=1", "--steps", "3", "--at", "r=2"])
    assert result.exit_code == 3 and "'x' is assigned twice" in result.stderr


def test_scan_through_kinks_of_kinks_evaluates():
    args = ["scan", "x = abs(log(x)) + r", "--init", "x=2", "--steps", "3", "--at", "r=2", "--format", "json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and json.loads(result.stdout)["grad"]["r"] > 0
