"""Every lowering entry, evaluated against SymPy's own arbitrary-precision evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from diffcli import devices, lower
from diffcli.errors import UsageError
from diffcli.language import parse, symbol
from diffcli.rules import FUNCTIONS

x, y = symbol("x"), symbol("y")


def inside(domain: tuple[float, float]) -> tuple[float, float]:
    """Arguments 0.1 inside the ends of a function's real domain, and within ±3."""
    low, high = domain
    return max(low + 0.1, -3.0), min(high - 0.1, 3.0)


DOMAINS = {name: inside(function.domain) for name, function in FUNCTIONS.items()}


def evaluate(expr: sympy.Expr, points: dict[str, list[float]]) -> list[float]:
    names = sorted(points)
    run = lower.compile([expr], [symbol(n) for n in names])
    columns = {n: torch.tensor(points[n], dtype=torch.float64) for n in names}
    return run(columns, torch.empty(len(points[names[0]]), dtype=torch.float64))[0].tolist()


def oracle(expr: sympy.Expr, values: dict[str, float]) -> float:
    return float(expr.subs({symbol(n): sympy.Float(v, 40) for n, v in values.items()}).evalf(30))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_matches_sympy(name):
    fewest, _ = FUNCTIONS[name].arity
    low, high = DOMAINS[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    xs = rng.uniform(low, high, 20).tolist()
    ys = rng.uniform(0.5, 2.0, 20).tolist()
    args = {"where": "x > 0, x, y", "clamp": "x, -1, 1", "log": "x, 3", "heaviside": "x, 0.25"}.get(
        name, ", ".join(["x", "y"][:fewest])
    )
    expr = parse(f"{name}({args})").expr
    got = evaluate(expr, {"x": xs, "y": ys})
    for xv, yv, g in zip(xs, ys, got):
        assert g == pytest.approx(oracle(expr, {"x": xv, "y": yv}), rel=1e-13, abs=1e-300), (name, xv, yv)


def test_kinks_and_ties():
    assert evaluate(parse("heaviside(x)").expr, {"x": [-1.0, 0.0, 1.0]}) == [0.0, 0.5, 1.0]
    assert evaluate(parse("sign(x)").expr, {"x": [-3.0, 0.0, 2.0]}) == [-1.0, 0.0, 1.0]
    assert evaluate(parse("cbrt(x)").expr, {"x": [-8.0, 27.0, 0.0]}) == [-2.0, 3.0, 0.0]
    assert evaluate(parse("x % 3").expr, {"x": [-1.0, 4.0]}) == [2.0, 1.0]
    assert evaluate(parse("gamma(x)").expr, {"x": [-0.5, -1.5, 5.0]}) == pytest.approx(
        [-2 * math.sqrt(math.pi), 4 / 3 * math.sqrt(math.pi), 24.0], rel=1e-13
    )


def test_division_rounds_once():
    # x/3 is computed as a division, not as x * (1/3) (which is 1 ulp off for x = 3*k cases)
    xs = [float(v) for v in range(1, 200)]
    assert evaluate(parse("x/3").expr, {"x": xs}) == [v / 3 for v in xs]
    assert evaluate(parse("x/y").expr, {"x": xs, "y": [7.0] * len(xs)}) == [v / 7 for v in xs]


def test_branch_not_taken_never_leaks_nan():
    got = evaluate(parse("where(x > 0, log(x), 0)").expr, {"x": [-1.0, 0.0, math.e]})
    assert got == [0.0, 0.0, 1.0]


def test_constants_and_float32():
    run = lower.compile([parse("pi + e").expr], [])
    (value,) = run({}, torch.empty(2, dtype=torch.float32))
    assert value.dtype == torch.float32 and value.tolist() == pytest.approx([math.pi + math.e] * 2, rel=1e-6)


@pytest.mark.parametrize("name", ["cuda", "cuda:3", "tpu", "banana"])
def test_unusable_devices_are_refused(name):
    if name.startswith("cuda") and torch.cuda.is_available() and name == "cuda":
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError):
        devices.device(name, torch.float64)


def test_log_of_one_plus_and_exp_minus_one_keep_small_values():
    # naive float64 gives log(1 + 1e-17) = 0 and exp(1e-17) - 1 = 0
    assert evaluate(parse("log(1 + x)").expr, {"x": [1e-17]}) == [1e-17]
    assert evaluate(parse("exp(x) - 1").expr, {"x": [1e-17]}) == [1e-17]
    assert evaluate(parse("y*(exp(x) - 1) + log(x + 1)").expr, {"x": [1e-17], "y": [2.0]}) == [3e-17]


def test_the_tape_returns_variables_constants_and_shared_subexpressions_on_every_call():
    shared = sympy.sin(x) * y
    run = lower.compile([x, sympy.Float(2.5), shared**2 + shared, sympy.cos(shared)], [x, y])
    columns = {"x": torch.tensor([0.5, 2.0], dtype=torch.float64), "y": torch.tensor([3.0, -1.0], dtype=torch.float64)}
    like = torch.empty(2, dtype=torch.float64)
    for _ in range(2):  # the second call reuses the constants and must not see the first call's slots
        got = [t.tolist() for t in run(columns, like)]
        s = [math.sin(0.5) * 3.0, math.sin(2.0) * -1.0]
        assert got == [[0.5, 2.0], [2.5, 2.5], [v * v + v for v in s], [math.cos(v) for v in s]]


def test_constants_made_under_inference_mode_do_not_stop_autograd():
    run = lower.compile([3 * x**2 + 1], [x])
    like = torch.empty(1, dtype=torch.float64)
    with torch.inference_mode():
        assert run({"x": torch.tensor([2.0], dtype=torch.float64)}, like)[0].item() == 13.0
    leaf = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    (value,) = run({"x": leaf}, like)
    value.sum().backward()
    assert leaf.grad.tolist() == [12.0]


def _first_derivatives(text: str, **at: float) -> dict[str, float]:
    from diffcli.transforms import evaluator, plan

    columns = {k: torch.tensor([v], dtype=torch.float64) for k, v in at.items()}
    results = evaluator(plan("grad", [parse(text)]))(columns, torch.empty(1, dtype=torch.float64))
    return {k: float(v[0]) for k, v in results.items()}


def test_rewrites_keep_the_digits_of_values_and_derivatives():
    import mpmath

    # 1 - exp(x) is -expm1(x): no cancellation near 0
    got = _first_derivatives("1 - exp(x)", x=1e-10)["value"]
    assert got == pytest.approx(float(-mpmath.expm1(mpmath.mpf(1e-10))), rel=1e-15)
    # sqrt(x² + y²) is hypot(x, y): no overflow at 1e200
    got = _first_derivatives("sqrt(x**2 + y**2)", x=3e200, y=4e200)
    assert got["value"] == pytest.approx(5e200, rel=1e-15) and got["grad_x"] == pytest.approx(0.6, rel=1e-15)


def test_sin_of_atan2_is_differentiated_as_written():
    """SymPy would rewrite sin(atan2(y, c)) as y/sqrt(c² + y²), whose y-derivative cancels."""
    import mpmath

    got = _first_derivatives("sin(atan2(y, c))", y=1.0, c=1e-8)["grad_y"]
    with mpmath.workdps(50):
        want = mpmath.diff(lambda y: mpmath.sin(mpmath.atan2(y, mpmath.mpf(1e-8))), mpmath.mpf(1))
    assert got == pytest.approx(float(want), rel=1e-14)
