"""Every function of the language, one row each: its torch kernel, its partial derivatives, and
where it is not differentiable.

The partials are SymPy expressions in forms that keep their digits over the function's whole
domain (autograd's ``defvjp`` table is the model): tanh' is sech² from exp(-2|x|), not 1 - tanh²
(0 past x = 19); sigmoid' is sigmoid(x)·sigmoid(-x); asin' is 1/sqrt((1-x)(1+x)), exact near 1;
atan', asinh', acosh', atan2 and hypot divide by the larger magnitude instead of squaring it (no
overflow at 1e160, no underflow at 1e-200). Where the second derivative needs a form of its own,
the first is a ``functions.Helper`` with its own row. ``transforms.differentiate`` applies the
chain rule over these rows; ``lower`` evaluates them. A function added to the language gets its
kernel, its derivative and its kinks here, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
import torch
from sympy.codegen import cfunctions

from . import functions as fn
from . import series, special

Tensor = torch.Tensor
Partials = Callable[..., Sequence[sympy.Expr]]


@dataclass(frozen=True)
class Rule:
    torch: Callable[..., Tensor]
    partials: Partials | None  # d f / d argument i, given the arguments; None: differentiate ``textbook``
    kink: Callable[[sympy.Basic], sympy.Basic] | None = None  # given the call: where it is not differentiable
    taylor: Callable[..., series.Series] | None = None  # the series of f(u…) from its arguments' series


def _at_zero(node: sympy.Basic) -> sympy.Basic:
    return sympy.Eq(node.args[0], 0)


def _ties(node: sympy.Basic) -> sympy.Basic:
    """Where the max or min is attained by two or more arguments."""
    args = node.args
    ties = [sympy.Eq(a, b) for i, a in enumerate(args) for b in args[i + 1 :]]
    return sympy.And(sympy.Or(*ties), sympy.Or(*(sympy.Eq(a, node) for a in args)))


def _tie_weights(extremum: type[sympy.Basic]) -> Partials:
    """d max / d argument i: 1/n for each of the n arguments that attain it (so a JVP along the
    tie, every tangent 1, is the one-sided value 1 however many arguments tie)."""

    def partials(*args: sympy.Expr) -> list[sympy.Expr]:
        attained = [sympy.Piecewise((1, sympy.Eq(a, extremum(*args))), (0, True)) for a in args]
        count = sympy.Add(*attained)
        return [a / count for a in attained]

    return partials


def _fold(op: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., Tensor]:
    def folded(first: Tensor, *rest: Tensor) -> Tensor:
        for r in rest:
            first = op(first, r)
        return first

    return folded


def _cbrt(x: Tensor) -> Tensor:
    """Real cube root, refined by one Newton step to correct the rounding of 1/3."""
    y = torch.sign(x) * torch.abs(x) ** (1 / 3)
    refined = y - (y * y * y - x) / (3 * y * y)
    return torch.where(torch.isfinite(refined) & (y != 0), refined, y)


def _heaviside(x: Tensor, h0: Tensor | float = 0.5) -> Tensor:
    return torch.heaviside(x, torch.as_tensor(h0, dtype=x.dtype, device=x.device))


def _hypot_d(a: Tensor, b: Tensor) -> Tensor:
    """a / hypot(a, b); at the origin 0, the subgradient of least norm (JAX's choice too)."""
    h = torch.hypot(a, b)
    return torch.where(h == 0, 0.0, a / h)


def _datan(u: Tensor) -> Tensor:
    h = torch.hypot(torch.ones_like(u), u)
    return 1 / h / h


def _d2atan(u: Tensor) -> Tensor:
    h = torch.hypot(torch.ones_like(u), u)
    return -2 * (u / h) / h / h / h


def _d2asinh(u: Tensor) -> Tensor:
    h = torch.hypot(torch.ones_like(u), u)
    return -(u / h) / h / h


def _dacosh(u: Tensor) -> Tensor:
    return 1 / torch.sqrt(u - 1) / torch.sqrt(u + 1)


def _d2acosh(u: Tensor) -> Tensor:
    a = _dacosh(u)
    return -(u * a) * a * a


def _atan2_d(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return (b / h) / h


def _atan2_daa(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return -2 * (a / h) * (b / h) / h / h


def _atan2_dab(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return ((a - b) / h) * ((a + b) / h) / h / h


def _hypot_daa(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return torch.square(b / h) / h


def _hypot_dab(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return -(a / h) * (b / h) / h


def _flat(kernel: Callable[..., Tensor]) -> Callable[..., series.Series]:
    """The series of a piecewise-constant function: its value, with every derivative 0."""
    return lambda *args: series.Series.constant(args[0].basis, kernel(*(a.value for a in args)))


def _mod_series(x: series.Series, y: series.Series) -> series.Series:
    return (x - y.scaled(special.floor_quotient(x.value, y.value))).with_value(torch.remainder(x.value, y.value))


def _relu_series(u: series.Series) -> series.Series:
    return u.scaled((u.value > 0).to(u.value.dtype))


def _one_minus_square(u: sympy.Expr) -> sympy.Expr:
    """1 - u², as (1 - u)(1 + u): exact where u is near ±1."""
    return (1 - u) * (1 + u)


def _softplus(x: Tensor) -> Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


RULES: dict[type[sympy.Basic], Rule] = {
    sympy.sin: Rule(torch.sin, lambda u: [sympy.cos(u)], taylor=lambda u: series.sin_cos(u)[0]),
    sympy.cos: Rule(torch.cos, lambda u: [-sympy.sin(u)], taylor=lambda u: series.sin_cos(u)[1]),
    sympy.tan: Rule(torch.tan, lambda u: [1 + sympy.tan(u) ** 2], taylor=series.tan),
    sympy.asin: Rule(torch.asin, lambda u: [1 / sympy.sqrt(_one_minus_square(u))], taylor=series.asin),
    sympy.acos: Rule(torch.acos, lambda u: [-1 / sympy.sqrt(_one_minus_square(u))], taylor=series.acos),
    sympy.atan: Rule(torch.atan, lambda u: [fn.datan(u)], taylor=series.atan),
    fn.atan2: Rule(torch.atan2, lambda y, x: [fn.atan2_d(y, x), -fn.atan2_d(x, y)], taylor=series.atan2),
    sympy.sinh: Rule(torch.sinh, lambda u: [sympy.cosh(u)], taylor=lambda u: series.sinh_cosh(u)[0]),
    sympy.cosh: Rule(torch.cosh, lambda u: [sympy.sinh(u)], taylor=lambda u: series.sinh_cosh(u)[1]),
    sympy.tanh: Rule(torch.tanh, lambda u: [fn.sech2(u)], taylor=series.tanh),
    sympy.asinh: Rule(torch.asinh, lambda u: [fn.dasinh(u)], taylor=series.asinh),
    sympy.acosh: Rule(torch.acosh, lambda u: [fn.dacosh(u)], taylor=series.acosh),
    sympy.atanh: Rule(torch.atanh, lambda u: [fn.datanh(u)], taylor=series.atanh),
    sympy.exp: Rule(torch.exp, lambda u: [sympy.exp(u)], taylor=series.exp),
    cfunctions.expm1: Rule(torch.expm1, lambda u: [sympy.exp(u)], taylor=series.expm1),
    sympy.log: Rule(torch.log, lambda u: [1 / u], taylor=series.log),  # NaN below 0, -inf at 0
    cfunctions.log2: Rule(
        torch.log2,
        lambda u: [1 / (u * sympy.log(2))],
        taylor=lambda u: series.log(u).scaled(1 / math.log(2)).with_value(torch.log2(u.value)),
    ),
    cfunctions.log10: Rule(
        torch.log10,
        lambda u: [1 / (u * sympy.log(10))],
        taylor=lambda u: series.log(u).scaled(1 / math.log(10)).with_value(torch.log10(u.value)),
    ),
    cfunctions.log1p: Rule(torch.log1p, lambda u: [1 / (1 + u)], taylor=series.log1p),
    fn.cbrt: Rule(
        _cbrt, lambda u: [1 / (3 * fn.cbrt(u) ** 2)], taylor=lambda u: series.power(u, 1 / 3, _cbrt(u.value))
    ),
    sympy.Abs: Rule(torch.abs, lambda u: [sympy.sign(u)], _at_zero, taylor=lambda u: u.scaled(torch.sign(u.value))),
    sympy.sign: Rule(torch.sign, lambda u: [fn.dirac(u)], _at_zero, taylor=_flat(torch.sign)),
    fn.floor: Rule(
        torch.floor, lambda u: [sympy.S.Zero], lambda node: sympy.Eq(node.args[0], node), taylor=_flat(torch.floor)
    ),
    fn.ceiling: Rule(
        torch.ceil, lambda u: [sympy.S.Zero], lambda node: sympy.Eq(node.args[0], node), taylor=_flat(torch.ceil)
    ),
    fn.Mod: Rule(
        torch.remainder,
        lambda x, y: [sympy.S.One, -fn.floor_quotient(x, y)],
        lambda node: sympy.Eq(node, 0, evaluate=False),
        taylor=_mod_series,
    ),
    sympy.Max: Rule(
        _fold(torch.maximum), _tie_weights(sympy.Max), _ties, taylor=lambda *a: series.extremum(torch.maximum, *a)
    ),
    sympy.Min: Rule(
        _fold(torch.minimum), _tie_weights(sympy.Min), _ties, taylor=lambda *a: series.extremum(torch.minimum, *a)
    ),
    cfunctions.hypot: Rule(
        torch.hypot,
        lambda a, b: [fn.hypot_d(a, b), fn.hypot_d(b, a)],
        lambda node: sympy.And(sympy.Eq(node.args[0], 0), sympy.Eq(node.args[1], 0)),
        taylor=lambda a, b: series.power(a * a + b * b, 0.5, torch.hypot(a.value, b.value)),
    ),
    sympy.erf: Rule(torch.special.erf, lambda u: [fn.derf(u)], taylor=series.erf),
    sympy.erfc: Rule(torch.special.erfc, lambda u: [-fn.derf(u)], taylor=series.erfc),
    sympy.gamma: Rule(special.gamma, lambda u: [sympy.gamma(u) * sympy.polygamma(0, u)], taylor=series.gamma),
    sympy.loggamma: Rule(
        torch.lgamma, lambda u: [sympy.polygamma(0, u)], taylor=series.lgamma
    ),  # log|Γ(x)|, as C's lgamma
    sympy.polygamma: Rule(lambda n, x: special.polygamma(int(n), x), lambda n, u: [0, sympy.polygamma(n + 1, u)]),
    fn.sigmoid: Rule(torch.sigmoid, lambda u: [fn.dsigmoid(u)], taylor=series.sigmoid),
    fn.softplus: Rule(_softplus, lambda u: [fn.sigmoid(u)], taylor=series.softplus),
    fn.relu: Rule(torch.relu, lambda u: [sympy.Heaviside(u, 0)], _at_zero, taylor=_relu_series),
    sympy.Heaviside: Rule(
        _heaviside,
        lambda u, h0=None: [fn.dirac(u), sympy.Piecewise((1, sympy.Eq(u, 0)), (0, True))],
        _at_zero,
        taylor=_flat(_heaviside),
    ),
    # the derivatives' own forms
    fn.sech2: Rule(special.sech2, lambda u: [-2 * sympy.tanh(u) * fn.sech2(u)]),
    fn.dsigmoid: Rule(special.dsigmoid, lambda u: [-fn.dsigmoid(u) * sympy.tanh(u / 2)]),
    fn.derf: Rule(lambda u: 2 / math.sqrt(math.pi) * special.gauss(u), lambda u: [-2 * u * fn.derf(u)]),
    fn.datan: Rule(_datan, lambda u: [fn.d2atan(u)]),
    fn.d2atan: Rule(_d2atan, None),
    fn.datanh: Rule(lambda u: 1 / ((1 - u) * (1 + u)), lambda u: [2 * u * fn.datanh(u) ** 2]),
    fn.dasinh: Rule(lambda u: 1 / torch.hypot(torch.ones_like(u), u), lambda u: [fn.d2asinh(u)]),
    fn.d2asinh: Rule(_d2asinh, None),
    fn.dacosh: Rule(_dacosh, lambda u: [fn.d2acosh(u)]),
    fn.d2acosh: Rule(_d2acosh, None),
    fn.atan2_d: Rule(_atan2_d, lambda a, b: [fn.atan2_daa(a, b), fn.atan2_dab(a, b)]),
    fn.atan2_daa: Rule(_atan2_daa, None),
    fn.atan2_dab: Rule(_atan2_dab, None),
    fn.hypot_d: Rule(_hypot_d, lambda a, b: [fn.hypot_daa(a, b), fn.hypot_dab(a, b)]),
    fn.hypot_daa: Rule(_hypot_daa, None),
    fn.hypot_dab: Rule(_hypot_dab, None),
    fn.dirac: Rule(lambda u: torch.where(u == 0, math.nan, 0.0).to(u.dtype), lambda u: [fn.dirac(u)]),
    fn.floor_quotient: Rule(special.floor_quotient, lambda x, y: [sympy.S.Zero, sympy.S.Zero]),
}


def rule(node: sympy.Basic) -> Rule | None:
    """The row of ``node``'s function: our subclasses first, then SymPy's own classes."""
    for cls in type(node).__mro__:
        if cls in RULES:
            return RULES[cls]
    return None


def kinks(expr: sympy.Basic) -> sympy.Basic:
    """Where ``expr`` is not differentiable, as a condition: the kinks of its functions (abs,
    sign, relu and heaviside at 0, ties of max and min, hypot at the origin, the jumps of floor,
    ceil and mod) and the boundaries of branches (where the derivative reported is the taken
    branch's). False where there are none."""
    places = []
    for node in sympy.preorder_traversal(expr):
        found = rule(node)
        if found is not None and found.kink is not None:
            places.append(found.kink(node))
        elif isinstance(node, sympy.Piecewise):
            for _, condition in node.args:
                places += [sympy.Eq(r.lhs, r.rhs) for r in condition.atoms(sympy.core.relational.Relational)]
    return sympy.Or(*places)


def accurate(expr: sympy.Basic) -> sympy.Basic:
    """The same values in forms that keep their digits: log(1 + t) -> log1p(t); exp(t) - 1 and
    1 - exp(t) -> ±expm1(t) (no cancellation near 0); sqrt(a² + b²) -> hypot(a, b) (no overflow at
    1e200, and the origin's subgradient). Applied before differentiating, so the derivatives
    inherit the forms. (SymPy's codegen.rewriting does some of this, but importing it costs 50 ms.)"""

    def is_log_of_one_plus(e: sympy.Basic) -> bool:
        return isinstance(e, sympy.log) and e.args[0].is_Add and sympy.S.One in e.args[0].args

    def signed_exp(term: sympy.Basic) -> tuple[int, sympy.Expr] | None:
        if isinstance(term, sympy.exp):
            return 1, term.args[0]
        if term.is_Mul and len(term.args) == 2 and term.args[0] == -1 and isinstance(term.args[1], sympy.exp):
            return -1, term.args[1].args[0]
        return None

    def expm1(e: sympy.Basic) -> sympy.Basic:
        if not e.is_Add:
            return e
        for term in e.args:
            found = signed_exp(term)
            if found is not None and sympy.Integer(-found[0]) in e.args:
                sign, t = found
                rest = list(e.args)
                rest.remove(term)
                rest.remove(sympy.Integer(-sign))
                return sympy.Add(sign * cfunctions.expm1(t), *rest)
        return e

    def leg(term: sympy.Basic) -> sympy.Expr | None:
        """a for a term a², or sqrt(c) for a positive constant c."""
        if term.is_Pow and term.exp == 2:
            return term.base
        if term.is_Number and term > 0:
            return sympy.sqrt(term)
        return None

    def is_root_of_squares(e: sympy.Basic) -> bool:
        return (
            e.is_Pow
            and e.exp in (sympy.S.Half, -sympy.S.Half)
            and e.base.is_Add
            and len(e.base.args) == 2
            and all(leg(t) is not None for t in e.base.args)
        )

    def hypot(e: sympy.Pow) -> sympy.Expr:
        return cfunctions.hypot(*(leg(t) for t in e.base.args)) ** (2 * e.exp)

    expr = expr.replace(is_log_of_one_plus, lambda e: cfunctions.log1p(e.args[0] - 1))
    expr = expr.replace(lambda e: e.is_Add, expm1)
    return expr.replace(is_root_of_squares, hypot)
