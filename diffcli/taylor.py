"""An expression -> its truncated Taylor series at a batch of points (``series.py``'s arithmetic,
each function's rule from ``rules.RULES``): derivatives of any order and mixed partials at O(N²)
cost per operation, where differentiating the formula N times would swell it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import sympy
import torch

from . import functions, rules, series
from .lower import CONSTANTS, STRUCTURE
from .program import kernel
from .series import Basis, Series

Tensor = torch.Tensor


def expand(
    expr: sympy.Basic,
    wrt: Sequence[str],
    order: int,
    values: Mapping[str, Tensor],
    like: Tensor,
    *,
    box: Sequence[int] | None = None,
    step: float = 1.0,
) -> Series:
    """The series of ``expr`` in the variables ``wrt`` to total degree ``order`` (within ``box``
    if given), at the points ``values`` (a column per variable; ``like``: the batch's length,
    dtype and device). Its variables are scaled by ``step``: ``basis.factor`` turns a
    coefficient into a derivative."""
    basis = Basis(len(wrt), order, box, step)
    index = {name: i for i, name in enumerate(wrt)}
    memo: dict[sympy.Basic, Series | Tensor] = {}

    def constant(value: float) -> Series:
        return Series.constant(basis, torch.full_like(like, value))

    def walk(e: sympy.Basic) -> Series | Tensor:
        if e not in memo:
            memo[e] = build(e)
        return memo[e]

    def build(e: sympy.Basic) -> Series | Tensor:
        if e in CONSTANTS:
            return constant(CONSTANTS[e])
        if isinstance(e, functions.Folded):
            return constant(e.value)
        if isinstance(e, sympy.Symbol):
            value = values[e.name].expand_as(like).to(like.dtype)
            return Series.variable(basis, value, index[e.name]) if e.name in index else Series.constant(basis, value)
        if e in (sympy.true, sympy.false):
            return torch.full_like(like, bool(e), dtype=torch.bool)
        if e.is_number:
            return constant(_real(e))
        if isinstance(e, sympy.Piecewise):
            result = constant(math.nan)  # undefined where no condition holds, as SymPy
            for value, condition in reversed(e.args):
                result = series.select(walk(condition), walk(value), result)
            return result
        args = [walk(a) for a in e.args]
        if e.is_Add:
            return sum(args[1:], args[0])
        if e.is_Mul:
            result = args[0]
            for a in args[1:]:
                result = result * a
            return result
        if e.is_Pow:
            base, exponent = args
            if e.exp.is_number:
                return series.power(base, float(e.exp))
            if not {s.name for s in e.exp.free_symbols} & set(index):  # the same power along the series
                return series.power(base, exponent.value)
            return series.exp(exponent * series.log(base)).with_value(torch.pow(base.value, exponent.value))
        if type(e) in STRUCTURE:  # comparisons and logic: on the values at the point
            return kernel(STRUCTURE[type(e)])(*(a.value if isinstance(a, Series) else a for a in args))
        row = rules.rule(e)
        if row is None or row.taylor is None:
            raise TypeError(f"no Taylor rule for {type(e).__name__}")
        return getattr(series, row.taylor)(*args)

    result = walk(rules.accurate(expr))
    if isinstance(result, Tensor):  # a bare condition used as a number
        result = Series.constant(basis, result.to(like.dtype))
    return result


def _real(number: sympy.Expr) -> float:
    """A constant's float value; NaN where it has none (i·pi, zoo, atan2(0, 0) left unevaluated)."""
    if number.has(sympy.I):
        return math.nan
    try:
        return float(number.evalf(17))
    except (TypeError, ValueError):
        return math.nan
