"""The Python API: the CLI's numbers for every kind of data, the same kind back, errors naming
parameters, and no setting of the process changed."""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import sys
import threading
import warnings

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import sympy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import diffcli
from diffcli.cli import app

pd = pytest.importorskip("pandas", reason="pandas is in the test extra")
runner = CliRunner()
X, Y = [0.5, -1.25, 3.0, 1e-3], [2.0, 0.75, -4.0, 1e3]
POINTS = {"x": X, "y": Y}


def cli_csv(*args: str) -> pl.DataFrame:
    """What ``diffcli ARGS`` writes as CSV for the points, read back (17 digits: every bit)."""
    source = pl.DataFrame(POINTS).write_csv()
    result = runner.invoke(app, [*args, "--input", "-", "--format", "csv"], input=source)
    assert result.exit_code == 0, result.output
    return pl.read_csv(io.StringIO(result.stdout))


KINDS = {
    "dict of lists": lambda: dict(POINTS),
    "dict of numpy": lambda: {k: np.array(v) for k, v in POINTS.items()},
    "dict of tensors": lambda: {k: torch.tensor(v, dtype=torch.float64) for k, v in POINTS.items()},
    "polars": lambda: pl.DataFrame(POINTS),
    "pandas": lambda: pd.DataFrame(POINTS),
    "pyarrow table": lambda: pa.table(POINTS),
    "pyarrow batch": lambda: pa.RecordBatch.from_pydict(POINTS),
}
CALLS = [
    (lambda f, d: f.value(d), ["value"], {}),
    (lambda f, d: f.grad(d), ["grad"], {}),
    (lambda f, d: f.hessian(d, wrt=["x"]), ["hessian", "--wrt", "x"], {}),
    (lambda f, d: f.jvp(d, tangent={"x": 1, "y": 2}), ["jvp", "--tangent", "x=1,y=2"], {}),
    (lambda f, d: f.vjp(d, cotangent={"f1": 3}), ["vjp", "--cotangent", "f1=3"], {}),
    (lambda f, d: f.derivative(d, wrt=["x", "x", "y"]), ["derivative", "--wrt", "x,x,y"], {}),
    (lambda f, d: f.taylor(d, order=2), ["taylor", "--order", "2"], {}),
]


def columns(result) -> dict[str, np.ndarray]:  # noqa: ANN001 - any kind the API returns
    """A result of any kind as numpy columns."""
    if isinstance(result, dict):
        return {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in result.items()}
    if isinstance(result, (pa.Table, pa.RecordBatch)):
        return {n: result.column(n).to_numpy() for n in result.schema.names}
    return {str(c): np.asarray(result[c]) for c in result.columns}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", range(len(CALLS)))
def test_every_kind_of_data_gives_the_cli_numbers_bit_for_bit(kind, call):
    run, args, _ = CALLS[call]
    f = diffcli.formula("x**2*sin(y)", aux={"cube": "x**3"})
    expected = cli_csv(args[0], "x**2*sin(y)", *args[1:], "--aux", "cube=x**3")
    got = columns(run(f, KINDS[kind]()))
    assert list(got) == expected.columns
    for name in expected.columns:
        assert got[name].tolist() == expected[name].to_list(), name


@pytest.mark.parametrize("kind", KINDS)
def test_the_result_is_the_kind_that_came_in(kind):
    data = KINDS[kind]()
    result = diffcli.formula("x*y").grad(data)
    if isinstance(data, dict):
        assert isinstance(result, dict)
        expected = torch.Tensor if kind == "dict of tensors" else np.ndarray
        assert all(isinstance(v, expected) for v in result.values())
    else:
        assert type(result) is type(data)


def test_the_design_example_and_several_expressions():
    f = diffcli.formula("x**2*sin(y)", aux={"cube": "x**3"})
    assert f.variables == ("x", "y")
    got = f.grad({"x": 1.0, "y": 2.0})
    assert list(got) == ["x", "y", "value", "grad_x", "grad_y", "cube"]
    assert got["grad_y"][0] == pytest.approx(float(sympy.cos(2).evalf(20)), rel=2**-52)
    g = diffcli.formula(["u=x*y", "v=x+y"])
    jac = g.jacobian({"x": [2.0], "y": [3.0]})
    assert {k: v.tolist() for k, v in jac.items() if k.startswith("jacobian")} == {
        "jacobian_u_x": [3.0], "jacobian_u_y": [2.0], "jacobian_v_x": [1.0], "jacobian_v_y": [1.0],
    }  # fmt: skip
    assert f.symbolic("grad") == {
        "value": "x**2*sin(y)",
        "grad_x": "2*x*sin(y)",
        "grad_y": "x**2*cos(y)",
        "cube": "x**3",
    }


