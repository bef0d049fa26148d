"""Every function of the language, one row each: the name users type, how a call is built and
how many arguments it takes, the rule of the SymPy class it builds (its torch kernel, its partial
derivatives, where it is not differentiable, its Taylor-mode rule), and the interval where it is
real, which the tests take their points from. The parser, the chain rule
(``transforms.Differentiator``), ``lower``, ``kinks``, ``taylor`` and the tests all read these rows:
adding a function to the language is adding its row to ``FUNCTIONS``, plus its kernel in
``special.py`` if torch has none and its Taylor rule in ``series.py`` (and, for the tests, its
accuracy grid in ``tests/test_accuracy.py``).

A rule names its kernel (``torch.NAME``, or a function of ``special.py``) and its Taylor rule (a
function of ``series.py``), so this table loads without torch. The partials are SymPy
expressions in forms that keep their digits over the function's whole domain (autograd's
``defvjp`` table is the model): tanh' is sech² from exp(-2|x|), not 1 - tanh²
(0 past x = 19); sigmoid' is sigmoid(x)·sigmoid(-x); asin' is 1/sqrt((1-x)(1+x)), exact near 1;
atan', asinh', acosh', atan2 and hypot divide by the larger magnitude instead of squaring it (no
overflow at 1e160, no underflow at 1e-200). Where the second derivative needs a form of its own,
the first is a ``functions.Helper``, whose rule is a row of ``UNNAMED``: no name builds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy
from sympy.codegen import cfunctions

from . import functions as fn

Builder = Callable[..., sympy.Basic]
Partials = Callable[..., Sequence[sympy.Expr]]


@dataclass(frozen=True)
class Rule:
    """How diffcli computes, differentiates and expands the nodes of one SymPy class."""

    cls: type[sympy.Basic]  # the class; its subclasses too, unless they have a rule of their own
    kernel: str  # torch.NAME, or NAME of a function in special.py
    partials: Partials | None  # d f / d argument i, given the arguments; None: differentiate ``textbook``
    kink: Callable[[sympy.Basic], sympy.Basic] | None = None  # given the call: where it is not differentiable
    taylor: str | None = None  # the function of series.py that maps the arguments' series to f's


REALS = (-math.inf, math.inf)
POSITIVE = (0.0, math.inf)
UNIT = (-1.0, 1.0)
ABOVE_ONE = (1.0, math.inf)


@dataclass(frozen=True)
class Function:
    """A function of the language: how a call is built, and where the tests may call it."""

    rule: Rule | None  # of the class a call builds; None: a power, a branch, or other rows' classes
    builder: Builder | None = None  # a call's SymPy form, given its arguments; None: the rule's class
    arity: tuple[int, int | None] = (1, 1)  # the fewest and the most arguments; None: any number
    # an open interval of arguments where it is real (its ends may be too); where it is real on several
    # intervals, the positive one (asec and acsc: |x| >= 1; gamma and lgamma: between their poles at 0, -1, …)
    domain: tuple[float, float] = REALS

    def build(self, *args: sympy.Basic) -> sympy.Basic:
        """The SymPy form of a call with ``args``."""
        return (self.builder or self.rule.cls)(*args)  # a row without a rule has a builder


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


def _log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    """log(x), or log(x, base): bases 2 and 10 build their own classes, other bases a quotient of logs."""
    if base is None:
        return sympy.log(x)
    if base == 2:
        return cfunctions.log2(x)
    if base == 10:
        return cfunctions.log10(x)
    # a constant's log unevaluated: SymPy would make log(-1) the complex i·pi
    return sympy.log(x, evaluate=not x.is_number) / sympy.log(base, evaluate=not base.is_number)


def _exact_safe(f: Builder) -> Builder:
    """Keep f(constant) unevaluated: SymPy would compute e.g. gamma(10**30) exactly, forever."""
    return lambda x: f(x, evaluate=False) if x.is_number else f(x)


ZERO, ONE = sympy.S.Zero, sympy.S.One
LOG = Rule(sympy.log, "torch.log", lambda u: [1 / u], taylor="log")  # log's and ln's; NaN below 0, -inf at 0

FUNCTIONS: dict[str, Function] = {
    "sin": Function(Rule(sympy.sin, "torch.sin", lambda u: [sympy.cos(u)], taylor="sin")),
    "cos": Function(Rule(sympy.cos, "torch.cos", lambda u: [-sympy.sin(u)], taylor="cos")),
    "tan": Function(Rule(sympy.tan, "torch.tan", lambda u: [1 + sympy.tan(u) ** 2], taylor="tan")),
    "asin": Function(
        Rule(sympy.asin, "torch.asin", lambda u: [1 / sympy.sqrt(_one_minus_square(u))], taylor="asin"), domain=UNIT
    ),
    "acos": Function(
        Rule(sympy.acos, "torch.acos", lambda u: [-1 / sympy.sqrt(_one_minus_square(u))], taylor="acos"), domain=UNIT
    ),
    "atan": Function(Rule(sympy.atan, "torch.atan", lambda u: [fn.datan(u)], taylor="atan")),
    "atan2": Function(
        Rule(fn.atan2, "torch.atan2", lambda y, x: [fn.atan2_d(y, x), -fn.atan2_d(x, y)], _at_origin, taylor="atan2"),
        arity=(2, 2),
    ),
    "cot": Function(Rule(sympy.cot, "cot", lambda u: [-(sympy.csc(u) ** 2)], taylor="cot")),
    "sec": Function(Rule(sympy.sec, "sec", lambda u: [sympy.sec(u) * sympy.tan(u)], taylor="sec")),
    "csc": Function(Rule(sympy.csc, "csc", lambda u: [-sympy.csc(u) * sympy.cot(u)], taylor="csc")),
    # acot jumps from -pi/2 to pi/2
    "acot": Function(Rule(sympy.acot, "acot", lambda u: [-fn.datan(u)], _at_zero, taylor="acot")),
    "asec": Function(
        Rule(sympy.asec, "asec", lambda u: [1 / _abs_root_of_square_minus_one(u)], taylor="asec"), domain=ABOVE_ONE
    ),
    "acsc": Function(
        Rule(sympy.acsc, "acsc", lambda u: [-1 / _abs_root_of_square_minus_one(u)], taylor="acsc"), domain=ABOVE_ONE
    ),
    # sin(x)/x, 1 at 0 (SymPy's and Mathematica's; numpy's is sin(pi x)/(pi x))
    "sinc": Function(Rule(sympy.sinc, "sinc", lambda u: [fn.sinc_d(1, u)], taylor="sinc")),
    "sinh": Function(Rule(sympy.sinh, "torch.sinh", lambda u: [sympy.cosh(u)], taylor="sinh")),
    "cosh": Function(Rule(sympy.cosh, "torch.cosh", lambda u: [sympy.sinh(u)], taylor="cosh")),
    "tanh": Function(Rule(sympy.tanh, "torch.tanh", lambda u: [fn.sech2(u)], taylor="tanh")),
    # not 1 - coth²: 0 past 19
    "coth": Function(Rule(sympy.coth, "coth", lambda u: [-(sympy.csch(u) ** 2)], taylor="coth")),
    "sech": Function(Rule(sympy.sech, "sech", lambda u: [-sympy.sech(u) * sympy.tanh(u)], taylor="sech")),
    "csch": Function(Rule(sympy.csch, "csch", lambda u: [-sympy.csch(u) * sympy.coth(u)], taylor="csch")),
    "asinh": Function(Rule(sympy.asinh, "torch.asinh", lambda u: [fn.dasinh(u)], taylor="asinh")),
    "acosh": Function(Rule(sympy.acosh, "torch.acosh", lambda u: [fn.dacosh(u)], taylor="acosh"), domain=ABOVE_ONE),
    "atanh": Function(Rule(sympy.atanh, "torch.atanh", lambda u: [fn.datanh(u)], taylor="atanh"), domain=UNIT),
    "exp": Function(Rule(sympy.exp, "torch.exp", lambda u: [sympy.exp(u)], taylor="exp")),
    "expm1": Function(Rule(cfunctions.expm1, "torch.expm1", lambda u: [sympy.exp(u)], taylor="expm1")),
    "log": Function(LOG, builder=_log, arity=(1, 2), domain=POSITIVE),  # log(x, b): log base b
    "ln": Function(LOG, domain=POSITIVE),
    "log2": Function(
        Rule(cfunctions.log2, "torch.log2", lambda u: [1 / (u * sympy.log(2))], taylor="log2"), domain=POSITIVE
    ),
    "log10": Function(
        Rule(cfunctions.log10, "torch.log10", lambda u: [1 / (u * sympy.log(10))], taylor="log10"), domain=POSITIVE
    ),
    "log1p": Function(
        Rule(cfunctions.log1p, "torch.log1p", lambda u: [1 / (1 + u)], taylor="log1p"), domain=(-1.0, math.inf)
    ),
    "sqrt": Function(None, builder=sympy.sqrt, domain=POSITIVE),  # x**(1/2): lowered and differentiated as a power
    "cbrt": Function(Rule(fn.cbrt, "cbrt", lambda u: [1 / (3 * fn.cbrt(u) ** 2)], taylor="cbrt")),
    "abs": Function(
        Rule(sympy.Abs, "torch.abs", lambda u: [sympy.sign(u)], _at_zero, taylor="absolute"), builder=fn.Abs
    ),
    "sign": Function(Rule(sympy.sign, "torch.sign", lambda u: [fn.dirac(u)], _at_zero, taylor="sign")),
    "floor": Function(Rule(fn.floor, "torch.floor", lambda u: [ZERO], _at_jump, taylor="floor")),
    "ceil": Function(Rule(fn.ceiling, "torch.ceil", lambda u: [ZERO], _at_jump, taylor="ceil")),
    "min": Function(Rule(sympy.Min, "minimum", _tie_weights(sympy.Min), _ties, taylor="minimum"), arity=(1, None)),
    "max": Function(Rule(sympy.Max, "maximum", _tie_weights(sympy.Max), _ties, taylor="maximum"), arity=(1, None)),
    "hypot": Function(
        Rule(
            cfunctions.hypot,
            "torch.hypot",
            lambda a, b: [fn.hypot_d(a, b), fn.hypot_d(b, a)],
            _at_origin,
            taylor="hypot",
        ),
        arity=(2, 2),
    ),
    "erf": Function(Rule(sympy.erf, "torch.special.erf", lambda u: [fn.derf(u)], taylor="erf")),
    "erfc": Function(Rule(sympy.erfc, "torch.special.erfc", lambda u: [-fn.derf(u)], taylor="erfc")),
    "gamma": Function(
        Rule(sympy.gamma, "gamma", lambda u: [sympy.gamma(u) * sympy.polygamma(0, u)], taylor="gamma"),
        builder=_exact_safe(sympy.gamma),
        domain=POSITIVE,
    ),
    "lgamma": Function(  # log|Γ(x)|
        Rule(sympy.loggamma, "torch.lgamma", lambda u: [sympy.polygamma(0, u)], taylor="lgamma"),
        builder=_exact_safe(sympy.loggamma),
        domain=POSITIVE,
    ),
    "sigmoid": Function(Rule(fn.sigmoid, "torch.sigmoid", lambda u: [fn.dsigmoid(u)], taylor="sigmoid")),
    "softplus": Function(Rule(fn.softplus, "softplus", lambda u: [fn.sigmoid(u)], taylor="softplus")),
    "relu": Function(Rule(fn.relu, "torch.relu", lambda u: [sympy.Heaviside(u, 0)], _at_zero, taylor="relu")),
    "heaviside": Function(  # heaviside(x) is 1/2 at 0; heaviside(x, h0) is h0
        Rule(
            sympy.Heaviside,
            "heaviside",
            lambda u, h0=None: [fn.dirac(u), sympy.Piecewise((1, sympy.Eq(u, 0)), (0, True))],
            _at_zero,
            taylor="heaviside",
        ),
        arity=(1, 2),
    ),
    "clamp": Function(None, builder=lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi), arity=(3, 3)),
    "where": Function(None, builder=lambda c, a, b: sympy.Piecewise((a, c), (b, True)), arity=(3, 3)),
}

# classes that no name of the language builds: the operator %, and the derivatives' own forms
UNNAMED: tuple[Rule, ...] = (
    Rule(
        fn.Mod,
        "torch.remainder",
        lambda x, y: [ONE, -fn.floor_quotient(x, y)],
        lambda node: sympy.Eq(node, 0, evaluate=False),
        taylor="mod",
    ),
    Rule(sympy.polygamma, "polygamma", lambda n, u: [ZERO, sympy.polygamma(n + 1, u)]),
    Rule(fn.sech2, "sech2", lambda u: [-2 * sympy.tanh(u) * fn.sech2(u)]),
    Rule(fn.dsigmoid, "dsigmoid", lambda u: [-fn.dsigmoid(u) * sympy.tanh(u / 2)]),
    Rule(fn.derf, "derf", lambda u: [-2 * u * fn.derf(u)]),
    Rule(fn.datan, "datan", lambda u: [fn.d2atan(u)]),
    Rule(fn.d2atan, "d2atan", None),
    Rule(fn.datanh, "datanh", lambda u: [2 * u * fn.datanh(u) ** 2]),
    Rule(fn.dasinh, "dasinh", lambda u: [fn.d2asinh(u)]),
    Rule(fn.d2asinh, "d2asinh", None),
    Rule(fn.dacosh, "dacosh", lambda u: [fn.d2acosh(u)]),
    Rule(fn.d2acosh, "d2acosh", None),
    Rule(fn.atan2_d, "atan2_d", lambda a, b: [fn.atan2_daa(a, b), fn.atan2_dab(a, b)]),
    Rule(fn.atan2_daa, "atan2_daa", None),
    Rule(fn.atan2_dab, "atan2_dab", None),
    Rule(fn.hypot_d, "hypot_d", lambda a, b: [fn.hypot_daa(a, b), fn.hypot_dab(a, b)]),
    Rule(fn.hypot_daa, "hypot_daa", None),
    Rule(fn.hypot_dab, "hypot_dab", None),
    Rule(fn.dirac, "dirac", lambda u: [fn.dirac(u)]),
    Rule(fn.sinc_d, "sinc_d", lambda n, u: [ZERO, fn.sinc_d(n + 1, u)]),
    Rule(fn.floor_quotient, "floor_quotient", lambda x, y: [ZERO, ZERO]),
)
# the rule of each class, for ``rule``
RULES: dict[type[sympy.Basic], Rule] = {
    r.cls: r for r in (*(f.rule for f in FUNCTIONS.values() if f.rule is not None), *UNNAMED)
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
