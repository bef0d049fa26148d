"""Differentiation over the graph (``tape.py``) against the symbolic path it takes over from on
large formulas: the same numbers to 1e-13 of each column's scale on random compositions of every
function, finite in the same places (where the symbolic form has inf - inf = NaN at a pole, the
graph may have the infinity), the same errors; mpmath at 50 digits on a
written-out network; a tape that grows linearly with the formula; and the automatic choice."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import mpmath
import pytest
import sympy
import torch
from hypothesis import HealthCheck, assume, given, settings

from diffcli import tape, transforms
from diffcli.errors import DiffcliError
from diffcli.language import parse
from diffcli.rules import FUNCTIONS
from diffcli.transforms import KINK, evaluator, plan

from .test_compositions import POINTS, call, expressions

OPERATIONS = [
    ("hessian", {}),
    ("jacobian", {}),
    ("jvp", {"tangent": {"x": 1, "y": -0.5}}),
    ("vjp", {"cotangent": {"f": 1, "g": 2.5}}),
    ("derivative", {"wrt": ["x", "y"]}),
    ("derivative", {"wrt": ["y", "y"]}),
]


@contextlib.contextmanager
def graph(on: bool) -> Iterator[None]:
    """Every formula differentiated over its graph (or none)."""
    before = transforms.GRAPH_NODES
    transforms.GRAPH_NODES = 0 if on else 10**9
    try:
        yield
    finally:
        transforms.GRAPH_NODES = before


def computed(texts: list[str], operation: str, on: bool, points: dict[str, list[float]], **options):
    with graph(on):
        p = plan(operation, [parse(t) for t in texts], **options)
        assert (p.tape is not None) == (on and tape.suits([parse(t).expr for t in texts]))
        columns = {v: torch.tensor(points[v], dtype=torch.float64) for v in p.variables}
        like = torch.empty(len(next(iter(points.values()))), dtype=torch.float64)
        return evaluator(p)(columns, like)


def assert_same(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], context: object) -> None:
    """Equal where the function has a finite value; where it has none (log(x*y)*x at y = 0), the
    derivatives are not numbers either way (the symbolic path's simplified 1/x against the graph's
    0·inf = NaN)."""
    assert expected.keys() == got.keys()
    values = [expected[c] for c in ("value", "f", "g") if c in expected]
    where = torch.stack([v.isfinite() for v in values]).all(0)
    for column, a in expected.items():
        a, b = a[where], got[column][where]
        if column.startswith(KINK) or a.dtype == torch.bool:
            assert torch.equal(a, b), (context, column)
            continue
        finite = a.isfinite()  # NaN beside ±inf is allowed: a pole where the symbolic form had inf - inf
        assert torch.equal(finite, b.isfinite()), (context, column, a, b)
        both = a.isinf() & b.isinf()
        assert torch.equal(a[both], b[both]), (context, column, a, b)
        scale = float(a[finite].abs().max()) if finite.any() else 0.0
        worst = float((a - b)[finite].abs().max()) if finite.any() else 0.0
        assert worst <= 1e-13 * scale, (context, column, a, b)


def agree(texts: list[str], points: dict[str, list[float]]) -> None:
    for operation, options in OPERATIONS:
        if operation in ("hessian", "derivative"):
            outputs = texts[:1]
        else:
            outputs = [f"f = {texts[0]}", f"g = {texts[1] if len(texts) > 1 else texts[0] + ' * x'}"]
        try:
            expected = computed(outputs, operation, False, points, **options)
        except DiffcliError as e:
            with pytest.raises(type(e)):
                computed(outputs, operation, True, points, **options)
            continue
        assert_same(expected, computed(outputs, operation, True, points, **options), (outputs, operation))


GRID = {"x": [x for x in POINTS for _ in POINTS], "y": POINTS * len(POINTS)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions(), expressions())
def test_random_compositions_of_every_function_agree_with_the_symbolic_path(f, g):
    try:
        assume(tape.suits([parse(f).expr]))
    except DiffcliError:
        assume(False)  # not a formula (x % 0): nothing to compare
    agree([f, g], GRID)


@pytest.mark.parametrize("name", sorted(set(FUNCTIONS) - {"where"}))
def test_every_function_of_composite_arguments_agrees_with_the_symbolic_path(name):
    """Second derivatives through each function's partials (max's tie weights, heaviside's h0 are
    conditions inside the graph: they have no derivative of their own)."""
    text = f"{call(name, ['x*y', 'x + y', 'y - x'])} * x"
    for operation, options in (("hessian", {}), ("derivative", {"wrt": ["x", "y"]})):
        try:
            expected = computed([text], operation, False, GRID, **options)
        except DiffcliError as e:
            with pytest.raises(type(e)):
                computed([text], operation, True, GRID, **options)
            continue
        assert_same(expected, computed([text], operation, True, GRID, **options), (text, operation))


def test_the_accurate_forms_hold_inside_the_graph():
    """d (1 + a)**b / db = (1 + a)**b · log1p(a): not log(1 + a), which loses every digit below 1e-16."""
    point = {"a": [1e-10, 1e-17], "b": [2.0, 2.0]}
    got = computed(["(1 + a)**b"], "grad", True, point)
    assert got["grad_b"].tolist() == pytest.approx([1.00000000015e-10, 1e-17], rel=1e-15)


def test_deep_formulas_print_or_fail_cleanly():
    text = "x"
    for _ in range(40):
        text = f"sin({text})"
    with graph(True):
        p = plan("hessian", [parse(text)])
        try:
            texts, _ = transforms.symbolic(p)
        except DiffcliError as e:  # too deep or too slow to write out: a clean exit 3
            assert e.code == 3
        else:
            assert all("%" not in t for t in texts.values())


def network(width: int, seed: int = 1) -> str:
    """A 2-layer tanh network written out, inputs x1..x{width} (the benchmark's family)."""
    rng = random.Random(seed)

    def w() -> str:
        return f"{rng.uniform(-1, 1):.3f}"

    hidden = [f"tanh({'+'.join(f'{w()}*x{i}' for i in range(1, width + 1))}+{w()})" for _ in range(width)]
    outer = [f"tanh({'+'.join(f'{w()}*{h}' for h in hidden)}+{w()})" for _ in range(width)]
    return "+".join(f"{w()}*{g}" for g in outer)


def nested(depth: int) -> str:
    text = "x"
    for level in range(depth):
        text = f"sin(1.1*{text}+0.2)" if level % 2 == 0 else f"tanh(0.9*{text}-0.1)"
    return text


def test_a_written_out_network_takes_the_graph_and_matches_mpmath_at_50_digits():
    text = network(4)
    p = plan("hessian", [parse(text)])
    assert p.tape is not None  # large enough to be differentiated over its graph
    point = {f"x{i}": 0.3 * i - 0.7 for i in range(1, 5)}
    columns = {v: torch.tensor([point[v]], dtype=torch.float64) for v in p.variables}
    got = evaluator(p)(columns, torch.empty(1, dtype=torch.float64))
    mpmath.mp.dps = 50
    names = sorted(point)
    f = sympy.lambdify([sympy.Symbol(n) for n in names], sympy.sympify(text), "mpmath")  # the oracle only: our text
    at = [mpmath.mpf(point[n]) for n in names]
    for i, a in enumerate(names):
        orders = [int(k == i) for k in range(len(names))]
        assert float(got[f"grad_{a}"]) == pytest.approx(float(mpmath.diff(f, at, orders)), rel=1e-13, abs=1e-15)
        for j, b in enumerate(names):
            both = [int(k == i) + int(k == j) for k in range(len(names))]
            exact = float(mpmath.diff(f, at, both))
            assert float(got[f"hessian_{a}_{b}"]) == pytest.approx(exact, rel=1e-12, abs=1e-14)
            assert float(got[f"hessian_{a}_{b}"]) == float(got[f"hessian_{b}_{a}"])  # exactly symmetric


def test_the_tape_grows_linearly_with_depth_and_width():
    def slots(text: str, operation: str) -> int:
        with graph(True):
            p = plan(operation, [parse(text)])
        return len(p.tape.needed(q.expr for q in p.quantities))  # type: ignore[union-attr]

    for operation in ("grad", "hessian"):
        deep = [slots(nested(d), operation) for d in (5, 10, 20)]
        assert deep[2] - deep[1] <= 2.2 * (deep[1] - deep[0]), (operation, deep)  # a constant per level
    wide = [slots(network(w), "grad") for w in (4, 8)]
    assert wide[1] <= 4.5 * wide[0], wide  # width² weights: linear in the formula's size


def test_the_choice_is_automatic():
    assert plan("grad", [parse("sin(x*y) + x**2")]).tape is None  # small: the symbolic path
    chain = "+".join(f"sin(x{i}*x{i + 1})" for i in range(1, 100))
    assert plan("grad", [parse(chain)]).tape is not None
    assert plan("grad", [parse(f"where(x1 > 0, {chain}, 0)")]).tape is None  # branches: symbolic
    assert plan("value", [parse(chain)]).tape is None  # nothing to differentiate
    assert plan("derivative", [parse(nested(30))], wrt=["x"], order=4).tape is None  # Taylor mode


def test_symbolic_printing_writes_the_slots_out():
    with graph(True):
        p = plan("grad", [parse("sin(x*y)*exp(x)")])
        texts, slow = transforms.symbolic(p)
    x, y = sympy.symbols("x y", real=True)
    f = sympy.sin(x * y) * sympy.exp(x)
    assert slow == []
    assert sympy.simplify(sympy.sympify(texts["grad_x"], locals={"x": x, "y": y}) - sympy.diff(f, x)) == 0
    assert "%" not in texts["grad_y"]


def test_check_over_a_graph_compares_against_its_written_out_formula():
    from diffcli import api

    with graph(True):
        report = api.formula("sin(x*y)*exp(x)").check({"x": [0.5, -1.0], "y": [2.0, 0.25]})
    assert report and all(r["ok"] for r in report)
