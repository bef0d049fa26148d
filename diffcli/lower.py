"""SymPy -> torch: the kernels of ``rules.RULES`` and a table of the structure around them
(sums, comparisons, logic), walked without ``exec``.

``compile`` takes the expressions a command needs (values and their symbolic derivatives),
shares their common subexpressions (``sympy.cse``) and returns a function from columns of
variable values to columns of results: every operation is element-wise, so one call evaluates
a whole batch of points. Branches lower to ``torch.where`` over values that are all computed
forward, so the branch not taken can hold NaN without leaking it into the result.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence

import sympy
import torch

from . import functions, rules, special

Tensor = torch.Tensor


def _piecewise(*parts: Tensor) -> Tensor:
    """value1, condition1, value2, condition2, ...: the first value whose condition holds."""
    result: Tensor | float = math.nan  # SymPy leaves a Piecewise undefined where no condition holds
    for value, condition in reversed(list(zip(parts[::2], parts[1::2]))):
        result = torch.where(condition, value, result)
    return result  # type: ignore[return-value]


# SymPy class -> torch function of the lowered arguments. Exact classes: see ``_lower``.
STRUCTURE: dict[type[sympy.Basic], Callable[..., Tensor]] = {
    sympy.Add: special.fold(torch.add),
    sympy.StrictLessThan: torch.lt,
    sympy.LessThan: torch.le,
    sympy.StrictGreaterThan: torch.gt,
    sympy.GreaterThan: torch.ge,
    sympy.Equality: torch.eq,
    sympy.Unequality: torch.ne,
    sympy.And: special.fold(torch.logical_and),
    sympy.Or: special.fold(torch.logical_or),
    sympy.Not: torch.logical_not,
    sympy.ITE: torch.where,
}
CONSTANTS: dict[sympy.Basic, float] = {
    sympy.pi: math.pi,
    sympy.E: math.e,
    sympy.oo: math.inf,
    -sympy.oo: -math.inf,
    sympy.zoo: math.nan,  # 1/0 in SymPy: an infinity without a sign, so no real value
    sympy.nan: math.nan,
}


def kernel(name: str) -> Callable[..., Tensor]:
    """A row's kernel: ``torch.NAME`` (``torch.special.erf`` too), or ``special.NAME``."""
    if name.startswith("torch."):
        return operator.attrgetter(name.removeprefix("torch."))(torch)
    return getattr(special, name)


Ref = tuple[str, int]  # ("variable" | "constant" | "call", index)


