"""First and second derivatives of every function of the language against mpmath at 1,000 digits,
over grids that span each function's whole domain: log-spaced magnitudes from 1e-300 to the
overflow limit, both signs, and points 10^-k from each domain edge or pole.

The oracle is independent of diffcli's derivative rules: mpmath's own numerical differentiation
(``mpmath.diff``, central differences at 1,000 digits with a step of 1e-60 relative). Where the true
value underflows (below the smallest normal double), 0 or a subnormal is right; where it
overflows, ±inf is. ``python tests/test_accuracy.py`` prints the table of worst errors that the
README quotes.
"""

from __future__ import annotations

import math
import os
import sys

import mpmath
import numpy as np
import pytest
import torch

from diffcli.language import parse
from diffcli.rules import FUNCTIONS
from diffcli.transforms import evaluator, plan

FIRST, SECOND = 2e-14, 1e-13  # the targets: relative error of first and second derivatives
DEVICE = os.environ.get("DIFFCLI_TEST_DEVICE", "cpu")  # cuda: the same table for the GPU's kernels
TINY, HUGE = sys.float_info.min, sys.float_info.max


def magnitudes(low: float, high: float, count: int = 60) -> list[float]:
    return [float(v) for v in np.geomspace(low, high, count)]


def both_signs(values: list[float]) -> list[float]:
    return values + [-v for v in values]


def near(edge: float, side: float) -> list[float]:
    """Points 10^-k from ``edge`` on ``side`` (+1 above, -1 below), down to the last double."""
    points = [edge + side * 10.0**-k for k in range(1, 16)]
    return [p for p in points if p != edge] + [float(np.nextafter(edge, edge + side))]


def spread(low: float, high: float) -> list[float]:
    """Log-spaced magnitudes: ten decades a step over the whole range, and 20 points a decade
    between 1e-3 and 1e3 (where exponential tails and cancellations live), clipped to the range."""
    dense = [v for v in magnitudes(1e-3, 1e3, 120) if low <= v <= high]
    return sorted(set(magnitudes(low, high) + dense))


UNIT = both_signs(spread(1e-300, 0.5) + near(1.0, -1))  # (-1, 1)
WIDE = both_signs(spread(1e-300, 1e300))

sigma = lambda x: 1 / (1 + mpmath.exp(-x))  # noqa: E731