def test_single_numbers_stand_for_every_row_and_families_fill_from_one_value():
    f = diffcli.formula("sum(x[i]**2, i, 1, 3) * s")
    got = f.grad({"x": [1.0, 2.0], "s": 10})
    assert got["value"].tolist() == [30.0, 120.0]
    assert got["grad_x_2"].tolist() == [20.0, 40.0] and got["s"].tolist() == [10, 10]
    assert f.value({"x[1]": 1.0, "x_2": 2.0, "x[3]": 3.0, "s": 1.0})["value"].tolist() == [14.0]


def test_tensors_stay_on_their_device_and_keep_gradients_out():
    x = torch.linspace(0, 1, 5, dtype=torch.float64, requires_grad=True)
    got = diffcli.formula("exp(x)").grad({"x": x})
    assert got["grad_x"].device == x.device and not got["grad_x"].requires_grad
    assert torch.equal(got["grad_x"], torch.exp(x.detach()))
    assert diffcli.formula("x").value({"x": [1.0]}, dtype="float32")["value"].dtype == np.float32


def test_check_returns_the_rows_of_diffcli_check():
    rows = diffcli.formula("sin(x)*exp(-y**2)").check(pl.DataFrame(POINTS), order=2)
    assert {r["quantity"] for r in rows} >= {"grad_x", "grad_y", "hessian_x_y"} and all(r["ok"] for r in rows)
    (kinked,) = [r for r in diffcli.formula("abs(x)").check({"x": [0.0, 1.0]}) if r["engine"] == "finite differences"]
    assert kinked["kinks"] == 1


