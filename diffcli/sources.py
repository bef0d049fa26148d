"""Where to evaluate: ``--at`` points and ``--grid`` ranges, combined into batches of columns.

``--at`` options assigning the same names form one list of points; groups assigning different
names, each ``--grid``, and the rows of an ``--input`` file combine as a cartesian product
(README: "Examples"). Batches are polars frames of columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from .errors import DiffcliError, UsageError
from .names import variable_name

MAX_POINTS = 2**53  # grid indexes stay exact as doubles; far beyond what finishes
UNCERTAINTY = "u_"  # x's standard uncertainty is the variable (and column) u_x, as the GUM writes u(x)


@dataclass(frozen=True)
class Group:
    """Points that vary together: ``names`` and one tuple of values per point."""

    names: tuple[str, ...]
    rows: tuple[tuple[float, ...], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def pick(self, index: np.ndarray) -> np.ndarray:
        """The points at ``index``, one row each."""
        return np.array(self.rows, dtype=np.float64).reshape(len(self), len(self.names))[index]


@dataclass(frozen=True)
class Grid(Group):
    """``count`` evenly spaced values of one name, computed when picked (a grid can be huge)."""

    start: float = 0.0
    stop: float = 0.0
    count: int = 1

    def __len__(self) -> int:
        return self.count

    def pick(self, index: np.ndarray) -> np.ndarray:
        # torch.linspace's rule: step from the start for the first half, from the stop for the rest
        # (one value: the start, as torch.linspace(0, 1, 1) is [0.])
        step = (self.stop - self.start) / (self.count - 1) if self.count > 1 else 0.0
        first_half = index < max(self.count // 2, 1)
        values = np.where(first_half, self.start + index * step, self.stop - (self.count - 1 - index) * step)
        return values.reshape(-1, 1)


@dataclass(frozen=True)
class Points:
    """The cartesian product of groups, the last group varying fastest."""

    groups: tuple[Group, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for g in self.groups for n in g.names)

    def __len__(self) -> int:
        return math.prod(len(g) for g in self.groups)

    def take(self, index: np.ndarray) -> pl.DataFrame:
        """The points at positions ``index`` of the product, as columns."""
        columns: dict[str, np.ndarray] = {}
        for group in reversed(self.groups):
            picked = group.pick(index % len(group))
            index = index // len(group)
            columns.update({n: picked[:, i] for i, n in enumerate(group.names)})
        return pl.DataFrame({n: columns[n] for n in self.names})

    def frames(self, size: int) -> Iterator[pl.DataFrame]:
        """The whole product in frames of at most ``size`` points (a large grid never sits in memory)."""
        for start in range(0, len(self), size):
            yield self.take(np.arange(start, min(start + size, len(self))))

    def cross(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Every row with every point: rows outermost, as ``--at a=2 --input f.csv`` reads."""
        if not self.groups:
            return rows
        if len(self) == 1:
            return rows.hstack(self.take(np.zeros(rows.height, dtype=np.int64)))
        repeat = np.repeat(np.arange(rows.height), len(self))
        return rows[repeat].hstack(self.take(np.tile(np.arange(len(self)), rows.height)))


def points(at: Sequence[Mapping[str, float]], grids: Sequence[Group] = ()) -> Points:
    """The product of the ``--at`` points (those assigning the same names form one list, in any
    order of the names) and the grids; a name in two groups is a usage error."""
    groups: dict[frozenset[str], tuple[tuple[str, ...], list[tuple[float, ...]]]] = {}
    for assignment in at:
        names, rows = groups.setdefault(frozenset(assignment), (tuple(assignment), []))
        rows.append(tuple(assignment[n] for n in names))
    result = [Group(names, tuple(rows)) for names, rows in groups.values()] + list(grids)
    if math.prod(len(g) for g in result) > MAX_POINTS:
        raise UsageError(f"the --at lists and --grid counts multiply to more than 2**53 ({MAX_POINTS:,}) points")
    seen: set[str] = set()
    for group in result:
        for name in group.names:
            if name in seen:
                raise UsageError(
                    f"{name} is given by two different groups of points",
                    hint="repeat the same names in every --at of a list (--at x=1,y=2 --at x=3,y=4)",
                )
            seen.add(name)
    return Points(tuple(result))


