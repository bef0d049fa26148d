"""Files as they come: any column name passes through (a BOM stripped), ``--columns`` renames a
header, ``--prefix``/``--suffix`` let an output be fed back, and ``--format auto`` answers a pipe
in the input's format."""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys

import polars as pl
import pytest
from typer.testing import CliRunner

from diffcli import jobs
from diffcli.cli import app

from .conftest import write_formats

runner = CliRunner()
BOM = "\ufeff"
POINTS = "x,y,label\n0.5,3,a\n-1.25,0.125,b\n2,-4.5,c\n"  # grad of x*y: (y, x)


def run(*args: str, stdin: str | bytes | None = None, code: int = 0):
    result = runner.invoke(app, list(args), input=stdin)
    assert result.exit_code == code, result.output
    return result


def rows(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))


# Column names: any text but an empty or a repeated one; a BOM is no part of a name.

ODD = ["Sample ID", "sample-id", "x", "__import__('os').system('id')", "a,b", 'say "hi"', "é"]


def write_odd(folder) -> dict[str, str]:
    """The same rows, with odd column names, in every input format."""
    frame = pl.DataFrame({name: [f"v{i}", f"w{i}"] if name != "x" else [2.0, -3.0] for i, name in enumerate(ODD)})
    return {fmt: str(path) for fmt, path in write_formats(frame, folder, "odd").items()}


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "ndjson", "parquet"])
def test_any_name_passes_through_every_format_in_and_out(tmp_path, fmt):
    path = write_odd(tmp_path)[fmt]
    out = rows(run("grad", "x*x", "-i", path, "-f", "csv").stdout)
    assert list(out[0]) == [*ODD, "value", "grad_x"]  # names with commas and quotes read back as written
    assert [(r["x"], r["value"], r["grad_x"]) for r in out] == [("2.0", "4.0", "4.0"), ("-3.0", "9.0", "-6.0")]
    assert [r["a,b"] for r in out] == ["v4", "w4"] and [r['say "hi"'] for r in out] == ["v5", "w5"]
    assert list(rows(run("grad", "x*x", "-i", path, "-f", "tsv").stdout, "\t")[0]) == [*ODD, "value", "grad_x"]
    first = json.loads(run("grad", "x*x", "-i", path, "-f", "ndjson").stdout.splitlines()[0])
    assert first == {"at": {**{n: f"v{i}" for i, n in enumerate(ODD)}, "x": 2.0}, "value": 4.0, "grad": {"x": 4.0}}
    target = tmp_path / "out.parquet"
    run("grad", "x*x", "-i", path, "-o", str(target))
    assert pl.read_parquet(target).columns == [*ODD, "value", "grad_x"]
    table = run("grad", "x*x", "-i", path, "-f", "table").stdout
    assert all(name in table for name in ODD)


