"""``diffcli check``: every derivative three ways, and where they disagree.

The gradient (with ``order=2`` also the Hessian) of each output is computed by SymPy's symbolic
derivative lowered to torch (what every other command reports), by torch's automatic
differentiation of the lowered value, and by central finite differences refined by Richardson
extrapolation, which also estimates their own error. Autograd disagrees when it differs from the
symbolic number beyond ``atol + rtol·|symbolic|``; finite differences when they differ beyond
ten times their error estimate plus that tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import torch

from . import lower, pipeline, transforms
from .language import Parsed, symbol

LEVELS = 4  # step sizes h, h/2, h/4, h/8 for Richardson extrapolation


def tolerance(dtype: torch.dtype) -> float:
    """The default rtol and atol: the square root of the dtype's epsilon, over ten."""
    return math.sqrt(torch.finfo(dtype).eps) / 10


@dataclass
class Disagreement:
    """The largest disagreement of one engine with the symbolic derivative, over all points."""

    output: str
    quantity: str  # the column: grad_x, hessian_x_y
    engine: str  # "autograd" or "finite differences"
    max_abs: float = 0.0
    max_rel: float = 0.0
    at: dict[str, float] = field(default_factory=dict)  # the point of the largest excess
    failures: int = 0  # points beyond the tolerance
    kinks: int = 0  # points where the output is not differentiable
    worst: float = -math.inf  # how far beyond its bound the worst point is (internal)

    def row(self) -> dict[str, object]:
        return {
            "output": self.output,
            "quantity": self.quantity,
            "engine": self.engine,
            "max_abs": self.max_abs if math.isfinite(self.max_abs) else None,
            "max_rel": self.max_rel if math.isfinite(self.max_rel) else None,
            "at": self.at,
            "failures": self.failures,
            "kinks": self.kinks,
            "ok": self.failures == 0,
        }


