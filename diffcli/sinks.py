"""Frames of results -> text or Parquet: CSV, TSV, JSON, NDJSON for programs, Rich tables for people.

Each writer takes one polars frame per batch (the point's coordinates or the input row's columns,
then the reported numbers) and writes it at once, with polars doing the formatting: numbers are
the shortest text that reads back to the same double, unless ``precision`` asks for fewer
significant digits. JSON is strict (RFC 8259): a NaN or infinity is written ``null``; every
writer counts the non-finite numbers per column so the caller can say so on stderr.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import polars as pl
import polars.selectors as cs

from .errors import UsageError, option, spelling

FORMATS = ("table", "csv", "tsv", "json", "ndjson", "parquet")
TABLE_ROWS = 50  # rows a table shows; the rest are counted
UNLIMITED = 10_000  # the width of a table outside a terminal, unless $COLUMNS says otherwise


@dataclass
class Layout:
    """What a row holds: coordinates (or input columns), the quantities, and optional formulas.

    ``prefix`` and ``suffix`` (``--prefix``, ``--suffix``) are around each column of a quantity
    already (its plan named it so); a JSON object gets them around each key beside ``at``.
    """

    coordinates: Sequence[str]
    quantities: Sequence[tuple[tuple[str, ...], str]]  # (JSON path, column)
    formulas: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # kind -> column -> text
    prefix: str = ""
    suffix: str = ""

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name in [*self.coordinates, *self.columns]:
            if name in seen:
                raise UsageError(
                    f"the column {name!r} would appear twice (an input, point or result name); rename one of them",
                    hint=_renaming() if name in self.columns else None,
                )
            seen.add(name)

    @property
    def columns(self) -> list[str]:
        return [c for _, c in self.quantities]


def _renaming() -> str:
    """How results are renamed where a name clashes: on the command line, by a prefix or suffix."""
    if spelling() == "flags":
        return f"{option('prefix')} or {option('suffix')} renames the results: {option('prefix')} d_"
    return "rename that column of the data"


class Sink(abc.ABC):
    """Base writer: counts rows and non-finite numbers, formats to ``precision`` if asked."""

    def __init__(self, stream: IO[bytes], layout: Layout, precision: int | None) -> None:
        self.stream, self.layout, self.precision = stream, layout, precision
        self.rows = 0
        self.non_finite: dict[str, int] = {}

    def write(self, frame: pl.DataFrame) -> None:
        for column in self.layout.columns:
            numbers = frame[column].to_numpy()
            if not np.isfinite(numbers).all():
                self.non_finite[column] = self.non_finite.get(column, 0) + int((~np.isfinite(numbers)).sum())
        self.emit(frame)
        self.rows += frame.height
        self.stream.flush()

    @abc.abstractmethod
    def emit(self, frame: pl.DataFrame) -> None:
        """Write (or keep) one batch."""

    def close(self) -> None:
        self.stream.flush()

    def rounded(self, frame: pl.DataFrame, *, as_text: bool) -> pl.DataFrame:
        """The quantities to ``precision`` significant digits, as text or as the nearest double."""
        if not self.precision:
            return frame
        spec = f"{{:.{self.precision}g}}"
        convert = spec.format if as_text else (lambda v: float(spec.format(v)))
        dtype = pl.String if as_text else pl.Float64
        return frame.with_columns(cs.by_name(c).map_elements(convert, return_dtype=dtype) for c in self.layout.columns)


class DelimitedSink(Sink):
    """CSV or TSV: coordinates, then one column per number, then the formulas if asked."""

    def __init__(self, stream: IO[bytes], layout: Layout, precision: int | None, separator: str) -> None:
        super().__init__(stream, layout, precision)
        self.separator = separator
        self.extra = [
            pl.lit(text).alias(f"{kind}_{column}")
            for kind, texts in layout.formulas.items()
            for column, text in texts.items()
        ]

    def emit(self, frame: pl.DataFrame) -> None:
        frame = self.rounded(frame, as_text=True).with_columns(self.extra)
        frame.write_csv(self.stream, include_header=self.rows == 0, separator=self.separator)

    def close(self) -> None:
        if self.rows == 0:  # no rows (all skipped): still the header
            names = [*self.layout.coordinates, *self.layout.columns, *(e.meta.output_name() for e in self.extra)]
            pl.DataFrame(schema=dict.fromkeys(names, pl.String)).write_csv(self.stream, separator=self.separator)
        super().close()


class JsonSink(Sink):
    """One object per row: for JSON a single object for one row and an array for several; or NDJSON."""

    def __init__(self, stream: IO[bytes], layout: Layout, precision: int | None, lines: bool) -> None:
        super().__init__(stream, layout, precision)
        self.lines = lines
        self.pending: bytes | None = None  # the first object, until we know whether more follow
        at = pl.struct(cs.by_name(*layout.coordinates)) if layout.coordinates else pl.lit({})
        keyed = [((f"{layout.prefix}{head}{layout.suffix}", *rest), c) for (head, *rest), c in layout.quantities]
        self.shape = [at.alias("at"), *_nest(keyed, cs.by_name)]
        for kind, texts in layout.formulas.items():
            self.shape.append(pl.struct(*_nest(keyed, lambda c, t=texts: pl.lit(t[c]))).alias(kind))

    def emit(self, frame: pl.DataFrame) -> None:
        text = self.rounded(frame, as_text=False).select(self.shape).write_ndjson().encode()
        if self.lines:
            self.stream.write(text)
            return
        objects = text.rstrip(b"\n").split(b"\n") if text else []
        if self.rows == 0 and len(objects) == 1:
            self.pending = objects[0]
            return
        if self.pending is not None or self.rows == 0:
            self.stream.write(b"[\n" + b",\n".join(o for o in (self.pending, *objects) if o is not None))
            self.pending = None
        else:
            self.stream.write(b",\n" + b",\n".join(objects))

    def close(self) -> None:
        if not self.lines:
            if self.pending is not None:
                self.stream.write(self.pending + b"\n")
            else:
                self.stream.write(b"\n]\n" if self.rows else b"[]\n")
        super().close()


def _nest(quantities: Sequence[tuple[tuple[str, ...], str]], leaf: Any) -> list[pl.Expr]:
    """Expressions that shape columns like ``grad_x`` into ``{"grad": {"x": …}}``, by JSON path."""
    tree: dict[str, Any] = {}
    for path, column in quantities:
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = column

    def build(node: dict[str, Any]) -> list[pl.Expr]:
        return [
            pl.struct(*build(value)).alias(key) if isinstance(value, dict) else leaf(value).alias(key)
            for key, value in node.items()
        ]

    return build(tree)


class ParquetSink(Sink):
    """Parquet, one row group per batch, through pyarrow's streaming writer."""

    def __init__(self, stream: IO[bytes], layout: Layout, precision: int | None) -> None:
        super().__init__(stream, layout, precision)
        self.writer: Any = None

    def emit(self, frame: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = self.rounded(frame, as_text=False).to_arrow()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.stream, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        super().close()


class TableSink(Sink):
    """Rich tables: one point as variables × quantities (the Hessian a matrix); else a row per point.
    Tables wider than the console are listed point by point instead (``show``)."""

    def __init__(self, stream: IO[bytes], layout: Layout, precision: int | None, title: str) -> None:
        super().__init__(stream, layout, precision)
        self.title = title
        self.kept: list[pl.DataFrame] = []

    def emit(self, frame: pl.DataFrame) -> None:
        room = TABLE_ROWS - sum(f.height for f in self.kept)
        if room > 0:
            self.kept.append(self.rounded(frame.head(room), as_text=True))

    def close(self) -> None:
        from rich.table import Table
        from rich.text import Text

        shown = pl.concat(self.kept, how="vertical_relaxed") if self.kept else pl.DataFrame()
        names = shown.columns
        cells = [[_cell(v) for v in row] for row in shown.rows()]
        with rich_console(self.stream) as console:
            if self.rows == 1:
                show(console, self.one_point(dict(zip(names, cells[0]))), [(self.title, list(zip(names, cells[0])))])
            else:
                console.print(Text(self.title, style="table.title"), soft_wrap=True)
                table = Table()
                for name in names:
                    table.add_column(Text(name), justify="right")
                for row in cells:
                    table.add_row(*map(Text, row))
                points = [(f"point {i} of {self.rows}", list(zip(names, row))) for i, row in enumerate(cells, 1)]
                show(console, [table], points)
                hidden = self.rows - shown.height
                if hidden:
                    caption = f"{hidden} more rows not shown; use --format csv for all"
                    console.print(Text(caption, style="table.caption"))
            for kind, texts in self.layout.formulas.items():
                table = Table(title=Text(kind), title_justify="left")
                table.add_column("quantity")
                table.add_column("formula")
                for column, text in texts.items():
                    table.add_row(Text(column), Text(text))
                show(console, [table], [(kind, list(texts.items()))])
        super().close()

    def one_point(self, row: dict[str, str]) -> list[Any]:
        """The outputs table and the variables table of the only point."""
        from rich.table import Table
        from rich.text import Text

        outputs: dict[str, dict[str, str]] = {}  # output -> quantity -> text
        variables: dict[str, dict[str, str]] = {n: {"at": row[n]} for n in self.layout.coordinates}
        fix, suffix = self.layout.prefix, self.layout.suffix  # --prefix d_: the headers read d_grad
        if any(path[0] == "contribution" for path, _ in self.layout.quantities):  # propagate: u_m beside m
            from .sources import uncertain

            for name in [n for n in self.layout.coordinates if uncertain(n) in variables]:
                variables[uncertain(name)]["u"] = variables.pop(name)["at"]
        for path, column in self.layout.quantities:
            head, *rest = path
            text = row[column]
            if head in ("grad", "vjp", "contribution") and len(rest) == 1:
                variables.setdefault(rest[0], {})[f"{fix}{head}{suffix}"] = text
            elif head == "jacobian":
                variables.setdefault(rest[1], {})[f"{fix}∂{rest[0]}{suffix}"] = text
            elif head == "contribution":
                variables.setdefault(rest[1], {})[f"{fix}contribution {rest[0]}{suffix}"] = text
            elif head == "correlation":
                outputs.setdefault(rest[0], {})[f"{fix}correlation {rest[1]}{suffix}"] = text
            elif head == "hessian":
                variables.setdefault(rest[0], {})[f"{fix}hessian {rest[1]}{suffix}"] = text
            elif head == "aux":
                outputs.setdefault(f"{rest[0]} (aux)", {})[f"{fix}value{suffix}"] = text
            else:
                outputs.setdefault(rest[0] if rest else self.title, {})[f"{fix}{head}{suffix}"] = text
        tables = []
        for label, rows in (("output", outputs), ("variable", variables)):
            if not rows:
                continue
            headers = list(dict.fromkeys(k for cells in rows.values() for k in cells))
            table = Table()
            table.add_column(label)
            for header in headers:
                table.add_column(Text(header), justify="right")
            for name, cells in rows.items():
                table.add_row(Text(name), *(Text(cells.get(h, "")) for h in headers))
            tables.append(table)
        return tables


@contextlib.contextmanager
def rich_console(stream: IO[bytes]) -> Iterator[Any]:
    """A Rich console on ``stream``: as wide as the terminal; elsewhere ``$COLUMNS`` wide if that
    is a positive number (to render for a given width), else unlimited (as wide as a table needs)."""
    from rich.console import Console

    columns = os.environ.get("COLUMNS", "")
    width = None if stream.isatty() else int(columns) if columns.isdigit() and int(columns) > 0 else UNLIMITED
    yield Console(file=_Utf8(stream), highlight=False, width=width)


class _Utf8:
    """Text written to a byte stream as UTF-8. Unlike a TextIOWrapper, it never closes the stream:
    a wrapper dropped after a broken pipe (``| head``) closed stdout under the exit's flush."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text.encode())
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()


def show(console: Any, tables: Sequence[Any], records: Sequence[tuple[str, Sequence[tuple[str, Any]]]]) -> None:
    """``tables`` if they all fit the console's width; else the same numbers as ``records``, each a
    titled block of ``name  value`` lines (like psql's expanded display). Rich would fit a wide
    table by folding its numbers and headers; a record line wider than the console runs past
    the edge instead, so a number is never split."""
    from rich.cells import cell_len
    from rich.text import Text

    natural = console.options.update_width(UNLIMITED)  # measured unconstrained: the width without folding
    if all(console.measure(t, options=natural).maximum <= console.width for t in tables):
        for table in tables:
            console.print(table)
        return
    for title, pairs in records:
        console.print(Text(f"── {title} ──"), soft_wrap=True)
        width = max((cell_len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            console.print(Text.assemble(name, " " * (width - cell_len(name) + 2), value), soft_wrap=True)


def _cell(value: object) -> str:
    return repr(value) if isinstance(value, float) else "" if value is None else str(value)


def open_sink(fmt: str, stream: IO[bytes], layout: Layout, *, precision: int | None, title: str) -> Sink:
    if fmt in ("csv", "tsv"):
        return DelimitedSink(stream, layout, precision, "," if fmt == "csv" else "\t")
    if fmt in ("json", "ndjson"):
        return JsonSink(stream, layout, precision, lines=fmt == "ndjson")
    if fmt == "parquet":
        return ParquetSink(stream, layout, precision)
    return TableSink(stream, layout, precision, title)


def write_report(rows: list[dict[str, Any]], fmt: str, stream: IO[bytes]) -> None:
    """Rows of a report (check's, or the formulas alone) in ``fmt``: JSON, CSV and Parquet write a
    NaN or an infinity as null (strict JSON), a table as ``nan`` or ``inf``."""

    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return None if isinstance(value, float) and not math.isfinite(value) else value

    strict = [finite(r) for r in rows]
    if fmt in ("json", "ndjson"):
        lines = [json.dumps(r, allow_nan=False, separators=(",", ":")) for r in strict]
        if fmt == "ndjson":
            text = "".join(line + "\n" for line in lines)
        else:
            text = "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
        stream.write(text.encode())
    elif fmt in ("csv", "tsv", "parquet"):
        flat = pl.DataFrame([{**r, "at": json.dumps(r["at"])} if "at" in r else r for r in strict])
        if fmt == "parquet":
            flat.write_parquet(stream)
        else:
            flat.write_csv(stream, separator="," if fmt == "csv" else "\t")
    else:
        from rich.table import Table
        from rich.text import Text

        def cell(key: str, value: Any) -> Text:
            if key == "at":
                return Text(", ".join(f"{k}={v!r}" for k, v in value.items()))
            if key == "ok":
                return Text("ok" if value else "DISAGREE", style="" if value else "bold red")
            return Text(repr(value) if isinstance(value, float) else str(value))

        names = list(rows[0]) if rows else []
        cells = [[cell(k, v) for k, v in r.items()] for r in rows]
        table = Table()
        for name in names:
            table.add_column(
                name, justify="left" if name in ("output", "quantity", "engine", "at", "symbolic", "latex") else "right"
            )
        for row in cells:
            table.add_row(*row)
        records = [(f"row {i} of {len(rows)}", list(zip(names, row))) for i, row in enumerate(cells, 1)]
        with rich_console(stream) as console:
            show(console, [table], records)
