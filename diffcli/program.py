"""A compiled formula as data: the tape of named torch calls that ``lower`` makes, and the
function that runs it on a batch. A program names its kernels rather than holding them, so it can
be stored (``cache.py``) and read back, validated, without SymPy: only the kernels listed here can
be named, and every call reads slots made before it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

KINK = "kink:"  # the result key of each output's kink indicator (1 at a kink, else 0)

# Every kernel a program may name: the lowering's own (sums, products, powers, comparisons, logic,
# branches) and each function's row in ``rules.py`` (a test checks that every row's is here).
_TORCH = """mul div sqrt rsqrt reciprocal square exp pow lt le gt ge eq ne logical_not where abs acos acosh
asin asinh atan atan2 atanh ceil cos cosh expm1 floor hypot lgamma log log10 log1p log2 relu remainder
sigmoid sign sin sinh tan tanh special.erf special.erfc"""
_SPECIAL = """acot acsc asec atan2_d atan2_daa atan2_dab cbrt cot coth csc csch d2acosh d2asinh d2atan dacosh
dasinh datan datanh derf dirac dsigmoid floor_quotient gamma heaviside hypot_d hypot_daa hypot_dab maximum
minimum polygamma sec sech sech2 sinc sinc_d softplus"""
KERNELS = frozenset([*(f"torch.{n}" for n in _TORCH.split()), *_SPECIAL.split(), "add", "and", "or", "piecewise"])


def _piecewise(*parts: Tensor) -> Tensor:
    """value1, condition1, value2, condition2, ...: the first value whose condition holds."""
    import torch

    result: Tensor | float = math.nan  # SymPy leaves a Piecewise undefined where no condition holds
    for value, condition in reversed(list(zip(parts[::2], parts[1::2]))):
        result = torch.where(condition, value, result)
    return result  # type: ignore[return-value]


_FOLDS = {"add": "add", "and": "logical_and", "or": "logical_or"}  # any number of arguments, left to right


def kernel(name: str) -> Callable[..., Tensor]:
    """The function a program's call names (one of ``KERNELS``), looked up when a program is made."""
    import torch

    from . import special

    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}")
    if name in _FOLDS:
        return special.fold(getattr(torch, _FOLDS[name]))
    if name == "piecewise":
        return _piecewise
    if name.startswith("torch."):
        return operator.attrgetter(name.removeprefix("torch."))(torch)  # type: ignore[no-any-return]
    return getattr(special, name)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Program:
    """Slots: the variables (``names``), then the ``constants``, then one per call (a kernel's
    name and the slots of its arguments); ``results`` are the slots returned."""

    names: tuple[str, ...]
    constants: tuple[float | bool, ...]
    calls: tuple[tuple[str, tuple[int, ...]], ...]
    results: tuple[int, ...]

    def function(self) -> Callable[[Mapping[str, Tensor], Tensor], list[Tensor]]:
        """The function from columns to the results' columns (``like``: their length, dtype,
        device). Each slot is let go after its last use, so a batch holds only what is still needed."""
        import torch

        calls = [(kernel(name), args) for name, args in self.calls]
        last_use = {slot: k for k, (_, args) in enumerate(calls) for slot in args}
        released: list[list[int]] = [[] for _ in calls]
        for slot, k in last_use.items():
            if slot not in self.results:
                released[k].append(slot)
        names, values, results = self.names, self.constants, self.results
        cache: dict[tuple[torch.dtype, torch.device, bool], list[Tensor]] = {}

        def run(columns: Mapping[str, Tensor], like: Tensor) -> list[Tensor]:
            key = (like.dtype, like.device, torch.is_inference_mode_enabled())  # an inference tensor
            if key not in cache:  # cannot take part in autograd: constants for each mode
                cache[key] = [
                    torch.tensor(v, dtype=torch.bool if isinstance(v, bool) else like.dtype, device=like.device)
                    for v in values
                ]
            slots: list[Tensor | None] = [columns[n] for n in names]
            slots += cache[key]
            for (function, args), done in zip(calls, released):
                slots.append(function(*(slots[a] for a in args)))
                for slot in done:
                    slots[slot] = None
            return [slots[r].expand_as(like) for r in results]  # type: ignore[union-attr]

        return run

    def data(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "constants": list(self.constants),
            "calls": [[name, list(args)] for name, args in self.calls],
            "results": list(self.results),
        }

    @classmethod
    def from_data(cls, data: Any) -> Program:
        """A program read back, checked: known kernels, each call reading only earlier slots."""
        names, constants, calls, results = (data[k] for k in ("names", "constants", "calls", "results"))
        if not (_strings(names) and isinstance(constants, list) and isinstance(calls, list)):
            raise ValueError("not a program")
        if not all(isinstance(c, bool | float) for c in constants):
            raise ValueError("a constant is not a number")
        slots = len(names) + len(constants)
        checked = []
        for call in calls:
            name, args = call
            if name not in KERNELS or not _indices(args, slots):
                raise ValueError("a call is malformed")
            checked.append((name, tuple(args)))
            slots += 1
        if not _indices(results, slots):
            raise ValueError("a result is malformed")
        return cls(tuple(names), tuple(constants), tuple(checked), tuple(results))


@dataclass(frozen=True)
class Evaluation:
    """What a command computes from a program: its ``columns`` (the program's results, in order)
    and, for each derivative column, the value columns it is NaN with (``masks``)."""

    program: Program
    columns: tuple[str, ...]
    masks: tuple[tuple[str, tuple[str, ...]], ...]

    def function(self) -> Callable[[Mapping[str, Tensor], Tensor], dict[str, Tensor]]:
        run = self.program.function()

        def evaluate(values: Mapping[str, Tensor], like: Tensor) -> dict[str, Tensor]:
            return masked(dict(zip(self.columns, run(values, like))), self.masks)

        return evaluate

    def data(self) -> dict[str, Any]:
        return {"program": self.program.data(), "columns": list(self.columns), "masks": [list(m) for m in self.masks]}

    @classmethod
    def from_data(cls, data: Any) -> Evaluation:
        program = Program.from_data(data["program"])
        columns, masks = data["columns"], data["masks"]
        if not _strings(columns) or len(columns) != len(program.results) or not isinstance(masks, list):
            raise ValueError("columns do not match the program")
        if not all(m[0] in columns and _strings(m[1]) and set(m[1]) <= set(columns) for m in masks):
            raise ValueError("a mask names an unknown column")
        return cls(program, tuple(columns), tuple((m[0], tuple(m[1])) for m in masks))


def masked(results: dict[str, Tensor], masks: Sequence[tuple[str, Sequence[str]]]) -> dict[str, Tensor]:
    """``results`` with each derivative NaN where a value it belongs to is NaN: no derivative
    where the function itself is not a number. Each value's mask is computed once, and applied
    only where it has a NaN."""
    nans: dict[str, Tensor | None] = {}
    for column, values in masks:
        for value in values:
            if value not in nans:
                mask = results[value].isnan()
                nans[value] = mask if bool(mask.any()) else None
            if (mask := nans[value]) is not None:
                results[column] = results[column].masked_fill(mask, math.nan)
    return results


def _strings(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, str) for i in items)


def _indices(items: Any, below: int) -> bool:
    return isinstance(items, list) and all(type(i) is int and 0 <= i < below for i in items)
