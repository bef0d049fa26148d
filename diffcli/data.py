"""Data held in memory, as Python callers hold it: a mapping of names to numbers, sequences, numpy
arrays or torch tensors; a polars or pandas DataFrame; a pyarrow Table or RecordBatch. Each kind
comes back as itself, its columns first and the results' after them (README: "From Python").

Nothing here imports a library the caller did not hand in: a pandas frame is handled with pandas,
a pyarrow table with pyarrow; numpy and torch are always used (and polars for ``frame``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError, UsageError
from .names import variable_name

if TYPE_CHECKING:
    import torch


def _kind(data: Any) -> str:
    """Which kind ``data`` is, by its type's module: nothing is imported to find out."""
    module = type(data).__module__.split(".")[0]
    name = type(data).__name__
    if module == "polars" and name == "DataFrame":
        return "polars"
    if module == "pandas" and name == "DataFrame":
        return "pandas"
    if module == "pyarrow" and name in ("Table", "RecordBatch"):
        return "arrow"
    if isinstance(data, Mapping):
        return "tensors" if any(_is_tensor(v) for v in data.values()) else "mapping"
    raise UsageError(
        f"data must be a mapping of names to values, or a polars, pandas or pyarrow table; got {type(data).__name__}"
    )


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and type(value).__name__ in ("Tensor", "Parameter")


