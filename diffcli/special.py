"""Torch kernels of the functions and derivatives that torch lacks or computes with lost digits.

Each is element-wise and works on any device and dtype; ``rules.py`` names them. Among them:
tanh' as sech² from exp(-2|x|) (1 - tanh² is 0 past x = 19), a gamma function and a polygamma
family good to a few ulp (``exp(lgamma)`` loses |lgamma(x)| ulp; torch's trigamma has 9 digits),
the exact floor quotient that ``x % y`` differentiates into, and sin(πx), cos(πx) without the
rounding of π·x.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

Tensor = torch.Tensor

STIRLING_TERMS = 10  # Bernoulli terms of the asymptotic series, enough at x >= 10 + n for float64


@functools.cache
def _bernoulli(count: int) -> tuple[float, ...]:
    """B_2, B_4, …, B_2count as floats."""
    from sympy import bernoulli

    return tuple(float(bernoulli(2 * k)) for k in range(1, count + 1))


def sinpi(x: Tensor) -> Tensor:
    """sin(πx), reduced to |r| <= 1/2 exactly first (x - round(x) is exact)."""
    n = torch.round(x)
    sign = 1 - 2 * torch.remainder(n, 2)
    return sign * torch.sin(math.pi * (x - n))


def cospi(x: Tensor) -> Tensor:
    """cos(πx) as sin(π(1/2 - |r|)): no cancellation next to its zeros at the half-integers."""
    n = torch.round(x)
    sign = 1 - 2 * torch.remainder(n, 2)
    return sign * torch.sin(math.pi * (0.5 - (x - n).abs()))


def sech2(x: Tensor) -> Tensor:
    """sech²(x) = 1 - tanh²(x) = 4e/(1+e)² with e = exp(-2|x|): no cancellation, no overflow."""
    e = torch.exp(-2 * x.abs())
    return 4 * e / torch.square(1 + e)


def dsigmoid(x: Tensor) -> Tensor:
    """sigmoid'(x) = sigmoid(x)·sigmoid(-x): 1 - sigmoid(x) is 0 past x = 37."""
    return torch.sigmoid(x) * torch.sigmoid(-x)


def gauss(x: Tensor) -> Tensor:
    """exp(-x²) with x² split exactly into hi + lo (Dekker): the rounding of x² alone would cost
    x²·eps relative (6e-14 at x = 24), since exp turns an absolute error into a relative one."""
    split = 4097.0 if x.dtype == torch.float32 else 134217729.0  # 2^(mantissa/2) + 1
    small = x.abs() < 40  # beyond, exp(-x²) underflows to 0 (and x² may overflow)
    x = torch.where(small, x, 0.0)
    t = split * x
    xh = t - (t - x)
    xl = x - xh
    hi = x * x
    lo = ((xh * xh - hi) + 2 * xh * xl) + xl * xl
    return torch.where(small, torch.exp(-hi) * (1 - lo), 0.0)


def floor_quotient(x: Tensor, y: Tensor) -> Tensor:
    """floor(x / y) as Python's and torch's ``%`` see it: x = y·q + x % y exactly.

    The rounded x / y can be one off (7.5 / 0.1 rounds to 75, but 7.5 % 0.1 = 0.0999… = 7.5 - 74·0.1).
    """
    r = torch.fmod(x, y)  # exact
    q = torch.round((x - r) / y)  # (x - r) / y is within rounding of an integer
    return torch.where((r != 0) & ((r < 0) != (y < 0)), q - 1, q)


def gamma(x: Tensor) -> Tensor:
    """Γ(x) to a few ulp: Stirling's series at x >= 10 (x^x split in halves so it does not
    overflow before Γ does), the recurrence below it, the reflection formula below 0."""
    reflect = x < 0.5
    z = torch.where(reflect, 1 - x, x)
    shift = torch.clamp(torch.ceil(10 - z), min=0)
    divisor = torch.ones_like(z)
    for k in range(10):
        divisor = torch.where(k < shift, divisor * (z + k), divisor)
    w = z + shift
    correction = sum(b / (2 * k * (2 * k - 1) * w ** (2 * k - 1)) for k, b in enumerate(_bernoulli(8), start=1))
    half = torch.pow(w, w / 2)
    stirling = torch.sqrt(2 * math.pi / w) * (half * torch.exp(-w)) * half * torch.exp(correction)
    positive = torch.where(w > 172, math.inf, stirling / divisor)  # Γ(172) overflows float64
    return torch.where(reflect, math.pi / (sinpi(x) * positive), positive)


@functools.cache
def _cot_derivative(n: int) -> tuple[int, ...]:
    """Coefficients (lowest power first) of P_n with d^n/dz^n cot z = P_n(cot z)."""
    p = [0, 1]  # P_0(c) = c
    for _ in range(n):
        derivative = [k * p[k] for k in range(1, len(p))] or [0]
        # P_{k+1}(c) = -(1 + c²) P_k'(c)
        nxt = [0] * (len(derivative) + 2)
        for k, a in enumerate(derivative):
            nxt[k] -= a
            nxt[k + 2] -= a
        p = nxt
    return tuple(p)


