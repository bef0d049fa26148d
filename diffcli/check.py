"""``diffcli check``: every derivative diffcli reports, against two independent references.

- **extended precision**: the same derivative formulas, written as their textbook forms and
  evaluated by SymPy at 50 significant digits, at up to ``EXTENDED_POINTS`` points of each batch.
  It sees what float64 evaluation costs: cancellation, overflow, a special function's lost
  digits. A number disagrees when it is off by more than ``rtol·|reference|`` (no absolute
  tolerance: a derivative of 1e-160 must be right to its own size; only results below the
  smallest normal number may be 0).
- **finite differences**: central differences of the value at steps h·2^-k (k = 0 … 51),
  Richardson-extrapolated over every four consecutive steps; each point takes the window with
  the smallest error estimate. A window whose stencil leaves the domain (a value that is not
  finite) or straddles a pole (its extrapolations disagree) is not chosen, so steps shrink near
  log's 0 or asin's 1 instead of stepping over them. It sees a wrong derivative formula. A
  number disagrees when it differs beyond ``atol + rtol·|number|`` plus ten times the estimate.

``scan --check`` compares a recurrence's two modes and finite differences the same way
(``ScanChecker``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import torch

from . import lower, pipeline, transforms
from .language import Parsed, symbol, symbolic_time_limit
from .names import in_order
from .recurrences import Scan, digits

LEVELS = 52  # step sizes h, h/2, …, h/2^51 tried by finite differences
EXTRA_LEVELS = 64  # further halvings where |x| is small: steps reach 2^-116 of the first
WINDOW = 4  # consecutive steps in one Richardson extrapolation
EXTENDED_POINTS = 200  # points of each batch evaluated at 50 digits


def tolerance(dtype: torch.dtype) -> float:
    """The default rtol and atol: the square root of the dtype's epsilon, over ten."""
    return math.sqrt(torch.finfo(dtype).eps) / 10