def test_scan_gives_the_cli_numbers():
    got = diffcli.scan("x = r*x*(1-x)", init={"x": 0.2}, steps=50, data={"r": [2.8, 3.7]}, wrt=["r", "x0"])
    result = runner.invoke(
        app, ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", "50", "--wrt", "r,x0", "--format", "csv",
              "--at", "r=2.8", "--at", "r=3.7"],
    )  # fmt: skip
    expected = pl.read_csv(io.StringIO(result.stdout))
    assert {k: v.tolist() for k, v in got.items()} == expected.to_dict(as_series=False)
    path = diffcli.scan("x = r*x*(1-x)", init={"x": 0.2}, steps=2, data=pl.DataFrame({"r": [3.0]}), trajectory=True)
    assert path["step"].to_list() == [0, 1, 2] and path["value"].to_list() == pytest.approx(
        [0.2, 0.48, 0.7488], rel=1e-15
    )


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: diffcli.formula("x +"), diffcli.ExpressionError, "syntax"),
        (lambda: diffcli.formula("x*y").grad({"x": 1}), diffcli.UsageError, "no value for y in the data"),
        (lambda: diffcli.formula("x*y").grad({"x": 1, "y": 2}, wrt=["z"]), diffcli.UsageError, "no value for z"),
        (lambda: diffcli.formula("x*y").jvp({"x": 1, "y": 2}, tangent={"q": 1}), diffcli.UsageError, "tangent names q"),
        (lambda: diffcli.formula("x*y").derivative({"x": 1, "y": 2}), diffcli.UsageError, "derivative needs wrt"),
        (lambda: diffcli.formula("x").value({"x": 1}, dtype="float16"), diffcli.UsageError, "unknown dtype"),
        (lambda: diffcli.formula("x").value({"x": 1}, device="tpu"), diffcli.UsageError, "device"),
        (lambda: diffcli.formula("x").value({"x": ["a"]}), diffcli.DataError, "data column 'x': not numbers"),
        (lambda: diffcli.formula("x").value(pd.DataFrame({"x": [1.0, None, "a"]})), diffcli.DataError, "row 1"),
        (lambda: diffcli.formula("x").value(pl.DataFrame({"x": [1.0, None]})), diffcli.DataError, "row 1: no value"),
        (lambda: diffcli.formula("x").value(pa.table({"x": [None, 1.0]})), diffcli.DataError, "row 0: no value"),
        (
            lambda: diffcli.formula("x").value(pd.DataFrame({"x": pd.array([1.0, None], dtype="Float64")})),
            diffcli.DataError,
            "row 1: no value",
        ),
        (lambda: diffcli.formula("x").value({"x": [1, 2], "y": [1, 2, 3]}), diffcli.UsageError, "differ in length"),
        (lambda: diffcli.formula("x").value({"x": 1, "value": 2}), diffcli.UsageError, "would appear twice"),
        (lambda: diffcli.formula("x").value([1, 2]), diffcli.UsageError, "data must be a mapping"),
        (lambda: diffcli.formula("x").check({"x": 1}, order=3), diffcli.UsageError, "order must be 1 or 2"),
        (lambda: diffcli.scan("x = x", init={}, steps=1), diffcli.UsageError, "init={'x': VALUE}"),
        (
            lambda: diffcli.scan("x = r*x", init={"x": 1}, steps=1, data={"r": 2, "value": 1}),
            diffcli.UsageError,
            "twice",
        ),
        (lambda: diffcli.scan("x = x", init={"x": 1}, steps=2.5), diffcli.UsageError, "steps must be an integer"),
        (lambda: diffcli.scan("x = x", init="x=1", steps=1), diffcli.UsageError, "init must be a mapping"),
        (lambda: diffcli.formula(3), diffcli.UsageError, "a formula is a string"),
        (lambda: diffcli.formula("x").grad({"x": 1}, wrt=1), diffcli.UsageError, "wrt must be names"),
        (lambda: diffcli.formula("x").jvp({"x": 1}, tangent="x=1"), diffcli.UsageError, "tangent must be a mapping"),
        (lambda: diffcli.formula("x").jvp({"x": 1}, tangent={"x": "a"}), diffcli.UsageError, "finite number"),
        (lambda: diffcli.formula("x").jvp({"x": 1}, tangent={"x": math.nan}), diffcli.UsageError, "finite number"),
        (lambda: diffcli.formula("x").derivative({"x": 1}, order=2.0), diffcli.UsageError, "order must be an integer"),
        (
            lambda: diffcli.formula("x").value(pd.DataFrame([[1.0, 2.0]], columns=["x", "x"])),
            diffcli.UsageError,
            "twice",
        ),
        (lambda: diffcli.formula("x").value({"x[1]": 1, "x_1": 2}), diffcli.UsageError, "gives x_1 twice"),
        (lambda: diffcli.formula("x").value({"x": 10**400}), diffcli.DataError, "not numbers"),
        (lambda: diffcli.formula("x").value(pl.DataFrame({"x": [1]}, schema={"x": pl.Int128})), diffcli.DataError, "x"),
        (lambda: diffcli.formula("x").value({"x": np.ma.masked_array([1.0, 2.0], [0, 1])}), diffcli.DataError, "row 1"),
        (lambda: diffcli.formula("x").check({"x": []}), diffcli.DataError, "no rows"),
    ],
)
def test_errors_are_the_cli_exceptions_naming_parameters(call, error, words):
    with pytest.raises(error) as raised:
        call()
    assert words in str(raised.value) + (raised.value.hint or "")
    assert "--" not in raised.value.message  # a parameter, never a flag


def test_a_formula_pickles_by_its_text_and_evaluates_the_same():
    f = diffcli.formula(["u=x*sin(y)", "v=1/2x"], aux={"w": "x+y"})
    f.grad  # noqa: B018 - nothing compiled is carried
    copy = pickle.loads(pickle.dumps(f))
    assert copy.texts == f.texts and copy.aux == f.aux and copy.notes == f.notes and len(pickle.dumps(f)) < 400
    data = {"x": X, "y": Y}
    assert all(np.array_equal(a, b) for a, b in zip(copy.jacobian(data).values(), f.jacobian(data).values()))


def test_using_the_api_changes_no_setting_of_the_process():
    threads, filters = torch.get_num_threads(), list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and torch says nothing about read-only arrays
        diffcli.formula("x*y").hessian(pl.DataFrame(POINTS))
        diffcli.scan("x = r*x", init={"x": 1}, steps=3, data=pl.DataFrame({"r": [2.0]}))
    assert torch.get_num_threads() == threads and warnings.filters == filters


def test_the_symbolic_time_limit_holds_off_the_main_thread(monkeypatch):
    from diffcli import language

    monkeypatch.setattr(language, "SYMBOLIC_SECONDS", 0.2)
    failures = []

    def slow() -> None:
        try:
            with language.symbolic_time_limit("work", 0.2):
                sympy.expand(sympy.Add(*sympy.symbols("a:e")) ** 60)  # SymPy at work for many seconds
        except diffcli.ExpressionError as e:
            failures.append(e.message)

    worker = threading.Thread(target=slow)
    worker.start()
    worker.join(10)
    assert failures == ["work took longer than 0.2 s"]


