"""Formulas as people write them: long flat sums, implicit products, indexed families with
sum() and prod(), keywords as variables, and the functions every textbook has."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffcli.errors import ExpressionError
from diffcli.language import MAX_DEPTH, MAX_NODES, RESERVED, check_name, parse, parse_number, symbol
from diffcli.transforms import evaluator, plan

x, y = symbol("x"), symbol("y")


def gradient(text: str, point: dict[str, float]) -> dict[str, float]:
    """diffcli's gradient of ``text`` at ``point``."""
    p = plan("grad", [parse(text)])
    columns = {v: torch.tensor([point[v]], dtype=torch.float64) for v in p.variables}
    results = evaluator(p)(columns, torch.empty(1, dtype=torch.float64))
    return {v: float(results[f"grad_{v}"][0]) for v in p.wrt}


def sympy_gradient(expr: sympy.Expr, point: dict[str, float]) -> dict[str, float]:
    """The oracle: SymPy's own derivative, evaluated at 30 digits."""
    at = {symbol(n): sympy.Float(v, 30) for n, v in point.items()}
    return {s.name: float(sympy.diff(expr, s).evalf(30, subs=at)) for s in expr.free_symbols}


def rosenbrock(n: int) -> str:
    return "+".join(f"100*(x{i + 1}-x{i}^2)^2+(1-x{i})^2" for i in range(1, n))


def test_a_flat_sum_is_one_level_however_long():
    terms = [f"x{i}" for i in range(70)]
    parsed = parse("+".join(terms))
    assert parsed.expr == sympy.Add(*(symbol(t) for t in terms))
    assert set(gradient("+".join(terms), dict.fromkeys(terms, 0.5)).values()) == {1.0}
    long = parse(" - ".join(f"x{i}" for i in range(5000))).expr
    assert long == symbol("x0") - sympy.Add(*(symbol(f"x{i}") for i in range(1, 5000)))
    assert parse("/".join(["x"] * 3000)).expr == x ** (-2998)  # a chain of divisions too


def test_nesting_still_counts_where_it_is_nesting():
    with pytest.raises(ExpressionError, match="nested more than"):
        parse("sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nested more than"):
        parse("x" + "**(x" * MAX_DEPTH + ")" * MAX_DEPTH)  # powers nest


def test_the_written_out_rosenbrock_matches_sympy():
    text = rosenbrock(40)
    assert len(text) > 1000
    rng = np.random.default_rng(7)
    point = {f"x{i}": float(v) for i, v in enumerate(rng.uniform(-2, 2, 41)) if i}
    got, want = gradient(text, point), sympy_gradient(parse(text).expr, point)
    assert got.keys() == want.keys() and len(got) == 40
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-14, abs=1e-12), name


def test_sum_over_an_index_is_the_written_out_sum():
    by_sum = parse("sum(100*(x[i+1]-x[i]^2)^2 + (1-x[i])^2, i, 1, 39)").expr
    written = parse(rosenbrock(40)).expr.subs({symbol(f"x{i}"): symbol(f"x_{i}") for i in range(1, 41)})
    assert by_sum == written
    assert parse("prod(x[k], k, 1, 3)").expr == symbol("x_1") * symbol("x_2") * symbol("x_3")
    assert parse("sum(i*x[i]^i, i, 0, 2)").expr == symbol("x_1") + 2 * symbol("x_2") ** 2  # the index as a number
    assert parse("sum(sum(x[i]*y[j], j, 1, i), i, 1, 2)").expr == sum(
        symbol(f"x_{i}") * symbol(f"y_{j}") for i in (1, 2) for j in range(1, i + 1)
    )
    assert parse("sum(x[i], i, 3, 2)").expr == 0 and parse("prod(x[i], i, 3, 2)").expr == 1  # empty ranges
    assert parse("x[2] x[10]").expr == symbol("x_2") * symbol("x_10")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x[i]", "'i' is not the index of a sum() or prod() around it"),
        ("x[-1]", "an index must be 0 or more"),
        ("x[1.5]", "an index must be a whole number"),
        ("x[1:2]", "an index is one whole number"),
        ("sin[1]", "only a variable can be indexed"),
        ("sum(x[i], i, 1)", "sum() takes 4 arguments"),
        ("sum(x[i], 2, 1, 3)", "the index's name"),
        ("sum(x[i], i, 1, y)", "must be a whole number"),
        ("sum(sum(x[i], i, 1, 2), i, 1, 2)", "already the index"),
        ("sum(x[i], i, 1, 10**9)", f"more than {MAX_NODES:,} parts"),
        ("sum", "'sum' is a function"),
    ],
)
def test_indices_and_reductions_refuse_what_they_cannot_expand(text, message):
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x sin(x)", x * sympy.sin(x)),
        ("(x+1)(x-1)", (x + 1) * (x - 1)),
        ("2 x y", 2 * x * y),
        ("x(x+1)", x * (x + 1)),
        ("x (y)", x * y),
        ("(x+1)2", 2 * (x + 1)),
        ("2pi x", 2 * sympy.pi * x),
        ("e(x+1)", sympy.E * (x + 1)),
        ("1/2x", x / 2),  # the reading of Mathematica and SymPy: implicit products bind like *
        ("x if x > 0 else y", sympy.Piecewise((x, x > 0), (y, True))),  # keywords are not factors
        ("lambda^2 + for", symbol("lambda") ** 2 + symbol("for")),  # keywords that are not operators: variables
        ("2lambda", 2 * symbol("lambda")),
    ],
)
def test_products_written_without_a_star(text, expected):
    assert parse(text).expr == expected


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("1/2x", "/(2*x)"),
        ("(x+1)/2x", "/(2*x)"),
        ("x^2/2x", "/(2*x)"),
        ("1/x[1]x[2]", "/(x[1]*x[2])"),
        ("1/sin(x)cos(x)", "/(sin(x)*cos(x))"),
        ("exp(x)/2 x[1]", "/(2*x[1])"),
        ("1/2(x+1)", "/(2*(x+1))"),
    ],
)
def test_a_division_before_an_implicit_product_says_how_it_reads(text, written):
    (note,) = parse(text).notes
    divisor = written[2 : written.index("*")]
    assert f"divides by {divisor} only" in note and f"write {written} to divide by the product" in note


