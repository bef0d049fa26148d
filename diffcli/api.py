"""The Python API (README: "From Python"): ``formula`` parses a formula once and each command of
the CLI is a method of it, on data held in memory; ``scan`` runs a recurrence. The CLI, ``run``
and the server are shells over these.

Data is a mapping of names to numbers, sequences, numpy arrays or torch tensors, or a polars or
pandas DataFrame, or a pyarrow Table or RecordBatch (``data.Table``); a result is the same kind,
the data's columns then the results', named as the CLI's CSV columns. A Dask DataFrame gives a
Dask DataFrame (``diffcli.dask``). Errors are ``diffcli.UsageError``, ``ExpressionError`` and
``DataError`` (the CLI's exit codes 2, 3, 4), naming parameters as they are written here.
Nothing here changes a setting of the process (torch's threads, the allocator, warnings, signals).

SymPy is imported when a formula is parsed, not with this module: a job whose compiled formula
comes from the cache (``cache.py``) never needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import devices
from .errors import DataError, UsageError, option
from .names import variable_name
from .program import KINK

if TYPE_CHECKING:
    import torch

    from . import language, transforms
    from .data import Table
    from .plots import Plot
    from .program import Evaluation
    from .recurrences import Scan
    from .uncertainty import Propagation

COMPILED = 64  # plans a formula keeps (each jvp tangent is a plan of its own)
Data = Any  # see the module's docstring
Names = Sequence[str] | str | None  # ["x", "y"], or "x,y" as the command line writes it
Weights = Mapping[str, float]  # a tangent or cotangent by name: {"x": 1}
Dtype = "str | torch.dtype"
Device = "str | torch.device | None"


def formula(exprs: str | Sequence[str], aux: Mapping[str, str] | Sequence[str] | None = None) -> Formula:
    """Parse ``exprs`` (``"x**2*sin(y)"``, or several: ``["u=x*y", "v=x+y"]``) and the auxiliary
    outputs ``aux`` (``{"cube": "x**3"}``): reported beside the results, never differentiated.
    Each command's derivatives are taken and compiled when it is first used, once."""
    return Formula(exprs, aux)


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One command's plan for a formula, and its compiled evaluation (made when first needed)."""

    plan: transforms.Plan

    @functools.cached_property
    def evaluation(self) -> Evaluation:
        """The plan's program (all but its Taylor coefficients): what the cache keeps."""
        from . import transforms

        return transforms.evaluation(self.plan)

    @functools.cached_property
    def evaluate(self) -> Callable[[Mapping[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]]:
        from . import transforms

        return transforms.evaluator(self.plan, self.evaluation)


class Formula:
    """A parsed formula. It pickles as its text, so worker processes can receive it."""

    def __init__(self, exprs: str | Sequence[str], aux: Mapping[str, str] | Sequence[str] | None = None) -> None:
        from . import language

        self.texts = (exprs,) if isinstance(exprs, str) else tuple(exprs) if _iterable(exprs) else ()
        if not self.texts or not all(isinstance(t, str) for t in self.texts):
            raise UsageError(f"a formula is a string or a list of strings, got {exprs!r:.60}")
        self.aux = dict(aux) if isinstance(aux, Mapping) else None if aux is None else tuple(aux)
        self.parsed = tuple(language.parse(t) for t in self.texts)
        if isinstance(self.aux, Mapping):
            for name, text in self.aux.items():
                language.option_name(name, option("aux"))
                if not isinstance(text, str):
                    raise UsageError(f"{option('aux')} {name!r}: an expression is a string, got {text!r:.60}")
            self.auxiliary = tuple(dataclasses.replace(language.parse(e), name=n) for n, e in self.aux.items())
        else:
            self.auxiliary = tuple(language.parse(t) for t in self.aux or ())
        self.notes = tuple(note for p in (*self.parsed, *self.auxiliary) for note in p.notes)  # how 1/2x was read
        self._compiled: dict[tuple[Any, ...], Compiled] = {}

    def __reduce__(self) -> tuple[Any, ...]:
        return Formula, (self.texts, self.aux)

    def __repr__(self) -> str:
        aux = f", aux={self.aux!r}" if self.aux else ""
        return f"diffcli.formula({self.texts[0] if len(self.texts) == 1 else list(self.texts)!r}{aux})"

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables whose values the data must give, in order."""
        return self.compiled("value").plan.variables

    def compiled(
        self,
        operation: str,
        *,
        wrt: Names = None,
        tangent: Weights | None = None,
        cotangent: Weights | None = None,
        order: int | None = None,
        prefix: str = "",
        suffix: str = "",
        correlation: Mapping[tuple[str, str], float] | None = None,
        coverage: float | None = None,
    ) -> Compiled:
        """The plan of ``operation`` (the CLI's command names) with these options, made once;
        ``propagate``'s inputs are ``wrt``."""
        from . import transforms

        names = tuple(_names(wrt))
        tangent, cotangent = _weights(tangent, "tangent"), _weights(cotangent, "cotangent")
        if order is not None and (not isinstance(order, numbers.Integral) or isinstance(order, bool)):
            raise UsageError(f"{option('order')} must be an integer, got {order!r}")
        order = None if order is None else int(order)
        pairs = None if correlation is None else tuple(sorted(correlation.items()))
        key = (operation, names, _items(tangent), _items(cotangent), order, prefix, suffix, pairs, coverage)
        if key not in self._compiled and len(self._compiled) >= COMPILED:  # jvp along many tangents
            del self._compiled[next(iter(self._compiled))]
        if key not in self._compiled and operation == "propagate":
            from . import uncertainty

            self._compiled[key] = Compiled(
                uncertainty.plan(
                    self.parsed,
                    names,
                    correlation=correlation,
                    order=1 if order is None else order,
                    coverage=coverage,
                    aux=self.auxiliary,
                    prefix=prefix,
                    suffix=suffix,
                )
            )
        if key not in self._compiled:
            self._compiled[key] = Compiled(
                transforms.plan(
                    operation,
                    self.parsed,
                    wrt=names,
                    aux=self.auxiliary,
                    tangent=tangent,
                    cotangent=cotangent,
                    order=order,
                    prefix=prefix,
                    suffix=suffix,
                )
            )
        return self._compiled[key]

    def value(self, data: Data, *, dtype: Dtype = "float64", device: Device = None) -> Data:
        """The values of the expressions (and of ``aux``) at every row of ``data``."""
        return self._apply("value", data, dtype, device)

    def grad(self, data: Data, *, wrt: Names = None, dtype: Dtype = "float64", device: Device = None) -> Data:
        """The value and the gradient (``grad_x``, ...), with respect to ``wrt`` (default: every variable)."""
        return self._apply("grad", data, dtype, device, wrt=wrt)

    def jacobian(self, data: Data, *, wrt: Names = None, dtype: Dtype = "float64", device: Device = None) -> Data:
        """The values and the Jacobian (``jacobian_u_x``, ...) of several expressions."""
        return self._apply("jacobian", data, dtype, device, wrt=wrt)

    def hessian(self, data: Data, *, wrt: Names = None, dtype: Dtype = "float64", device: Device = None) -> Data:
        """The value, the gradient and the Hessian (``hessian_x_y``, ...)."""
        return self._apply("hessian", data, dtype, device, wrt=wrt)

    def jvp(
        self, data: Data, *, tangent: Weights, wrt: Names = None, dtype: Dtype = "float64", device: Device = None
    ) -> Data:
        """The values and J·v for the tangent v (``{"x": 1}``; components not given are 0)."""
        return self._apply("jvp", data, dtype, device, wrt=wrt, tangent=tangent)

    def vjp(
        self, data: Data, *, cotangent: Weights, wrt: Names = None, dtype: Dtype = "float64", device: Device = None
    ) -> Data:
        """The values and uᵀJ for the cotangent u (``{"f1": 1}``, by output; components not given are 0)."""
        return self._apply("vjp", data, dtype, device, wrt=wrt, cotangent=cotangent)

    def derivative(
        self,
        data: Data,
        *,
        wrt: Names = None,
        order: int | None = None,
        dtype: Dtype = "float64",
        device: Device = None,
    ) -> Data:
        """One mixed or n-th partial derivative: ``wrt=["x", "x", "y"]`` is d³f/dx²dy;
        ``wrt=["x"], order=4`` is d⁴f/dx⁴."""
        return self._apply("derivative", data, dtype, device, wrt=wrt, order=order)

    def taylor(
        self, data: Data, *, wrt: Names = None, order: int = 5, dtype: Dtype = "float64", device: Device = None
    ) -> Data:
        """The Taylor coefficients about each row's point up to total degree ``order``."""
        return self._apply("taylor", data, dtype, device, wrt=wrt, order=order)

    def check(
        self,
        data: Data,
        *,
        order: int = 1,
        wrt: Names = None,
        rtol: float | None = None,
        atol: float | None = None,
        allow_kinks: bool = False,
        dtype: Dtype = "float64",
        device: Device = None,
    ) -> list[dict[str, Any]]:
        """The rows of ``diffcli check``: each derivative against the same formulas at 50 digits and
        against finite differences; a row's ``ok`` is False where they disagree."""
        from .check import Checker

        if order not in (1, 2):
            raise UsageError(f"{option('order')} must be 1 or 2, got {order}")
        probe = self.compiled("jacobian", wrt=wrt).plan
        table = _table(data)
        if not table.height:
            raise DataError("the data has no rows to check")
        torch_dtype, target = _torch(dtype, device, table)
        rtol, atol = tolerances(rtol, atol, torch_dtype)
        checker = Checker(
            self.parsed, wrt=probe.wrt, order=order, rtol=rtol, atol=atol, dtype=torch_dtype, device=target,
            allow_kinks=allow_kinks,
        )  # fmt: skip
        checker.add(table.frame(_sources(probe, table)), {})
        return checker.report.rows()

    def propagate(
        self,
        data: Data,
        *,
        sigma: Mapping[str, float | str] | None = None,
        correlation: Mapping[tuple[str, str] | str, float] | None = None,
        covariance: Mapping[str, Mapping[str, float]] | None = None,
        order: int = 1,
        coverage: float | None = None,
        check: bool = False,
        samples: int = 100_000,
        seed: int = 0,
        tolerance: float = 0.1,
        dtype: Dtype = "float64",
        device: Device = None,
    ) -> Data:
        """Each output's standard uncertainty from its inputs' (the GUM's law of propagation):
        ``value``, ``sigma``, ``relative`` (sigma/|value|), ``expanded`` (``coverage`` k times sigma)
        and each input's ``contribution_x`` (its share of the variance).

        An input's standard uncertainty is ``sigma[x]`` (a number, or the name of a data column),
        else the data's column ``u_x``; ``covariance`` gives them and their correlations as a
        matrix by name (``{"m": {"m": 0.01, "g": 0.0003}, "g": {...}}``), ``correlation`` gives
        coefficients by pair (``{("m", "g"): 0.3}`` or ``{"m,g": 0.3}``). ``order=2`` adds the
        second-order terms (essential where a first derivative vanishes). ``check`` adds a Monte
        Carlo propagation (``samples`` draws, ``seed``): ``mc_mean``, ``mc_sigma``, with ``coverage``
        ``mc_low`` and ``mc_high``, and ``mc_agrees``: False where the analytic answer is off by
        more than ``tolerance``·sigma beyond the Monte Carlo's own error."""
        options = {k: v for k, v in locals().items() if k not in ("self", "data", "dtype", "device")}
        if type(data).__module__.startswith("dask."):
            from .dask import apply

            return apply(data, self.propagate, dtype=dtype, device=device, **options)
        table = _table(data)
        torch_dtype, target = _torch(dtype, device, table)
        return table.joined(
            propagated(self.propagation(table.names, dtype=torch_dtype, device=target, **options), table)
        )

    def propagation(
        self,
        columns: Collection[str],
        *,
        sigma: Mapping[str, float | str] | None = None,
        correlation: Mapping[tuple[str, str] | str, float] | None = None,
        covariance: Mapping[str, Mapping[str, float]] | None = None,
        order: int = 1,
        coverage: float | None = None,
        check: bool = False,
        samples: int = 100_000,
        seed: int = 0,
        tolerance: float = 0.1,
        prefix: str = "",
        suffix: str = "",
        dtype: torch.dtype,
        device: torch.device,
    ) -> Propagation:
        """``propagate``'s compiled work for data with these ``columns`` (its options as there)."""
        from . import sinks, uncertainty

        if not isinstance(check, bool):
            raise UsageError(f"{option('check')} must be True or False, got {check!r:.60}")
        indexed = self.compiled("value").plan.indexed
        given = uncertainty.Given.of(sigma, correlation, covariance, uncertainty.bases(self.variables, indexed))
        for name, column in given.columns.items():
            if column not in columns:
                raise UsageError(f"{option('sigma')} {name!r}: the data has no column {column!r}")
        compiled = self.compiled(
            "propagate",
            wrt=given.inputs(self.variables, indexed, columns),
            order=order,
            correlation=given.pairs,
            coverage=coverage,
            prefix=prefix,
            suffix=suffix,
        )
        monte_carlo = None
        if check:
            monte_carlo = uncertainty.MonteCarlo(
                self.compiled("value"), compiled.plan, samples=samples, seed=seed, coverage=coverage,
                tolerance=tolerance, correlation=given.pairs, prefix=prefix, suffix=suffix, dtype=dtype,
                device=device,
            )  # fmt: skip
        propagation = uncertainty.Propagation(compiled, given, monte_carlo, dtype=dtype, device=device)
        sinks.Layout(list(columns), propagation.columns)  # clashes, before work
        return propagation

    def kinks(self, data: Data, *, dtype: Dtype = "float64", device: Device = None) -> Data:
        """Where each expression is not differentiable (a kink, tie, jump or branch boundary; README:
        "Conventions at the hard points"): a column ``kink_f1`` (or ``kink_NAME``) per expression, True there."""
        return self._apply("jacobian", data, dtype, device, kinks=True)

    def plot(
        self,
        grid: Mapping[str, Any],
        *,
        at: Mapping[str, float] | None = None,
        show: Sequence[str] | str = ("value", "grad"),
        dtype: Dtype = "float64",
        device: Device = None,
    ) -> Plot:
        """The plot of ``diffcli plot`` (``plots.Plot``): over ``grid`` (``{"x": (-3, 3, 400)}``, ends
        included, or the values; two variables: a heatmap), the curves ``show`` names (``value``,
        ``grad``, ``hessian``, ``derivative:N``). ``str(plot)`` draws it for a terminal,
        ``plot.figure()`` is a matplotlib Figure, ``plot.save("f.png")`` writes one, ``plot.data`` the numbers."""
        from .plots import of_formula

        return of_formula(self, grid, at=at, show=show, dtype=dtype, device=device)

    def symbolic(self, operation: str = "value", *, latex: bool = False, **options: Any) -> dict[str, str]:
        """Each result's formula as text (``latex``: as LaTeX), simplified where that is quick:
        ``f.symbolic("grad")`` is ``{"value": ..., "grad_x": ...}``."""
        from . import transforms

        texts, _ = transforms.symbolic(self.compiled(operation, **options).plan, latex=latex)
        return texts

    def _apply(
        self, operation: str, data: Data, dtype: Dtype, device: Device, kinks: bool = False, **options: Any
    ) -> Data:
        """``operation`` at every row of ``data``, as the data's own kind; with ``kinks``, instead of
        its results, where each expression is not differentiable."""
        if type(data).__module__.startswith("dask."):
            from .dask import apply

            return apply(data, self.kinks if kinks else getattr(self, operation), dtype=dtype, device=device, **options)
        import torch

        from . import sinks

        compiled = self.compiled(operation, **options)
        table = _table(data)
        sinks.Layout(table.names, [(q.path, q.column) for q in compiled.plan.quantities])  # clashes, before work
        torch_dtype, target = _torch(dtype, device, table)
        values = table.tensors(_sources(compiled.plan, table), torch_dtype, target)
        with torch.no_grad():
            results = compiled.evaluate(values, torch.empty(table.height, dtype=torch_dtype, device=target))
        if kinks:
            none = torch.zeros(table.height, dtype=torch.bool, device=target)
            found = {o: results.get(KINK + o, none).bool() for o in compiled.plan.outputs}
            return table.joined({f"kink_{o}": k for o, k in found.items()})
        return table.joined({k: v for k, v in results.items() if not k.startswith(KINK)})


def propagated(propagation: Propagation, data: Data) -> dict[str, torch.Tensor]:
    """The columns of a ``Formula.propagation`` at every row of ``data`` (a ``data.Table`` or data)."""
    import torch

    from .data import Table

    table = data if isinstance(data, Table) else _table(data)
    plan, dtype, device = propagation.plan, propagation.dtype, propagation.device
    constants, renames = propagation.given.constants(plan.wrt), propagation.given.renames(plan.wrt)
    sources = {**_sources(plan, table, skip={*constants, *renames}), **renames}
    values = table.tensors(sources, dtype, device)
    values.update({k: torch.full((table.height,), v, dtype=dtype, device=device) for k, v in constants.items()})
    propagation.place = lambda row, name: f"data column {table.columns.get(sources.get(name, name), name)!r}, row {row}"
    with torch.no_grad():
        results = propagation.evaluate(values, torch.empty(table.height, dtype=dtype, device=device))
    return {k: v for k, v in results.items() if not k.startswith(KINK)}


def scan(
    updates: str | Sequence[str],
    *,
    init: Mapping[str, float],
    steps: int,
    data: Data = None,
    outputs: Mapping[str, str] | None = None,
    wrt: Names = None,
    trajectory: bool = False,
    method: str = "auto",
    dtype: Dtype = "float64",
    device: Device = None,
) -> Data:
    """Iterate ``updates`` (``"x = r*x*(1-x)"``) ``steps`` times from ``init``, once per row of
    ``data`` (which gives the parameters), and differentiate the final state — or ``outputs`` of it —
    with respect to ``wrt`` (parameters, and ``x0`` for the initial value of x). ``trajectory``
    reports every step (rows step by step, with a ``step`` column)."""
    import numpy as np
    import polars as pl

    from . import sinks

    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise UsageError(f"{option('steps')} must be an integer, 0 or more, got {steps!r}")
    check_method(method, trajectory)
    recurrence = recurrence_of(updates, _weights(init, "init") or {}, outputs=outputs, wrt=wrt)
    table = _table({} if data is None else data)
    sinks.Layout([*table.names, *(["step"] if trajectory else [])], recurrence.columns)  # clashes, before work
    torch_dtype, target = _torch(dtype, device, table)
    frame = table.frame(_sources(recurrence, table))
    if not frame.width:  # no parameters: still one run per row
        frame = pl.DataFrame({"_row": np.arange(table.height)})
    runs = list(recurrence.run(frame, steps, trajectory=trajectory, method=method, dtype=torch_dtype, device=target))
    reported = pl.concat(runs).drop(frame.columns)
    rows = table.taken(np.tile(np.arange(table.height), len(runs))) if trajectory else table  # step by step
    return rows.joined({c: _tensor(reported[c], target) for c in reported.columns})


def recurrence_of(
    updates: str | Sequence[str | language.Parsed],
    init: Mapping[str, float],
    *,
    outputs: Mapping[str, str] | Sequence[language.Parsed] | None = None,
    wrt: Names = None,
    prefix: str = "",
    suffix: str = "",
) -> Scan:
    """The compiled recurrence of ``scan`` (the CLI's and ``run``'s too)."""
    from . import language
    from .recurrences import Scan

    texts = [updates] if isinstance(updates, str) else updates
    parsed = [u if isinstance(u, language.Parsed) else language.parse(u) for u in texts]
    if isinstance(outputs, Mapping):
        for name in outputs:
            language.option_name(name, option("outputs"))
        outputs = [language.Parsed(n, language.parse(e).expr) for n, e in outputs.items()]
    with language.symbolic_time_limit("scan (symbolic differentiation)"):
        return Scan(parsed, init, outputs=outputs or (), wrt=_names(wrt), prefix=prefix, suffix=suffix)


def check_method(method: str, trajectory: bool) -> None:
    """A scan's ``method`` and ``trajectory``, checked together."""
    from .recurrences import METHODS

    if method not in METHODS:
        raise UsageError(f"{option('method')} must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "reverse" and trajectory:
        raise UsageError(
            f"reverse mode differentiates the last step only; {option('trajectory')} needs {option('method')} forward"
        )


def tolerances(rtol: float | None, atol: float | None, dtype: torch.dtype) -> tuple[float, float]:
    """``rtol`` and ``atol`` checked: each defaults to the other, then to the dtype's (``check.tolerance``)."""
    from .check import tolerance

    for name, given in (("rtol", rtol), ("atol", atol)):
        if given is not None and not (math.isfinite(given) and given >= 0):
            raise UsageError(f"{option(name)} must be a finite number >= 0, got {given}")
    rtol = rtol if rtol is not None else tolerance(dtype)
    return rtol, atol if atol is not None else rtol


def _names(wrt: Names) -> list[str]:
    """``wrt`` as names: ``"x,y"`` (as the command line writes it) or ``["x", "y"]``."""
    if wrt is None:
        return []
    if isinstance(wrt, str):
        return [n.strip() for n in wrt.split(",")]
    if not _iterable(wrt) or not all(isinstance(n, str) for n in wrt):
        raise UsageError(f"{option('wrt')} must be names, as a list or 'x,y'; got {wrt!r:.60}")
    return list(wrt)


def _iterable(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _weights(weights: Any, name: str) -> dict[str, float] | None:
    """A tangent or cotangent checked: finite numbers by name (``x[2]`` is x_2)."""
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise UsageError(f"{option(name)} must be a mapping of names to numbers, got {weights!r:.60}")
    checked = {}
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{option(name)} {key!r}: must be a finite number, got {value!r:.60}")
        checked[variable_name(str(key))] = float(value)
    return checked


def _items(weights: Mapping[str, float] | None) -> tuple[tuple[str, float], ...] | None:
    return None if weights is None else tuple(sorted((str(k), float(v)) for k, v in weights.items()))


def _table(data: Data) -> Table:
    from .data import Table

    return Table(data)


def _torch(dtype: Dtype, device: Device, table: Table) -> tuple[torch.dtype, torch.device]:
    """The dtype and device to compute in: ``device``, else where the data's tensors are, else the CPU."""
    return devices.resolve(dtype, device if device is not None else table.device or "cpu")


def _sources(plan: Any, table: Table, skip: Collection[str] = ()) -> dict[str, str]:
    """The data column of each variable of ``plan`` (a ``transforms.Plan`` or a ``recurrences.Scan``)
    but those in ``skip``: its own, or its family's (``x`` for ``x[3]``); a usage error names those
    that have none."""
    from .sources import family_columns

    variables = [v for v in plan.variables if v not in skip]
    found = {v: v for v in variables if v in table.columns}
    found.update(family_columns([v for v in variables if v not in found], plan.indexed, table.names))
    missing = [v for v in variables if v not in found]
    if missing:
        raise UsageError(f"no value for {', '.join(missing)} in the data", hint=f"give it: {{{missing[0]!r}: ...}}")
    return found


def _tensor(column: Any, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_dlpack(column.to_numpy()).to(device)