@functools.cache
def _digamma_root_series(terms: int = 24) -> tuple[float, float, tuple[float, ...]]:
    """ψ's positive root x0 as hi + lo, and the Taylor coefficients ψ^(k)(x0)/k! about it."""
    import mpmath

    with mpmath.workdps(40):
        root = mpmath.findroot(mpmath.digamma, 1.4616321449683623)
        hi = float(root)
        lo = float(root - hi)
        coefficients = tuple(float(mpmath.polygamma(k, root) / mpmath.factorial(k)) for k in range(1, terms + 1))
    return hi, lo, coefficients


def polygamma(n: int | Tensor, x: Tensor) -> Tensor:
    """ψ^(n)(x), the n-th derivative of digamma, for any real x, to a few ulp for n = 0, 1.

    x >= 10 + n: the asymptotic series; below: the recurrence ψ^(n)(x) = ψ^(n)(x+1) - (-1)^n n!/x^(n+1)
    (for n >= 1 every term has the same sign, so nothing cancels); x < 0: the reflection formula;
    digamma next to its positive root: its Taylor series there.
    """
    n = int(n)
    reflect = x < 0
    z = torch.where(reflect, 1 - x, x)
    threshold = 10 + n
    shift = torch.clamp(torch.ceil(threshold - z), min=0)
    w = z + shift
    if n == 0:
        series = torch.log(w) - 0.5 / w
        series = series - sum(b / (2 * k * w ** (2 * k)) for k, b in enumerate(_bernoulli(STIRLING_TERMS), start=1))
    else:  # factorials as floats: a tensor cannot take an int past 2^63
        terms = float(math.factorial(n - 1)) / w**n + float(math.factorial(n)) / (2 * w ** (n + 1))
        for k, b in enumerate(_bernoulli(STIRLING_TERMS), start=1):
            terms = terms + b * (math.factorial(2 * k + n - 1) / math.factorial(2 * k)) / w ** (2 * k + n)
        series = terms if n % 2 else -terms
    step = (-1) ** n * float(math.factorial(n))
    for k in reversed(range(threshold + 1)):  # the smallest terms first
        series = torch.where(k < shift, series - step / (z + k) ** (n + 1), series)
    if n == 0:
        hi, lo, coefficients = _digamma_root_series()
        t = (z - hi) - lo
        near = sum(c * t**k for k, c in enumerate(coefficients, start=1))
        series = torch.where(t.abs() < 0.25, near, series)
    if not bool(reflect.any()):
        return series
    cot = cospi(x) / sinpi(x)
    polynomial = sum(float(c) * cot**k for k, c in enumerate(_cot_derivative(n)) if c)  # c: past 2^63
    reflected = (-1) ** n * series - math.pi ** (n + 1) * polynomial
    return torch.where(reflect, reflected, series)


def fold(op: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., Tensor]:
    """``op`` over any number of arguments, left to right."""
    return lambda *args: functools.reduce(op, args)


maximum, minimum = fold(torch.maximum), fold(torch.minimum)


def cbrt(x: Tensor) -> Tensor:
    """Real cube root, refined by one Newton step to correct the rounding of 1/3."""
    y = torch.sign(x) * torch.abs(x) ** (1 / 3)
    refined = y - (y * y * y - x) / (3 * y * y)
    return torch.where(torch.isfinite(refined) & (y != 0), refined, y)


def heaviside(x: Tensor, h0: Tensor | float = 0.5) -> Tensor:
    return torch.heaviside(x, torch.as_tensor(h0, dtype=x.dtype, device=x.device))


def softplus(x: Tensor) -> Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


def dirac(x: Tensor) -> Tensor:
    """The derivative of a jump (sign, heaviside): 0 away from it, NaN at it."""
    return torch.where(x == 0, math.nan, 0.0).to(x.dtype)


def derf(x: Tensor) -> Tensor:
    return 2 / math.sqrt(math.pi) * gauss(x)


def _hypot1(u: Tensor) -> Tensor:
    return torch.hypot(torch.ones_like(u), u)


def datan(u: Tensor) -> Tensor:
    """1 / (1 + u²), divided by hypot(1, u) twice: u² would overflow past 1e154."""
    h = _hypot1(u)
    return 1 / h / h


def d2atan(u: Tensor) -> Tensor:
    h = _hypot1(u)
    return -2 * (u / h) / h / h / h


def datanh(u: Tensor) -> Tensor:
    return 1 / ((1 - u) * (1 + u))


def dasinh(u: Tensor) -> Tensor:
    return 1 / _hypot1(u)


def d2asinh(u: Tensor) -> Tensor:
    h = _hypot1(u)
    return -(u / h) / h / h


def dacosh(u: Tensor) -> Tensor:
    return 1 / torch.sqrt(u - 1) / torch.sqrt(u + 1)


