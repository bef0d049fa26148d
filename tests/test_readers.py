"""Input files: every format gives the same rows, blocks never split a record, and every kind of
bad data is named by file, row and column (or skipped and counted)."""

from __future__ import annotations

import csv
import io
import json
import select
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from diffcli.cli import app
from diffcli.errors import DataError
from diffcli.readers import Reader, _record_end, input_format

from .conftest import first_lines, write_formats

runner = CliRunner()
ROWS = {"x": [0.5, -1.25, 2.0], "y": [3.0, 0.125, -4.5], "label": ["a", "b, with comma", "c"]}


def write_all_formats(folder: Path) -> dict[str, Path]:
    return write_formats(pl.DataFrame(ROWS), folder, "points")


def grad_rows(*args: str, stdin: bytes | None = None) -> list[dict[str, str]]:
    result = runner.invoke(app, ["grad", "x*y + sin(x)", *args, "--format", "csv"], input=stdin)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_every_format_gives_the_same_rows(tmp_path):
    paths = write_all_formats(tmp_path)
    expected = grad_rows("--input", str(paths["csv"]))
    assert [r["label"] for r in expected] == ROWS["label"]
    for x, row in zip(ROWS["x"], expected):
        assert float(row["grad_y"]) == x
    for path in paths.values():
        assert grad_rows("--input", str(path)) == expected
        assert grad_rows("--input", "-", stdin=path.read_bytes()) == expected  # sniffed


def test_format_is_named_sniffed_or_taken_from_the_extension():
    assert input_format("a.jsonl", None, b"") == "ndjson"
    assert input_format("-", None, b"PAR1abcd") == "parquet"
    assert input_format("-", None, b" [{") == "json"
    assert input_format("-", None, b"x,y") == "csv"
    assert input_format("-", None, b"x\ty\n1\t2") == "tsv"
    assert input_format("a.csv", "tsv", b"") == "tsv"


def test_no_header_columns_map_delimiter_and_points(tmp_path):
    path = tmp_path / "raw.txt"
    path.write_text("1;2\n3;4\n")
    rows = grad_rows(
        "--input",
        str(path),
        "--input-format",
        "csv",
        "--no-header",
        "--columns",
        "a,b",
        "--delimiter",
        ";",
        "--map",
        "x=a",
        "--map",
        "y=b",
    )
    assert [(r["a"], r["value"]) for r in rows] == [
        ("1.0", repr(2 + __import__("math").sin(1))),
        ("3.0", repr(12 + __import__("math").sin(3))),
    ]
    rows = runner.invoke(
        app,
        [
            "value",
            "x*k",
            "--input",
            str(path),
            "--no-header",
            "--columns",
            "x,y",
            "--delimiter",
            ";",
            "--at",
            "k=2",
            "--at",
            "k=10",
            "--format",
            "csv",
        ],
    ).stdout
    assert rows.splitlines() == ["x,y,k,value", "1.0,2,2.0,2.0", "1.0,2,10.0,10.0", "3.0,4,2.0,6.0", "3.0,4,10.0,30.0"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1e6, 1e6), st.text(alphabet='ab,"\n xé', max_size=8)), min_size=1, max_size=60),
    st.integers(1, 7),
)
def test_blocks_never_split_a_record(rows, batch_rows):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["x", "note"])
    writer.writerows(rows)
    reader = Reader(io.BufferedReader(io.BytesIO(text.getvalue().encode())), "t.csv", "csv", batch_rows=batch_rows)
    reader.header()
    reader.numeric = {"x"}
    frames = list(reader)
    read = [(x, note) for f in frames for x, note in f.iter_rows()]
    assert read == [(x, note or None) for x, note in rows] or read == [(x, note) for x, note in rows]


