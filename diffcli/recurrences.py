"""``diffcli scan``: iterate a map and differentiate through it (the ``lax.scan`` of the shell).

The update ``x = r*x*(1-x)`` (one assignment per state, applied together each step) is
differentiated once, symbolically; the derivatives of the outputs with respect to the parameters
and initial values θ then go through the steps in one of two ways:

- forward mode carries the sensitivities S = ds/dθ along: S' = ∂F/∂s·S + ∂F/∂θ. Memory does not
  grow with the steps (``--steps 100000`` holds one state), the cost grows with the number of
  ``--wrt`` variables, and every step's derivatives are at hand (``--trajectory``).
- reverse mode (the discrete adjoint of the unrolled loop) keeps the state of every step, then
  runs λ = d output/d s backwards: λ_k = ∂F/∂sᵀ(s_k)·λ_{k+1}, adding ∂F/∂θᵀ(s_k)·λ_{k+1} to the
  parameters' derivatives; λ_0 is the derivative with respect to the initial state. The cost
  grows with the number of outputs, memory with the steps.

``auto`` takes reverse mode where it evaluates fewer derivatives per step (few outputs, many
states and ``--wrt`` variables) and the kept states fit in ``REVERSE_BYTES``. Both modes evaluate
symbolic derivatives lowered to torch, so a branch not taken never leaks a NaN into a derivative,
and each checks the other (``scan --check``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import polars as pl
import sympy
import torch

from . import lower, pipeline, rules
from .errors import ExpressionError, UsageError, example, option, spelling
from .language import Parsed, option_name, symbol
from .names import in_order
from .transforms import Differentiator, set_order, variables_of

Column = tuple[tuple[str, ...], str]  # (JSON path, column)
METHODS = ("auto", "forward", "reverse")
REVERSE_BYTES = 256 * 2**20  # the most states auto lets reverse mode keep, per batch


def _internal(kind: str, i: int, j: int) -> sympy.Symbol:
    return sympy.Symbol(f"_{kind}{i}_{j}", real=True)  # "_" starts no user name


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
        prefix: str = "",
        suffix: str = "",
    ) -> None:
        """``prefix`` and ``suffix`` go around every reported column's name (``--prefix d_``: ``d_value``)."""
        if not updates or any(u.name is None for u in updates):
            raise UsageError("each update assigns a state: scan 'x = r*x*(1-x)'")
        self.states = tuple(u.name for u in updates)  # type: ignore[misc]
        twice = sorted({s for s in self.states if self.states.count(s) > 1})
        if twice:
            raise ExpressionError(f"state {twice[0]!r} is assigned twice: one update per state, applied together")
        missing = [s for s in self.states if s not in init]
        if missing:
            raise UsageError(
                f"no initial value for {', '.join(missing)}",
                hint=example("init", f"{missing[0]}=VALUE", f"{{'{missing[0]}': VALUE}}"),
            )
        self.init = init
        named = bool(outputs)  # --output-expr names its columns; the default, the states, reads "value"
        outputs = list(outputs) or [Parsed(s, symbol(s)) for s in self.states]
        free = set().union(*(variables_of(e.expr) for e in [*updates, *outputs]))
        self.parameters = tuple(in_order(free - set(self.states)))
        self.initial = initial = {f"{s}0": s for s in self.states}  # the names of the initial values
        clash = sorted(set(initial) & set(self.parameters))
        if clash:
            raise UsageError(f"{clash[0]} names the initial value of {initial[clash[0]]}: rename the parameter")
        self.wrt = tuple(set_order(wrt)) if wrt else (*self.parameters, *initial)
        self.indexed = frozenset().union(*(p.indexed for p in [*updates, *outputs]))  # as Plan.indexed
        self.sources: dict[str, str] = {}  # parameter -> the column that gives it, where not its own name
        for name in self.wrt:
            option_name(name, option("wrt"))
            if name not in self.parameters and name not in initial:
                raise UsageError(
                    f"{option('wrt')} {name} is neither a parameter ({', '.join(self.parameters) or 'none'}) "
                    f"nor an initial value ({', '.join(initial)})"
                )
        self.outputs = names = tuple(o.name or f"f{i}" for i, o in enumerate(outputs, start=1))
        single = len(outputs) == 1
        self.columns = [(("value",) if single else ("value", n), n if named or not single else "value") for n in names]
        self.columns += [
            (("grad", t), f"grad_{t}") if single else (("jacobian", n, t), f"jacobian_{n}_{t}")
            for n in names
            for t in self.wrt
        ]
        self.columns = [(path, f"{prefix}{column}{suffix}") for path, column in self.columns]
        self.growth = 0.0  # the largest amplification of a perturbation of the state seen
        self.step_done: Callable[[float], None] | None = None  # told the share of a run's steps done
        maps, results = [rules.accurate(u.expr) for u in updates], [rules.accurate(o.expr) for o in outputs]
        self._d = Differentiator()
        self._compile_forward(maps, results)
        self._compile_reverse(maps, results)

    def _compile_forward(self, maps: list[sympy.Expr], results: list[sympy.Expr]) -> None:
        states = [symbol(s) for s in self.states]
        sensitivity = {(i, j): _internal("d", i, j) for i in range(len(states)) for j in range(len(self.wrt))}

        def carried(expr: sympy.Expr, j: int) -> sympy.Expr:
            """d expr / d wrt[j], through the states' sensitivities and directly."""
            target = self.wrt[j]
            direct = self._d(expr, target) if target in self.parameters else 0
            return direct + sum(self._d(expr, x.name) * sensitivity[i, j] for i, x in enumerate(states))

        wrt = range(len(self.wrt))
        inputs = [*states, *sensitivity.values(), *(symbol(p) for p in self.parameters)]
        self._step = lower.compile(maps + [carried(f, j) for f in maps for j in wrt], inputs)
        self._report = lower.compile(results + [carried(r, j) for r in results for j in wrt], inputs)
        self._carried = [*self.states, *(s.name for s in sensitivity.values())]
        self._start = {s.name: 1.0 if self.wrt[j] == f"{self.states[i]}0" else 0.0 for (i, j), s in sensitivity.items()}
        self._from_initial = [s.name for (i, j), s in sensitivity.items() if self.wrt[j] in self.initial]

    def _compile_reverse(self, maps: list[sympy.Expr], results: list[sympy.Expr]) -> None:
        states = [symbol(s) for s in self.states]
        parameters = [symbol(p) for p in self.parameters]
        self._targets = [t for t in self.wrt if t in self.parameters]
        targets = [symbol(t) for t in self._targets]
        adjoint = {(i, o): _internal("l", i, o) for o in range(len(results)) for i in range(len(states))}

        def pulled(o: int, v: sympy.Symbol) -> sympy.Expr:
            """∂F/∂v ᵀ·λ of output o: what one step back adds to d output / d v."""
            return sum(self._d(f, v.name) * adjoint[j, o] for j, f in enumerate(maps))

        outputs = range(len(results))
        self._map = lower.compile(maps, [*states, *parameters])
        self._outputs = lower.compile(results, [*states, *parameters])
        self._final = lower.compile(
            results + [self._d(r, v.name) for r in results for v in [*states, *targets]], [*states, *parameters]
        )
        self._back = lower.compile(
            [pulled(o, v) for o in outputs for v in [*states, *targets]], [*states, *parameters, *adjoint.values()]
        )
        self._adjoints = [[adjoint[i, o].name for i in range(len(states))] for o in outputs]

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables each point must give a value for (as a transforms.Plan has them)."""
        return self.parameters

    def method(self, requested: str, steps: int, rows: int, trajectory: bool, dtype: torch.dtype) -> str:
        """forward or reverse: as asked, or under auto reverse where it evaluates fewer derivatives
        per step (an adjoint per state and output, and a pull per parameter and output, against a
        sensitivity per state and ``--wrt`` variable) and its kept states fit in ``REVERSE_BYTES``."""
        if requested != "auto":
            return requested
        kept = steps * len(self.states) * rows * dtype.itemsize
        cheaper = len(self.outputs) * (len(self.states) + len(self._targets)) < len(self.states) * len(self.wrt)
        return "reverse" if cheaper and not trajectory and kept <= REVERSE_BYTES else "forward"

    def inputs(self, frame: pl.DataFrame, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
        """Each run's parameters, and its initial state under the names ``x0``."""
        count = frame.height if frame.width else 1
        values = pipeline.tensors(frame, self.parameters, self.sources, dtype, device)
        for name, state in self.initial.items():
            start = torch.full((count,), float(self.init[state]), dtype=torch.float64, device=device)
            values[name] = start.to(dtype)  # as data is converted: 1e300 in float32 is inf
        return values

    def run(
        self,
        frame: pl.DataFrame,
        steps: int,
        *,
        trajectory: bool,
        method: str = "auto",
        dtype: torch.dtype,
        device: torch.device,
    ) -> Iterator[pl.DataFrame]:
        """The frame's rows (one run each) with the reported columns: after the last step, or
        after every step (and the start) with a ``step`` column."""
        values = self.inputs(frame, dtype, device)
        count = frame.height if frame.width else 1
        with torch.inference_mode():
            if self.method(method, steps, count, trajectory, dtype) == "reverse":
                numbers, _ = self.reverse(values, steps)
                yield self._reported(frame, numbers, None)
            else:
                for k, numbers in self.forward(values, steps, every=trajectory):
                    yield self._reported(frame, numbers, k if trajectory else None)

    def forward(
        self, values: Mapping[str, torch.Tensor], steps: int, *, every: bool = False
    ) -> Iterator[tuple[int, list[torch.Tensor]]]:
        """The reported columns after the last step (``every``: after each step), by forward mode."""
        like = torch.empty_like(next(iter(values.values())))
        carried = self._started(values)
        carried.update({name: torch.full_like(like, start) for name, start in self._start.items()})
        for k in range(steps + 1):
            if every or k == steps:
                yield k, self._report(carried, like)
                for name in self._from_initial:
                    self.growth = max(self.growth, float(carried[name].abs().nan_to_num(nan=0.0).max()))
            if k < steps:
                carried.update(zip(self._carried, self._step(carried, like)))
                self._tell(k, steps)

    def reverse(self, values: Mapping[str, torch.Tensor], steps: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The reported columns after the last step by reverse mode, and for each run how much the
        map amplifies a perturbation of the state: the largest |d output / d state| over the steps,
        over the output's own |d output / d last state| (so that scaling an output changes nothing)."""
        like = torch.empty_like(next(iter(values.values())))
        state = self._started(values)
        kept = _kept_states((steps, len(self.states), like.numel()), like)
        self._iterate(state, steps, like, kept)
        final = self._final(state, like)
        outputs, pulls = final[: len(self._adjoints)], self._per_output(final[len(self._adjoints) :])
        adjoints = [pull[: len(self.states)] for pull in pulls]  # λ: d output / d state
        totals = [pull[len(self.states) :] for pull in pulls]  # d output / d parameter, so far
        last = [_largest(adjoint, like) for adjoint in adjoints]  # each output's |d output / d last state|
        amplification = torch.ones_like(like)
        for k in reversed(range(steps)):
            self._tell(2 * steps - k, 2 * steps)
            state.update({s: kept[k, i] for i, s in enumerate(self.states)})
            state.update({n: a for names, adjoint in zip(self._adjoints, adjoints) for n, a in zip(names, adjoint)})
            pulls = self._per_output(self._back(state, like))
            adjoints = [pull[: len(self.states)] for pull in pulls]
            totals = [[t + p for t, p in zip(total, pull[len(self.states) :])] for total, pull in zip(totals, pulls)]
            for adjoint, scale in zip(adjoints, last):
                growth = (_largest(adjoint, like) / scale).nan_to_num(nan=1.0, posinf=1.0)  # 0/0, x/0: no scale
                amplification = torch.maximum(amplification, growth)
        self.growth = max(self.growth, float(amplification.max()))
        derivatives = []
        for adjoint, total in zip(adjoints, totals):
            of = {**{f"{s}0": a for s, a in zip(self.states, adjoint)}, **dict(zip(self._targets, total))}
            derivatives += [of[t] for t in self.wrt]
        return [*outputs, *derivatives], amplification

    def values_after(self, values: Mapping[str, torch.Tensor], steps: int) -> list[torch.Tensor]:
        """The outputs after ``steps`` steps, without derivatives (what finite differences take)."""
        like = torch.empty_like(next(iter(values.values())))
        state = self._started(values)
        self._iterate(state, steps, like)
        return self._outputs(state, like)

    def _started(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**values, **{s: values[n] for n, s in self.initial.items()}}

    def _iterate(
        self, state: dict[str, torch.Tensor], steps: int, like: torch.Tensor, kept: torch.Tensor | None = None
    ) -> None:
        """Apply the map ``steps`` times to ``state``, keeping each step's state in ``kept`` if given."""
        for k in range(steps):
            if kept is not None:
                for i, s in enumerate(self.states):
                    kept[k, i] = state[s]
            state.update(zip(self.states, self._map(state, like)))
            self._tell(k, 2 * steps if kept is not None else steps)

    def _tell(self, k: int, total: int) -> None:
        """Say, every 1,024 steps, what share of the run is done (for a progress line)."""
        if self.step_done is not None and k % 1024 == 0:
            self.step_done(k / total)

    def _per_output(self, flat: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        width = len(self.states) + len(self._targets)
        return [flat[o * width : (o + 1) * width] for o in range(len(self._adjoints))]

    def conditioning(self, dtype: torch.dtype) -> str | None:
        """A note when the map amplifies perturbations enough to cost digits: the rounding errors
        of each step grow as the derivatives with respect to the state do."""
        if self.growth < 1e3:
            return None
        return (
            f"perturbations of the state grew by up to {self.growth:.1e}: expect about "
            f"{digits(self.growth, dtype)} correct digits in the results"
        )

    def _reported(self, frame: pl.DataFrame, numbers: list[torch.Tensor], step: int | None) -> pl.DataFrame:
        out = pl.DataFrame({c: r.cpu().numpy() for (_, c), r in zip(self.columns, numbers)})
        if step is not None:
            out.insert_column(0, pl.repeat(step, out.height, dtype=pl.Int64, eager=True).alias("step"))
        return frame.hstack(out) if frame.width else out


def _largest(tensors: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Each run's largest magnitude among ``tensors`` (NaN counts as 0)."""
    largest = torch.zeros_like(like)
    for t in tensors:
        largest = torch.maximum(largest, t.abs().nan_to_num(nan=0.0))
    return largest


def digits(amplification: float, dtype: torch.dtype) -> int:
    """Correct significant digits left when rounding errors are amplified this much."""
    return max(0, int(-math.log10(max(amplification, 1.0) * torch.finfo(dtype).eps)))


def _kept_states(shape: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
    """Room for every step's state (reverse mode), or a usage error saying what it would take:
    at most half the machine's memory (the device's free memory on a GPU)."""
    size = math.prod(shape) * like.element_size()
    if like.device.type == "cuda":
        room = torch.cuda.mem_get_info(like.device)[0]
    else:
        room = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2 if hasattr(os, "sysconf") else size
    problem = UsageError(
        f"reverse mode keeps every step's state: {shape[0]:,} steps x {shape[1]} states x {shape[2]:,} runs "
        f"need {size / 2**30:,.1f} GiB, more than this machine has",
        hint=f"{example('method', 'forward', repr('forward'))}: its memory does not grow with the steps "
        + (f"(or a smaller {option('batch_size')})" if spelling() == "flags" else "(or fewer rows at a time)"),
    )
    if size > room:
        raise problem
    try:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    except (RuntimeError, MemoryError):
        raise problem from None