@dataclass
class Disagreement:
    """The largest disagreement of one engine with the symbolic derivative, over all points."""

    output: str
    quantity: str  # the column: grad_x, hessian_x_y
    engine: str  # "extended precision", "finite differences", "reverse mode"
    max_abs: float = 0.0
    max_rel: float = 0.0
    at: dict[str, float] = field(default_factory=dict)  # the point of the largest excess
    failures: int = 0  # points beyond the tolerance
    kinks: int = 0  # points where the output is not differentiable
    worst: float = -math.inf  # how far beyond its bound the worst point is (internal)
    digits: int | None = None  # of a scan: the correct digits its conditioning leaves, at worst

    def row(self) -> dict[str, object]:
        """The report's row; the numbers as they are (a writer of strict JSON makes a NaN or an
        infinity null; a table shows which it was)."""
        row: dict[str, object] = {
            "output": self.output,
            "quantity": self.quantity,
            "engine": self.engine,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
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

    def __init__(self, rtol: float, atol: float, *, allow_kinks: bool = False) -> None:
        self.rtol, self.atol, self.allow_kinks = rtol, atol, allow_kinks  # allowed: kinks counted, not judged
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
        rtol: float | None = None,
        atol: float | None = None,
    ) -> Disagreement:
        found = self.found.setdefault((output, column, engine), Disagreement(output, column, engine))
        found.kinks += int(kinks.sum()) if kinks is not None else 0
        same = (got == exact) | (torch.isnan(got) & torch.isnan(exact))  # equal infinities, or both NaN
        finite = torch.isfinite(got) & torch.isfinite(exact)
        difference = torch.where(same, 0.0, torch.where(finite, (got - exact).abs(), math.inf))
        rtol, atol = self.rtol if rtol is None else rtol, self.atol if atol is None else atol
        bound = atol + rtol * exact.abs()
        if slack is not None:
            bound = bound + slack.nan_to_num(nan=0.0, posinf=math.inf)
        excess = difference - torch.where(finite, bound, 0.0)
        if slack is not None:  # an engine that cannot tell its error gives no verdict
            excess = torch.where(torch.isposinf(slack), -math.inf, excess)
        if self.allow_kinks and kinks is not None:
            excess = torch.where(kinks.bool(), -math.inf, excess)
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
    """Accumulates the disagreements of the references with diffcli's derivatives over batches of points."""

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
        allow_kinks: bool = False,
    ) -> None:
        self.order, self.dtype, self.device, self.rtol = order, dtype, device, rtol
        self.report = Report(rtol, atol, allow_kinks=allow_kinks)
        operation = "hessian" if order == 2 else "grad"
        self.plans = [transforms.plan(operation, [p], wrt=wrt) for p in parsed]
        names = [p.name or f"f{i}" for i, p in enumerate(parsed, start=1)]
        self.outputs = list(zip(names, self.plans))
        self.variables = in_order(set().union(*(p.variables for p in self.plans)))
        self.symbolic = [transforms.evaluator(p) for p in self.plans]
        self.values = [lower.compile([p.quantities[0].expr], [symbol(v) for v in self.variables]) for p in self.plans]

    def add(self, frame: pl.DataFrame, columns: Mapping[str, str]) -> None:
        """Compare at every point of ``frame`` (``columns`` maps variables to frame columns)."""
        count = frame.height if frame.width else 1
        values = pipeline.tensors(frame, self.variables, columns, self.dtype, self.device)
        like = torch.empty(count, dtype=self.dtype, device=self.device)
        for (name, plan), symbolic, value in zip(self.outputs, self.symbolic, self.values):
            if not plan.wrt:
                continue  # a constant: nothing to differentiate
            exact = symbolic(values, like)
            kinks = exact.pop(transforms.KINK + plan.outputs[0], torch.zeros_like(like))
            numbers, estimates = finite_differences(
                lambda at, like, value=value: value(at, like)[0], values, like, plan.wrt, order=self.order
            )
            sample = torch.linspace(0, count - 1, min(count, EXTENDED_POINTS)).round().long().unique()
            pole = ~exact[plan.quantities[0].column].isfinite()  # no derivative without a finite value
            for q in plan.quantities[1:]:
                got = exact[q.column]
                with symbolic_time_limit(f"the extended-precision {q.column}"):  # a deep tower: minutes
                    reference, known = extended(plan.formula(q.expr), values, sample)
                unknown = ~known.to(got.device) | kinks[sample].bool() | pole[sample]  # a kink's value: a convention
                self.report.compare(
                    name, q.column, "extended precision", reference.to(got.device, got.dtype), got[sample],
                    frame[sample.cpu().numpy()], rtol=self.rtol, atol=torch.finfo(self.dtype).tiny,
                    slack=torch.where(unknown, math.inf, 0.0), kinks=kinks[sample],
                )  # fmt: skip
                slack = torch.where(pole, math.inf, 10 * estimates[q.column])
                self.report.compare(
                    name, q.column, "finite differences", got, numbers[q.column], frame, slack=slack, kinks=kinks
                )