BAD = [
    ("empty.csv", b"", None, None, "empty"),
    ("header.csv", b"x,y\n", None, None, "no rows"),
    ("word.csv", b"x,y\n1,2\n3,abc\n", 2, "y", "not a number"),
    ("missing.csv", b"x,y\n1,2\n3,\n", 2, "y", "missing value"),
    ("short.csv", b"x,y\n1,2\n3\n", 2, "y", "missing"),
    ("long3.csv", b"x,y,abc\n1,2,z\n3,4,5,6\n", 2, "column 3", "more field"),  # not a variable: named by its number
    ("long.csv", b"x,y\n1,2\n3,4,5\n", 2, "y", "more field"),
    ("utf8.csv", b"x,y\n1,2\n3,\xff\n", 2, "y", "invalid UTF-8"),
    ("empty_name.csv", b"x,y,\n1,2,3\n", "header, column 3", None, "the name is empty"),
    ("twice.csv", b"abc,y,abc\n1,2,3\n", "header, column 3", None, "the same name as column 1"),
    ("number.json", b"42", None, None, "a JSON object or an array"),
    ("string.json", b'[{"x": 1, "y": 2}, {"x": 1, "y": "2"}]', 2, "y", "a string, not a number"),
    ("stray.csv", b'x,y\n1,2\n3,"4\n5,6\n', 2, None, "not valid CSV"),
    ("nested.json", b'[{"x": 1, "y": [2]}]', 1, "y", "an array, not a number"),
    ("broken.ndjson", b'{"x": 1, "y": 2}\n{"x": 1, "y": \n', 2, None, "not valid JSON"),
    ("none.ndjson", b'{"x": 1, "y": null}\n', 1, "y", "missing value"),
    ("bad.parquet", b"PAR1 not really", None, None, "Parquet"),
]


