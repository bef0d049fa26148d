"""SymPy -> torch: the kernels of ``rules.RULES`` and a table of the structure around them
(sums, comparisons, logic), walked without ``exec``.

``program`` takes the expressions a command needs (values and their symbolic derivatives),
shares their common subexpressions (``sympy.cse``) and returns the program of torch calls that
computes them (``program.py``), and ``compile`` its function from columns of variable values to
columns of results: every operation is element-wise, so one call evaluates a whole batch of
points. Branches lower to ``torch.where`` over values that are all computed
forward, so the branch not taken can hold NaN without leaking it into the result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import sympy
import torch

from . import functions, rules
from .program import Program

Tensor = torch.Tensor


# SymPy class -> the kernel of the lowered arguments (``program.KERNELS``). Exact classes: see ``_lower``.
STRUCTURE: dict[type[sympy.Basic], str] = {
    sympy.Add: "add",
    sympy.StrictLessThan: "torch.lt",
    sympy.LessThan: "torch.le",
    sympy.StrictGreaterThan: "torch.gt",
    sympy.GreaterThan: "torch.ge",
    sympy.Equality: "torch.eq",
    sympy.Unequality: "torch.ne",
    sympy.And: "and",
    sympy.Or: "or",
    sympy.Not: "torch.logical_not",
    sympy.ITE: "torch.where",
}
CONSTANTS: dict[sympy.Basic, float] = {
    sympy.pi: math.pi,
    sympy.E: math.e,
    sympy.oo: math.inf,
    -sympy.oo: -math.inf,
    sympy.zoo: math.nan,  # 1/0 in SymPy: an infinity without a sign, so no real value
    sympy.nan: math.nan,
}


Ref = tuple[str, int]  # ("variable" | "constant" | "call", index)


class Lowering:
    """Compiles SymPy expressions into a program of torch calls (``program.Program``), each
    subexpression once: its slots are the variables, then the constants, then one per call;
    running it is a loop of plain function calls (a scan step of a few torch calls pays little
    beyond them)."""

    def __init__(self, variables: Sequence[sympy.Symbol]) -> None:
        self.names = [v.name for v in variables]
        self.memo: dict[sympy.Basic, Ref] = {v: ("variable", i) for i, v in enumerate(variables)}
        self.constants: list[float | bool] = []
        self.calls: list[tuple[str, tuple[Ref, ...]]] = []

    def __call__(self, expr: sympy.Basic) -> Ref:
        if expr not in self.memo:
            self.memo[expr] = self._lower(expr)
        return self.memo[expr]

    def constant(self, value: float | bool) -> Ref:
        self.constants.append(value)
        return ("constant", len(self.constants) - 1)

    def call(self, kernel: str, *args: Ref) -> Ref:
        self.calls.append((kernel, args))
        return ("call", len(self.calls) - 1)

    def program(self, outputs: Sequence[Ref]) -> Program:
        """The program computing the ``outputs``."""
        first = {"variable": 0, "constant": len(self.names), "call": len(self.names) + len(self.constants)}
        return Program(
            tuple(self.names),
            tuple(self.constants),
            tuple((kernel, tuple(first[kind] + i for kind, i in args)) for kernel, args in self.calls),
            tuple(first[kind] + i for kind, i in outputs),
        )

    def _lower(self, expr: sympy.Basic) -> Ref:
        if expr in CONSTANTS:
            return self.constant(CONSTANTS[expr])
        if expr.is_number and expr.has(sympy.I):  # SymPy made a constant complex: no real value
            return self.constant(math.nan)
        if isinstance(expr, functions.Folded):
            return self.constant(expr.value)
        if isinstance(expr, sympy.Symbol):
            raise KeyError(expr.name)  # the caller supplies every variable
        if isinstance(expr, sympy.Number):
            return self.constant(float(expr.evalf(17)))
        if expr in (sympy.true, sympy.false):
            return self.constant(bool(expr))
        if isinstance(expr, sympy.Mul):
            return self._product(expr.args)
        if isinstance(expr, sympy.Pow):
            return self._power(*expr.args)
        if isinstance(expr, sympy.Piecewise):
            return self.call("piecewise", *(self(part) for pair in expr.args for part in pair))
        row = rules.rule(expr)
        kernel = row.kernel if row is not None else STRUCTURE.get(type(expr))
        if kernel is not None:
            return self.call(kernel, *(self(a) for a in expr.args))
        raise TypeError(f"no torch lowering for {type(expr).__name__}: {expr}")

    def _product(self, factors: Sequence[sympy.Basic]) -> Ref:
        """A product as numerator / denominator: x/3 is one rounding, not x * 0.333…"""
        numerator: list[sympy.Basic] = []
        denominator: list[sympy.Basic] = []
        for f in factors:
            if isinstance(f, sympy.Rational) and f.q != 1:
                numerator.append(sympy.Integer(f.p))
                denominator.append(sympy.Integer(f.q))
            elif isinstance(f, sympy.Pow) and f.exp.is_Number and f.exp < 0:
                denominator.append(f.base**-f.exp)
            else:
                numerator.append(f)
        multiply = functools.partial(self.call, "torch.mul")
        kept = [self(f) for f in numerator if f != 1]
        top = functools.reduce(multiply, kept) if kept else self.constant(1.0)
        if not denominator:
            return top
        return self.call("torch.div", top, functools.reduce(multiply, (self(f) for f in denominator)))

    def _power(self, base: sympy.Basic, exponent: sympy.Basic) -> Ref:
        if exponent == sympy.S.Half:
            return self.call("torch.sqrt", self(base))
        if exponent == -sympy.S.Half:
            return self.call("torch.rsqrt", self(base))
        if exponent == -1:
            return self.call("torch.reciprocal", self(base))
        if exponent == 2:
            return self.call("torch.square", self(base))
        if base == sympy.E:
            return self.call("torch.exp", self(exponent))
        return self.call("torch.pow", self(base), self(exponent))


def compile(
    exprs: Sequence[sympy.Basic], variables: Sequence[sympy.Symbol]
) -> Callable[[Mapping[str, Tensor], Tensor], list[Tensor]]:
    """A function from columns (``{name: tensor}``) to one column per expression, sharing work.

    ``like`` gives the batch's length, dtype and device (a batch can have no variables).

    >>> x = sympy.Symbol("x", real=True)
    >>> compile([x**2, 2*x], [x])({"x": torch.tensor([3.0])}, torch.empty(1))
    [tensor([9.]), tensor([6.])]
    """
    return program(exprs, variables).function()


def program(
    exprs: Sequence[sympy.Basic],
    variables: Sequence[sympy.Symbol],
    definitions: Sequence[tuple[sympy.Symbol, sympy.Basic]] | None = None,
) -> Program:
    """The program computing ``exprs`` from the ``variables``. ``definitions``: the symbols
    ``exprs`` are written in, each defined over those before it (a tape's slots, already shared);
    without them ``sympy.cse`` finds what to share."""
    if definitions is None:
        exprs = [rules.accurate(e) for e in exprs]
        replacements, reduced = sympy.cse(list(exprs), symbols=sympy.numbered_symbols(cls=sympy.Dummy), order="none")
    else:
        replacements, reduced = definitions, exprs
    lowering = Lowering(variables)
    for name, sub in replacements:
        lowering.memo[name] = lowering(sub)
    return lowering.program([lowering(e) for e in reduced])


def evaluate_constant(expr: sympy.Basic) -> float:
    """The float64 value of a constant expression, computed as every result is: with torch."""
    lowering = Lowering([])
    run = lowering.program([lowering(expr)]).function()
    return float(run({}, torch.zeros((), dtype=torch.float64))[0])
