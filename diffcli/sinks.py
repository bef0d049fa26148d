"""Results -> text: CSV, TSV, JSON, NDJSON for programs, Rich tables for people (DESIGN §3).

Every writer takes batches of columns as they are computed and writes them at once. Numbers are
the shortest text that reads back to the same double (``repr``), unless ``precision`` asks for
fewer significant digits. JSON is strict: a NaN or infinity is written ``null``; every writer
counts the non-finite numbers per column so the caller can say so on stderr.
"""

from __future__ import annotations

import abc
import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

FORMATS = ("table", "csv", "tsv", "json", "ndjson")


@dataclass
class Layout:
    """What a row holds: the point's coordinates, then the quantities; plus optional formulas."""

    coordinates: Sequence[str]
    quantities: Sequence[tuple[tuple[str, ...], str]]  # (JSON path, CSV column)
    formulas: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # "symbolic"/"latex" -> column -> text


class Sink(abc.ABC):
    """Base writer: turns tensors into Python floats and counts the non-finite ones."""

    def __init__(self, stream: IO[str], layout: Layout, precision: int | None) -> None:
        self.stream, self.layout, self.precision = stream, layout, precision
        self.rows = 0
        self.non_finite: dict[str, int] = {}

    def write(self, at: Mapping[str, Tensor], results: Mapping[str, Tensor]) -> None:
        coordinates = {n: at[n].double().tolist() for n in self.layout.coordinates}
        values = {c: results[c].double().tolist() for _, c in self.layout.quantities}
        for column, numbers in values.items():
            bad = sum(not math.isfinite(v) for v in numbers)
            if bad:
                self.non_finite[column] = self.non_finite.get(column, 0) + bad
        count = len(next(iter(values.values()))) if values else 0
        for i in range(count):
            self.row({n: c[i] for n, c in coordinates.items()}, {n: c[i] for n, c in values.items()})
        self.rows += count
        self.stream.flush()

    @abc.abstractmethod
    def row(self, at: dict[str, float], values: dict[str, float]) -> None:
        """Write (or keep) one point's coordinates and numbers."""

    def close(self) -> None:
        self.stream.flush()

    def rounded(self, value: float) -> float:
        return float(f"{value:.{self.precision}g}") if self.precision else value

    def text(self, value: float) -> str:
        if not math.isfinite(value):
            return repr(value)  # nan, inf, -inf: what CSV readers (polars, pandas) parse back
        return f"{value:.{self.precision}g}" if self.precision else repr(value)


class DelimitedSink(Sink):
    """CSV or TSV: coordinates, then one column per number, then the formulas if asked."""

    def __init__(self, stream: IO[str], layout: Layout, precision: int | None, delimiter: str) -> None:
        super().__init__(stream, layout, precision)
        self.writer = csv.writer(stream, delimiter=delimiter, lineterminator="\n")
        self.extra = [
            (f"{kind}_{column}", text) for kind, texts in layout.formulas.items() for column, text in texts.items()
        ]
        self.writer.writerow([*layout.coordinates, *(c for _, c in layout.quantities), *(n for n, _ in self.extra)])

    def row(self, at: dict[str, float], values: dict[str, float]) -> None:
        self.writer.writerow(
            [
                *(self.text(v) for v in at.values()),
                *(self.text(v) for v in values.values()),
                *(t for _, t in self.extra),
            ]
        )


class JsonSink(Sink):
    """One object per point: a single object for one point, an array for several; or NDJSON."""

    def __init__(self, stream: IO[str], layout: Layout, precision: int | None, lines: bool) -> None:
        super().__init__(stream, layout, precision)
        self.lines = lines
        self.objects = 0
        self.pending: str | None = None  # the first object, until we know whether more follow
        self.formulas = {kind: nest(layout.quantities, texts) for kind, texts in layout.formulas.items()}

    def row(self, at: dict[str, float], values: dict[str, float]) -> None:
        obj: dict[str, Any] = {"at": {n: self.number(v) for n, v in at.items()}}
        obj.update(nest(self.layout.quantities, {c: self.number(v) for c, v in values.items()}))
        obj.update(self.formulas)
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
        self.objects += 1
        if self.lines:
            self.stream.write(text + "\n")
        elif self.objects == 1:
            self.pending = text
        else:
            if self.pending is not None:
                self.stream.write("[\n" + self.pending)
                self.pending = None
            self.stream.write(",\n" + text)

    def number(self, value: float) -> float | None:
        return self.rounded(value) if math.isfinite(value) else None

    def close(self) -> None:
        if not self.lines:
            if self.pending is not None:
                self.stream.write(self.pending + "\n")
            else:
                self.stream.write("\n]\n" if self.objects else "[]\n")
        super().close()