def extended(expr, values: Mapping[str, torch.Tensor], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """``expr`` at the points ``rows`` of ``values`` by SymPy's ``evalf`` at 50 digits (each
    derivative form through its exact, non-cancelling formula), rounded to float64; NaN where it
    has no real value. Also where SymPy could not reach float64's precision (its result carries
    fewer bits: a cancellation deeper than its working precision), as a mask."""
    import sympy

    names = {v: symbol(v) for v in values if symbol(v) in expr.free_symbols}
    columns = {v: values[v].double().cpu() for v in names}
    results, known = [], []
    for r in rows.tolist():
        at = {names[v]: sympy.Float(float(columns[v][r]), 50) for v in names}
        try:
            number = expr.evalf(50, subs=at)
            real = number.is_number and number.is_extended_real
            results.append(float(number) if real else math.nan)
            known.append(not isinstance(number, sympy.Float) or number._prec >= 60)
        except (TypeError, ValueError, ArithmeticError):  # SymPy has no number here (DiracDelta(0))
            results.append(math.nan)
            known.append(False)
    return torch.tensor(results, dtype=torch.float64), torch.tensor(known)


def finite_differences(value, values, like, wrt, *, order=1, scale=None, noise=1.0, levels=LEVELS):  # type: ignore[no-untyped-def]
    """``value(values, like)``'s gradient (``order=2``: and Hessian) by central differences at the
    steps h·2^-k, k < ``levels``, Richardson-extrapolated twice over every window of four
    consecutive steps; each point takes the window with the smallest error estimate (how far the
    last extrapolation moved from the one before it and from the level below, or the rounding
    error, whichever is larger; infinite where a value in the window is not finite), among the
    windows whose estimate is less than half their result (one that straddles a pole is not)
    where there are any. Returns the numbers and their error estimates.

    h starts at eps^(1/5)·4·``scale[v]`` (default: max(|v|, 1)); ``noise`` is how many times the
    rounding error of one evaluation exceeds eps·|value|.
    """
    eps = torch.finfo(like.dtype).eps
    if scale is None:  # steps relative to max(|x|, 1), and on down to |x|'s own scale for small x
        smallest = min((float(values[v].abs().min()) for v in wrt), default=1.0)
        if math.isfinite(smallest) and smallest < 1:  # not at inf or NaN (1e160 in float32)
            levels += min(EXTRA_LEVELS, math.ceil(-math.log2(max(smallest, 1e-300))))
    numbers, estimates = {}, {}
    pairs = [(v, None) for v in wrt] + ([(v, w) for v in wrt for w in wrt] if order == 2 else [])
    for a, b in pairs:
        first = b is None
        scale_a = scale[a] if scale is not None else torch.clamp(values[a].abs(), min=1.0)
        h0 = (eps ** (1 / 5) if first else eps ** (1 / 6)) * 4 * scale_a
        differences, roundings = [], []
        for k in range(levels):
            ha = (values[a] + h0 * 2.0**-k) - values[a]  # a step that x ± h represent exactly
            if first:
                stencil = [(_shifted(value, values, like, {a: ha}), 1), (_shifted(value, values, like, {a: -ha}), -1)]
                width = 2 * ha
            else:
                hb = (values[b] + h0 * 2.0**-k) - values[b]
                stencil = [
                    (_shifted(value, values, like, {a: sa}, {b: sb}), sign)
                    for sa, sb, sign in ((ha, hb, 1), (ha, -hb, -1), (-ha, hb, -1), (-ha, -hb, 1))
                ]
                width = 4 * ha * hb
            differences.append(sum(sign * f for f, sign in stencil) / width)
            size = torch.stack([f.abs() for f, _ in stencil]).amax(0)
            roundings.append(10 * eps * noise * size * len(stencil) / width.abs())
        inf = torch.full_like(like, math.inf)
        best = {True: (inf, inf), False: (inf, inf)}  # consistent windows, and any window
        for k in range(levels - WINDOW + 1):
            table = [differences[k : k + WINDOW]]
            for level in (1, 2):
                previous, factor = table[-1], 4**level
                table.append([a + (a - b) / (factor - 1) for b, a in zip(previous, previous[1:])])  # no overflow
            estimate = table[-1][-1]
            change = torch.maximum((estimate - table[-1][-2]).abs(), (estimate - table[-2][-1]).abs())
            window = torch.maximum(change, roundings[k + WINDOW - 1])
            finite = torch.stack([torch.isfinite(d) for d in differences[k : k + WINDOW]]).all(0)
            window = torch.where(finite & torch.isfinite(window), window, math.inf)
            for consistent in (True, False):  # a window that straddles a pole moves by its own size
                kept = window < estimate.abs() / 2 if consistent else torch.ones_like(finite)
                so_far, error = best[consistent]
                better = kept & (window < error)
                best[consistent] = (torch.where(better, estimate, so_far), torch.where(better, window, error))
        found = torch.isfinite(best[True][1])
        number = torch.where(found, best[True][0], best[False][0])
        error = torch.where(found, best[True][1], best[False][1])
        column = f"grad_{a}" if first else f"hessian_{a}_{b}"
        numbers[column], estimates[column] = number, error
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
            numbers, estimates = finite_differences(
                stacked, values, like, wrt, scale=scale, noise=amplification, levels=WINDOW
            )
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
