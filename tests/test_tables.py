"""Tables never split a number or a name: rendered at 40, 80 and 120 columns (``$COLUMNS`` in a
pipe), every number the CSV or JSON output prints appears whole on one line, every header whole
in its cell, and no line is wider than the console unless it is one ``name  value`` line of the
record view that cannot fit."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from diffcli.cli import app
from diffcli.sinks import write_report

runner = CliRunner()
WIDTHS = (40, 80, 120)
HESSIAN = ["hessian", "x**2*y*exp(z)*1234.5678", "--at", "x=1.123456789,y=2.2,z=3.3", "--at", "x=-4.5,y=5.5,z=0.1"]
CASES = {
    "two points": HESSIAN,
    "two points, precision": [*HESSIAN, "--precision", "4"],
    "one point, four variables": ["hessian", "x*y*z*w*1234.5678 + exp(x*y)", "--at", "x=1.1,y=2.2,z=3.3,w=4.4"],
    "one point, long name": ["grad", "x*y", "--at", "x=1.5,y=2.25", "--aux", "a_really_long_label_name=x*y"],
    "two points, long name": ["grad", "x*y", "--at", "x=1.5,y=2.25", "--at", "x=-3,y=4", "--aux", "a_long_name=x*y"],
}


def render(args: list[str], width: int | None) -> str:
    """What ``args --format table`` prints into a pipe with ``COLUMNS=width`` (None: unset)."""
    env = {"COLUMNS": None if width is None else str(width), "DIFFCLI_NO_SERVER": "1"}
    result = runner.invoke(app, [*args, "--format", "table"], env=env)
    assert result.exit_code in (0, 5), result.output  # 5: check found a disagreement
    return result.stdout


def headers(text: str) -> set[str]:
    """The header cells of every table in ``text``."""
    return {cell.strip() for line in text.splitlines() if "┃" in line for cell in line.split("┃")[1:-1]}


def assert_nothing_split(text: str, width: int, numbers: set[str], names: list[str], unlimited: str) -> None:
    """``numbers`` each whole on a line; the headers of the ``unlimited`` rendering whole, or, where
    the output lists records instead, ``names`` each a record's name; lines within ``width``
    except a ``name  number`` line."""
    lines = text.splitlines()
    for number in numbers:
        whole = re.compile(rf"(?<![\w.+-]){re.escape(number)}(?![\w.+-])")
        assert any(whole.search(line) for line in lines), f"{number} is not whole on any line:\n{text}"
    if "┃" in text:
        assert headers(unlimited) <= headers(text), text
    else:
        record_names = {line.split()[0] for line in lines if line.strip()}
        assert set(names) <= record_names, text
    for line in lines:
        if cell_len(line) > width:
            name, *value = line.split()
            assert name in names and len(value) == 1 and value[0] in numbers, f"too wide: {line!r}"


def csv_oracle(args: list[str]) -> tuple[set[str], list[str]]:
    """The number texts and column names that ``args --format csv`` prints."""
    result = runner.invoke(app, [*args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return {cell for row in rows[1:] for cell in row}, rows[0]


@pytest.mark.parametrize("case", CASES)
def test_tables_split_no_number_or_name(case):
    args = CASES[case]
    numbers, names = csv_oracle(args)
    unlimited = render(args, None)
    assert_nothing_split(unlimited, 10_000, numbers, names, unlimited)
    for width in WIDTHS:
        assert_nothing_split(render(args, width), width, numbers, names, unlimited)


def test_a_record_line_wider_than_the_console_runs_past_the_edge():
    args = ["value", "x*1.123456789123", "--at", "x=1.123456789123", "--at", "x=2"]
    numbers, names = csv_oracle(args)
    text = render(args, 20)
    assert "value  1.262155157026561" in text.splitlines()  # 25 columns, whole
    assert_nothing_split(text, 20, numbers, names, render(args, None))


def test_check_table_splits_no_number():
    args = ["check", "1/x", "--at", "x=-1", "--at", "x=0", "--order", "2"]
    rows = json.loads(runner.invoke(app, [*args, "--format", "json"]).stdout)
    numbers = {repr(r[k]) for r in rows for k in ("max_abs", "max_rel") if r[k] is not None}
    numbers |= {str(r[k]) for r in rows for k in ("failures", "kinks")} | {
        repr(v) for r in rows for v in r["at"].values()
    }
    names = list(rows[0])
    unlimited = render(args, None)
    for width in WIDTHS:
        assert_nothing_split(render(args, width), width, numbers, names, unlimited)


@pytest.mark.parametrize("width", [None, 40])
def test_check_table_tells_nan_from_infinity_and_json_says_null(monkeypatch, width):
    row = {"output": "f1", "quantity": "grad_x", "engine": "finite differences", "max_abs": math.nan}
    row |= {"max_rel": math.inf, "at": {"x": 0.0}, "failures": 1, "kinks": 0, "ok": False}
    if width is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(width))
    stream = io.BytesIO()
    write_report([row], "table", stream)
    lines = stream.getvalue().decode().splitlines()
    if width is None:  # a table: the header's cells over the row's
        cells = [[c.strip() for c in re.split("[┃│]", line)[1:-1]] for line in lines if line[:1] in ("┃", "│")]
        shown = dict(zip(*cells))
    else:  # records
        shown = dict(line.split(maxsplit=1) for line in lines[1:])
    assert (shown["max_abs"], shown["max_rel"]) == ("nan", "inf")
    stream = io.BytesIO()
    write_report([row], "json", stream)
    got = json.loads(stream.getvalue())[0]
    assert got["max_abs"] is None and got["max_rel"] is None


def test_columns_that_are_not_a_positive_number_leave_the_width_unlimited():
    unlimited = render(HESSIAN, None)
    assert "┃" in unlimited
    for columns in ("0", "-5", "wide"):
        assert runner.invoke(app, [*HESSIAN, "--format", "table"], env={"COLUMNS": columns}).stdout == unlimited


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_table_into_head_leaves_no_traceback(fmt):
    """The table's text layer once closed stdout when the reader left, and the exit's flush failed."""
    from .conftest import first_lines

    got = first_lines(f"COLUMNS=40 diffcli hessian 'x**2*y*exp(z)' --grid x=0:1:5000 --at y=2,z=3 -f {fmt}", 2)
    assert "Traceback" not in got.stderr and "Error" not in got.stderr and len(got.stdout.splitlines()) == 2
