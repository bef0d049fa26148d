"""The transforms (value, grad, jacobian, hessian, jvp, vjp, derivative) as symbolic plans.

A plan lists every number a command reports, each as a SymPy expression: the outputs, their
derivatives (``Differentiator``, with each function's rule from ``rules.py``), the auxiliary
outputs; derivatives of high order are Taylor coefficients (``taylor.py``). ``lower.compile``
then evaluates all of them on a whole batch of points at once, sharing common subexpressions: a
symbolic Hessian with CSE lowered to torch, measured 17x faster than ``vmap(hessian(f))`` (1M
rows: 92 ms against 1,540 ms); it is exact in the branch structure (no NaN leaks from a branch not
taken) and gives ``--symbolic`` for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import sympy

from . import functions, rules
from .errors import ExpressionError, UsageError, example, option
from .language import SYMBOLIC_SECONDS, Parsed, option_name, symbol, symbolic_time_limit
from .names import family, in_order, variable_name
from .program import KINK, Evaluation, masked
from .tape import Tape, suits

if TYPE_CHECKING:
    from torch import Tensor

OPERATIONS = ("value", "grad", "jacobian", "hessian", "jvp", "vjp", "derivative", "taylor")
SYMBOLIC_ORDER = 2  # derivatives of higher total order come from Taylor mode: no expression swell
GRAPH_NODES = 60  # formulas with more distinct subexpressions are differentiated over their graph
MAX_ORDER = 100  # of a derivative or a Taylor expansion
MAX_COEFFICIENTS = 5000  # of one Taylor expansion in several variables


@dataclass(frozen=True)
class Coefficient:
    """A number read off the Taylor series of ``expr`` in ``wrt``: ``scale`` times the coefficient
    of the monomial with these ``exponents`` (scale = Π exponent! makes it the derivative)."""

    wrt: tuple[str, ...]
    exponents: tuple[int, ...]
    scale: float = 1.0
    box: tuple[int, ...] | None = None  # a derivative needs only the monomials within its exponents


@dataclass(frozen=True)
class Quantity:
    """One reported number: where it goes in JSON (``path``), its CSV column, its formula."""

    path: tuple[str, ...]
    column: str
    expr: sympy.Expr  # the number's formula; with ``coefficient``, the formula expanded
    of: tuple[str, ...] = ()  # the value columns it is a derivative of: NaN where any of them is
    coefficient: Coefficient | None = None  # computed by Taylor mode


@dataclass(frozen=True)
class Plan:
    quantities: tuple[Quantity, ...]
    variables: tuple[str, ...]  # the variables whose values every point must give
    outputs: tuple[str, ...]  # the output names
    wrt: tuple[str, ...]  # what the derivatives are taken with respect to
    kinks: tuple[tuple[str, sympy.Basic], ...] = ()  # (output, where it is not differentiable)
    indexed: frozenset[str] = frozenset()  # the variables written x[i]: a value of x gives them all
    tape: Tape | None = None  # the graph the derivatives' slots are defined on (``tape.py``)

    def formula(self, expr: sympy.Basic) -> sympy.Basic:
        """A quantity's ``expr`` as one SymPy formula (its slots, if any, written out)."""
        return expr if self.tape is None else self.tape.formula(expr)

    @property
    def taylor_mode(self) -> bool:
        """Whether Taylor mode computes some of its quantities (per batch, from their formulas)."""
        return any(q.coefficient is not None for q in self.quantities)


def variables_of(expr: sympy.Basic) -> set[str]:
    return {s.name for s in expr.free_symbols if not isinstance(s, functions.Folded)}