def assignments(text: str, option: str, *, uncertain: bool = False) -> dict[str, float]:
    """``x=1,y=pi/2`` -> {x: 1.0, y: 1.5707963267948966}; commas inside parentheses are kept.
    ``uncertain``: a value may be ``2±0.1`` (or ``2+-0.1``), giving x and its uncertainty ``u_x``."""
    from .language import option_name  # SymPy: only where a value is written out

    values: dict[str, float] = {}
    for item in split(text):
        name, equals, value = item.partition("=")
        name = variable_name(name)
        if not equals or not value.strip():
            raise UsageError(f"{option} {text!r}: expected name=value, got {item!r}")
        option_name(name, option)
        if name in values:
            raise UsageError(f"{option} {text!r}: {name} is given twice")
        mean, plus_minus, sigma = _plus_minus(value) if uncertain else (value, "", "")
        values[name] = number(mean, f"{option} {name}")
        if plus_minus:
            values[uncertainty(name)] = number(sigma, f"{option} {name}: the uncertainty")
            if not 0 <= values[uncertainty(name)] < math.inf:
                raise UsageError(
                    f"{option} {name}: an uncertainty is a finite number, 0 or more, got {sigma.strip()!r}"
                )
    return values


def uncertainty(name: str) -> str:
    """The variable holding ``name``'s standard uncertainty: ``u_m`` for m."""
    return UNCERTAINTY + name


def uncertain(variable: str) -> str | None:
    """The variable whose uncertainty ``variable`` holds (m for ``u_m``), or None."""
    return variable.removeprefix(UNCERTAINTY) if variable.startswith(UNCERTAINTY) else None


def _plus_minus(text: str) -> tuple[str, str, str]:
    """``2±0.1`` or ``2+-0.1`` -> ("2", "±", "0.1") at its ± outside parentheses; ``2`` -> ("2", "", "")."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and (ch == "±" or text.startswith("+-", i)):
            return text[:i], "±", text[i + (1 if ch == "±" else 2) :]
    return text, "", ""


def grid(text: str) -> Grid:
    """``x=0:10:100``: 100 values from 0 to 10, ends included."""
    from .language import option_name  # SymPy: only where a value is written out

    name, equals, spec = text.partition("=")
    name = variable_name(name)
    parts = spec.split(":")
    if not equals or len(parts) != 3:
        raise UsageError(f"--grid {text!r}: expected name=start:stop:count, e.g. x=0:10:100")
    option_name(name, "--grid")
    start, stop = (number(p, f"--grid {name}") for p in parts[:2])
    if not (math.isfinite(start) and math.isfinite(stop)):
        raise UsageError(f"--grid {text!r}: the ends must be finite numbers")
    try:
        count = int(parts[2])
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--grid {text!r}: count must be a positive integer, got {parts[2]!r}")
    if count > MAX_POINTS:
        raise UsageError(f"--grid {text!r}: count must be at most 2**53 ({MAX_POINTS:,})")
    return Grid((name,), (), start, stop, count)


def split(text: str) -> list[str]:
    """``a=1,b=f(2,3)`` -> its items, split at the commas outside parentheses."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [*items, current]


def number(text: str, what: str) -> float:
    """``text`` as a number (``pi/4``), or a usage error naming ``what``."""
    from .language import parse_number  # SymPy: only where a value is written out

    try:
        return parse_number(text)
    except DiffcliError as e:
        if e.message.startswith(repr(text.strip())):  # parse_number's own: it names the text
            raise UsageError(f"{what}: {e.message}") from None
        raise UsageError(f"{what}: {text.strip()!r} is not a number ({e.message})") from None


def family_columns(
    variables: Iterable[str], indexed: Iterable[str], available: Iterable[str], renames: Mapping[str, str] = {}
) -> dict[str, str]:
    """For each variable written x[3] that no column or point of its own name gives, the one that
    does: a column named ``x[3]``, else the family's value ``x`` (``--at x=1``, or the column that
    ``renames`` names for x), unless x is a variable itself."""
    available, variables = set(available), set(variables)
    found = {}
    for v in set(indexed) & variables - available:
        base, _, index = v.rpartition("_")
        given = [c for c in (f"{base}[{index}]", renames.get(base, base)) if c in available]
        if given and base not in variables:
            found[v] = given[0]
    return found
