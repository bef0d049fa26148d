"""SymPy classes for functions that SymPy lacks, or differentiates into unevaluated forms.

Each class carries its derivative (``fdiff``), so ``sympy.diff`` never leaves a ``Derivative``
behind that could not be lowered to torch. Classes that SymPy lacks also carry an elementary
``definition``, which SymPy's ``evalf`` uses (and the tests use as an independent oracle).
The class names are the names users type, so ``--symbolic`` prints what they wrote.
"""

from __future__ import annotations

import sympy
from sympy.core.evalf import prec_to_dps


class _Defined(sympy.Function):
    """A function of one argument defined by an elementary SymPy expression.

    Subclasses provide ``definition(x)``, the expression that ``evalf`` evaluates.
    """

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        definition = type(self).definition(self.args[0])  # type: ignore[attr-defined]
        return definition.evalf(prec_to_dps(prec))

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class sigmoid(_Defined):  # noqa: N801 - the name users type
    """The logistic function 1 / (1 + exp(-x))."""

    @classmethod
    def definition(cls, x: sympy.Expr) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-x))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)  # stays finite where exp(-x) overflows


class softplus(_Defined):  # noqa: N801
    """log(1 + exp(x)), evaluated without overflow."""

    @classmethod
    def definition(cls, x: sympy.Expr) -> sympy.Expr:
        return sympy.log(1 + sympy.exp(x))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])


class relu(_Defined):  # noqa: N801
    """max(x, 0); its derivative at 0 is 0, as in torch and JAX."""

    @classmethod
    def definition(cls, x: sympy.Expr) -> sympy.Expr:
        return sympy.Max(x, 0)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Heaviside(self.args[0], 0)


class cbrt(_Defined):  # noqa: N801
    """The real cube root: cbrt(-8) = -2 (SymPy's ``cbrt`` is the complex principal root)."""

    @classmethod
    def definition(cls, x: sympy.Expr) -> sympy.Expr:
        return sympy.sign(x) * sympy.Abs(x) ** sympy.Rational(1, 3)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return 1 / (3 * cbrt(self.args[0]) ** 2)


class floor(sympy.floor):  # noqa: N801
    """floor, whose derivative is 0 (everywhere it exists; torch's convention at the jumps)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero


class ceiling(sympy.ceiling):  # noqa: N801
    """ceiling, whose derivative is 0 (everywhere it exists; torch's convention at the jumps)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.S.Zero


class Mod(sympy.Mod):
    """x % y with the sign of y (Python's and torch.remainder's); d/dx = 1, d/dy = -floor(x/y)."""

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, y = self.args
        return sympy.S.One if argindex == 1 else -floor(x / y)


class Folded(sympy.Dummy):
    """A constant subexpression folded to its float value at parse time.

    SymPy stays out of it: its exact evaluation of things like ``exp(exp(exp(10)))`` can run out
    of memory. It prints as the user's text.
    """

    value: float

    def __new__(cls, text: str, value: float) -> Folded:
        obj = super().__new__(cls, text, real=True)
        obj.value = value
        return obj

    def _eval_evalf(self, prec: int) -> sympy.Float:
        return sympy.Float(self.value, prec_to_dps(prec))

    def _sympystr(self, printer: object) -> str:
        return self.name

    def _latex(self, printer: object) -> str:
        return rf"\left({self.name}\right)"


def is_constant(expr: sympy.Basic) -> bool:
    """Whether ``expr`` has no variables (folded constants are not variables)."""
    return all(isinstance(s, Folded) for s in expr.free_symbols)