def plan(
    operation: str,
    parsed: Sequence[Parsed],
    *,
    wrt: Sequence[str] = (),
    aux: Sequence[Parsed] = (),
    tangent: Mapping[str, float] | None = None,
    cotangent: Mapping[str, float] | None = None,
    order: int | None = None,
    prefix: str = "",
    suffix: str = "",
) -> Plan:
    """Every quantity ``operation`` reports for the expressions ``parsed``.

    ``wrt`` defaults to every free variable of the expressions, sorted (for ``derivative`` it is
    the sequence of variables, repeats allowed: ``x, x, y`` is d³f/dx²dy; or one variable and
    its ``order``). ``tangent`` and
    ``cotangent`` components not given are 0. ``prefix`` and ``suffix`` go around every column
    name (``--prefix d_``: ``d_value``), which must then differ from the variables.

    >>> [q.column for q in plan("grad", [Parsed(None, symbol("x") ** 2)]).quantities]
    ['value', 'grad_x']
    """
    if operation not in OPERATIONS:
        raise UsageError(f"unknown operation {operation!r}")
    if not parsed:
        raise UsageError("no expression given")
    if operation in ("grad", "hessian", "derivative", "taylor") and len(parsed) > 1:
        raise UsageError(f"{operation} takes one expression, got {len(parsed)}", hint="use jacobian for several")
    names = output_names(parsed)
    exprs = [rules.accurate(p.expr) for p in parsed]
    free = set().union(*(variables_of(e) for e in exprs))
    wrt = members([variable_name(w) for w in wrt], free)  # --wrt x[2], and x for the family x[i]
    tangent = tangent if tangent is None else _family_values(tangent, free)
    if operation == "derivative":
        if not wrt and len(free) != 1:
            raise UsageError(f"derivative needs {option('wrt')} (the expression has several variables)")
        wrt = list(wrt) or in_order(free)
        if order is not None:
            if order < 0 or len(wrt) != 1:
                raise UsageError(f"{option('order')} N needs N >= 0 and one {option('wrt')} variable")
            wrt = wrt * order  # order 0: the value itself, as SymPy's diff(f, x, 0)
        if len(wrt) > MAX_ORDER:
            raise UsageError(f"derivatives of order above {MAX_ORDER} are not offered, got {len(wrt)}")
    else:
        wrt = tuple(set_order(wrt)) if wrt else tuple(in_order(free))
    if operation == "taylor":
        order = 5 if order is None else order
        if not 0 <= order <= MAX_ORDER:
            raise UsageError(f"{option('order')} must be between 0 and {MAX_ORDER}, got {order}")
    wrt = tuple(wrt)
    for name in wrt:
        option_name(name, option("wrt"))
    single = len(parsed) == 1

    quantities = values(parsed, names)
    value_of = {n: q.column for n, q in zip(names, quantities)}
    first = (value_of[names[0]],)

    with symbolic_time_limit(f"{operation} (symbolic differentiation)"):
        taylor_mode = operation == "taylor" or (operation == "derivative" and len(wrt) > SYMBOLIC_ORDER)
        d: Differentiator | Tape = Differentiator()
        if operation != "value" and not taylor_mode and graph_suits(exprs):
            d = Tape(d)
        weighted = isinstance(d, Tape) and operation in ("jvp", "vjp")  # forward / reverse mode, not J
        skip = operation == "value" or taylor_mode or weighted
        jacobian = {} if skip else _jacobian(names, exprs, wrt, operation, d)
        if operation == "grad":
            quantities += [Quantity(("grad", v), f"grad_{v}", jacobian[names[0], v], first) for v in wrt]
        elif operation == "jacobian":
            quantities += [
                Quantity(("jacobian", n, v), f"jacobian_{n}_{v}", jacobian[n, v], (value_of[n],))
                for n in names
                for v in wrt
            ]
        elif operation == "hessian":
            quantities += [Quantity(("grad", v), f"grad_{v}", jacobian[names[0], v], first) for v in wrt]
            second = {}
            for i, v in enumerate(wrt):
                for w in wrt[i:]:
                    second[v, w] = second[w, v] = d(jacobian[names[0], v], w)
            quantities += [
                Quantity(("hessian", v, w), f"hessian_{v}_{w}", second[v, w], first) for v in wrt for w in wrt
            ]
        elif operation == "jvp":
            if tangent is None:
                raise UsageError(
                    f"jvp needs a tangent, the v of J·v: {example('tangent', 'x=1', repr({'x': 1}))} "
                    "(components not given are 0)"
                )
            weights = _components(tangent, wrt, option("tangent"), "variable")
            for n, e in zip(names, exprs):
                if isinstance(d, Tape):  # forward mode
                    total = d.tangent(e, {v: w for v, w in weights.items() if w})
                else:
                    total = sympy.Add(*(weights[v] * jacobian[n, v] for v in wrt if weights[v]))
                path, column = (("jvp",), "jvp") if single else (("jvp", n), f"jvp_{n}")
                quantities.append(Quantity(path, column, total, (value_of[n],)))
        elif operation == "vjp":
            if cotangent is None:
                raise UsageError(
                    f"vjp needs a cotangent, the u of uᵀJ: {example('cotangent', 'f=1', repr({'f': 1}))} "
                    "(components not given are 0)"
                )
            weights = _components(cotangent, names, option("cotangent"), "output")
            if isinstance(d, Tape):  # reverse mode, seeded with the weights
                totals = d.gradient([(e, weights[n]) for n, e in zip(names, exprs) if weights[n]], wrt)
            else:
                totals = {v: sympy.Add(*(weights[n] * jacobian[n, v] for n in names if weights[n])) for v in wrt}
            of = tuple(value_of[n] for n in names if weights[n])
            quantities += [Quantity(("vjp", v), f"vjp_{v}", totals[v], of) for v in wrt]
        elif operation == "derivative" and taylor_mode:
            variables = tuple(in_order(set(wrt)))
            exponents = tuple(wrt.count(v) for v in variables)
            if math.prod(e + 1 for e in exponents) > MAX_COEFFICIENTS:
                raise UsageError(
                    f"a mixed derivative in {len(variables)} variables needs more than "
                    f"{MAX_COEFFICIENTS} Taylor coefficients"
                )
            scale = float(math.prod(math.factorial(e) for e in exponents))
            coefficient = Coefficient(variables, exponents, scale, box=exponents)
            quantities.append(Quantity(("derivative",), "derivative", exprs[0], first, coefficient))
        elif operation == "derivative":
            quantities.append(Quantity(("derivative",), "derivative", jacobian[names[0], wrt], first))
        elif operation == "taylor":
            quantities += _taylor_quantities(exprs[0], wrt, order or 0, first)

    plan = assemble(operation, quantities, parsed, names, exprs, wrt, aux, prefix, suffix)
    return replace(plan, tape=d) if isinstance(d, Tape) else plan