# name: (text, mpmath function, points)
UNARY = {
    "sin": ("sin(x)", mpmath.sin, both_signs(spread(1e-300, 1e15))),
    "cos": ("cos(x)", mpmath.cos, both_signs(spread(1e-300, 1e15))),
    "tan": ("tan(x)", mpmath.tan, both_signs(spread(1e-300, 1e15)) + near(math.pi / 2, -1)[:12]),
    "asin": ("asin(x)", mpmath.asin, UNIT),
    "acos": ("acos(x)", mpmath.acos, UNIT),
    "atan": ("atan(x)", mpmath.atan, WIDE),
    "cot": ("cot(x)", mpmath.cot, both_signs(spread(1e-300, 1e15))),
    "sec": ("sec(x)", mpmath.sec, both_signs(spread(1e-300, 1e15)) + near(math.pi / 2, -1)[:12]),
    "csc": ("csc(x)", mpmath.csc, both_signs(spread(1e-300, 1e15))),
    "acot": ("acot(x)", mpmath.acot, WIDE),
    "asec": ("asec(x)", mpmath.asec, both_signs(near(1.0, 1) + spread(1.5, 1e300))),
    "acsc": ("acsc(x)", mpmath.acsc, both_signs(near(1.0, 1) + spread(1.5, 1e300))),
    "sinc": ("sinc(x)", mpmath.sinc, both_signs(spread(1e-300, 1e15))),
    "sinh": ("sinh(x)", mpmath.sinh, both_signs(spread(1e-300, 709))),
    "cosh": ("cosh(x)", mpmath.cosh, both_signs(spread(1e-300, 709))),
    "tanh": ("tanh(x)", mpmath.tanh, WIDE),
    "coth": ("coth(x)", mpmath.coth, WIDE),
    "sech": ("sech(x)", mpmath.sech, WIDE),
    "csch": ("csch(x)", mpmath.csch, WIDE),
    "asinh": ("asinh(x)", mpmath.asinh, WIDE),
    "acosh": ("acosh(x)", mpmath.acosh, near(1.0, 1) + spread(1.5, 1e300)),
    "atanh": ("atanh(x)", mpmath.atanh, UNIT),
    "exp": ("exp(x)", mpmath.exp, both_signs(spread(1e-300, 700))),
    "expm1": ("expm1(x)", mpmath.expm1, both_signs(spread(1e-300, 700))),
    "log": ("log(x)", mpmath.log, spread(1e-300, 1e300)),
    "log2": ("log2(x)", lambda x: mpmath.log(x, 2), spread(1e-300, 1e300)),
    "log10": ("log10(x)", mpmath.log10, spread(1e-300, 1e300)),
    "log1p": ("log1p(x)", mpmath.log1p, near(-1.0, 1) + both_signs(spread(1e-300, 0.5)) + spread(1, 1e300)),
    "sqrt": ("sqrt(x)", mpmath.sqrt, spread(1e-300, 1e300)),
    "cbrt": ("cbrt(x)", lambda x: mpmath.sign(x) * mpmath.cbrt(abs(x)), both_signs(spread(1e-300, 1e300))),
    "pow": ("x**2.5", lambda x: x**2.5, spread(1e-100, 1e100)),
    "erf": ("erf(x)", mpmath.erf, both_signs(spread(1e-300, 27))),
    "erfc": ("erfc(x)", mpmath.erfc, both_signs(spread(1e-300, 27))),
    "gamma": (
        "gamma(x)",
        mpmath.gamma,
        spread(1e-300, 171) + [-k - f for k in (0, 1, 2, 5, 20, 100) for f in (0.1, 0.3, 0.5, 0.7, 0.9)],
    ),
    "lgamma": (
        "lgamma(x)",
        lambda x: mpmath.log(abs(mpmath.gamma(x))),
        spread(1e-300, 1e300) + [-k - f for k in (0, 1, 2, 5, 20, 100) for f in (0.1, 0.3, 0.7, 0.9)],
    ),
    "sigmoid": ("sigmoid(x)", sigma, both_signs(spread(1e-300, 745))),
    "softplus": ("softplus(x)", lambda x: mpmath.log1p(mpmath.exp(x)), both_signs(spread(1e-300, 745))),
}
PLANE = [(a, b) for a in both_signs(magnitudes(1e-200, 1e200, 9)) for b in magnitudes(1e-200, 1e200, 9)]
BINARY = {
    "atan2": ("atan2(y, x)", lambda x, y: mpmath.atan2(y, x), PLANE),
    "hypot": ("hypot(x, y)", lambda x, y: mpmath.sqrt(x**2 + y**2), PLANE),
}
# the functions of the language without a grid, and why
PIECEWISE = "piecewise constant or linear: exact derivatives away from its kinks (test_conventions: at them)"
EXEMPT = {
    "ln": "log under another name",
    "where": "a branch: the derivatives of its arguments, exact away from the branch boundary",
    **dict.fromkeys(["abs", "sign", "floor", "ceil", "min", "max", "relu", "heaviside", "clamp"], PIECEWISE),
}