def nest(quantities: Sequence[tuple[tuple[str, ...], str]], values: Mapping[str, Any]) -> dict[str, Any]:
    """{"grad_x": 4.0} -> {"grad": {"x": 4.0}}, following each quantity's JSON path."""
    result: dict[str, Any] = {}
    for path, column in quantities:
        node = result
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = values[column]
    return result


class TableSink(Sink):
    """Rich tables: one point as variables x quantities (the Hessian a matrix); else a row per point."""

    def __init__(self, stream: IO[str], layout: Layout, precision: int | None, title: str) -> None:
        super().__init__(stream, layout, precision)
        from rich.console import Console

        # On a terminal, its width (long numbers fold); elsewhere as wide as the table needs.
        self.console = Console(file=stream, highlight=False, width=None if stream.isatty() else 10_000)
        self.title = title
        self.kept: list[tuple[dict[str, float], dict[str, float]]] = []

    def row(self, at: dict[str, float], values: dict[str, float]) -> None:
        self.kept.append((at, values))

    def close(self) -> None:
        from rich.table import Table
        from rich.text import Text

        if len(self.kept) == 1:
            for table in self.one_point(*self.kept[0]):
                self.console.print(table)
        else:
            table = Table(title=Text(self.title), title_justify="left")
            for name in [*self.layout.coordinates, *(c for _, c in self.layout.quantities)]:
                table.add_column(Text(name), justify="right", overflow="fold")
            for at, values in self.kept:
                table.add_row(*(Text(self.text(v)) for v in [*at.values(), *values.values()]))
            self.console.print(table)
        for kind, texts in self.layout.formulas.items():
            table = Table(title=Text(kind), title_justify="left")
            table.add_column("quantity")
            table.add_column("formula")
            for column, text in texts.items():
                table.add_row(Text(column), Text(text))
            self.console.print(table)
        super().close()

    def one_point(self, at: dict[str, float], values: dict[str, float]) -> list[Any]:
        from rich.table import Table
        from rich.text import Text

        outputs: dict[str, dict[str, str]] = {}  # output -> quantity -> text
        variables: dict[str, dict[str, str]] = {n: {"at": self.text(v)} for n, v in at.items()}
        for path, column in self.layout.quantities:
            head, *rest = path
            text = self.text(values[column])
            if head in ("grad", "vjp"):
                variables.setdefault(rest[0], {})[head] = text
            elif head == "jacobian":
                variables.setdefault(rest[1], {})[f"∂{rest[0]}"] = text
            elif head == "hessian":
                variables.setdefault(rest[0], {})[f"hessian {rest[1]}"] = text
            elif head == "aux":
                outputs.setdefault(f"{rest[0]} (aux)", {})["value"] = text
            else:
                outputs.setdefault(rest[0] if rest else self.title, {})[head] = text
        tables = []
        for label, rows in (("output", outputs), ("variable", variables)):
            headers = list(dict.fromkeys(k for cells in rows.values() for k in cells))
            table = Table()
            table.add_column(label)
            for header in headers:
                table.add_column(Text(header), justify="right", overflow="fold")
            for name, cells in rows.items():
                table.add_row(Text(name), *(Text(cells.get(h, "")) for h in headers))
            tables.append(table)
        return tables


def open_sink(fmt: str, stream: IO[str], layout: Layout, *, precision: int | None, title: str) -> Sink:
    if fmt in ("csv", "tsv"):
        return DelimitedSink(stream, layout, precision, "," if fmt == "csv" else "\t")
    if fmt in ("json", "ndjson"):
        return JsonSink(stream, layout, precision, lines=fmt == "ndjson")
    return TableSink(stream, layout, precision, title)