def test_importing_diffcli_imports_neither_torch_nor_sympy():
    code = "import diffcli, sys; print(sorted(m for m in ('torch', 'sympy', 'polars', 'numpy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=8), st.floats(-3, 3))
def test_the_gradient_is_the_jvp_along_each_axis(xs, y):
    f = diffcli.formula("sin(x*y) + x**3/(1+y**2)")
    data = {"x": xs, "y": y}
    grad = f.grad(data)
    assert np.array_equal(f.jvp(data, tangent={"x": 1})["jvp"], grad["grad_x"])
    assert np.array_equal(f.vjp(data, cotangent={"f1": 1})["vjp_y"], grad["grad_y"])


def imports() -> dict[str, set[str]]:
    """The modules of diffcli each module imports, anywhere in it but under ``if TYPE_CHECKING``."""
    import ast
    import pathlib

    folder = pathlib.Path(diffcli.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        guarded = [b for b in ast.walk(tree) if isinstance(b, ast.If) and "TYPE_CHECKING" in ast.unparse(b.test)]
        typing_only = {id(n) for block in guarded for child in block.body for n in ast.walk(child)}
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and id(node) not in typing_only:
                found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        graph[path.stem] = found - {"__init__"}
    return graph


def test_the_import_graph_has_no_circle_and_only_the_entry_point_imports_the_cli():
    graph = imports()
    assert {m for m, used in graph.items() if "cli" in used} == {"__main__"}

    def circle(start: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in graph.get(path[-1], ()):
            if nxt == start:
                return (*path, nxt)
            if nxt not in path and (found := circle(start, (*path, nxt))):
                return found
        return None

    assert [c for m in graph if (c := circle(m, (m,)))] == []


def test_single_numbers_and_lists_mix_in_scan_and_check_too():
    got = diffcli.scan("x = r*x + s", init={"x": 1}, steps=2, data={"r": [1.0, 2.0], "s": 0.5})
    assert got["value"].tolist() == [2.0, 5.5] and got["s"].tolist() == [0.5, 0.5]
    assert all(r["ok"] for r in diffcli.formula("x*y").check({"x": 1.0, "y": [1.0, 2.0]}))


def test_names_as_written_elsewhere_and_a_formula_owns_its_options():
    f = diffcli.formula("sum(x[i]**2, i, 1, 3)")
    assert f.jvp({"x": 1.0}, tangent={"x[2]": 1})["jvp"].tolist() == [2.0]
    aux = {"c": "x**3"}
    g = diffcli.formula("x", aux=aux)
    aux["c"] = "x**4"
    assert pickle.loads(pickle.dumps(g)).value({"x": 2.0})["c"].tolist() == [8.0]


def test_pyarrow_keeps_its_schema_metadata_and_many_tangents_keep_few_plans():
    table = pa.table({"x": [1.0, 2.0]}).replace_schema_metadata({"source": "lab"})
    assert diffcli.formula("x*x").grad(table).schema.metadata == {b"source": b"lab"}
    f = diffcli.formula("x*y")
    for k in range(100):
        f.jvp({"x": 1.0, "y": 2.0}, tangent={"x": k})
    assert len(f._compiled) <= 64


def test_many_short_limited_steps_on_threads_raise_only_expression_errors():
    from diffcli import language

    stray = []

    def steps() -> None:
        for i in range(40):
            try:
                with language.symbolic_time_limit("step", 0.0005 * (1 + i % 4)):
                    sympy.expand(sympy.Add(*sympy.symbols("a:c"), i) ** (6 + i % 4))
            except diffcli.ExpressionError:
                pass
            except BaseException as e:  # noqa: BLE001 - what must not happen
                stray.append(repr(e))

    workers = [threading.Thread(target=steps) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert stray == []


def test_parsing_on_threads_leaves_the_warnings_and_the_recursion_limit_alone():
    from concurrent.futures import ThreadPoolExecutor

    filters, limit = list(warnings.filters), sys.getrecursionlimit()
    text = " + ".join(f"x_{i}*y" for i in range(2000))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: diffcli.formula(text), range(6)))
    assert warnings.filters == filters and sys.getrecursionlimit() == limit
