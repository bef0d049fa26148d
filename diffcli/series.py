"""Truncated power series on torch tensors: Taylor-mode arithmetic (the idea behind
``jax.experimental.jet``), for derivatives of high order without expression swell.

A series in d variables, truncated at total degree N, is a list of N + 1 homogeneous parts; part
k holds the coefficients of the monomials of degree k (a tensor of shape (monomials, *batch)).
Products cost O(N²) part products. Each nonlinear function follows the ODE it satisfies in its
argument, f(u)' = g(u)·u', read degree by degree through the Euler operator E (E multiplies part
k by k): k·y_k = Σ_j j·u_j·g_{k-j}, where g's parts below k are already known. Every recurrence
starts from the function's own accurate value (sech² for tanh, σ(x)σ(-x) for the sigmoid), so
the coefficients keep their digits where the textbook forms would cancel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence

import torch

from . import special

Tensor = torch.Tensor


class Basis:
    """The monomials of d variables up to total degree N (or, with ``box``, those whose exponents
    stay within it: all that a mixed partial needs), degree by degree; the index maps that
    multiply a part of degree j by a part of degree m; and ``step``, the scale of each variable
    in the series (u = x0 + step·t; the coefficients are f^(k)·step^k/k!)."""

    def __init__(self, dimension: int, order: int, box: Sequence[int] | None = None, step: float = 1.0) -> None:
        self.dimension, self.order, self.step = dimension, order, step
        self.monomials = [list(_monomials(dimension, k, box)) for k in range(order + 1)]
        self.position = [{e: i for i, e in enumerate(block)} for block in self.monomials]

    @functools.cache  # noqa: B019 - one basis per command, kept for its life
    def pairs(self, j: int, m: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        out = self.position[j + m]
        triples = [
            (a, b, out[product])
            for a, ea in enumerate(self.monomials[j])
            for b, eb in enumerate(self.monomials[m])
            if (product := tuple(x + y for x, y in zip(ea, eb))) in out
        ]
        return tuple(torch.tensor(t, dtype=torch.long, device=device) for t in zip(*triples))  # type: ignore[return-value]

    def factor(self, exponents: Sequence[int]) -> float:
        """What turns a coefficient into the derivative d^exponents f: Π e! / step^Σe."""
        return math.prod(math.factorial(e) for e in exponents) / self.step ** sum(exponents)


def _monomials(dimension: int, degree: int, box: Sequence[int] | None) -> Iterator[tuple[int, ...]]:
    """The exponents of the monomials of this degree (within ``box``), x² before x·y before y²."""
    if dimension == 0:
        if degree == 0:
            yield ()
        return
    top = degree if box is None else min(degree, box[0])
    for first in range(top, -1, -1):
        for rest in _monomials(dimension - 1, degree - first, None if box is None else box[1:]):
            yield (first, *rest)


class Series:
    """A truncated power series: ``parts[k]`` has shape (monomials of degree k, *batch)."""

    def __init__(self, basis: Basis, parts: list[Tensor]) -> None:
        self.basis, self.parts = basis, parts

    @classmethod
    def constant(cls, basis: Basis, value: Tensor) -> Series:
        parts = [value.unsqueeze(0)] + [value.new_zeros((len(m), *value.shape)) for m in basis.monomials[1:]]
        return cls(basis, parts)

    @classmethod
    def variable(cls, basis: Basis, value: Tensor, index: int) -> Series:
        series = cls.constant(basis, value)
        unit = tuple(int(i == index) for i in range(basis.dimension))
        if basis.order >= 1 and unit in basis.position[1]:
            series.parts[1][basis.position[1][unit]] = basis.step
        return series

    @property
    def value(self) -> Tensor:
        return self.parts[0][0]

    def coefficient(self, exponents: Sequence[int]) -> Tensor:
        degree = sum(exponents)
        return self.parts[degree][self.basis.position[degree][tuple(exponents)]]

    def with_value(self, value: Tensor) -> Series:
        """The same series with its constant term replaced (by a more accurate one)."""
        return Series(self.basis, [value.unsqueeze(0), *self.parts[1:]])

    def map(self, f: Callable[[Tensor], Tensor]) -> Series:
        return Series(self.basis, [f(p) for p in self.parts])

    def __add__(self, other: Series) -> Series:
        return Series(self.basis, [a + b for a, b in zip(self.parts, other.parts)])

    def __sub__(self, other: Series) -> Series:
        return Series(self.basis, [a - b for a, b in zip(self.parts, other.parts)])

    def __neg__(self) -> Series:
        return self.map(torch.neg)

    def scaled(self, factor: Tensor | float) -> Series:
        return self.map(lambda p: p * factor)

    def __mul__(self, other: Series) -> Series:
        return Series(
            self.basis, [product(self.parts, other.parts, k, self.basis) for k in range(self.basis.order + 1)]
        )

    def __truediv__(self, other: Series) -> Series:
        """q = a / b: b0·q_k = a_k - Σ_{j>=1} b_j·q_{k-j}."""
        b0 = other.parts[0]
        q: list[Tensor] = []
        for k in range(self.basis.order + 1):
            rest = product(other.parts, q, k, self.basis, skip_first=True) if k else 0
            q.append((self.parts[k] - rest) / b0)
        return Series(self.basis, q)

    def euler(self) -> list[Tensor]:
        """E applied to the series: part k times k."""
        return [k * p for k, p in enumerate(self.parts)]


def block(a: Tensor, b: Tensor, j: int, m: int, basis: Basis) -> Tensor:
    """The product of a part of degree j and a part of degree m: a part of degree j + m."""
    if basis.dimension == 1:
        return a * b
    ia, ib, io = basis.pairs(j, m, a.device)
    out = a.new_zeros((len(basis.monomials[j + m]), *a.shape[1:]))
    return out.index_add_(0, io, a[ia] * b[ib])


def product(a: Sequence[Tensor], b: Sequence[Tensor], k: int, basis: Basis, *, skip_first: bool = False) -> Tensor:
    """Part k of a·b, from the parts of b below k only when a's part 0 is skipped."""
    start = 1 if skip_first else 0
    total = block(a[start], b[k - start], start, k - start, basis)
    for j in range(start + 1, k + 1):
        total = total + block(a[j], b[k - j], j, k - j, basis)
    return total


