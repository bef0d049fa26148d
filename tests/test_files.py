"""Files as they come: any column name passes through (a BOM stripped), and ``--columns`` renames
a header."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest
from typer.testing import CliRunner

from diffcli.cli import app

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
    paths = {fmt: str(folder / f"odd.{fmt}") for fmt in ("csv", "tsv", "json", "ndjson", "parquet")}
    frame.write_csv(paths["csv"])
    frame.write_csv(paths["tsv"], separator="\t")
    frame.write_json(paths["json"])
    frame.write_ndjson(paths["ndjson"])
    frame.write_parquet(paths["parquet"])
    return paths


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
