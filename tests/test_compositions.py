"""Every formula the language accepts lowers and evaluates: every function composed with every
other (kinks and conditionals included) gives its value, gradient, Hessian and a third
derivative (Taylor mode), or a clear usage/expression error — never an internal error. And
random ``run`` requests never answer with code 1."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffcli.errors import DiffcliError
from diffcli.language import parse
from diffcli.rules import FUNCTIONS
from diffcli.session import Session
from diffcli.transforms import evaluator, plan

ARITY = {name: f.arity[0] for name, f in FUNCTIONS.items()}
POINTS = [-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]


def call(name: str, args: list[str]) -> str:
    """``name`` applied to ``args``, padded with constants to its arity."""
    fill = {"where": ["x > 0.2", args[0], "-1"], "clamp": [args[0], "-1", "1"], "heaviside": [args[0], "0.5"]}
    if name in fill:
        return f"{name}({', '.join(fill[name])})"
    return f"{name}({', '.join((args + ['y', '0.7'])[: ARITY[name]])})"


def evaluates(text: str) -> None:
    """Value, gradient, Hessian and d³/dx³ at points in, on and outside the domains."""
    columns = {v: torch.tensor(POINTS, dtype=torch.float64) for v in ("x", "y")}
    like = torch.empty(len(POINTS), dtype=torch.float64)
    try:
        parsed = [parse(text)]
        for operation, options in (("hessian", {}), ("derivative", {"wrt": ["x", "x", "x"]})):
            if operation == "derivative" and "x" not in str(parsed[0].expr):
                continue
            results = evaluator(plan(operation, parsed, **options))(columns, like)
            assert all(r.shape == like.shape for r in results.values())
    except DiffcliError as e:
        assert e.code in (2, 3), (text, e)


@pytest.mark.slow
@pytest.mark.parametrize("outer", sorted(FUNCTIONS))
def test_every_function_of_every_function(outer):
    for inner in sorted(FUNCTIONS):
        evaluates(call(outer, [call(inner, ["x"])]))


def expressions() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["x", "y", "2", "0", "-1.5", "pi", "(x > y)", "(y >= 1)"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(call, st.sampled_from(sorted(FUNCTIONS)), st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(list("+-*/%") + ["**"]), inner),
            st.builds(lambda a, c, b: f"({a}) if ({c}) else ({b})", inner, inner, inner),
        )

    return st.recursive(leaves, extend, max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions())
def test_random_compositions_never_fail_internally(text):
    evaluates(text)


def random_request(rng: random.Random) -> dict:
    """A request as a script might send it: mostly well formed, now and then not."""
    names = sorted(FUNCTIONS)
    inner = call(rng.choice(names), [rng.choice(["x", "y", "x*y", "x - 1", "2*y"])])
    text = call(rng.choice(names), [inner, rng.choice(["y", "x", "0.5"])])
    op = rng.choice(["value", "grad", "hessian", "jacobian", "jvp", "vjp", "derivative", "taylor", "check", "scan"])
    value = lambda: rng.choice([0.0, 1.0, -1.0, 0.5, 1e-300, -1e300, 20.0, 1e160, math.pi, rng.uniform(-5, 5)])  # noqa: E731
    request: dict = {"id": rng.randrange(10**6), "op": op, "expr": text, "at": {"x": value(), "y": value()}}
    if op == "jvp":
        request["tangent"] = {"x": 1, "y": 0.5}
    if op == "vjp":
        request["cotangent"] = {"f1": 1}
    if op == "derivative":
        request["wrt"] = rng.choice(["x", "y", "x,x", "x,y,y", "x,x,x,y"])
    if op in ("taylor", "check"):
        request["order"] = rng.randrange(0, 8) if op == "taylor" else rng.choice([1, 2, 3])
    if op == "scan":
        request.update(expr=f"x = {text}", init={"x": value()}, steps=rng.choice([0, 1, 5, -1]), wrt="x0")
    if rng.random() < 0.3:
        request["aux"] = {"a": call(rng.choice(names), ["x"])}
    if rng.random() < 0.05:  # points of every shape, some far too many
        del request["at"]
        request["grid"] = rng.choice(["x=0:1:3", "y=-1:1:2", "x=0:1:30000000", "x=0:1:10000000000000000000", "x=1:1"])
        if rng.random() < 0.5:
            request["at"] = rng.choice([[{"y": 1}, {"y": 2}], [{"x": 1}, {"y": 2}], {"value": 1}, {"y": "1"}])
    if rng.random() < 0.05:  # malformed fields
        key = rng.choice(["order", "dtype", "precision", "aux", "wrt", "at", "tangent", "cotangent", "expr", "op"])
        request[key] = rng.choice(["2", 2.5, [1], True, {"kink:f1": "x"}, {"value": "x"}, None, -3, 10**30, ""])
    if rng.random() < 0.2:
        request["dtype"] = "float32"
    return request


@pytest.mark.slow
def test_random_run_requests_never_answer_with_an_internal_error():
    count = int(os.environ.get("DIFFCLI_FUZZ_REQUESTS", "2000"))
    rng, session = random.Random(int(os.environ.get("DIFFCLI_FUZZ_SEED", "9"))), Session()
    for _ in range(count):
        request = random_request(rng)
        answer = json.loads(session.answer(json.dumps(request).encode()))
        assert answer.get("error", {}).get("code") != 1, (request, answer)