def _flow(
    u: Series, starts: Sequence[Tensor], rates: Callable[[list[list[Tensor]], int], Sequence[Tensor]]
) -> list[Series]:
    """Series y_i with y_i(u)' = rate_i·u', where ``rates(ys, k)`` gives part k of each rate from
    the parts of the y_i up to k: k·y_{i,k} = Σ_j j·u_j·rate_{i,k-j}."""
    basis = u.basis
    eu = u.euler()
    ys = [[s.unsqueeze(0)] for s in starts]
    rate_parts: list[list[Tensor]] = [[r] for r in rates(ys, 0)]
    for k in range(1, basis.order + 1):
        for y, r in zip(ys, rate_parts):
            y.append(product(eu, r, k, basis, skip_first=True) / k)
        for r, new in zip(rate_parts, rates(ys, k)):
            r.append(new)
    return [Series(basis, y) for y in ys]


def _integral(u: Series, start: Tensor, rate: Series) -> Series:
    """y with y(u)' = rate·u' and y's value ``start``, where the rate's series is known."""
    return _flow(u, [start], lambda ys, k: [rate.parts[k]])[0]


def exp(u: Series, value: Tensor | None = None) -> Series:
    """exp of the series, from ``value`` (a more accurate exp(u0)) where given."""
    return _flow(u, [torch.exp(u.value) if value is None else value], lambda ys, k: [ys[0][k]])[0]


def expm1(u: Series) -> Series:
    return exp(u).with_value(torch.expm1(u.value))


def log(u: Series) -> Series:
    w = Series(u.basis, u.euler()) / u
    return Series(u.basis, [torch.log(u.value).unsqueeze(0)] + [p / k for k, p in enumerate(w.parts) if k])