class Lowering:
    """Compiles SymPy expressions into a tape of torch calls, each subexpression once.

    The tape's slots are the variables, then the constants, then one slot per call; running it is
    a loop of plain function calls (a scan step of a few torch calls pays little beyond them), and
    each slot is let go after its last use, so a batch holds only the intermediates still needed.
    """

    def __init__(self, variables: Sequence[sympy.Symbol]) -> None:
        self.names = [v.name for v in variables]
        self.memo: dict[sympy.Basic, Ref] = {v: ("variable", i) for i, v in enumerate(variables)}
        self.constants: list[float | bool] = []
        self.calls: list[tuple[Callable[..., Tensor], tuple[Ref, ...]]] = []

    def __call__(self, expr: sympy.Basic) -> Ref:
        if expr not in self.memo:
            self.memo[expr] = self._lower(expr)
        return self.memo[expr]

    def constant(self, value: float | bool) -> Ref:
        self.constants.append(value)
        return ("constant", len(self.constants) - 1)

    def call(self, function: Callable[..., Tensor], *args: Ref) -> Ref:
        self.calls.append((function, args))
        return ("call", len(self.calls) - 1)

    def tape(self, outputs: Sequence[Ref]) -> Callable[[Mapping[str, Tensor], Tensor], list[Tensor]]:
        """The function from columns to the ``outputs``' columns (``like``: their length, dtype, device)."""
        first = {"variable": 0, "constant": len(self.names), "call": len(self.names) + len(self.constants)}
        calls = [(f, [first[kind] + i for kind, i in args]) for f, args in self.calls]
        results = [first[kind] + i for kind, i in outputs]
        last_use = {slot: k for k, (_, args) in enumerate(calls) for slot in args}
        released: list[list[int]] = [[] for _ in calls]
        for slot, k in last_use.items():
            if slot not in results:
                released[k].append(slot)
        names, values = self.names, self.constants
        cache: dict[tuple[torch.dtype, torch.device, bool], list[Tensor]] = {}

        def run(columns: Mapping[str, Tensor], like: Tensor) -> list[Tensor]:
            key = (like.dtype, like.device, torch.is_inference_mode_enabled())  # an inference tensor
            if key not in cache:  # cannot take part in autograd: constants for each mode
                cache[key] = [
                    torch.tensor(v, dtype=torch.bool if isinstance(v, bool) else like.dtype, device=like.device)
                    for v in values
                ]
            slots: list[Tensor | None] = [columns[n] for n in names]
            slots += cache[key]
            for (function, args), done in zip(calls, released):
                slots.append(function(*(slots[a] for a in args)))
                for slot in done:
                    slots[slot] = None
            return [slots[r].expand_as(like) for r in results]  # type: ignore[union-attr]

        return run

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
            return self.call(_piecewise, *(self(part) for pair in expr.args for part in pair))
        row = rules.rule(expr)
        function = kernel(row.kernel) if row is not None else STRUCTURE.get(type(expr))
        if function is not None:
            return self.call(function, *(self(a) for a in expr.args))
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
        multiply = functools.partial(self.call, torch.mul)
        kept = [self(f) for f in numerator if f != 1]
        top = functools.reduce(multiply, kept) if kept else self.constant(1.0)
        if not denominator:
            return top
        return self.call(torch.div, top, functools.reduce(multiply, (self(f) for f in denominator)))

    def _power(self, base: sympy.Basic, exponent: sympy.Basic) -> Ref:
        if exponent == sympy.S.Half:
            return self.call(torch.sqrt, self(base))
        if exponent == -sympy.S.Half:
            return self.call(torch.rsqrt, self(base))
        if exponent == -1:
            return self.call(torch.reciprocal, self(base))
        if exponent == 2:
            return self.call(torch.square, self(base))
        if base == sympy.E:
            return self.call(torch.exp, self(exponent))
        return self.call(torch.pow, self(base), self(exponent))


def compile(
    exprs: Sequence[sympy.Basic],
    variables: Sequence[sympy.Symbol],
    definitions: Sequence[tuple[sympy.Symbol, sympy.Basic]] | None = None,
) -> Callable[[Mapping[str, Tensor], Tensor], list[Tensor]]:
    """A function from columns (``{name: tensor}``) to one column per expression, sharing work.

    ``like`` gives the batch's length, dtype and device (a batch can have no variables).
    ``definitions``: the symbols ``exprs`` are written in, each defined over those before it
    (a tape's slots, already shared); without them ``sympy.cse`` finds what to share.

    >>> x = sympy.Symbol("x", real=True)
    >>> compile([x**2, 2*x], [x])({"x": torch.tensor([3.0])}, torch.empty(1))
    [tensor([9.]), tensor([6.])]
    """
    if definitions is None:
        exprs = [rules.accurate(e) for e in exprs]
        replacements, reduced = sympy.cse(list(exprs), symbols=sympy.numbered_symbols(cls=sympy.Dummy), order="none")
    else:
        replacements, reduced = definitions, exprs
    lowering = Lowering(variables)
    for name, sub in replacements:
        lowering.memo[name] = lowering(sub)
    return lowering.tape([lowering(e) for e in reduced])


def evaluate_constant(expr: sympy.Basic) -> float:
    """The float64 value of a constant expression, computed as every result is: with torch."""
    lowering = Lowering([])
    return float(lowering.tape([lowering(expr)])({}, torch.zeros((), dtype=torch.float64))[0])
