"""Every function of the language, one row each: its torch kernel, its partial derivatives,
where it is not differentiable, and its Taylor-mode rule.

A row names its kernel (``torch.NAME``, or a function of ``special.py``) and its Taylor rule (a
function of ``series.py``), so this table loads without torch. The partials are SymPy
expressions in forms that keep their digits over the function's whole domain (autograd's
``defvjp`` table is the model): tanh' is sech² from exp(-2|x|), not 1 - tanh²
(0 past x = 19); sigmoid' is sigmoid(x)·sigmoid(-x); asin' is 1/sqrt((1-x)(1+x)), exact near 1;
atan', asinh', acosh', atan2 and hypot divide by the larger magnitude instead of squaring it (no
overflow at 1e160, no underflow at 1e-200). Where the second derivative needs a form of its own,
the first is a ``functions.Helper`` with its own row. ``transforms.Differentiator`` applies the
chain rule over these rows; ``lower`` evaluates them and ``taylor`` expands them. A function added
to the language gets its kernel, its derivative, its kinks and its Taylor rule here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
from sympy.codegen import cfunctions

from . import functions as fn

Partials = Callable[..., Sequence[sympy.Expr]]


@dataclass(frozen=True)
class Rule:
    kernel: str  # torch.NAME, or NAME of a function in special.py
    partials: Partials | None  # d f / d argument i, given the arguments; None: differentiate ``textbook``
    kink: Callable[[sympy.Basic], sympy.Basic] | None = None  # given the call: where it is not differentiable
    taylor: str | None = None  # the function of series.py that maps the arguments' series to f's


def _at_zero(node: sympy.Basic) -> sympy.Basic:
    return sympy.Eq(node.args[0], 0)


def _at_origin(node: sympy.Basic) -> sympy.Basic:
    return sympy.And(sympy.Eq(node.args[0], 0), sympy.Eq(node.args[1], 0))


def _at_jump(node: sympy.Basic) -> sympy.Basic:
    return sympy.Eq(node.args[0], node)


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


def _one_minus_square(u: sympy.Expr) -> sympy.Expr:
    """1 - u², as (1 - u)(1 + u): exact where u is near ±1."""
    return (1 - u) * (1 + u)


def _abs_root_of_square_minus_one(u: sympy.Expr) -> sympy.Expr:
    """|u|·sqrt(u² - 1) as |u|·sqrt((|u| - 1)(|u| + 1)): exact near ±1, and +0 (not -0) at -1."""
    a = sympy.Abs(u)
    return a * sympy.sqrt((a - 1) * (a + 1))


ZERO, ONE = sympy.S.Zero, sympy.S.One

RULES: dict[type[sympy.Basic], Rule] = {
    sympy.sin: Rule("torch.sin", lambda u: [sympy.cos(u)], taylor="sin"),
    sympy.cos: Rule("torch.cos", lambda u: [-sympy.sin(u)], taylor="cos"),
    sympy.tan: Rule("torch.tan", lambda u: [1 + sympy.tan(u) ** 2], taylor="tan"),
    sympy.asin: Rule("torch.asin", lambda u: [1 / sympy.sqrt(_one_minus_square(u))], taylor="asin"),
    sympy.acos: Rule("torch.acos", lambda u: [-1 / sympy.sqrt(_one_minus_square(u))], taylor="acos"),
    sympy.atan: Rule("torch.atan", lambda u: [fn.datan(u)], taylor="atan"),
    fn.atan2: Rule("torch.atan2", lambda y, x: [fn.atan2_d(y, x), -fn.atan2_d(x, y)], _at_origin, taylor="atan2"),
    sympy.cot: Rule("cot", lambda u: [-(sympy.csc(u) ** 2)], taylor="cot"),
    sympy.sec: Rule("sec", lambda u: [sympy.sec(u) * sympy.tan(u)], taylor="sec"),
    sympy.csc: Rule("csc", lambda u: [-sympy.csc(u) * sympy.cot(u)], taylor="csc"),
    sympy.acot: Rule("acot", lambda u: [-fn.datan(u)], _at_zero, taylor="acot"),  # jumps from -pi/2 to pi/2
    sympy.asec: Rule("asec", lambda u: [1 / _abs_root_of_square_minus_one(u)], taylor="asec"),
    sympy.acsc: Rule("acsc", lambda u: [-1 / _abs_root_of_square_minus_one(u)], taylor="acsc"),
    sympy.sinc: Rule("sinc", lambda u: [fn.sinc_d(1, u)], taylor="sinc"),
    sympy.sinh: Rule("torch.sinh", lambda u: [sympy.cosh(u)], taylor="sinh"),
    sympy.cosh: Rule("torch.cosh", lambda u: [sympy.sinh(u)], taylor="cosh"),
    sympy.tanh: Rule("torch.tanh", lambda u: [fn.sech2(u)], taylor="tanh"),
    sympy.coth: Rule("coth", lambda u: [-(sympy.csch(u) ** 2)], taylor="coth"),  # not 1 - coth²: 0 past 19
    sympy.sech: Rule("sech", lambda u: [-sympy.sech(u) * sympy.tanh(u)], taylor="sech"),
    sympy.csch: Rule("csch", lambda u: [-sympy.csch(u) * sympy.coth(u)], taylor="csch"),
    sympy.asinh: Rule("torch.asinh", lambda u: [fn.dasinh(u)], taylor="asinh"),
    sympy.acosh: Rule("torch.acosh", lambda u: [fn.dacosh(u)], taylor="acosh"),
    sympy.atanh: Rule("torch.atanh", lambda u: [fn.datanh(u)], taylor="atanh"),
    sympy.exp: Rule("torch.exp", lambda u: [sympy.exp(u)], taylor="exp"),
    cfunctions.expm1: Rule("torch.expm1", lambda u: [sympy.exp(u)], taylor="expm1"),
    sympy.log: Rule("torch.log", lambda u: [1 / u], taylor="log"),  # NaN below 0, -inf at 0
    cfunctions.log2: Rule("torch.log2", lambda u: [1 / (u * sympy.log(2))], taylor="log2"),
    cfunctions.log10: Rule("torch.log10", lambda u: [1 / (u * sympy.log(10))], taylor="log10"),
    cfunctions.log1p: Rule("torch.log1p", lambda u: [1 / (1 + u)], taylor="log1p"),
    fn.cbrt: Rule("cbrt", lambda u: [1 / (3 * fn.cbrt(u) ** 2)], taylor="cbrt"),
    sympy.Abs: Rule("torch.abs", lambda u: [sympy.sign(u)], _at_zero, taylor="absolute"),
    sympy.sign: Rule("torch.sign", lambda u: [fn.dirac(u)], _at_zero, taylor="sign"),
    fn.floor: Rule("torch.floor", lambda u: [ZERO], _at_jump, taylor="floor"),
    fn.ceiling: Rule("torch.ceil", lambda u: [ZERO], _at_jump, taylor="ceil"),
    fn.Mod: Rule(
        "torch.remainder",
        lambda x, y: [ONE, -fn.floor_quotient(x, y)],
        lambda node: sympy.Eq(node, 0, evaluate=False),
        taylor="mod",
    ),
    sympy.Max: Rule("maximum", _tie_weights(sympy.Max), _ties, taylor="maximum"),
    sympy.Min: Rule("minimum", _tie_weights(sympy.Min), _ties, taylor="minimum"),
    cfunctions.hypot: Rule(
        "torch.hypot", lambda a, b: [fn.hypot_d(a, b), fn.hypot_d(b, a)], _at_origin, taylor="hypot"
    ),
    sympy.erf: Rule("torch.special.erf", lambda u: [fn.derf(u)], taylor="erf"),
    sympy.erfc: Rule("torch.special.erfc", lambda u: [-fn.derf(u)], taylor="erfc"),
    sympy.gamma: Rule("gamma", lambda u: [sympy.gamma(u) * sympy.polygamma(0, u)], taylor="gamma"),
    sympy.loggamma: Rule("torch.lgamma", lambda u: [sympy.polygamma(0, u)], taylor="lgamma"),  # log|Γ(x)|
    sympy.polygamma: Rule("polygamma", lambda n, u: [ZERO, sympy.polygamma(n + 1, u)]),
    fn.sigmoid: Rule("torch.sigmoid", lambda u: [fn.dsigmoid(u)], taylor="sigmoid"),
    fn.softplus: Rule("softplus", lambda u: [fn.sigmoid(u)], taylor="softplus"),
    fn.relu: Rule("torch.relu", lambda u: [sympy.Heaviside(u, 0)], _at_zero, taylor="relu"),
    sympy.Heaviside: Rule(
        "heaviside",
        lambda u, h0=None: [fn.dirac(u), sympy.Piecewise((1, sympy.Eq(u, 0)), (0, True))],
        _at_zero,
        taylor="heaviside",
    ),
    # the derivatives' own forms
    fn.sech2: Rule("sech2", lambda u: [-2 * sympy.tanh(u) * fn.sech2(u)]),
    fn.dsigmoid: Rule("dsigmoid", lambda u: [-fn.dsigmoid(u) * sympy.tanh(u / 2)]),
    fn.derf: Rule("derf", lambda u: [-2 * u * fn.derf(u)]),
    fn.datan: Rule("datan", lambda u: [fn.d2atan(u)]),
    fn.d2atan: Rule("d2atan", None),
    fn.datanh: Rule("datanh", lambda u: [2 * u * fn.datanh(u) ** 2]),
    fn.dasinh: Rule("dasinh", lambda u: [fn.d2asinh(u)]),
    fn.d2asinh: Rule("d2asinh", None),
    fn.dacosh: Rule("dacosh", lambda u: [fn.d2acosh(u)]),
    fn.d2acosh: Rule("d2acosh", None),
    fn.atan2_d: Rule("atan2_d", lambda a, b: [fn.atan2_daa(a, b), fn.atan2_dab(a, b)]),
    fn.atan2_daa: Rule("atan2_daa", None),
    fn.atan2_dab: Rule("atan2_dab", None),
    fn.hypot_d: Rule("hypot_d", lambda a, b: [fn.hypot_daa(a, b), fn.hypot_dab(a, b)]),
    fn.hypot_daa: Rule("hypot_daa", None),
    fn.hypot_dab: Rule("hypot_dab", None),
    fn.dirac: Rule("dirac", lambda u: [fn.dirac(u)]),
    fn.sinc_d: Rule("sinc_d", lambda n, u: [ZERO, fn.sinc_d(n + 1, u)]),
    fn.floor_quotient: Rule("floor_quotient", lambda x, y: [ZERO, ZERO]),
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