@pytest.mark.parametrize(("name", "content", "row", "column", "problem"), BAD)
def test_bad_data_is_named_and_leaves_no_output(tmp_path, name, content, row, column, problem):
    source, target = tmp_path / name, tmp_path / "out.csv"
    source.write_bytes(content)
    result = runner.invoke(app, ["grad", "x*y", "--input", str(source), "--output", str(target)])
    assert result.exit_code == 4, result.output
    message = result.stderr.strip()
    assert message.startswith(f"diffcli: error: {source}: ") and problem in message and "\n" not in message
    if row is not None:
        assert (f"row {row}" if isinstance(row, int) else row) in message
    if column is not None:
        assert column in message
    assert "abc" not in message and "__import__" not in message  # a file's contents are never shown
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_skip_bad_rows_counts_them(tmp_path):
    source = tmp_path / "mixed.csv"
    source.write_bytes(b"x,y\n1,2\nx,3\n4,5\n6,\n")
    result = runner.invoke(app, ["value", "x*y", "--input", str(source), "--skip-bad-rows", "--format", "csv"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["x,y,value", "1.0,2.0,2.0", "4.0,5.0,20.0"]
    assert "skipped 2 bad rows of 4" in result.stderr


def test_reader_raises_data_error_directly():
    reader = Reader(io.BufferedReader(io.BytesIO(b"x\n1\nnope\n")), "t.csv", "csv")
    reader.header()
    reader.numeric = {"x"}
    with pytest.raises(DataError, match="row 2"):
        list(reader)


def test_json_output_of_file_rows(tmp_path):
    paths = write_all_formats(tmp_path)
    result = runner.invoke(app, ["grad", "x*y", "--input", str(paths["ndjson"]), "--format", "ndjson"])
    first = json.loads(result.stdout.splitlines()[0])
    assert first == {"at": {"x": 0.5, "y": 3.0, "label": "a"}, "value": 1.5, "grad": {"x": 3.0, "y": 0.5}}


def test_parquet_output(tmp_path):
    paths = write_all_formats(tmp_path)
    target = tmp_path / "out.parquet"
    result = runner.invoke(app, ["grad", "x*y", "--input", str(paths["csv"]), "--output", str(target)])
    assert result.exit_code == 0
    assert pl.read_parquet(target)["grad_x"].to_list() == ROWS["y"]


def test_table_shows_the_first_rows_and_counts_the_rest():
    result = runner.invoke(app, ["value", "x", "--grid", "x=0:1:120", "--format", "table"])
    assert "70 more rows not shown" in result.stdout


def test_stdin_streams_through_head(tmp_path):
    big = tmp_path / "big.csv"
    big.write_text("x,y\n" + "".join(f"{i},{i / 7}\n" for i in range(300_000)))
    proc = first_lines(f"cat {big} | diffcli grad 'x*y' --input - --format ndjson")
    assert len(proc.stdout.splitlines()) == 3 and proc.stderr == ""


def test_a_slow_pipe_gets_answers_as_rows_arrive():
    command = [sys.executable, "-m", "diffcli", "value", "2*x", "--input", "-", "--format", "ndjson"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        proc.stdin.write(b"x\n21\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 60)  # the pipe stays open: no EOF yet
        assert ready and json.loads(proc.stdout.readline()) == {"at": {"x": 21.0}, "value": 42.0}
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


def test_batches_equal_a_hand_written_torch_reference(tmp_path):
    """What ../shared/bench/reference_grad.py computes (batched reverse mode), and the Hessian by
    torch.func; equal to 1e-12 of each column's scale, across several batches."""
    import numpy as np
    import torch
    from torch.func import hessian, vmap

    rng = np.random.default_rng(7)
    points = pl.DataFrame({c: rng.uniform(-2, 2, 5000) for c in "xyz"})
    source = tmp_path / "points.csv"
    points.write_csv(source)
    f = "sin(x)*exp(-y**2) + log(1 + z**2)*x*y"
    result = runner.invoke(app, ["hessian", f, "--input", str(source), "--format", "csv", "--batch-size", "1000"])
    ours = pl.read_csv(io.StringIO(result.stdout))

    def func(p):
        x, y, z = p
        return torch.sin(x) * torch.exp(-(y**2)) + torch.log1p(z**2) * x * y

    columns = torch.from_numpy(points.select("x", "y", "z").to_numpy())
    leaves = columns.clone().requires_grad_(True)
    value = vmap(func)(leaves)
    (grad,) = torch.autograd.grad(value.sum(), leaves)
    second = vmap(hessian(func))(columns)
    expected = {"value": value.detach(), **{f"grad_{a}": grad[:, i] for i, a in enumerate("xyz")}}
    expected |= {f"hessian_{a}_{b}": second[:, i, j] for i, a in enumerate("xyz") for j, b in enumerate("xyz")}
    for name, column in expected.items():
        reference = column.numpy()
        assert np.max(np.abs(ours[name].to_numpy() - reference)) <= 1e-12 * np.max(np.abs(reference)), name


@given(st.text(alphabet='a,"\n', max_size=120), st.integers(0, 120))
def test_record_ends_are_found_in_one_pass_resumed_anywhere(text, split):
    """Where a block may end (after a newline outside quotes), searched at once or in two parts
    (the second resuming with the first's quote state), as a plain scan finds it."""
    data = bytearray(text.encode())
    split = min(split, len(data))
    quoted, plain = False, 0
    for i, byte in enumerate(data):
        quoted ^= byte == ord('"')
        if byte == ord("\n") and not quoted:
            plain = i + 1
    whole = _record_end(data, 0, len(data), False)
    assert whole == (plain, quoted)
    first, open_at_split = _record_end(data, 0, split, False)
    second, open_at_end = _record_end(data, split, len(data), open_at_split)
    assert (second or first, open_at_end) == whole


def test_a_stray_quote_is_read_in_one_pass(tmp_path):
    """A quote inside a field never closed: the rows after it are still read, with Python's CSV rules."""
    rows = "".join(f"{i},row{i}\n" for i in range(50_000)).replace("row3\n", 'ro"w3\n', 1)
    source = tmp_path / "stray.csv"
    source.write_text("x,label\n" + rows)
    result = runner.invoke(app, ["value", "2*x", "--input", str(source), "--format", "csv", "--batch-size", "1000"])
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and len(lines) == 50_001 and lines[4] == '3.0,"ro""w3",6.0'


def test_nested_values_pass_through_as_json_text_and_nested_parquet_is_refused(tmp_path):
    source = tmp_path / "nested.ndjson"
    source.write_text('{"x": 1, "s": {"a": [1, 2]}}\n{"x": 2, "s": [3]}\n')
    result = runner.invoke(app, ["value", "x", "--input", str(source), "--format", "csv"])
    assert result.exit_code == 0 and result.stdout.splitlines()[1:] == ['1.0,"{""a"":[1,2]}",1.0', "2.0,[3],2.0"]
    parquet = tmp_path / "nested.parquet"
    pl.DataFrame({"x": [1.0], "s": [{"a": 1}], "b": [b"\x00"]}).write_parquet(parquet)
    for variable in ("x", "s", "b"):
        result = runner.invoke(app, ["value", variable, "--input", str(parquet), "--format", "json"])
        assert result.exit_code == 4 and "header, column 2: has type Struct" in result.stderr and result.stdout == ""


def test_durations_and_wide_integers_pass_through_as_text(tmp_path):
    import datetime

    parquet = tmp_path / "odd.parquet"
    frame = pl.DataFrame(
        {"x": [1.0], "d": [datetime.timedelta(seconds=1.5)], "i": pl.Series([2**100], dtype=pl.Int128)}
    )
    frame.write_parquet(parquet)
    result = runner.invoke(app, ["value", "x", "--input", str(parquet), "--format", "csv"])
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == f"1.0,PT1.5S,{2**100},1.0"
    out = tmp_path / "out.parquet"
    assert runner.invoke(app, ["value", "x", "--input", str(parquet), "--output", str(out)]).exit_code == 0
    assert pl.read_parquet(out)["i"].to_list() == [str(2**100)]