def test_names_that_look_like_patterns_are_taken_literally():
    """``*`` and ``^…$`` are polars' wildcard and regex forms of a column: here they are only names."""
    text = "*,^x$,x\n1,2,3\n"
    got = json.loads(run("value", "10*x", "-i", "-", "-f", "json", stdin=text).stdout)
    assert got == {"at": {"*": "1", "^x$": "2", "x": 3.0}, "value": 30.0}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bom.csv", f"{BOM}x,y\n2,5\n"),
        ("bom.tsv", f"{BOM}x\ty\n2\t5\n"),
        ("bom.json", f'{BOM}[{{"x": 2, "y": 5}}]'),
        ("bom.ndjson", f'{BOM}{{"x": 2, "y": 5}}\n'),
        ("bom.txt", f"{BOM}x,y\n2,5\n"),  # sniffed
    ],
)
def test_a_byte_order_mark_is_stripped_from_files_and_stdin(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    expected = {"at": {"x": 2.0, "y": 5.0}, "value": 10.0, "grad": {"x": 5.0, "y": 2.0}}
    assert json.loads(run("grad", "x*y", "-i", str(path), "-f", "json").stdout) == expected
    assert json.loads(run("grad", "x*y", "-i", "-", "-f", "json", stdin=path.read_bytes()).stdout) == expected


def test_a_byte_order_mark_before_data_without_a_header():
    out = run("value", "x+y", "-i", "-", "--no-header", "--columns", "x,y", "-f", "csv", stdin=f"{BOM}1,2\n").stdout
    assert out == "x,y,value\n1.0,2.0,3.0\n"


def test_map_takes_a_variable_from_any_column():
    text = f"{BOM}Sample ID,Sample value,t\nA-1,2,3\nB-2,0.5,4\n"
    out = rows(run("grad", "x*t", "-i", "-", "--map", "x=Sample value", "-f", "csv", stdin=text).stdout)
    assert [(r["Sample ID"], r["value"], r["grad_x"], r["grad_t"]) for r in out] == [
        ("A-1", "6.0", "3.0", "2.0"),
        ("B-2", "2.0", "4.0", "0.5"),
    ]


def test_names_are_matched_exactly():
    """No fuzzy matching: a name with a space is not the variable without it; a missing --map column is named."""
    result = run("value", "2*x", "-i", "-", stdin=" x,y\n1,2\n", code=2)
    assert "no value for x (not a column of stdin" in result.stderr
    result = run("value", "2*x", "-i", "-", "--map", "x=Sample value", stdin="sample value\n1\n", code=2)
    assert result.stderr == "diffcli: error: --map x=Sample value: stdin has no column 'Sample value'\n"


@pytest.mark.parametrize(
    ("fmt", "content", "problem"),
    [
        ("csv", "secret,y,secret\n1,2,3\n", "header, column 3: the same name as column 1"),
        ("csv", "x,,y\n1,2,3\n", "header, column 2: the name is empty"),
        ("tsv", "x\t\n1\t2\n", "header, column 2: the name is empty"),
        ("json", '[{"x": 1, "": 2}]', "header, column 2: the name is empty"),
        ("ndjson", '{"": 2}\n', "header, column 1: the name is empty"),
    ],
)
def test_empty_and_repeated_names_are_data_errors_by_number(tmp_path, fmt, content, problem):
    path = tmp_path / f"bad.{fmt}"
    path.write_text(content)
    result = run("value", "x", "-i", str(path), code=4)
    assert result.stderr == f"diffcli: error: {path}: {problem}\n"


def test_a_column_that_is_no_variable_is_named_by_number_in_errors():
    result = run("value", "x", "-i", "-", stdin="x,secret\n1,\xff\n".encode("latin-1"), code=4)
    assert result.stderr == "diffcli: error: stdin: row 1, column 2: invalid UTF-8 (byte 0xff)\n"


# --columns: the names instead of the header's (or, with --no-header, for a bare file).


def test_columns_renames_a_header():
    text = "a,b,Sample ID\n2,5,s1\n-1,4,s2\n"
    out = run("grad", "x*y", "-i", "-", "--columns", "x,y,sid", "-f", "csv", stdin=text).stdout
    assert out.splitlines() == [
        "x,y,sid,value,grad_x,grad_y",
        "2.0,5.0,s1,10.0,5.0,2.0",
        "-1.0,4.0,s2,-4.0,4.0,-1.0",
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--columns", "x,y"], "a,b,c\n1,2,3\n", "--columns names 2 columns, but the header of stdin has 3"),
        (["--columns", "x,,y"], "a,b,c\n1,2,3\n", "--columns x,,y: column 2: the name is empty"),
        (["--columns", "x,y,x"], "a,b,c\n1,2,3\n", "--columns x,y,x: column 3: the same name as column 1"),
        (["--no-header"], "1,2\n", "--no-header needs --columns to name the columns"),
        (["--columns", "x,y"], '{"a": 1, "b": 2}\n', "--columns names the columns of CSV and TSV input; ndjson"),
        (["--columns", "x,y", "--no-header"], '[{"a": 1}]', "--columns names the columns of CSV and TSV input; json"),
    ],
)
def test_columns_usage_errors(args, stdin, message):
    result = run("value", "x", "-i", "-", *args, stdin=stdin, code=2)
    assert result.stderr.startswith(f"diffcli: error: {message}") and result.stderr.count("\n") == 1


