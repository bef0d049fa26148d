"""``diffcli check``: every derivative three ways, and where they disagree.

The gradient (with ``order=2`` also the Hessian) of each output is computed by SymPy's symbolic
derivative lowered to torch (what every other command reports), by torch's automatic
differentiation of the lowered value, and by central finite differences refined by Richardson
extrapolation, which also estimates their own error. Autograd disagrees when it differs from the
symbolic number beyond ``atol + rtol·|symbolic|``; finite differences when they differ beyond
ten times their error estimate plus that tolerance. ``scan --check`` compares a recurrence's two
modes and finite differences the same way (``ScanChecker``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import torch

from . import lower, pipeline, transforms
from .language import Parsed, symbol
from .scan import Scan, digits

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
    digits: int | None = None  # of a scan: the correct digits its conditioning leaves, at worst

    def row(self) -> dict[str, object]:
        row: dict[str, object] = {
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
        if self.digits is not None:
            row["digits"] = self.digits
        return row


class Report:
    """The largest disagreement of each engine with the reference, accumulated over batches of points.

    An engine disagrees at a point where it differs from the reference beyond ``atol +
    rtol·|reference| + slack`` (``slack``: what the engine's own error estimate or the problem's
    conditioning allows there; infinite where the engine cannot tell); a NaN or an infinity only
    matches itself.
    """

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        self.found: dict[tuple[str, str, str], Disagreement] = {}

    def compare(
        self,
        output: str,
        column: str,
        engine: str,
        exact: torch.Tensor,
        got: torch.Tensor,
        frame: pl.DataFrame,
        *,
        slack: torch.Tensor | None = None,
        kinks: torch.Tensor | None = None,
    ) -> Disagreement:
        found = self.found.setdefault((output, column, engine), Disagreement(output, column, engine))
        found.kinks += int(kinks.sum()) if kinks is not None else 0
        same = (got == exact) | (torch.isnan(got) & torch.isnan(exact))  # equal infinities, or both NaN
        finite = torch.isfinite(got) & torch.isfinite(exact)
        difference = torch.where(same, 0.0, torch.where(finite, (got - exact).abs(), math.inf))
        bound = self.atol + self.rtol * exact.abs()
        if slack is not None:
            bound = bound + slack.nan_to_num(nan=0.0, posinf=math.inf)
        excess = difference - torch.where(finite, bound, 0.0)
        found.failures += int((excess > 0).sum())
        found.max_abs = max(found.max_abs, float(difference.max()))
        relative = (difference / exact.abs()).nan_to_num(nan=0.0, posinf=math.inf)
        found.max_rel = max(found.max_rel, float(relative.max()))
        worst = int(torch.argmax(excess))
        if float(excess[worst]) > found.worst:
            found.worst = float(excess[worst])
            found.at = {c: frame[c][worst] for c in frame.columns if frame[c].dtype.is_numeric()}
        return found

    def rows(self) -> list[dict[str, object]]:
        return [d.row() for d in self.found.values()]


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
        self.order, self.dtype, self.device = order, dtype, device
        self.report = Report(rtol, atol)
        operation = "hessian" if order == 2 else "grad"
        self.plans = [transforms.plan(operation, [p], wrt=wrt) for p in parsed]
        names = [p.name or f"f{i}" for i, p in enumerate(parsed, start=1)]
        self.outputs = list(zip(names, self.plans))
        self.variables = sorted(set().union(*(p.variables for p in self.plans)))
        self.symbolic = [transforms.evaluator(p) for p in self.plans]
        self.values = [lower.compile([p.quantities[0].expr], [symbol(v) for v in self.variables]) for p in self.plans]

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
                "autograd": (self._autograd(value, values, like, plan.wrt), {}),
                "finite differences": finite_differences(
                    lambda at, like, value=value: value(at, like)[0], values, like, plan.wrt, order=self.order
                ),
            }
            for engine, (numbers, estimates) in engines.items():
                for column, got in numbers.items():
                    slack = 10 * estimates[column] if column in estimates else None
                    self.report.compare(name, column, engine, exact[column], got, frame, slack=slack, kinks=kinks)

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
        return numbers


def finite_differences(value, values, like, wrt, *, order=1, scale=None, noise=1.0):  # type: ignore[no-untyped-def]
    """``value(values, like)``'s gradient (``order=2``: and Hessian) by central differences at h, h/2,
    h/4, h/8, Richardson-extrapolated twice, with their error estimates: the change of the last
    extrapolation, or the rounding error, whichever is larger.

    h is in proportion to ``scale[v]`` (default: max(|v|, 1)); ``noise`` is how many times the
    rounding error of one evaluation exceeds eps·|value|.
    """
    eps = torch.finfo(like.dtype).eps
    f0 = value(values, like)
    numbers, estimates = {}, {}
    pairs = [(v, None) for v in wrt] + ([(v, w) for v in wrt for w in wrt] if order == 2 else [])
    for a, b in pairs:
        first = b is None
        scale_a = scale[a] if scale is not None else torch.clamp(values[a].abs(), min=1.0)
        h0 = (eps ** (1 / 5) if first else eps ** (1 / 6)) * 4 * scale_a
        estimates_k = []
        for k in range(LEVELS):
            h = h0 / 2**k
            if first:
                d = (_shifted(value, values, like, {a: h}) - _shifted(value, values, like, {a: -h})) / (2 * h)
            else:
                d = (
                    _shifted(value, values, like, {a: h}, {b: h})
                    - _shifted(value, values, like, {a: h}, {b: -h})
                    - _shifted(value, values, like, {a: -h}, {b: h})
                    + _shifted(value, values, like, {a: -h}, {b: -h})
                ) / (4 * h * h)
            estimates_k.append(d)
        table = [estimates_k]
        for level in (1, 2):
            previous = table[-1]
            factor = 4**level
            table.append([(factor * previous[k] - previous[k - 1]) / (factor - 1) for k in range(1, len(previous))])
        best, before = table[-1][-1], table[-1][-2]
        h_last = h0 / 2 ** (LEVELS - 1)
        rounding = 10 * eps * noise * (f0.abs() + 1) / (h_last if first else h_last * h_last)
        column = f"grad_{a}" if first else f"hessian_{a}_{b}"
        numbers[column] = best
        estimates[column] = torch.maximum((best - before).abs(), rounding)
    return numbers, estimates


def _shifted(value, values, like, *shifts: dict) -> torch.Tensor:  # type: ignore[no-untyped-def]
    moved = dict(values)
    for shift in shifts:
        for v, h in shift.items():
            moved[v] = moved[v] + h
    return value(moved, like)


class ScanChecker:
    """``scan --check``: forward mode (what ``scan`` reports by default) against reverse mode and
    against finite differences through all the steps.

    A chaotic map amplifies each step's rounding errors as it amplifies perturbations of the state,
    so two correct evaluation orders differ by about amplification·eps, relatively: the comparison
    allows ``CONDITIONING``·amplification·eps·|value| more, and each row says how many digits
    that leaves (``digits``). Finite differences step in proportion to |value / derivative|, the
    distance over which the output changes by its own size (tiny for a chaotic map).
    """

    CONDITIONING = 100.0

    def __init__(self, scan: Scan, steps: int, *, rtol: float, atol: float, dtype: torch.dtype, device: torch.device):
        self.scan, self.steps, self.dtype, self.device = scan, steps, dtype, device
        self.report = Report(rtol, atol)

    def add(self, frame: pl.DataFrame) -> None:
        """Compare the engines at every row of ``frame`` (each row its own run)."""
        scan, outputs, wrt = self.scan, self.scan.outputs, self.scan.wrt
        values = scan.inputs(frame, self.dtype, self.device)
        like = torch.empty_like(next(iter(values.values())))
        with torch.inference_mode():
            *_, (_, forward) = scan.forward(values, self.steps)
            reverse, amplification = scan.reverse(values, self.steps)
            size = torch.stack(forward[: len(outputs)]).abs().clamp(min=1.0)
            derivatives = torch.stack(forward[len(outputs) :]).reshape(len(outputs), len(wrt), -1).abs()
            scale = {
                t: torch.minimum(values[t].abs().clamp(min=1.0), (size / derivatives[:, j]).nan_to_num(nan=1.0).amin(0))
                for j, t in enumerate(wrt)
            }
            stacked = lambda at, like: torch.stack(scan.values_after(at, self.steps))  # noqa: E731
            numbers, estimates = finite_differences(stacked, values, like, wrt, scale=scale, noise=amplification)
        places = digits(float(amplification.max()), self.dtype)
        slack = self.CONDITIONING * torch.finfo(self.dtype).eps * amplification
        for o, output in enumerate(outputs):
            for j, t in enumerate(wrt):
                c = len(outputs) + o * len(wrt) + j
                exact, allowed = forward[c], slack * forward[c].abs()
                engines = {
                    "reverse mode": (reverse[c], allowed),
                    "finite differences": (numbers[f"grad_{t}"][o], allowed + 10 * estimates[f"grad_{t}"][o]),
                }
                for engine, (got, bound) in engines.items():
                    found = self.report.compare(output, scan.columns[c][1], engine, exact, got, frame, slack=bound)
                    found.digits = places if found.digits is None else min(found.digits, places)