def log2(u: Series) -> Series:
    return log(u).scaled(1 / math.log(2)).with_value(torch.log2(u.value))


def log10(u: Series) -> Series:
    return log(u).scaled(1 / math.log(10)).with_value(torch.log10(u.value))


def log1p(u: Series) -> Series:
    one_plus = u.with_value(1 + u.value)
    return log(one_plus).with_value(torch.log1p(u.value))


def power(u: Series, c: float | Tensor, value: Tensor | None = None) -> Series:
    """u**c for c constant along the series (a number, or one per point): whole powers by
    squaring; others by k·u0·y_k = Σ_{j>=1} (c·j - (k - j))·u_j·y_{k-j}, and where u0 = 0 (no
    series: u**c is O(t^c)) the coefficients of t^k are 0 below c and ±inf above, as the symbolic
    derivatives of x**c at 0 are."""
    if not isinstance(c, Tensor) and float(c).is_integer() and abs(c) <= 2**20:
        whole = _whole_power(u, abs(int(c)))
        return whole if c >= 0 else Series.constant(u.basis, torch.ones_like(u.value)) / whole
    basis = u.basis
    y = [(torch.pow(u.value, c) if value is None else value).unsqueeze(0)]
    for k in range(1, basis.order + 1):
        total = sum((c * j - (k - j)) * block(u.parts[j], y[k - j], j, k - j, basis) for j in range(1, k + 1))
        y.append(total / (k * u.parts[0]))
    zero = u.value == 0
    if basis.order and bool(zero.any()):
        linear = Series(basis, [torch.zeros_like(u.parts[0]), u.parts[1], *(torch.zeros_like(p) for p in u.parts[2:])])
        powers, binomial = Series.constant(basis, torch.ones_like(u.value)), torch.ones_like(u.value)
        for k in range(1, basis.order + 1):
            powers, binomial = powers * linear, binomial * (c - (k - 1)) / k
            leading = torch.where(binomial == 0, 0.0, binomial * torch.pow(torch.zeros_like(u.value), c - k))
            terms = torch.where(powers.parts[k] == 0, 0.0, leading * powers.parts[k])  # monomials it lacks: 0
            y[k] = torch.where(zero, terms, y[k])
    return Series(basis, y)


def _whole_power(u: Series, n: int) -> Series:
    result, square = Series.constant(u.basis, torch.ones_like(u.value)), u
    while n:
        if n & 1:
            result = result * square
        n >>= 1
        if n:
            square = square * square
    return result


def sin(u: Series) -> Series:
    return _flow(u, [torch.sin(u.value), torch.cos(u.value)], lambda ys, k: [ys[1][k], -ys[0][k]])[0]


def cos(u: Series) -> Series:
    return _flow(u, [torch.sin(u.value), torch.cos(u.value)], lambda ys, k: [ys[1][k], -ys[0][k]])[1]


def sinh(u: Series) -> Series:
    return _flow(u, [torch.sinh(u.value), torch.cosh(u.value)], lambda ys, k: [ys[1][k], ys[0][k]])[0]


def cosh(u: Series) -> Series:
    return _flow(u, [torch.sinh(u.value), torch.cosh(u.value)], lambda ys, k: [ys[1][k], ys[0][k]])[1]


def tan(u: Series) -> Series:
    def rates(ys: list[list[Tensor]], k: int) -> list[Tensor]:
        square = product(ys[0], ys[0], k, u.basis)
        return [square + 1 if k == 0 else square]

    return _flow(u, [torch.tan(u.value)], rates)[0]


def tanh(u: Series) -> Series:
    """tanh' = s, s' = -2·tanh·s, where s = sech² starts from its accurate value."""

    def rates(ys: list[list[Tensor]], k: int) -> list[Tensor]:
        return [ys[1][k], -2 * product(ys[0], ys[1], k, u.basis)]

    return _flow(u, [torch.tanh(u.value), special.sech2(u.value)], rates)[0]