def test_no_note_where_nothing_is_ambiguous():
    for text in ("1/(2x)", "x/2", "2x/3", "n(n+1)/2", "x sin(x)", "f(x)"):
        assert parse(text).notes == (), text


def test_a_misspelt_function_is_a_product_with_a_note():
    (note,) = parse("sinn(x)").notes
    assert parse("sinn(x)").expr == symbol("sinn") * x and "is it sin(...)?" in note
    assert parse("f(x)").expr == symbol("f") * x and parse("n(n+1)").expr == symbol("n") * (symbol("n") + 1)
    with pytest.raises(ExpressionError, match="ambiguous"):
        parse_number("1/2pi")  # a value has no stderr to explain the reading on


OPERAND = st.one_of(
    st.sampled_from(["x", "y", "lambda", "x[2]", "sin(x)", "(x+1)", "(y-2)", "pi", "e"]),
    st.integers(1, 99).map(str),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPERAND, min_size=2, max_size=5))
def test_juxtaposition_is_multiplication(operands):
    """``a b c`` is ``(a)*(b)*(c)``, except that a number only follows a bracket (``2 3`` and ``x 2``
    stay errors: typos for 23 and x^2 more likely than products)."""
    if any(b.isdigit() and not a.endswith((")", "]")) for a, b in zip(operands, operands[1:])):
        with pytest.raises(ExpressionError):
            parse(" ".join(operands))
        return
    assert parse(" ".join(operands)).expr == parse("*".join(f"({o})" for o in operands)).expr


def test_reserved_names_are_the_languages_own():
    for name in ("sum", "prod", "sin", "pi", "and", "if", "True"):
        assert name in RESERVED
        with pytest.raises(ExpressionError, match="is reserved"):
            check_name(name, "output name")
    for name in ("lambda", "for", "class", "x_1"):
        check_name(name, "output name")  # no error
    assert parse("lambda = 2x").name == "lambda"


@pytest.mark.parametrize(
    ("name", "identity"),
    [
        ("cot", lambda v: math.cos(v) / math.sin(v)),
        ("sec", lambda v: 1 / math.cos(v)),
        ("csc", lambda v: 1 / math.sin(v)),
        ("coth", lambda v: math.cosh(v) / math.sinh(v)),
        ("sech", lambda v: 1 / math.cosh(v)),
        ("csch", lambda v: 1 / math.sinh(v)),
        ("acot", lambda v: math.atan(1 / v)),
        ("asec", lambda v: math.acos(1 / v)),
        ("acsc", lambda v: math.asin(1 / v)),
        ("sinc", lambda v: math.sin(v) / v),
    ],
)
def test_textbook_functions_have_their_textbook_values(name, identity):
    for v in (1.3, -2.7, 4.1):
        p = plan("value", [parse(f"{name}(x)")])
        like = torch.empty(1, dtype=torch.float64)
        got = float(evaluator(p)({"x": torch.tensor([v], dtype=torch.float64)}, like)["value"][0])
        assert got == pytest.approx(identity(v), rel=1e-14)