class Checker:
    """Accumulates the disagreements of autograd and finite differences over batches of points."""

    def __init__(
        self,
        parsed: Sequence[Parsed],
        *,
        wrt: Sequence[str],
        order: int,
        rtol: float,
        atol: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.rtol, self.atol, self.order, self.dtype, self.device = rtol, atol, order, dtype, device
        operation = "hessian" if order == 2 else "grad"
        self.plans = [transforms.plan(operation, [p], wrt=wrt) for p in parsed]
        names = [p.name or f"f{i}" for i, p in enumerate(parsed, start=1)]
        self.outputs = list(zip(names, self.plans))
        self.variables = sorted(set().union(*(p.variables for p in self.plans)))
        self.symbolic = [transforms.evaluator(p) for p in self.plans]
        self.values = [lower.compile([p.quantities[0].expr], [symbol(v) for v in self.variables]) for p in self.plans]
        self.found: dict[tuple[str, str, str], Disagreement] = {}

    def add(self, frame: pl.DataFrame, columns: Mapping[str, str]) -> None:
        """Compare the engines at every point of ``frame`` (``columns`` maps variables to frame columns)."""
        count = frame.height if frame.width else 1
        values = pipeline.tensors(frame, self.variables, columns, self.dtype, self.device)
        like = torch.empty(count, dtype=self.dtype, device=self.device)
        for (name, plan), symbolic, value in zip(self.outputs, self.symbolic, self.values):
            if not plan.wrt:
                continue  # a constant: nothing to differentiate
            exact = symbolic(values, like)
            kinks = exact.pop(transforms.KINK + plan.outputs[0], torch.zeros_like(like))
            engines = {
                "autograd": self._autograd(value, values, like, plan.wrt),
                "finite differences": self._finite_differences(value, values, like, plan.wrt),
            }
            for engine, (numbers, estimates) in engines.items():
                for column, got in numbers.items():
                    self._compare(name, column, engine, exact[column], got, estimates.get(column), frame, kinks)

    def _compare(
        self,
        name: str,
        column: str,
        engine: str,
        exact: torch.Tensor,
        got: torch.Tensor,
        estimate: torch.Tensor | None,
        frame: pl.DataFrame,
        kinks: torch.Tensor,
    ) -> None:
        found = self.found.setdefault((name, column, engine), Disagreement(name, column, engine))
        found.kinks += int(kinks.sum())
        same = (got == exact) | (torch.isnan(got) & torch.isnan(exact))  # equal infinities, or both NaN
        finite = torch.isfinite(got) & torch.isfinite(exact)
        difference = torch.where(same, 0.0, torch.where(finite, (got - exact).abs(), math.inf))
        bound = self.atol + self.rtol * exact.abs()
        if estimate is not None:
            bound = bound + 10 * estimate.nan_to_num(nan=0.0, posinf=0.0)
        excess = difference - torch.where(finite, bound, 0.0)  # a NaN or infinity only matches itself
        found.failures += int((excess > 0).sum())
        found.max_abs = max(found.max_abs, float(difference.max()))
        relative = (difference / exact.abs()).nan_to_num(nan=0.0, posinf=math.inf)
        found.max_rel = max(found.max_rel, float(relative.max()))
        worst = int(torch.argmax(excess))
        if float(excess[worst]) > found.worst:
            found.worst = float(excess[worst])
            found.at = {c: frame[c][worst] for c in frame.columns if frame[c].dtype.is_numeric()}

    def _autograd(self, value, values, like, wrt):  # type: ignore[no-untyped-def]
        """Reverse mode over the batch (rows are independent): d/dx of the sum is each row's d/dx."""
        leaves = {v: t.clone().requires_grad_(True) for v, t in values.items()}
        (f,) = value(leaves, like)
        inputs = [leaves[v] for v in wrt]
        grads = torch.autograd.grad(f.sum(), inputs, create_graph=self.order == 2, allow_unused=True)
        grads = [g if g is not None else torch.zeros_like(like) for g in grads]
        numbers = {f"grad_{v}": g.detach() for v, g in zip(wrt, grads)}
        if self.order == 2:
            for v, g in zip(wrt, grads):
                row = (
                    torch.autograd.grad(g.sum(), inputs, retain_graph=True, allow_unused=True)
                    if g.requires_grad
                    else [None] * len(wrt)
                )
                for w, h in zip(wrt, row):
                    numbers[f"hessian_{v}_{w}"] = (h if h is not None else torch.zeros_like(like)).detach()
        return numbers, {}

    def _finite_differences(self, value, values, like, wrt):  # type: ignore[no-untyped-def]
        """Central differences at h, h/2, h/4, h/8, Richardson-extrapolated twice; the error estimate
        is the change of the last extrapolation, or the rounding error, whichever is larger."""
        eps = torch.finfo(self.dtype).eps
        f0 = value(values, like)[0]
        numbers, estimates = {}, {}
        pairs = [(v, None) for v in wrt] + ([(v, w) for v in wrt for w in wrt] if self.order == 2 else [])
        for a, b in pairs:
            first = b is None
            scale = torch.clamp(values[a].abs(), min=1.0)
            h0 = (eps ** (1 / 5) if first else eps ** (1 / 6)) * 4 * scale
            estimates_k = []
            for k in range(LEVELS):
                h = h0 / 2**k
                if first:
                    d = (self._at(value, values, like, {a: h}) - self._at(value, values, like, {a: -h})) / (2 * h)
                else:
                    d = (
                        self._at(value, values, like, {a: h}, {b: h})
                        - self._at(value, values, like, {a: h}, {b: -h})
                        - self._at(value, values, like, {a: -h}, {b: h})
                        + self._at(value, values, like, {a: -h}, {b: -h})
                    ) / (4 * h * h)
                estimates_k.append(d)
            table = [estimates_k]
            for level in (1, 2):
                previous = table[-1]
                factor = 4**level
                table.append([(factor * previous[k] - previous[k - 1]) / (factor - 1) for k in range(1, len(previous))])
            best, before = table[-1][-1], table[-1][-2]
            h_last = h0 / 2 ** (LEVELS - 1)
            rounding = 10 * eps * (f0.abs() + 1) / (h_last if first else h_last * h_last)
            column = f"grad_{a}" if first else f"hessian_{a}_{b}"
            numbers[column] = best
            estimates[column] = torch.maximum((best - before).abs(), rounding)
        return numbers, estimates

    def _at(self, value, values, like, *shifts: dict) -> torch.Tensor:  # type: ignore[no-untyped-def]
        moved = dict(values)
        for shift in shifts:
            for v, h in shift.items():
                moved[v] = moved[v] + h
        return value(moved, like)[0]

    def report(self) -> list[dict[str, object]]:
        return [d.row() for d in self.found.values()]