def sigmoid(u: Series) -> Series:
    """σ' = σ(u)·σ(-u) = -σ(-u)'; both start from their own accurate values."""

    def rates(ys: list[list[Tensor]], k: int) -> list[Tensor]:
        both = product(ys[0], ys[1], k, u.basis)
        return [both, -both]

    return _flow(u, [torch.sigmoid(u.value), torch.sigmoid(-u.value)], rates)[0]


def softplus(u: Series) -> Series:
    return _integral(u, torch.logaddexp(u.value, torch.zeros_like(u.value)), sigmoid(u))


def _scaled(u: Series) -> tuple[Series, Tensor]:
    """u / s and s: |u0| where u0² would overflow, else 1 (exact, so nothing is lost near ±1)."""
    s = torch.where(u.value.abs() > 2.0**500, u.value.abs(), 1.0)
    return u.scaled(1 / s), s


def _one_minus_square(u: Series) -> Series:
    return (Series.constant(u.basis, torch.ones_like(u.value)) - u * u).with_value((1 - u.value) * (1 + u.value))


def _one_plus_square(u: Series) -> Series:
    return (Series.constant(u.basis, torch.ones_like(u.value)) + u * u).with_value(1 + u.value * u.value)


def asin(u: Series) -> Series:
    return _integral(u, torch.asin(u.value), power(_one_minus_square(u), -0.5))


def acos(u: Series) -> Series:
    return _integral(u, torch.acos(u.value), -power(_one_minus_square(u), -0.5))


def _inverse_square_plus(v: Series, s: Tensor) -> Series:
    """1/s² + v², from its accurate value."""
    return (Series.constant(v.basis, 1 / s / s) + v * v).with_value(torch.hypot(1 / s, v.value) ** 2)


def atan(u: Series) -> Series:
    """atan' = 1/(1 + u²) = (1/s²) / (1/s² + (u/s)²)."""
    v, s = _scaled(u)
    one = Series.constant(u.basis, torch.ones_like(u.value))
    return _integral(u, torch.atan(u.value), (one / _inverse_square_plus(v, s)).scaled(1 / s / s))


def atan2(y: Series, x: Series) -> Series:
    """E atan2(y, x) = (x·Ey - y·Ex) / (x² + y²), with x and y divided by the larger of them."""
    s = torch.maximum(x.value.abs(), y.value.abs())
    x, y = x.scaled(1 / s), y.scaled(1 / s)
    w = (x * Series(y.basis, y.euler()) - y * Series(x.basis, x.euler())) / (x * x + y * y)
    value = torch.atan2(y.value, x.value)
    return Series(y.basis, [value.unsqueeze(0)] + [p / k for k, p in enumerate(w.parts) if k])


def asinh(u: Series) -> Series:
    """asinh' = (1 + u²)^(-1/2) = (1/s)·(1/s² + (u/s)²)^(-1/2)."""
    v, s = _scaled(u)
    return _integral(u, torch.asinh(u.value), power(_inverse_square_plus(v, s), -0.5).scaled(1 / s))


def acosh(u: Series) -> Series:
    """acosh' = (u² - 1)^(-1/2) = (1/s)·((u/s)² - 1/s²)^(-1/2)."""
    v, s = _scaled(u)
    minus = (v * v - Series.constant(u.basis, 1 / s / s)).with_value((v.value - 1 / s) * (v.value + 1 / s))
    return _integral(u, torch.acosh(u.value), power(minus, -0.5).scaled(1 / s))


def atanh(u: Series) -> Series:
    one = Series.constant(u.basis, torch.ones_like(u.value))
    return _integral(u, torch.atanh(u.value), one / _one_minus_square(u))


def erf(u: Series) -> Series:
    gauss = exp(-(u * u), special.gauss(u.value))
    return _integral(u, torch.special.erf(u.value), gauss.scaled(2 / math.sqrt(math.pi)))