def d2acosh(u: Tensor) -> Tensor:
    a = dacosh(u)
    return -(u * a) * a * a


def atan2_d(a: Tensor, b: Tensor) -> Tensor:
    """d atan2(a, b) / da = b / (a² + b²), divided by hypot(a, b) twice."""
    h = torch.hypot(a, b)
    return (b / h) / h


def atan2_daa(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return -2 * (a / h) * (b / h) / h / h


def atan2_dab(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return ((a - b) / h) * ((a + b) / h) / h / h


def hypot_d(a: Tensor, b: Tensor) -> Tensor:
    """a / hypot(a, b); at the origin 0, the subgradient of least norm (JAX's choice too)."""
    h = torch.hypot(a, b)
    return torch.where(h == 0, 0.0, a / h)


def hypot_daa(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return torch.square(b / h) / h


def hypot_dab(a: Tensor, b: Tensor) -> Tensor:
    h = torch.hypot(a, b)
    return -(a / h) * (b / h) / h


def cot(x: Tensor) -> Tensor:
    return 1 / torch.tan(x)


def sec(x: Tensor) -> Tensor:
    return 1 / torch.cos(x)


def csc(x: Tensor) -> Tensor:
    return 1 / torch.sin(x)


def coth(x: Tensor) -> Tensor:
    return 1 / torch.tanh(x)


def sech(x: Tensor) -> Tensor:
    return 1 / torch.cosh(x)  # 0 where cosh overflows, as sech underflows there


def csch(x: Tensor) -> Tensor:
    return 1 / torch.sinh(x)


def acot(x: Tensor) -> Tensor:
    """The principal value, in (-pi/2, pi/2]: pi/2 at 0 (and -0), as SymPy and mpmath."""
    return torch.where(x == 0, math.pi / 2, torch.atan(1 / x))


def _root_of_square_minus_one(x: Tensor) -> Tensor:
    """sqrt(x² - 1): as sqrt((x - 1)(x + 1)), exact near ±1 (where x² - 1 and 1/x would round);
    past 2^500 as |x|·sqrt((1 - 1/x)(1 + 1/x)), which does not overflow; never -0."""
    a = x.abs()
    near = torch.sqrt((a - 1) * (a + 1))
    far = a * torch.sqrt((1 - 1 / a) * (1 + 1 / a))
    return torch.where(a > 2.0**500, far, near)


def asec(x: Tensor) -> Tensor:
    """acos(1/x) as atan2(sqrt(x² - 1), sign x): no digits lost next to ±1."""
    return torch.atan2(_root_of_square_minus_one(x), torch.sign(x))


def acsc(x: Tensor) -> Tensor:
    """asin(1/x) as atan2(sign x, sqrt(x² - 1))."""
    return torch.atan2(torch.sign(x), _root_of_square_minus_one(x))


def sinc(x: Tensor) -> Tensor:
    """sin(x)/x: 1 at 0, and its limit 0 at ±inf."""
    quotient = torch.sin(x) / torch.where(x == 0, 1.0, x)
    return torch.where(x == 0, 1.0, torch.where(x.isinf(), 0.0, quotient))


def sinc_derivatives(x: Tensor, count: int) -> list[Tensor]:
    """sinc and its first ``count - 1`` derivatives. From x·sinc = sin, n-fold:
    x·s⁽ⁿ⁾ + n·s⁽ⁿ⁻¹⁾ = sin⁽ⁿ⁾. Upwards (s⁽ⁿ⁾ from s⁽ⁿ⁻¹⁾) the error grows by n/|x| a step, so it
    serves n <= |x|; downwards (s⁽ⁿ⁻¹⁾ from s⁽ⁿ⁾, Miller's way, from 0 far above, whose error
    |s⁽ᴺ⁾| <= 1/(N+1) shrinks by |x|/n a step) it serves n > |x|, and x = 0 exactly."""
    w = torch.where(x == 0, 1.0, x)
    sin, cos = torch.sin(x), torch.cos(x)
    turns = (sin, cos, -sin, -cos)  # sin⁽ᵐ⁾ = sin(x + m·pi/2)
    up = [sinc(x)]
    for n in range(1, count):
        up.append((turns[n % 4] - n * up[-1]) / w)
    top = 2 * count + 40
    down = [torch.zeros_like(x)]  # s⁽ᵗᵒᵖ⁾ taken as 0
    for n in range(top, 0, -1):
        down.append((turns[n % 4] - x * down[-1]) / n)  # s⁽ⁿ⁻¹⁾
    down.reverse()  # down[n] = s⁽ⁿ⁾
    return [torch.where(x.isinf(), 0.0, torch.where(n <= x.abs(), up[n], down[n])) for n in range(count)]


def sinc_d(n: int | Tensor, x: Tensor) -> Tensor:
    """The n-th derivative of sinc(x) = sin(x)/x."""
    return sinc_derivatives(x, int(n) + 1)[int(n)]
