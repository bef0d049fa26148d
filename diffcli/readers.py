"""``--input`` files -> polars frames of rows, streamed in batches: CSV, TSV, JSON, NDJSON, Parquet.

CSV, TSV and NDJSON are cut into blocks of whole lines (whole records: a block never ends inside
a quoted field) and parsed by polars, so memory stays flat in the row count and stdin streams.
A block that polars refuses, or that has a missing number, is parsed again by the standard
library, which finds the exact row and column for the error message (or drops the bad rows
with ``--skip-bad-rows``). A JSON array and Parquet from stdin are read whole: neither format
can be streamed.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import select
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import polars as pl
import polars.selectors as cs

from .errors import DataError, UsageError

FORMATS = ("csv", "tsv", "json", "ndjson", "parquet")
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
}
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which Excel writes before a CSV's header
BLOCK_BYTES = 1 << 20  # the smallest block read at once
MAX_RECORD_BYTES = 64 << 20  # the longest record (a quoted field may hold newlines)


def input_format(path: str, explicit: str | None, head: bytes) -> str:
    """The format named by ``--input-format``, else the extension, else a sniff of the first bytes:
    Parquet's magic number, ``[`` for JSON, ``{`` for NDJSON, tabs for TSV, else CSV."""
    if explicit:
        if explicit not in FORMATS:
            raise UsageError(f"unknown --input-format {explicit!r}; expected {', '.join(FORMATS)}")
        return explicit
    extension = os.path.splitext(path)[1].lower()
    if extension in EXTENSIONS:
        return EXTENSIONS[extension]
    start = head.lstrip()[:1]
    if head.startswith(b"PAR1"):
        return "parquet"
    first_line = head.split(b"\n", 1)[0]
    delimited = "tsv" if b"\t" in first_line and b"," not in first_line else "csv"
    return {b"[": "json", b"{": "ndjson"}.get(start, delimited)


def first_bytes(stream: io.BufferedReader) -> bytes:
    """The first bytes of ``stream`` (4 KiB at most), for ``input_format`` to sniff; a UTF-8 byte
    order mark is read past first: it is no part of the first column's name, nor valid JSON."""
    if stream.peek(len(BOM))[: len(BOM)] == BOM:
        stream.read(len(BOM))
    return stream.peek(4096)[:4096]


def misnamed(names: Sequence[str]) -> tuple[int, str] | None:
    """The first name that cannot name a column (its number, 1-based) and why: empty, or used before."""
    for number, name in enumerate(names, 1):
        if not name:
            return number, "the name is empty"
        if name in names[: number - 1]:
            return number, f"the same name as column {names.index(name) + 1}"
    return None


