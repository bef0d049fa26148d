"""``diffcli scan``: iterate a map and differentiate through it (the ``lax.scan`` of the shell).

The update ``x = r*x*(1-x)`` (one assignment per state, applied together each step) is
differentiated once, symbolically; each step then carries the state and its sensitivities
S = ds/dθ to the parameters and initial values θ forward: S' = ∂F/∂s·S + ∂F/∂θ. This is forward
mode: memory does not grow with the number of steps (``--steps 100000`` holds one state), and the
cost grows with the number of ``--wrt`` variables. Outputs (default: the final state) and their
derivatives come from the last state, or from every state with ``trajectory``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import polars as pl
import sympy
import torch

from . import lower, pipeline
from .errors import UsageError
from .language import Parsed, option_name, symbol
from .transforms import set_order, variables_of

Column = tuple[tuple[str, ...], str]  # (JSON path, column)


def _sensitivity(state: str, target: str) -> sympy.Symbol:
    return sympy.Symbol(f"_d_{state}_{target}", real=True)  # "_" starts no user name


class Scan:
    """A compiled recurrence: its states, parameters, what it differentiates, and the columns it reports."""

    states: tuple[str, ...]
    parameters: tuple[str, ...]  # every other variable: a value per point
    wrt: tuple[str, ...]  # parameters, and ``x0`` for the initial value of state x
    init: Mapping[str, float]
    columns: list[Column]

    def __init__(
        self,
        updates: Sequence[Parsed],
        init: Mapping[str, float],
        *,
        outputs: Sequence[Parsed] = (),
        wrt: Sequence[str] = (),
    ) -> None:
        if not updates or any(u.name is None for u in updates):
            raise UsageError("each update assigns a state: scan 'x = r*x*(1-x)'")
        self.states = tuple(u.name for u in updates)  # type: ignore[misc]
        missing = [s for s in self.states if s not in init]
        if missing:
            raise UsageError(f"no initial value for {', '.join(missing)}", hint=f"--init {missing[0]}=VALUE")
        self.init = init
        named = bool(outputs)  # --output-expr names its columns; the default, the states, reads "value"
        outputs = list(outputs) or [Parsed(s, symbol(s)) for s in self.states]
        free = set().union(*(variables_of(e.expr) for e in [*updates, *outputs]))
        self.parameters = tuple(sorted(free - set(self.states)))
        initial = {f"{s}0": s for s in self.states}
        self.wrt = tuple(set_order(wrt)) if wrt else (*self.parameters, *initial)
        for name in self.wrt:
            option_name(name, "--wrt")
            if name not in self.parameters and name not in initial:
                raise UsageError(
                    f"--wrt {name} is neither a parameter ({', '.join(self.parameters) or 'none'}) "
                    f"nor an initial value ({', '.join(initial)})"
                )
        states = [symbol(s) for s in self.states]
        sensitivities = {(s, t): _sensitivity(s, t) for s in self.states for t in self.wrt}

        def carried(expr: sympy.Expr, target: str) -> sympy.Expr:
            """d expr / d target, through the states' sensitivities and directly."""
            direct = sympy.diff(expr, symbol(target)) if target in self.parameters else 0
            return direct + sum(sympy.diff(expr, x) * sensitivities[s, target] for s, x in zip(self.states, states))

        step = [u.expr for u in updates] + [carried(u.expr, t) for u in updates for t in self.wrt]
        names = [o.name or f"f{i}" for i, o in enumerate(outputs, start=1)]
        single = len(outputs) == 1
        report = [o.expr for o in outputs] + [carried(o.expr, t) for o in outputs for t in self.wrt]
        self.columns = [(("value",) if single else ("value", n), n if named or not single else "value") for n in names]
        self.columns += [
            (("grad", t), f"grad_{t}") if single else (("jacobian", n, t), f"jacobian_{n}_{t}")
            for n in names
            for t in self.wrt
        ]
        inputs = [*states, *sensitivities.values(), *(symbol(p) for p in self.parameters)]
        self._step = lower.compile(step, inputs)
        self._report = lower.compile(report, inputs)
        self._carried = [s for s in self.states] + [sensitivities[s, t].name for s in self.states for t in self.wrt]
        self.growth = 0.0  # the largest |d state / d initial value| seen: how much rounding errors grow

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables each point must give a value for (as a transforms.Plan has them)."""
        return self.parameters

    def run(
        self, frame: pl.DataFrame, steps: int, *, trajectory: bool, dtype: torch.dtype, device: torch.device
    ) -> Iterator[pl.DataFrame]:
        """The frame's rows (one run each) with the reported columns: after the last step, or
        after every step (and the start) with a ``step`` column."""
        count = frame.height if frame.width else 1
        like = torch.empty(count, dtype=dtype, device=device)
        values = pipeline.tensors(frame, self.parameters, {}, dtype, device)
        for s in self.states:
            values[s] = torch.full_like(like, self.init[s])
            for t in self.wrt:
                values[_sensitivity(s, t).name] = torch.full_like(like, 1.0 if t == f"{s}0" else 0.0)
        with torch.inference_mode():
            for k in range(steps + 1):
                if trajectory or k == steps:
                    yield self._reported(frame, values, like, k if trajectory else None)
                    self._measure_growth(values)
                if k < steps:
                    values.update(zip(self._carried, self._step(values, like)))

    def _measure_growth(self, values: Mapping[str, torch.Tensor]) -> None:
        for s in self.states:
            for t in (f"{u}0" for u in self.states if f"{u}0" in self.wrt):
                growth = values[_sensitivity(s, t).name].abs().nan_to_num(nan=0.0).max()
                self.growth = max(self.growth, float(growth))

    def conditioning(self, dtype: torch.dtype) -> str | None:
        """A note when the map amplifies perturbations enough to cost digits: rounding errors of
        each step grow like the derivatives with respect to the initial state."""
        if self.growth < 1e3:
            return None
        digits = max(0, int(-math.log10(self.growth * torch.finfo(dtype).eps)))
        return (
            f"perturbations of the initial state grew by up to {self.growth:.1e}: expect about {digits} "
            "correct digits in the results"
        )

    def _reported(
        self, frame: pl.DataFrame, values: dict[str, torch.Tensor], like: torch.Tensor, step: int | None
    ) -> pl.DataFrame:
        numbers = {c: r.cpu().numpy() for (_, c), r in zip(self.columns, self._report(values, like))}
        out = pl.DataFrame(numbers)
        if step is not None:
            out = out.with_columns(pl.lit(step, dtype=pl.Int64).alias("step")).select("step", *numbers)
        return frame.hstack(out) if frame.width else out