def assemble(
    operation: str,
    quantities: Sequence[Quantity],
    parsed: Sequence[Parsed],
    names: Sequence[str],
    exprs: Sequence[sympy.Expr],
    wrt: Sequence[str],
    aux: Sequence[Parsed],
    prefix: str,
    suffix: str,
    needs: Sequence[str] = (),
) -> Plan:
    """The plan of ``quantities`` (of the outputs ``names``: ``exprs``, as ``parsed``): the
    auxiliary outputs after them, every column between ``prefix`` and ``suffix``, the variables
    to give (those of the formulas, ``wrt`` and ``needs``) and where the outputs have kinks."""
    quantities = list(quantities)
    for a in aux:
        if a.name is None:
            raise UsageError(
                f"{option('aux')} needs a name: {example('aux', 'name=EXPR', repr({'name': 'EXPR'}))}, got {a.expr}"
            )
        quantities.append(Quantity(("aux", a.name), a.name, a.expr))
    named = {q.column: f"{prefix}{q.column}{suffix}" for q in quantities}
    quantities = [replace(q, column=named[q.column], of=tuple(named[c] for c in q.of)) for q in quantities]
    needed = set().union(*(variables_of(e) for e in [*exprs, *(a.expr for a in aux)]), wrt, needs)
    _check_unique([q.column for q in quantities], needed)
    places = () if operation == "value" else tuple((n, rules.kinks(e)) for n, e in zip(names, exprs))
    return Plan(
        tuple(quantities),
        tuple(in_order(needed)),
        tuple(names),
        tuple(wrt),
        tuple(k for k in places if k[1] is not sympy.false),
        frozenset().union(*(p.indexed for p in [*parsed, *aux])),
    )


def evaluation(plan: Plan) -> Evaluation:
    """The program of the plan's numbers other than Taylor coefficients, plus ``KINK + output``
    (1 where that output is not differentiable): what ``cache.py`` stores of a plan."""
    from .lower import program  # torch: imported only when there is something to evaluate

    formulas = [q for q in plan.quantities if q.coefficient is None]
    exprs = [*(q.expr for q in formulas), *(where for _, where in plan.kinks)]  # kinks: boolean columns
    with symbolic_time_limit("common subexpression elimination"):
        if plan.tape is None:
            made = program(exprs, [symbol(v) for v in plan.variables])
        else:  # shared by hashing when traced: no CSE to do
            roots = [plan.tape.trace(rules.accurate(e)) for e in exprs]
            made = program(roots, [symbol(v) for v in plan.variables], plan.tape.needed(roots))
    columns = (*(q.column for q in formulas), *(KINK + name for name, _ in plan.kinks))
    return Evaluation(made, columns, tuple((q.column, q.of) for q in plan.quantities if q.of))