class Table:
    """``data`` seen as named columns of one length (a mapping's single numbers stand for every row)."""

    def __init__(self, data: Any) -> None:
        self.data, self.kind = data, _kind(data)
        labels = list(
            data if self.kind in ("mapping", "tensors") else data.column_names if self.kind == "arrow" else data.columns
        )
        self.columns: dict[str, Any] = {}  # the variable a column gives -> its label in the data
        for label in labels:
            name = variable_name(str(label))
            if name in self.columns:
                raise UsageError(f"the data gives {name} twice: columns {self.columns[name]!r} and {label!r}")
            self.columns[name] = label
        if self.kind in ("mapping", "tensors"):
            long = {k: n for k in labels if (n := _length(data[k], k)) is not None}
            if len(set(long.values())) > 1:
                (a, n), (b, m) = sorted(long.items(), key=lambda item: item[1])[:: len(long) - 1]
                raise UsageError(f"data columns differ in length: {a!r} has {n} values, {b!r} has {m}")
            self.height = next(iter(long.values()), 1)
        else:
            self.height = data.num_rows if self.kind == "arrow" else len(data)
        self.names = list(self.columns)

    @property
    def device(self) -> torch.device | None:
        """Where the caller's tensors are, if any (they must agree)."""
        found = {v.device for v in self.data.values() if _is_tensor(v)} if self.kind == "tensors" else set()
        if len(found) > 1:
            raise UsageError(f"the data's tensors are on {' and '.join(sorted(map(str, found)))}: give device=")
        return found.pop() if found else None

    def tensors(self, sources: Mapping[str, str], dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        """The column ``sources[variable]`` of each variable, as numbers of ``dtype`` on ``device``."""
        import torch

        values = {}
        for variable, name in sources.items():
            column = self._numbers(name)
            values[variable] = (
                column.to(device, dtype) if _is_tensor(column) else torch.from_dlpack(column).to(device, dtype)
            ).expand(self.height)
        return values

    def frame(self, sources: Mapping[str, str]) -> Any:
        """A polars frame of the variables' numbers, one column per variable (``sources`` as for ``tensors``)."""
        import polars as pl

        columns = {v: self._numbers(name) for v, name in sources.items()}
        arrays = {v: c.cpu().numpy() if _is_tensor(c) else c for v, c in columns.items()}
        return pl.DataFrame({v: np.broadcast_to(a, (self.height,)) for v, a in arrays.items()}).select(
            pl.all().cast(pl.Float64)
        )

    def taken(self, rows: np.ndarray) -> Table:
        """The data's rows at the positions ``rows`` (repeats allowed), as a table of the same kind."""
        if self.kind == "mapping":
            return Table({k: _rows(v, self.height)[rows] for k, v in self.data.items()})
        if self.kind == "tensors":
            return Table({k: _full(v, self.height, self.device)[rows] for k, v in self.data.items()})
        if self.kind == "pandas":
            return Table(self.data.iloc[rows].reset_index(drop=True))
        return Table(self.data[rows] if self.kind == "polars" else self.data.take(rows))

    def _numbers(self, name: str) -> Any:
        """Column ``name`` as a 1-D numpy array or tensor; a data error for text or a missing value
        (a null: NaN is a number, and gives NaN)."""
        if self.kind in ("mapping", "tensors"):
            value = self.data[self.columns[name]]
            if _is_tensor(value):
                return value.reshape(-1) if value.dim() == 0 else value
            if np.ma.is_masked(value):
                raise DataError(
                    f"data column {name!r}, row {int(np.flatnonzero(np.ma.getmaskarray(value))[0])}: masked"
                )
            try:
                raw = np.asarray(value)
            except (OverflowError, ValueError):
                raise DataError(f"data column {name!r}: not numbers") from None
        else:
            column = self.data.column(self.columns[name]) if self.kind == "arrow" else self.data[self.columns[name]]
            if self.kind == "pandas":  # NaN of a numpy column is a number; pandas' own dtypes mark nulls
                nulls = np.flatnonzero(() if isinstance(column.dtype, np.dtype) else column.isna().to_numpy())
            else:
                marks = column.is_null()
                nulls = np.flatnonzero(
                    marks.to_numpy() if self.kind == "polars" else marks.to_numpy(zero_copy_only=False)
                )
            if nulls.size:
                raise DataError(f"data column {name!r}, row {int(nulls[0])}: no value (null)")
            try:
                raw = column.to_numpy(zero_copy_only=False) if self.kind == "arrow" else column.to_numpy()
            except Exception:  # a type numpy has no array for (polars' Int128, ...)
                raise DataError(f"data column {name!r}: not numbers ({column.dtype})") from None
        if raw.dtype == object:  # text, or pandas' missing values
            missing = [i for i, v in enumerate(raw.ravel()) if v is None or type(v).__name__ == "NAType"]
            if missing:
                raise DataError(f"data column {name!r}, row {missing[0]}: no value (null)")
            try:
                raw = raw.astype(np.float64)
            except (TypeError, ValueError, OverflowError):
                raise DataError(f"data column {name!r}: not numbers") from None
        if raw.dtype.kind not in "biuf" or raw.ndim > 1:
            raise DataError(f"data column {name!r}: not numbers ({raw.dtype}{', nested' if raw.ndim > 1 else ''})")
        return np.ascontiguousarray(raw.reshape(-1) if raw.ndim == 0 else raw, dtype=np.float64)

    def joined(self, results: Mapping[str, torch.Tensor]) -> Any:
        """The caller's data with ``results`` as columns after its own, as the kind it came in."""
        if self.kind == "tensors":
            device = next(iter(results.values())).device if results else self.device
            return {**{k: _full(v, self.height, device) for k, v in self.data.items()}, **results}
        arrays = {name: column.cpu().numpy() for name, column in results.items()}
        if self.kind == "mapping":
            return {
                **{k: _rows(v, self.height).copy() for k, v in self.data.items()},
                **arrays,
            }
        if self.kind == "polars":
            import polars as pl

            return self.data.hstack([pl.Series(name, values) for name, values in arrays.items()])
        if self.kind == "pandas":
            import pandas as pd

            return pd.concat([self.data, pd.DataFrame(arrays, index=self.data.index)], axis=1)
        import pyarrow as pa

        schema = self.data.schema
        for name, values in arrays.items():
            schema = schema.append(pa.field(name, pa.from_numpy_dtype(values.dtype)))
        columns = [*self.data.columns, *(pa.array(values) for values in arrays.values())]
        return type(self.data).from_arrays(columns, schema=schema)  # the data's metadata kept


def _length(value: Any, name: str) -> int | None:
    """How many values ``value`` holds; None for one number (it stands for every row)."""
    if isinstance(value, (numbers.Number, np.generic)) or (_is_tensor(value) and value.dim() == 0):
        return None
    shape = value.shape if _is_tensor(value) or isinstance(value, np.ndarray) else np.shape(value)
    if len(shape) == 0:
        return None
    if len(shape) != 1:
        raise UsageError(f"data column {name!r} must be one-dimensional, got shape {tuple(shape)}")
    return int(shape[0])


def _rows(value: Any, height: int) -> np.ndarray:
    """A mapping's column (or single number) as ``height`` rows: a read-only view."""
    return np.broadcast_to(np.asarray(value), (height,))


def _full(value: Any, height: int, device: torch.device | None) -> Any:
    """A caller's column as ``height`` rows: a tensor on ``device`` where it holds numbers."""
    import torch

    if _is_tensor(value):
        return value.expand(height) if value.dim() == 0 else value
    array = _rows(value, height).copy()
    return torch.from_numpy(array).to(device) if array.dtype.kind in "biuf" else array