def test_the_edges_of_the_new_functions():
    def at(text: str, v: float, op: str = "hessian") -> dict[str, float]:
        p = plan(op, [parse(text)])
        results = evaluator(p)({"x": torch.tensor([v], dtype=torch.float64)}, torch.empty(1, dtype=torch.float64))
        return {k: float(t[0]) for k, t in results.items() if not k.startswith("kink")}

    assert at("sinc(x)", 0.0) == {"value": 1.0, "grad_x": 0.0, "hessian_x_x": pytest.approx(-1 / 3, rel=1e-15)}
    tiny = at("sinc(x)", 1e-9)
    assert tiny["grad_x"] == pytest.approx(-1e-9 / 3, rel=1e-14)  # no cancellation: sin(x)/x would lose all
    assert at("acot(x)", 0.0)["value"] == pytest.approx(math.pi / 2)  # the principal value, as SymPy's
    assert at("sech(x)", 800.0) == {"value": 0.0, "grad_x": 0.0, "hessian_x_x": 0.0}  # no inf/inf
    assert at("coth(x)", 30.0)["grad_x"] == pytest.approx(-4 * math.exp(-60), rel=1e-13)  # not 1 - coth² = 0
    assert math.isnan(at("asec(x)", 0.5)["value"])  # outside the domain
    derivative = plan("derivative", [parse("sinc(x)")], wrt=["x"], order=6)  # Taylor mode
    value = evaluator(derivative)(
        {"x": torch.tensor([0.0, 0.3], dtype=torch.float64)}, torch.empty(2, dtype=torch.float64)
    )["derivative"]
    want = [
        sympy.diff(sympy.sin(x) / x, x, 6).limit(x, 0),
        sympy.diff(sympy.sin(x) / x, x, 6).subs(x, sympy.Rational(3, 10)).evalf(30),
    ]
    assert value.tolist() == pytest.approx([float(w) for w in want], rel=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [("1e400", "overflows a double"), ("exp(1000)", "overflows a double"), ("nan", "is not a number")],
)
def test_a_number_that_is_not_what_was_written_is_refused(text, message):
    with pytest.raises(ExpressionError, match=message):
        parse_number(text)
    assert parse_number("-inf") == -math.inf and parse_number("1e308") == 1e308


@pytest.mark.parametrize("x0", [0.0, 1e-9, 0.3, 1.0, 2.0, 3.0, 5.0, -7.5, 30.0, 1e10])
@pytest.mark.parametrize("order", [3, 7, 20, 40])
def test_sinc_derivatives_of_every_order_match_mpmath(x0, order):
    """Neither sin(x)/x's cancellation near 0 nor the series division's instability for |x| < order."""
    import mpmath

    p = plan("derivative", [parse("sinc(x)")], wrt=["x"], order=order)
    like = torch.empty(1, dtype=torch.float64)
    got = float(evaluator(p)({"x": torch.tensor([x0], dtype=torch.float64)}, like)["derivative"][0])
    with mpmath.workdps(60):
        want = mpmath.diff(mpmath.sinc, mpmath.mpf(x0), order)
    assert abs(got - want) <= 1e-13 * abs(want) + 1e-30, (got, float(want))


@pytest.mark.parametrize("x0", [1 + 2**-52, 1.0000001, -1.0000001, -1.0, 1.0, 3.0, -1e200, 1e300])
def test_asec_and_acsc_keep_their_digits_next_to_one_and_far_out(x0):
    import mpmath

    for name, reference in (("asec", mpmath.asec), ("acsc", mpmath.acsc)):
        p = plan("value", [parse(f"{name}(x)")])
        like = torch.empty(1, dtype=torch.float64)
        got = float(evaluator(p)({"x": torch.tensor([x0], dtype=torch.float64)}, like)["value"][0])
        with mpmath.workdps(60):
            want = reference(mpmath.mpf(x0))
        assert abs(got - want) <= 2e-16 * abs(want), (name, x0, got, float(want))


def test_what_the_review_found_in_the_parser():
    with pytest.raises(ExpressionError, match="nested more than"):
        parse("^".join(["x"] * 3000))  # Python's own parser runs out: an expression error, not an internal one
    with pytest.raises(ExpressionError, match="may not start with an underscore"):
        parse("_keyword_x + x")  # the name given to keyword variables cannot be written
    y = symbol("y")
    assert parse("abs(exp(acsc(y)))").expr.func.__name__ == "Abs"  # not exp(re(acsc(y))), which has no lowering
    assert gradient("abs(exp(sqrt(y)))", {"y": 4.0}) == {"y": pytest.approx(math.exp(2) / 4, rel=1e-15)}
    assert parse("y - x_0").indexed == frozenset() and parse("x[0] + x[2]").indexed == {"x_0", "x_2"}
    assert y in parse("abs(exp(acsc(y)))").expr.free_symbols


def test_what_the_second_review_found():
    assert set(gradient("asec(x) + 0*x", {"x": -1.0}).values()) == {math.inf}  # asec rises to -1: +inf, not -inf
    assert set(gradient("acsc(x) + 0*x", {"x": -1.0}).values()) == {-math.inf}
    p = plan("hessian", [parse("sinc(x)")])
    at_infinity = evaluator(p)({"x": torch.tensor([math.inf, -math.inf], dtype=torch.float64)}, torch.empty(2))
    assert all(at_infinity[k].tolist() == [0.0, 0.0] for k in ("value", "grad_x", "hessian_x_x"))  # the limits