def test_columns_of_parquet_is_refused(tmp_path):
    path = tmp_path / "p.parquet"
    pl.DataFrame({"a": [1.0]}).write_parquet(path)
    assert "parquet names its own" in run("value", "x", "-i", str(path), "--columns", "x", code=2).stderr


# --prefix and --suffix: result names that differ from the input's, to feed an output back.


def test_an_output_fed_back_needs_a_prefix():
    first = run("grad", "x*y", "-i", "-", "-f", "csv", stdin=POINTS).stdout
    result = run("grad", "f=x+y", "-i", "-", "-f", "csv", stdin=first, code=2)
    assert "the column 'grad_x' would appear twice" in result.stderr and "hint: --prefix" in result.stderr
    out = rows(run("grad", "f=x*x+y", "-i", "-", "-f", "csv", "--prefix", "d_", stdin=first).stdout)
    assert list(out[0]) == ["x", "y", "label", "value", "grad_x", "grad_y", "d_f", "d_grad_x", "d_grad_y"]
    for row, (x, y) in zip(out, [(0.5, 3.0), (-1.25, 0.125), (2.0, -4.5)]):
        assert float(row["grad_x"]) == y and float(row["grad_y"]) == x  # the first run's, passed through
        assert float(row["d_f"]) == x * x + y and float(row["d_grad_x"]) == 2 * x and float(row["d_grad_y"]) == 1


def test_prefix_and_suffix_rename_every_result_of_every_command():
    def header(command: str) -> str:
        return run(*shlex.split(command), "-f", "csv", "--prefix", "d_", "--suffix", "_2").stdout.splitlines()[0]

    at = "--at x=2,y=3"
    assert header(f"value x*y {at}") == "x,y,d_value_2"
    assert header(f"grad x*y {at} --aux c=x") == "x,y,d_value_2,d_grad_x_2,d_grad_y_2,d_c_2"
    assert header(f"jacobian u=x*y v=x {at}") == (
        "x,y,d_u_2,d_v_2,d_jacobian_u_x_2,d_jacobian_u_y_2,d_jacobian_v_x_2,d_jacobian_v_y_2"
    )
    assert header(f"hessian x*y {at}").endswith(",d_hessian_y_x_2,d_hessian_y_y_2")
    assert header(f"jvp x*y {at} --tangent x=1") == "x,y,d_value_2,d_jvp_2"
    assert header(f"vjp x*y {at} --cotangent f1=1") == "x,y,d_value_2,d_vjp_x_2,d_vjp_y_2"
    assert header("derivative x**3 --at x=2 --order 3") == "x,d_value_2,d_derivative_2"
    assert header(f"taylor x*y {at} --order 1") == "x,y,d_value_2,d_taylor_1_2,d_taylor_x_2,d_taylor_y_2"
    assert header("scan 'x = r*x' --init x=1 --steps 2 --at r=3") == "r,d_value_2,d_grad_r_2,d_grad_x0_2"
    assert header("grad x*x --at x=2 --symbolic").endswith(",symbolic_d_value_2,symbolic_d_grad_x_2")


def test_json_keys_beside_at_get_the_prefix():
    got = json.loads(
        run("grad", "x*y", "--at", "x=2,y=3", "--aux", "c=x", "--symbolic", "-f", "json", "--prefix", "d_").stdout
    )
    assert got == {
        "at": {"x": 2.0, "y": 3.0},
        "d_value": 6.0,
        "d_grad": {"x": 3.0, "y": 2.0},
        "d_aux": {"c": 2.0},
        "symbolic": {"d_value": "x*y", "d_grad": {"x": "y", "y": "x"}, "d_aux": {"c": "x"}},
    }
    got = json.loads(run("jacobian", "u=x*y", "v=x", "--at", "x=2,y=3", "-f", "json", "--suffix", "_2").stdout)
    assert got["value_2"] == {"u": 6.0, "v": 2.0} and got["jacobian_2"]["u"] == {"x": 3.0, "y": 2.0}