def erfc(u: Series) -> Series:
    return (-erf(u)).with_value(torch.special.erfc(u.value))


def lgamma(u: Series) -> Series:
    """Σ_m ψ^(m-1)(u0)/m!·(u - u0)^m, composed by Horner's rule."""
    t = u.with_value(torch.zeros_like(u.value))
    order = u.basis.order
    coefficient = lambda m: special.polygamma(m - 1, u.value) / float(math.factorial(m))  # noqa: E731
    result = Series.constant(u.basis, coefficient(order)) if order else t
    for m in range(order - 1, 0, -1):
        result = t * result + Series.constant(u.basis, coefficient(m))
    return (t * result).with_value(torch.lgamma(u.value)) if order else result.with_value(torch.lgamma(u.value))


def gamma(u: Series) -> Series:
    """Γ' = Γ·ψ: the exponential's recurrence over lgamma's series, from Γ's own value (its sign too)."""
    logarithm = lgamma(u)
    return _flow(logarithm, [special.gamma(u.value)], lambda ys, k: [ys[0][k]])[0]


def select(condition: Tensor, a: Series, b: Series) -> Series:
    return Series(a.basis, [torch.where(condition, p, q) for p, q in zip(a.parts, b.parts)])


def cbrt(u: Series) -> Series:
    return power(u, 1 / 3, special.cbrt(u.value))


def hypot(a: Series, b: Series) -> Series:
    """s·sqrt((a/s)² + (b/s)²), s the larger of |a0| and |b0|; at the origin the gradient's
    convention (0) and no higher terms (NaN), as the symbolic path."""
    s = torch.maximum(a.value.abs(), b.value.abs())
    origin = s == 0
    s = torch.where(origin, 1.0, s)
    a, b = a.scaled(1 / s), b.scaled(1 / s)
    result = power(a * a + b * b, 0.5, torch.hypot(a.value, b.value)).scaled(s)
    if result.basis.order:
        result.parts[1] = torch.where(origin, 0.0, result.parts[1])  # the subgradient of least norm
    return _beyond(result, origin, 2)


def _beyond(u: Series, where: Tensor, degree: int) -> Series:
    """``u`` with its parts from ``degree`` on NaN at ``where``: the derivatives of a kink's
    convention (the first derivative jumps there, so the next does not exist)."""
    return Series(u.basis, [p if k < degree else torch.where(where, math.nan, p) for k, p in enumerate(u.parts)])


def absolute(u: Series) -> Series:
    return _beyond(u.scaled(torch.sign(u.value)), u.value == 0, 2)


def relu(u: Series) -> Series:
    return _beyond(u.scaled((u.value > 0).to(u.value.dtype)), u.value == 0, 2)


def mod(x: Series, y: Series) -> Series:
    """x - y·floor(x/y), the floor held at the point's own (exact) quotient."""
    return (x - y.scaled(special.floor_quotient(x.value, y.value))).with_value(torch.remainder(x.value, y.value))


def _flat(kernel: Callable[..., Tensor]) -> Callable[..., Series]:
    """The series of a piecewise-constant function: its value, every derivative 0."""
    return lambda *args: Series.constant(args[0].basis, kernel(*(a.value for a in args)))


floor, ceil = _flat(torch.floor), _flat(torch.ceil)


def sign(u: Series) -> Series:
    return _beyond(_flat(torch.sign)(u), u.value == 0, 1)  # at the jump: no derivative


def heaviside(u: Series, *h0: Series) -> Series:
    return _beyond(_flat(special.heaviside)(u, *h0), u.value == 0, 1)


def maximum(*args: Series) -> Series:
    return extremum(torch.maximum, *args)


def minimum(*args: Series) -> Series:
    return extremum(torch.minimum, *args)


def extremum(pick: Callable[[Tensor, Tensor], Tensor], *args: Series) -> Series:
    """max or min: each argument that attains it weighs 1/n, as the first derivative does."""
    best = args[0].value
    for a in args[1:]:
        best = pick(best, a.value)
    attained = [(a.value == best).to(best.dtype) for a in args]
    count = sum(attained)
    total = args[0].scaled(attained[0] / count)
    for a, w in zip(args[1:], attained[1:]):
        total = total + a.scaled(w / count)
    return total.with_value(best)