@dataclass
class Reader:
    """Reads one input in frames: first ``header()``, then iterate. ``numeric`` names the columns
    that must hold a number in every row (the variables)."""

    stream: IO[bytes]
    name: str  # the file name used in messages
    fmt: str
    numeric: set[str] = field(default_factory=set)
    columns: Sequence[str] | None = None  # --columns: the names instead of the header line's
    no_header: bool = False  # the first line is data (then ``columns`` names it)
    delimiter: str | None = None
    skip_bad: bool = False
    batch_rows: int = 65_536
    skipped: int = 0
    rows: int = 0  # data rows read so far, bad ones included
    record_keys: list[str] = field(default_factory=list)  # JSON: the first object's keys
    names: list[str] = field(default_factory=list, init=False)  # set by header()
    pending: bytes = field(default=b"", init=False)  # a data line read while looking for the header
    first: pl.DataFrame | list[object] | None = field(default=None, init=False)  # JSON, Parquet: the first part
    parts: Iterator[pl.DataFrame | list[object]] = field(default_factory=lambda: iter(()), init=False)

    def fail(self, row: int | str | None, column: str | int | None, problem: str) -> DataError:
        """A data error naming the file, the row (1-based, the header not counted) and the column:
        a variable's by the name the user typed, any other by its number (1-based), since messages
        never show a file's contents."""
        if isinstance(column, str) and column not in self.numeric:
            column = self.names.index(column) + 1
        place = [f"row {row}" if isinstance(row, int) else row or "", f"column {column!r}" if column else ""]
        where = ", ".join(p for p in place if p)
        return DataError(f"{self.name}: {where + ': ' if where else ''}{problem}")

    def header(self) -> list[str]:
        """The column names: a delimited file's header line (or ``columns`` instead), the first JSON
        object's keys, Parquet's names. Any text is a name, but not an empty one or one used twice."""
        if self.fmt in ("csv", "tsv"):
            line = self.stream.readline()
            if not line.strip():
                raise self.fail(None, None, "is empty: expected a header line")
            if self.no_header:
                self.pending, names = line, list(self.columns or [])
            else:
                try:
                    names = next(csv.reader([self._text(line, None)], delimiter=self.separator))
                except csv.Error as e:
                    raise self.fail("header", None, f"is not valid CSV ({e})") from None
                if self.columns is not None:  # --columns renames the header's columns
                    if len(self.columns) != len(names):
                        raise UsageError(
                            f"--columns names {len(self.columns)} columns, but the header of {self.name} "
                            f"has {len(names)}"
                        )
                    names = list(self.columns)
        else:
            self.parts = self._structured()  # frames of Parquet, lists of JSON objects
            self.first = next(self.parts, None)
            if not isinstance(self.first, pl.DataFrame):
                if not self.first:
                    raise self.fail(None, None, "has no rows")
                self.record_keys = list(self.first[0]) if isinstance(self.first[0], dict) else []
            names = self.first.columns if isinstance(self.first, pl.DataFrame) else self.record_keys
        problem = misnamed(names)
        if problem:
            raise self.fail("header", *problem)
        self.names = names
        if isinstance(self.first, pl.DataFrame):
            for name, kind in self.first.schema.items():
                if kind.is_nested() or kind in (pl.Binary, pl.Object):
                    raise self.fail(
                        "header", name, f"has type {kind.base_type()}, which diffcli cannot pass through or use"
                    )
        return names

    @property
    def separator(self) -> str:
        return self.delimiter or ("\t" if self.fmt == "tsv" else ",")

    def __iter__(self) -> Iterator[pl.DataFrame]:
        if self.fmt in ("csv", "tsv"):
            for block in self._blocks(self.pending):
                yield self._delimited(block)
            if self.rows == 0:
                raise self.fail(None, None, "has a header but no rows")
        else:
            for part in itertools.chain([self.first], self.parts):
                yield self._checked(part) if isinstance(part, pl.DataFrame) else self._records(part or [])

    # -- delimited text ---------------------------------------------------------------------

    def _schema(self) -> dict[str, pl.DataType]:
        return {n: pl.Float64() if n in self.numeric else pl.String() for n in self.names}

    def _blocks(self, first: bytes) -> Iterator[bytes]:
        """Blocks of whole records, about ``batch_rows`` rows each; what a slow pipe has, sooner.

        After what the buffered stream already holds, reads go to the raw file into one reused
        buffer; from a pipe, only as long as it has data ready, so rows that arrive slowly are
        answered as they come. Each byte is searched once for the end of a record, whatever the
        quoting (a stray quote made this quadratic); a record longer than ``MAX_RECORD_BYTES``
        (a quote never closed) is an error.
        """
        carry = first + self.stream.read1(len(self.stream.peek(0)))  # type: ignore[attr-defined]
        raw: Any = getattr(self.stream, "raw", self.stream)
        pipe = not raw.seekable()
        size = max(BLOCK_BYTES, min(256 << 20, (len(first) or 64) * self.batch_rows))
        buffer = bytearray(max(size, 2 * len(carry)))
        ended = False
        searched, quoted = 0, False  # how much of carry holds no record end; a quote open there
        while carry or not ended:
            filled = len(carry)
            if len(buffer) < 2 * filled:
                if filled > MAX_RECORD_BYTES:
                    raise self.fail(self.rows + 1, None, f"a quote opened here is not closed within {filled:,} bytes")
                buffer.extend(bytes(len(buffer)))  # one record longer than the buffer: grow
            buffer[:filled] = carry
            while not ended and filled < len(buffer):
                if pipe and filled and not select.select([raw], [], [], 0)[0]:
                    break  # a pipe that has no more for now: work on what came
                try:
                    count = raw.readinto(memoryview(buffer)[filled:]) or 0
                except OSError as e:
                    raise self.fail(None, None, f"cannot read: {e.strerror}") from None
                ended = count == 0
                filled += count
            cut, quoted = (filled, False) if ended else _record_end(buffer, searched, filled, quoted)
            view = memoryview(buffer)[:filled]
            block, carry = bytes(view[:cut]), bytes(view[cut:])
            view.release()
            searched = len(carry)
            if block and not block.isspace():
                yield block

    def _delimited(self, block: bytes) -> pl.DataFrame:
        try:
            frame = pl.read_csv(
                block, has_header=False, new_columns=self.names, schema=self._schema(), separator=self.separator
            )
            if not any(frame[n].null_count() for n in self.numeric):  # else: a missing number
                self.rows += frame.height
                return frame
        except pl.exceptions.PolarsError:
            pass
        return self._slow_delimited(block)

    def _slow_delimited(self, block: bytes) -> pl.DataFrame:
        """The block again, row by row, for the exact place of each problem."""
        text = self._text(block, self.rows)
        good: dict[str, list[object]] = {n: [] for n in self.names}
        records = csv.reader(io.StringIO(text, newline=""), delimiter=self.separator, strict=True)
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except csv.Error as e:
                raise self.fail(self.rows + 1, None, f"is not valid CSV ({e})") from None
            if not record:
                continue
            self.rows += 1
            problem = self._check_record(record)
            if problem is None:
                for n, value in zip(self.names, record):
                    good[n].append(float(value) if n in self.numeric else value)
            elif self.skip_bad:
                self.skipped += 1
            else:
                raise self.fail(self.rows, *problem)
        return pl.DataFrame(good, schema=self._schema())

    def _check_record(self, record: list[str]) -> tuple[str | None, str] | None:
        if len(record) < len(self.names):
            return self.names[len(record)], f"missing: the row has {len(record)} of {len(self.names)} fields"
        if len(record) > len(self.names):
            return self.names[-1], f"is followed by {len(record) - len(self.names)} more field(s) than the header names"
        for n, value in zip(self.names, record):
            if n in self.numeric:
                if not value.strip():
                    return n, "missing value"
                try:
                    float(value)
                except ValueError:
                    return n, "not a number"  # the value not shown: messages never show a file's contents
        return None

    def _text(self, data: bytes, rows_before: int | None) -> str:
        """``data`` as text; ``rows_before`` None: it is the header."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            row = "header" if rows_before is None else rows_before + data.count(b"\n", 0, e.start) + 1
            line_start = data.rfind(b"\n", 0, e.start) + 1
            field = data.count(self.separator.encode(), line_start, e.start)
            column = self.names[field] if getattr(self, "names", None) and field < len(self.names) else None
            raise self.fail(row, column, f"invalid UTF-8 (byte {data[e.start]:#04x})") from None

    # -- JSON, NDJSON, Parquet ----------------------------------------------------------------

    def _structured(self) -> Iterator[pl.DataFrame | list[object]]:
        if self.fmt == "parquet":
            source = self.stream if self.stream.seekable() else io.BytesIO(self.stream.read())
            try:
                yield from pl.scan_parquet(source).collect_batches(chunk_size=self.batch_rows)
            except (pl.exceptions.PolarsError, OSError) as e:
                raise self.fail(None, None, f"is not a readable Parquet file ({str(e).splitlines()[0]})") from None
        elif self.fmt == "json":
            data = self.stream.read()
            try:
                records = orjson.loads(data)
            except orjson.JSONDecodeError as e:
                raise self.fail(None, None, f"is not valid JSON ({e})") from None
            if isinstance(records, dict):
                records = [records]  # one object is one row (diffcli writes one point so)
            if not isinstance(records, list):
                raise self.fail(None, None, "must hold a JSON object or an array of objects")
            for start in range(0, len(records), self.batch_rows):
                yield [self._unnested(r, start + i + 1) for i, r in enumerate(records[start : start + self.batch_rows])]
        else:
            for block in self._blocks(b""):
                yield self._ndjson(block)

    def _unnested(self, record: object, row: int) -> object:
        """A record of diffcli's own JSON output, its point's coordinates ``"at": {...}`` as columns
        of their own, so that output can be read back (``grad … | grad … -i -``); a name both in
        ``at`` and beside it is a data error, not a silent choice."""
        if not (isinstance(record, dict) and isinstance(record.get("at"), dict)):
            return record
        twice = sorted(set(record["at"]) & set(record))
        if twice:
            raise self.fail(row, None, f'the key {twice[0]!r} is both in its "at" object and beside it')
        return {**record["at"], **{k: v for k, v in record.items() if k != "at"}}

    def _ndjson(self, block: bytes) -> list[object]:
        records = []
        for line in block.split(b"\n"):
            if line.strip():
                try:
                    records.append(self._unnested(orjson.loads(line), self.rows + len(records) + 1))
                except orjson.JSONDecodeError as e:
                    raise self.fail(self.rows + len(records) + 1, None, f"is not valid JSON ({e})") from None
        return records

    def _records(self, records: list[object]) -> pl.DataFrame:
        """Objects -> a frame with the first object's keys, checking every number, row by row."""
        names = self.record_keys
        good: list[Mapping[str, object]] = []
        for record in records:
            self.rows += 1
            problem = self._check_object(record)
            if problem is None:
                good.append(record)  # type: ignore[arg-type]
            elif self.skip_bad:
                self.skipped += 1
            else:
                raise self.fail(self.rows, *problem)
        columns = {n: [r.get(n) if n in self.numeric else _scalar(r.get(n)) for r in good] for n in names}
        schema_overrides = {n: pl.Float64 for n in self.numeric if n in columns}
        return pl.DataFrame(columns, schema_overrides=schema_overrides, strict=False)

    def _check_object(self, record: object) -> tuple[str | None, str] | None:
        if not isinstance(record, dict):
            return None, "is not a JSON object"
        for n in self.numeric:
            value = record.get(n)
            if value is None:
                return n, "missing value"
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return n, f"{_KINDS.get(type(value), 'a string')}, not a number"
            if isinstance(value, int) and abs(value) >= 2**1024:
                return n, "number out of float64 range"
        return None

    def _checked(self, frame: pl.DataFrame) -> pl.DataFrame:
        """A Parquet frame: numeric columns as float64, no missing values; columns passed through
        that not every output format can hold as they are, as text (durations in ISO 8601)."""
        for n, kind in frame.schema.items():
            if n in self.numeric:
                continue
            if kind in (pl.Int128, pl.UInt128):
                frame = frame.with_columns(cs.by_name(n).cast(pl.String))
            elif kind == pl.Duration:
                frame = frame.with_columns(cs.by_name(n).dt.to_string())
        for n in self.numeric:
            if not frame.schema[n].is_numeric():
                raise self.fail(None, n, f"has type {frame.schema[n]}, not a number")
            frame = frame.with_columns(cs.by_name(n).cast(pl.Float64))
        nulls = (
            frame.select(pl.any_horizontal(cs.by_name(*self.numeric).is_null())).to_series() if self.numeric else None
        )
        if nulls is not None and nulls.any():
            if not self.skip_bad:
                row = int(nulls.arg_true()[0])
                column = next(n for n in self.numeric if frame[n][row] is None)
                raise self.fail(self.rows + row + 1, column, "missing value")
            self.skipped += int(nulls.sum())
            frame = frame.filter(~nulls)
        self.rows += frame.height + (int(nulls.sum()) if nulls is not None else 0)
        return frame


_KINDS = {bool: "a boolean", dict: "an object", list: "an array"}


def _scalar(value: object) -> object:
    """A JSON value passed through: objects and arrays as their JSON text, so every output format holds them."""
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value


def _record_end(buffer: bytearray, start: int, length: int, quoted: bool) -> tuple[int, bool]:
    """The end of the last whole record in ``buffer[:length]`` (after a newline outside quotes)
    found from ``start`` on, or 0; and whether a quote is open at ``length`` (``quoted``: at
    ``start``). Counted back from the end, line by line, to ``start`` at most: each byte once."""
    inside = quoted ^ bool(buffer.count(b'"', start, length) & 1)
    at_end, end = inside, length
    while True:
        newline = buffer.rfind(b"\n", start, end)
        if newline < 0:
            return 0, at_end
        inside ^= bool(buffer.count(b'"', newline + 1, end) & 1)  # the quote state at the newline
        if not inside:
            return newline + 1, at_end
        end = newline