def test_the_result_names_are_checked_as_renamed():
    """An output named like a variable is refused, unless the prefix makes its column differ."""
    assert "output name 'x' is used twice" in run("value", "x=x+1", "--at", "x=1", code=3).stderr
    assert run("value", "x=x+1", "--at", "x=1", "-f", "csv", "--prefix", "d_").stdout == "x,d_x\n1.0,2.0\n"
    result = run("value", "2*d_value", "--at", "d_value=1", "--prefix", "d_", code=3)
    assert "output name 'd_value' is used twice" in result.stderr


def test_odd_prefixes_are_names_too():
    """``^…$`` and ``*`` are polars' regex and wildcard forms of a column: here they are only text."""
    command = "scan 'x = r*x' --init x=1 --steps 1 --at r=3 --trajectory -f csv --prefix ^ --suffix $"
    out = run(*shlex.split(command)).stdout
    assert out.splitlines() == ["r,step,^value$,^grad_r$,^grad_x0$", "3.0,0,1.0,0.0,1.0", "3.0,1,3.0,1.0,3.0"]
    got = json.loads(run("grad", "x*x", "--at", "x=2", "-f", "json", "--prefix", "*", "--precision", "3").stdout)
    assert got == {"at": {"x": 2.0}, "*value": 4.0, "*grad": {"x": 4.0}}


def test_check_reports_a_fixed_schema_without_prefixes():
    assert "No such option: --prefix" in run("check", "x*x", "--at", "x=1", "--prefix", "d_", code=2).stderr
    result = run("scan", "x = r*x", "--init", "x=1", "--steps", "2", "--at", "r=3", "--check", "--suffix", "_2", code=2)
    assert "drop --prefix and --suffix" in result.stderr


# --format auto: a terminal gets a table; a pipe, the input's format; a file, its extension's.


WRITERS = {
    "csv": lambda frame, path: frame.write_csv(path),
    "tsv": lambda frame, path: frame.write_csv(path, separator="\t"),
    "json": lambda frame, path: frame.write_json(path),
    "ndjson": lambda frame, path: frame.write_ndjson(path),
    "parquet": lambda frame, path: frame.write_parquet(path),
}


@pytest.mark.parametrize(
    ("fmt", "answer"), [("csv", "csv"), ("tsv", "tsv"), ("json", "json"), ("ndjson", "ndjson"), ("parquet", "csv")]
)
def test_a_pipe_answers_in_the_input_format(tmp_path, fmt, answer):
    path = tmp_path / f"pts.{fmt}"
    WRITERS[fmt](pl.read_csv(io.StringIO(POINTS)), path)
    out = run("grad", "x*y", "-i", str(path)).stdout
    if answer in ("csv", "tsv"):
        got = rows(out, "\t" if answer == "tsv" else ",")
        assert [(float(r["grad_x"]), float(r["grad_y"])) for r in got] == [(3.0, 0.5), (0.125, -1.25), (-4.5, 2.0)]
    else:
        objects = json.loads(out) if answer == "json" else [json.loads(line) for line in out.splitlines()]
        assert [o["grad"] for o in objects] == [{"x": 3.0, "y": 0.5}, {"x": 0.125, "y": -1.25}, {"x": -4.5, "y": 2.0}]
    assert run("grad", "x*y", "-i", "-", stdin=path.read_bytes()).stdout == out  # sniffed: the same