def evaluator(
    plan: Plan, made: Evaluation | None = None
) -> Callable[[Mapping[str, Tensor], Tensor], dict[str, Tensor]]:
    """A function from variable columns (and a tensor ``like`` the batch) to one column per
    quantity, plus ``KINK + output``: 1 where that output is not differentiable (``made``: the
    plan's ``evaluation``, if already made)."""
    made = made or evaluation(plan)
    if not plan.taylor_mode:
        return made.function()
    from .taylor import expand

    expansions: dict[tuple[sympy.Expr, tuple[str, ...], tuple[int, ...] | None], int] = {}  # one series each
    for q in plan.quantities:
        if q.coefficient is not None:
            key = (q.expr, q.coefficient.wrt, q.coefficient.box)
            expansions[key] = max(expansions.get(key, 0), sum(q.coefficient.exponents))
    run = made.program.function()
    kinks = [c for c in made.columns if c.startswith(KINK)]

    def evaluate(values: Mapping[str, Tensor], like: Tensor) -> dict[str, Tensor]:
        computed = dict(zip(made.columns, run(values, like)))
        wide = {v: t.double() for v, t in values.items()}  # float64 inside: float32's range ends at 35!
        series = {
            key: expand(key[0], key[1], order, wide, like.double(), box=key[2], step=_step(order, key[2]))
            for key, order in expansions.items()
        }
        for q in plan.quantities:
            if (c := q.coefficient) is not None:
                found = series[q.expr, c.wrt, c.box]
                factor = c.scale / found.basis.step ** sum(c.exponents)  # in float64: no float32 overflow
                computed[q.column] = (found.coefficient(c.exponents).double() * factor).to(like.dtype)
        results = {q.column: computed[q.column] for q in plan.quantities}
        results.update((c, computed[c]) for c in kinks)
        return masked(results, made.masks)

    return evaluate


def symbolic(plan: Plan, *, latex: bool = False) -> tuple[dict[str, str], list[str]]:
    """Each quantity's formula, simplified, as text (or LaTeX); and those too slow to simplify."""
    text: dict[str, str] = {}
    unsimplified: list[str] = []
    for q in plan.quantities:
        try:
            with symbolic_time_limit("simplification", seconds=SYMBOLIC_SECONDS / len(plan.quantities)):
                expr = sympy.simplify(plain(plan.formula(_formula(q))))
        except (ExpressionError, RecursionError):  # written out unsimplified (a Taylor-mode number stays
            expr = None  # an unexpanded derivative: expanding swells)
            unsimplified.append(q.column)
        try:
            with symbolic_time_limit(f"writing out the formula of {q.column}"):
                if expr is None:
                    expr = plain(plan.formula(q.expr)) if q.coefficient is None else _formula(q, expanded=False)
                text[q.column] = sympy.latex(expr) if latex else sympy.sstr(expr)
        except RecursionError:  # SymPy's printers recurse: a formula nested thousands deep
            raise ExpressionError(f"the formula of {q.column} is nested too deep to write out") from None
    return text, unsimplified


def _formula(q: Quantity, *, expanded: bool = True) -> sympy.Expr:
    """The formula of ``q``: for a Taylor coefficient, its derivative over Π exponent!."""
    c = q.coefficient
    if c is None:
        return q.expr
    derivative = q.expr
    if expanded:
        d = Differentiator()
        for v, e in zip(c.wrt, c.exponents):
            for _ in range(e):
                derivative = d(derivative, v)
    else:
        orders = [(symbol(v), e) for v, e in zip(c.wrt, c.exponents) if e]
        derivative = sympy.Derivative(plain(q.expr), *orders) if orders else q.expr
    return derivative * sympy.Rational(int(c.scale), math.prod(math.factorial(e) for e in c.exponents))


def plain(expr: sympy.Basic) -> sympy.Basic:
    """``expr`` with the derivatives' accurate forms written as the textbook formulas they compute."""
    return expr.replace(lambda e: isinstance(e, functions.Helper), lambda e: e.plain())