def _pair(u: Series, starts: Sequence[Tensor], r_sign: int, q_sign: int, squared: int, one: int) -> list[Series]:
    """(r, q) with r' = r_sign·r·q and q' = one + q_sign·(r² if squared == 0 else q²): the pairs
    (sec, tan), (csc, cot), (sech, tanh), (csch, coth), each from its accurate value and none
    through a division that overflows (sech at 800 is 0, and so are its derivatives)."""

    def rates(ys: list[list[Tensor]], k: int) -> list[Tensor]:
        square = q_sign * product(ys[squared], ys[squared], k, u.basis)
        return [r_sign * product(ys[0], ys[1], k, u.basis), square + one if k == 0 else square]

    return _flow(u, starts, rates)


def sec(u: Series) -> Series:  # sec' = sec·tan, tan' = 1 + tan²
    return _pair(u, [special.sec(u.value), torch.tan(u.value)], 1, 1, 1, 1)[0]


def csc(u: Series) -> Series:  # csc' = -csc·cot, cot' = -1 - cot²
    return _pair(u, [special.csc(u.value), special.cot(u.value)], -1, -1, 1, -1)[0]


def cot(u: Series) -> Series:
    return _pair(u, [special.csc(u.value), special.cot(u.value)], -1, -1, 1, -1)[1]


def sech(u: Series) -> Series:  # sech' = -sech·tanh, tanh' = sech²
    return _pair(u, [special.sech(u.value), torch.tanh(u.value)], -1, 1, 0, 0)[0]


def csch(u: Series) -> Series:  # csch' = -csch·coth, coth' = -csch²
    return _pair(u, [special.csch(u.value), special.coth(u.value)], -1, -1, 0, 0)[0]


def coth(u: Series) -> Series:
    return _pair(u, [special.csch(u.value), special.coth(u.value)], -1, -1, 0, 0)[1]


def acot(u: Series) -> Series:
    """acot' = -atan': atan's series negated, from acot's own value."""
    return (-atan(u)).with_value(special.acot(u.value))


def _asec_rate(u: Series) -> Series:
    """asec' = 1/(|u|·sqrt(u² - 1)) = (1/s²)·1/(|v|·sqrt(v² - 1/s²)), v = u/s: (u - 1)(u + 1)
    exact near ±1, nothing squared that overflows."""
    v, s = _scaled(u)
    w = v.scaled(torch.sign(u.value))  # |u|/s near u0: (|u0| - 1)(|u0| + 1) is +0, not -0, at -1
    minus = (w * w - Series.constant(u.basis, 1 / s / s)).with_value((w.value - 1 / s) * (w.value + 1 / s))
    return (power(minus, -0.5) / w).scaled(1 / s / s)


def asec(u: Series) -> Series:
    return _integral(u, special.asec(u.value), _asec_rate(u))


def acsc(u: Series) -> Series:
    return _integral(u, special.acsc(u.value), -_asec_rate(u))


def _composed(u: Series, derivatives: Sequence[Tensor]) -> Series:
    """f(u) from f's derivatives at u0: Σ f⁽ᵐ⁾(u0)/m!·(u - u0)ᵐ, by Horner's rule (u - u0 has no
    constant part, so nothing cancels that the derivatives did not already carry)."""
    shift = Series(u.basis, [torch.zeros_like(u.parts[0]), *u.parts[1:]])
    order = u.basis.order
    total = Series.constant(u.basis, derivatives[order] / float(math.factorial(order)))
    for m in reversed(range(order)):
        total = total * shift + Series.constant(u.basis, derivatives[m] / float(math.factorial(m)))
    return total


def sinc(u: Series) -> Series:
    return _composed(u, special.sinc_derivatives(u.value, u.basis.order + 1))