def oracle(f, point: tuple[float, ...], orders: tuple[int, ...]) -> mpmath.mpf:
    """d^orders f at ``point`` by mpmath's central differences with a step of 1e-40 relative at
    120 digits; where the differences would drown in f's own size (cos''(1e-300) = -1 beside
    cos(1e-300) = 1 - 5e-601), at 1,000 digits and a step of 1e-60."""

    def at(digits: int, step: int) -> tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]:
        with mpmath.workdps(digits):
            x = [mpmath.mpf(p) for p in point]
            h = mpmath.mpf(10) ** -step * min(max(abs(p), mpmath.mpf(10) ** -300) for p in x)
            d = mpmath.diff(f, x if len(x) > 1 else x[0], orders if len(x) > 1 else orders[0], h=h)
            return d, abs(d) * h ** sum(orders), abs(f(*x))

    d, difference, size = at(120, 40)
    if difference > size * mpmath.mpf(10) ** -90:
        return d
    return at(1000, 60)[0]


def error(got: float, true: mpmath.mpf) -> float:
    """Relative error; 0 where an underflowing result is 0 or subnormal, or an overflowing one ±inf."""
    true = complex(true).real if isinstance(true, mpmath.mpc) else true
    if abs(true) < TINY:
        return 0.0 if abs(got) <= TINY else math.inf
    if abs(true) > HUGE:
        return 0.0 if math.isinf(got) and (got > 0) == (true > 0) else math.inf
    if not math.isfinite(got):
        return math.inf
    return float(abs((mpmath.mpf(got) - true) / true))


def derivatives(text: str, points: list[tuple[float, ...]], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """diffcli's gradient and Hessian of ``text`` at ``points``."""
    p = plan("hessian", [parse(text)])
    columns = {
        n: torch.tensor([pt[i] for pt in points], dtype=torch.float64, device=DEVICE) for i, n in enumerate(names)
    }
    results = evaluator(p)(columns, torch.empty(len(points), dtype=torch.float64, device=DEVICE))
    return {k: v.cpu().numpy() for k, v in results.items()}


def worst(name: str) -> tuple[float, float, tuple, tuple]:
    """The worst relative errors of the first and of the second derivatives, and where."""
    if name in UNARY:
        text, f, xs = UNARY[name]
        points, names = [(x,) for x in xs], ("x",)
    else:
        text, f, points = BINARY[name]
        names = ("x", "y")
    got = derivatives(text, points, names)
    first = second = (0.0, None)
    for i, point in enumerate(points):
        for a, da in enumerate(names):
            unit = tuple(int(k == a) for k in range(len(names)))
            e = error(float(got[f"grad_{da}"][i]), oracle(f, point, unit))
            first = max(first, (e, point), key=lambda t: t[0])
            for b, db in enumerate(names):
                orders = tuple(unit[k] + (k == b) for k in range(len(names)))
                e = error(float(got[f"hessian_{da}_{db}"][i]), oracle(f, point, orders))
                second = max(second, (e, point), key=lambda t: t[0])
    return first[0], second[0], first[1], second[1]


def test_every_function_of_the_language_has_a_grid_or_a_reason():
    gridded = set(UNARY) | set(BINARY)
    missing = set(FUNCTIONS) - gridded - set(EXEMPT)
    assert not missing, f"no grid for {sorted(missing)}: add one to UNARY or BINARY, or a reason to EXEMPT"
    assert set(EXEMPT) <= set(FUNCTIONS) - gridded, "EXEMPT names what is not a function, or has a grid"


@pytest.mark.parametrize("name", [*UNARY, *BINARY])
def test_derivatives_keep_their_digits_over_the_whole_domain(name):
    first, second, at_first, at_second = worst(name)
    assert first <= FIRST, f"{name}': {first:.1e} at {at_first}"
    assert second <= SECOND, f"{name}'': {second:.1e} at {at_second}"


if __name__ == "__main__":
    print("| function | worst relative error, 1st derivative | 2nd derivative |")
    print("|---|---|---|")
    for name in [*UNARY, *BINARY]:
        first, second, at_first, at_second = worst(name)
        print(f"| {name} | {first:.1e} (x = {at_first}) | {second:.1e} (x = {at_second}) |")
