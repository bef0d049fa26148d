"""SymPy classes for functions that SymPy lacks, or differentiates into unevaluated forms.

Each class carries its textbook derivative (``fdiff``), so SymPy's own ``diff`` (the tests'
oracle) works on them; diffcli differentiates with ``rules.py`` instead. Classes that SymPy
lacks also carry an elementary ``definition``, which SymPy's ``evalf`` uses (and the tests use as
an independent oracle). ``Helper`` classes are the derivatives' accurate forms.
The class names are the names users type, so ``--symbolic`` prints what they wrote.
"""

from __future__ import annotations

from collections.abc import Callable

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


class Abs(sympy.Abs):
    """|x| for real arguments: SymPy's own rewrites |exp(z)| as exp(re(z)) when it cannot prove z
    real (acsc(y), sqrt(y): complex outside their domains), and ``re`` has no real meaning here."""

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        result = super().eval(arg)
        if result is not None and result.has(sympy.re, sympy.im, sympy.arg, sympy.atan2):
            return None  # keep |arg| whole
        return result


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


class atan2(sympy.Function):  # noqa: N801
    """atan2(y, x), kept whole: SymPy rewrites sin(atan2(y, x)) into y/sqrt(x**2 + y**2), whose
    derivative cancels (a y-derivative of 9e-17 came out as -6e-16)."""

    nargs = 2

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        try:
            y, x = (a.evalf(prec_to_dps(prec)) for a in self.args)
            value = sympy.atan2(y, x).evalf(prec_to_dps(prec))
        except (AttributeError, TypeError, ValueError, ArithmeticError):  # SymPy's evalf of NaN, zoo
            return None
        return value if isinstance(value, sympy.Float) else None  # atan2(0, 0): no number to give SymPy

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real and self.args[1].is_real

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        y, x = self.args
        return (x if argindex == 1 else -y) / (x**2 + y**2)

    def _latex(self, printer: object) -> str:
        return sympy.latex(sympy.atan2(*self.args, evaluate=False))


class Helper(sympy.Function):
    """A derivative in the form that keeps its digits (``rules.py`` holds its torch kernel).

    ``textbook`` is the plain formula, for ``--symbolic``; ``exact`` a formula of the same value
    that does not cancel, for SymPy's ``evalf`` (which ``check`` uses as its 50-digit reference).
    """

    textbook: Callable[..., sympy.Expr]  # both set by ``_helper``
    exact: Callable[..., sympy.Expr]

    def plain(self) -> sympy.Expr:
        return type(self).textbook(*self.args)

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        return type(self).exact(*self.args).evalf(prec_to_dps(prec))

    def _eval_is_real(self) -> bool | None:
        return True


def _helper(
    name: str, nargs: int, textbook: Callable[..., sympy.Expr], exact: Callable[..., sympy.Expr] | None = None
) -> type[Helper]:
    forms = {"textbook": staticmethod(textbook), "exact": staticmethod(exact or textbook)}
    return type(name, (Helper,), {"nargs": nargs, **forms})


sech2 = _helper("sech2", 1, lambda u: 1 - sympy.tanh(u) ** 2, lambda u: 1 / sympy.cosh(u) ** 2)  # tanh'
dsigmoid = _helper(
    "dsigmoid", 1, lambda u: sigmoid(u) * (1 - sigmoid(u)), lambda u: sympy.exp(-u) / (1 + sympy.exp(-u)) ** 2
)
derf = _helper("derf", 1, lambda u: 2 / sympy.sqrt(sympy.pi) * sympy.exp(-(u**2)))
datan = _helper("datan", 1, lambda u: 1 / (1 + u**2))
d2atan = _helper("d2atan", 1, lambda u: -2 * u / (1 + u**2) ** 2)
datanh = _helper("datanh", 1, lambda u: 1 / (1 - u**2), lambda u: 1 / ((1 - u) * (1 + u)))
dasinh = _helper("dasinh", 1, lambda u: 1 / sympy.sqrt(1 + u**2))
d2asinh = _helper("d2asinh", 1, lambda u: -u / (1 + u**2) ** sympy.Rational(3, 2))
dacosh = _helper("dacosh", 1, lambda u: 1 / sympy.sqrt(u**2 - 1))
d2acosh = _helper("d2acosh", 1, lambda u: -u / (u**2 - 1) ** sympy.Rational(3, 2))
atan2_d = _helper("atan2_d", 2, lambda a, b: b / (a**2 + b**2))  # d atan2(a, b) / da
atan2_daa = _helper("atan2_daa", 2, lambda a, b: -2 * a * b / (a**2 + b**2) ** 2)
atan2_dab = _helper(
    "atan2_dab", 2, lambda a, b: (a**2 - b**2) / (a**2 + b**2) ** 2, lambda a, b: (a - b) * (a + b) / (a**2 + b**2) ** 2
)
hypot_d = _helper("hypot_d", 2, lambda a, b: a / sympy.sqrt(a**2 + b**2))  # d hypot(a, b) / da
hypot_daa = _helper("hypot_daa", 2, lambda a, b: b**2 / (a**2 + b**2) ** sympy.Rational(3, 2))
hypot_dab = _helper("hypot_dab", 2, lambda a, b: -a * b / (a**2 + b**2) ** sympy.Rational(3, 2))
dirac = _helper("dirac", 1, lambda u: sympy.DiracDelta(u))  # of sign and heaviside: NaN at 0
floor_quotient = _helper("floor_quotient", 2, lambda x, y: floor(x / y))


class sinc_d(Helper):  # noqa: N801
    """sinc_d(n, x): the n-th derivative of sinc(x) = sin(x)/x (1 at 0), finite at 0 too."""

    nargs = 2

    @staticmethod
    def textbook(n: sympy.Expr, u: sympy.Expr) -> sympy.Expr:
        return sympy.diff(sympy.sin(u) / u, u, int(n))

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        import mpmath

        n, u = self.args
        if not (n.is_Integer and u.is_number):
            return None
        with mpmath.workprec(prec + 64):  # mpmath.diff: finite differences at raised precision
            value = mpmath.diff(mpmath.sinc, mpmath.mpf(sympy.Float(u, prec_to_dps(prec) + 20)), int(n))
        return sympy.Float(value, prec_to_dps(prec))


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