def test_a_file_follows_its_extension_else_the_input(tmp_path):
    source = tmp_path / "pts.ndjson"
    pl.read_csv(io.StringIO(POINTS)).write_ndjson(source)
    run("grad", "x*y", "-i", str(source), "-o", str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text().startswith("x,y,label,value,grad_x,grad_y\n")
    run("grad", "x*y", "-i", str(source), "-o", str(tmp_path / "out"))
    assert json.loads((tmp_path / "out").read_text().splitlines()[2])["grad"] == {"x": -4.5, "y": 2.0}
    parquet = tmp_path / "pts.parquet"
    pl.read_csv(io.StringIO(POINTS)).write_parquet(parquet)
    run("grad", "x*y", "-i", str(parquet), "-o", str(tmp_path / "result"))
    assert pl.read_parquet(tmp_path / "result")["grad_x"].to_list() == [3.0, 0.125, -4.5]


def test_scan_and_check_answer_in_the_input_format_too():
    out = run("scan", "x = r*x", "--init", "x=1", "--steps", "2", "-i", "-", stdin='{"r": 3}\n').stdout
    assert json.loads(out) == {"at": {"r": 3.0}, "value": 9.0, "grad": {"r": 6.0, "x0": 9.0}}
    out = run("check", "x*y", "-i", "-", stdin="x\ty\n1\t2\n").stdout
    assert out.splitlines()[0].split("\t")[:3] == ["output", "quantity", "engine"]
    assert json.loads(run("value", "x", "--at", "x=1").stdout) == {"at": {"x": 1.0}, "value": 1.0}  # points: JSON


def test_a_terminal_gets_a_table_and_a_file_its_extension(monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert jobs._format("auto", None) == "table"
    assert jobs._format("auto", "out.jsonl") == "ndjson"
    assert jobs._format("auto", "out.txt") == "auto"  # left to the input


# Real pipes (subprocess: marked slow by conftest).

DIFFCLI = f"{sys.executable} -m diffcli"
COLD = {**os.environ, "DIFFCLI_NO_SERVER": "1"}


def test_grad_piped_into_grad_with_a_prefix(tmp_path):
    (tmp_path / "pts.csv").write_text(POINTS)
    command = f'{DIFFCLI} grad "x*y" -i pts.csv | {DIFFCLI} grad "f=x+y" -i - --prefix d_'
    proc = subprocess.run(command, shell=True, cwd=tmp_path, env=COLD, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [
        "x,y,label,value,grad_x,grad_y,d_f,d_grad_x,d_grad_y",
        "0.5,3.0,a,1.5,3.0,0.5,3.5,1.0,1.0",
        "-1.25,0.125,b,-0.15625,0.125,-1.25,-1.125,1.0,1.0",
        "2.0,-4.5,c,-9.0,-4.5,2.0,-2.5,1.0,1.0",
    ]


def test_ndjson_piped_in_comes_out_as_ndjson(tmp_path):
    (tmp_path / "pts.ndjson").write_text('{"x": 2, "id": "a"}\n{"x": 3, "id": "b"}\n')
    command = f"cat pts.ndjson | {DIFFCLI} grad 'x**3' -i -"
    proc = subprocess.run(command, shell=True, cwd=tmp_path, env=COLD, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [
        {"at": {"x": 2.0, "id": "a"}, "value": 8.0, "grad": {"x": 12.0}},
        {"at": {"x": 3.0, "id": "b"}, "value": 27.0, "grad": {"x": 27.0}},
    ]


def test_diffclis_own_ndjson_reads_back():
    first = runner.invoke(app, ["grad", "x**3", "-i", "-", "-f", "ndjson"], input='{"x":2}\n{"x":3}\n')
    second = runner.invoke(app, ["grad", "x**2", "-i", "-", "--prefix", "d_", "-f", "ndjson"], input=first.stdout)
    assert second.exit_code == 0, second.stderr
    rows = [json.loads(line) for line in second.stdout.splitlines()]
    assert [(r["at"]["x"], r["at"]["value"], r["d_grad"]["x"]) for r in rows] == [(2.0, 8.0, 4.0), (3.0, 27.0, 6.0)]