def members(names: Sequence[str], free: set[str]) -> list[str]:
    """``names``, each family name that is not itself a variable (``x`` for x[1], x[2], …)
    replaced by its members."""
    return [m for n in names for m in ((n not in free and family(n, free)) or [n])]


def _family_values(given: Mapping[str, float], free: set[str]) -> dict[str, float]:
    """``--tangent x=1`` for a family x[i]: that value for each member, unless given its own."""
    families = {n: family(n, free) for n in given if n not in free}
    values = {m: v for n, v in given.items() for m in families.get(n, [])}
    values.update({n: v for n, v in given.items() if not families.get(n)})  # a member's own value wins
    return values


def set_order(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, in their order."""
    return list(dict.fromkeys(names))


def _step(order: int, box: tuple[int, ...] | None) -> float:
    """The scale of the series' variables: 1 for Taylor coefficients (they are what is printed);
    for a derivative of order N, a power of two near sqrt(N), so that f^(N)·step^N/N! does not
    underflow (e^-400/100! would) while the peak of step^k/k!, about e^step, stays small."""
    return 1.0 if box is None else 2.0 ** round(math.log2(max(1.0, math.sqrt(order))))


def _taylor_quantities(expr: sympy.Expr, wrt: Sequence[str], order: int, of: tuple[str, ...]) -> list[Quantity]:
    """One quantity per monomial of total degree <= ``order``, degree by degree: taylor_1,
    taylor_x, taylor_y, taylor_x^2, taylor_x*y, … (the coefficients about the point)."""
    if math.comb(order + len(wrt), len(wrt)) > MAX_COEFFICIENTS:
        raise UsageError(
            f"a Taylor expansion of order {order} in {len(wrt)} variables has more than {MAX_COEFFICIENTS} coefficients"
        )
    from .series import Basis

    quantities = []
    for block in Basis(len(wrt), order).monomials:
        for exponents in block:
            label = "*".join(v if e == 1 else f"{v}^{e}" for v, e in zip(wrt, exponents) if e) or "1"
            quantities.append(
                Quantity(("taylor", label), f"taylor_{label}", expr, of, Coefficient(tuple(wrt), exponents))
            )
    return quantities


def _jacobian(
    names: Sequence[str], exprs: Sequence[sympy.Expr], wrt: Sequence[str], operation: str, d: Differentiator | Tape
) -> dict[tuple[str, object], sympy.Expr]:
    """d output / d variable for each pair (over a tape: reverse mode, one pass per output); for
    ``derivative`` one entry keyed by the whole ``wrt``."""
    if operation == "derivative":
        result = exprs[0]
        for v in wrt:
            result = d(result, v)
        return {(names[0], tuple(wrt)): result}
    if isinstance(d, Tape):
        return {(n, v): g for n, e in zip(names, exprs) for v, g in d.gradient([(e, sympy.S.One)], wrt).items()}
    return {(n, v): d(e, v) for n, e in zip(names, exprs) for v in wrt}


def graph_suits(exprs: Sequence[sympy.Basic]) -> bool:
    """Whether to differentiate ``exprs`` over their graph: measured faster above ``GRAPH_NODES``
    distinct subexpressions (the symbolic path's CSE grows faster than linearly), and sound
    without branches (``tape.suits``)."""
    seen: set[sympy.Basic] = set()
    stack = list(exprs)
    while stack and len(seen) <= GRAPH_NODES:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.args)
    return len(seen) > GRAPH_NODES and suits(exprs)


class Differentiator:
    """The chain rule over a SymPy expression, with each function's partials from ``rules.RULES``.

    SymPy's own ``diff`` evaluates its textbook formulas as written (1 - tanh² is 0 past x = 19)
    and leaves ``re``, ``im`` and ``Derivative`` behind when it cannot prove an argument real
    (``abs(log(x))``); here every variable is real, every node has a rule, and subexpressions
    shared between derivatives are differentiated once (memoised).
    """

    def __init__(self) -> None:
        self.memo: dict[tuple[sympy.Basic, str], sympy.Expr] = {}
        self.names: dict[sympy.Basic, frozenset[str]] = {}  # SymPy recomputes free_symbols on each call
        self.positions: dict[sympy.Basic, dict[str, list[int]]] = {}  # see ``holding``

    def __call__(self, expr: sympy.Basic, variable: str) -> sympy.Expr:
        key = (expr, variable)
        if key not in self.memo:
            try:
                self.memo[key] = self._derivative(expr, variable) if variable in self.variables(expr) else sympy.S.Zero
            except (ValueError, TypeError, ArithmeticError) as e:  # SymPy refusing to build a form, e.g. Max(zoo, 1)
                text = sympy.sstr(expr)
                raise ExpressionError(f"cannot differentiate {text[:60]}{'…' if len(text) > 60 else ''}: {e}") from None
        return self.memo[key]

    def variables(self, expr: sympy.Basic) -> frozenset[str]:
        """The names of the symbols in ``expr``, remembered per subexpression."""
        if expr not in self.names:
            if isinstance(expr, sympy.Symbol):
                self.names[expr] = frozenset([expr.name])
            else:
                self.names[expr] = frozenset().union(*(self.variables(a) for a in expr.args))
        return self.names[expr]

    def holding(self, expr: sympy.Basic, variable: str) -> list[int]:
        """The positions of ``expr``'s arguments that contain ``variable``, from an index built once
        per sum or product: d/dx_i of a 5,000-term sum visits its one term, not all 5,000."""
        if expr not in self.positions:
            index: dict[str, list[int]] = {}
            for i, a in enumerate(expr.args):
                for name in self.variables(a):
                    index.setdefault(name, []).append(i)
            self.positions[expr] = index
        return self.positions[expr].get(variable, [])

    def _derivative(self, expr: sympy.Basic, variable: str) -> sympy.Expr:
        if isinstance(expr, sympy.Symbol):
            return sympy.S.One  # the variable itself: any other symbol has no ``variable`` in it
        if expr.is_Add:
            return sympy.Add(*(self(expr.args[i], variable) for i in self.holding(expr, variable)))
        if expr.is_Mul:
            args = expr.args
            return sympy.Add(
                *(sympy.Mul(*args[:i], self(args[i], variable), *args[i + 1 :]) for i in self.holding(expr, variable))
            )
        if expr.is_Pow:
            base, exponent = expr.args
            if variable not in self.variables(exponent):
                return exponent * base ** (exponent - 1) * self(base, variable)
            if variable not in self.variables(base):
                return expr * sympy.log(base) * self(exponent, variable)
            return expr * (self(exponent, variable) * sympy.log(base) + exponent * self(base, variable) / base)
        if isinstance(expr, sympy.Piecewise):
            return sympy.Piecewise(*((self(value, variable), condition) for value, condition in expr.args))
        row = rules.rule(expr)
        if row is None:
            raise ExpressionError(f"cannot differentiate {expr}")
        if row.partials is None:
            return self(expr.plain(), variable)
        partials = row.partials(*expr.args)
        return sympy.Add(*(p * self(a, variable) for p, a in zip(partials, expr.args) if variable in self.variables(a)))


def values(parsed: Sequence[Parsed], names: Sequence[str]) -> list[Quantity]:
    """The outputs' values: one ``value``, or one column per output, named."""
    single = len(parsed) == 1
    return [
        Quantity(("value",) if single else ("value", n), "value" if single and p.name is None else n, p.expr)
        for n, p in zip(names, parsed)
    ]


def output_names(parsed: Sequence[Parsed]) -> list[str]:
    """Each output's name: its own (``u=x*y``), else f1, f2, …"""
    names = [p.name or f"f{i}" for i, p in enumerate(parsed, start=1)]
    for name in names:
        if names.count(name) > 1:
            raise ExpressionError(f"output name {name!r} is given twice")
    return names


def _components(given: Mapping[str, float], names: Sequence[str], option: str, kind: str) -> dict[str, float]:
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UsageError(
            f"{option} names {', '.join(unknown)}, which is not a differentiated {kind}",
            hint=f"the {kind}s are: {', '.join(names)}",
        )
    return {n: exact(given.get(n, 0.0)) for n in names}


def exact(weight: float) -> sympy.Number:
    """An integral weight as an Integer, so a tangent of 1 gives 2*x rather than 2.0*x."""
    return sympy.Integer(int(weight)) if float(weight).is_integer() else sympy.Float(weight)


def _check_unique(columns: Sequence[str], variables: set[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen or column in variables:
            raise ExpressionError(f"output name {column!r} is used twice (as a variable or another output)")
        seen.add(column)
