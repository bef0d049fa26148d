"""``--expect``: results compared with expected numbers as they are written, for CI jobs.

Each expectation names a result column and a number that every row must match, or comes from
a file of expected rows (matched to the results by position). A result matches when
|got - want| <= atol + rtol·|want| (numpy's ``isclose``); NaN matches NaN and an infinity the
same infinity. Mismatches are counted per column and reported with the first row that was off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import polars as pl

from .errors import UsageError


def wanted(texts: Sequence[str]) -> dict[str, float]:
    """``--expect`` options, ``COLUMN=VALUE,...`` each: a result column (any name a result can
    have, ``--prefix`` included) and a number, ``nan`` included (it matches NaN)."""
    from .errors import DiffcliError
    from .language import parse_number
    from .sources import split

    each: dict[str, float] = {}
    for item in (i for text in texts for i in split(text)):
        column, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not column or not value:
            raise UsageError(f"--expect {item!r}: expected COLUMN=VALUE")
        if column in each:
            raise UsageError(f"--expect gives {column} twice")
        try:
            each[column] = math.nan if value.lower() == "nan" else parse_number(value)
        except DiffcliError as e:
            raise UsageError(f"--expect {column}: {e.message}") from None
    return each


def shaped(
    rows: pl.DataFrame, quantities: Sequence[tuple[tuple[str, ...], str]], prefix: str, suffix: str
) -> pl.DataFrame:
    """Expected rows with a column per result: a JSON or NDJSON file of diffcli's own output holds
    ``grad``, ``hessian``, … as objects (read as their JSON text); each result is taken by its path."""
    found = {}
    for path, column in quantities:
        head = f"{prefix}{path[0]}{suffix}"
        if column in rows.columns or len(path) == 1 or head not in rows.columns or rows[head].dtype != pl.String:
            continue
        values = []
        for text in rows[head].to_list():
            node = orjson.loads(text) if text else None
            for key in path[1:]:
                node = node.get(key) if isinstance(node, dict) else None
            values.append(float(node) if isinstance(node, (int, float)) else math.nan)
        found[column] = values
    return rows.with_columns(pl.Series(c, v, dtype=pl.Float64) for c, v in found.items())


@dataclass
class Miss:
    """The mismatches of one column: how many, and the first."""

    count: int
    row: int  # 1-based
    got: float
    want: float


@dataclass
class Expectations:
    """Expected values per column: a number for every row, or a column of expected rows."""

    each: Mapping[str, float]  # column -> the number every row must give
    rows: pl.DataFrame | None  # expected rows, matched by position; its result columns are compared
    rtol: float
    atol: float
    seen: int = 0  # rows compared so far
    misses: dict[str, Miss] = field(default_factory=dict)

    def bind(self, columns: Sequence[str]) -> None:
        """Check, before any work, that every expectation names a result column."""
        unknown = [c for c in self.each if c not in columns]
        if unknown:
            raise UsageError(
                f"--expect names {unknown[0]!r}, which is not a result column",
                hint=f"the results: {', '.join(columns)}",
            )
        if self.rows is not None:
            self.rows = self.rows.select([c for c in self.rows.columns if c in columns])
            if not self.rows.width:
                raise UsageError("--expect-file has no result column", hint=f"the results: {', '.join(columns)}")

    def check(self, frame: pl.DataFrame) -> None:
        """Compare one batch of results (rows past the end of the expected rows are not compared)."""
        start, count = self.seen, frame.height
        self.seen += count
        wanted = {c: (np.full(count, v), np.ones(count, dtype=bool)) for c, v in self.each.items()}
        if self.rows is not None:
            part = self.rows.slice(start, count)
            present = np.arange(count) < part.height
            for column in part.columns:
                values = np.full(count, math.nan)
                values[: part.height] = part[column].cast(pl.Float64, strict=False).to_numpy()
                wanted[column] = (values, present)
        for column, (want, present) in wanted.items():
            got = frame[column].cast(pl.Float64).to_numpy()
            off = present & ~(np.isclose(got, want, rtol=self.rtol, atol=self.atol, equal_nan=True) | (got == want))
            if off.any():
                first = int(np.flatnonzero(off)[0])
                miss = self.misses.setdefault(column, Miss(0, start + first + 1, float(got[first]), float(want[first])))
                miss.count += int(off.sum())

    def report(self) -> list[str]:
        """One line per column that was off, and one if the expected rows do not match in number."""
        lines = [
            f"{column}: {m.count} of {self.seen} rows off; row {m.row} gave {m.got!r}, expected {m.want!r}"
            f" (rtol {self.rtol:g}, atol {self.atol:g})"
            for column, m in self.misses.items()
        ]
        if self.rows is not None and self.rows.height != self.seen:
            lines.append(f"--expect-file has {self.rows.height} rows, the results {self.seen}")
        return lines
