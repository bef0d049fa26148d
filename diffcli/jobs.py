"""The command line's jobs, as functions of their options (no typer here): the points of ``--at``
and ``--grid`` or the rows of a file, streamed in batches through a formula of the Python API
(``api``) into a sink, written whole or not at all.

Options arrive as the command line wrote them (``wrt="x,y"``, ``tangent="x=1"``) and messages name
them as flags. What the command would print beside its results goes to ``note``; ``progress``
makes the progress line (none by default). ``cpu_threads`` sets torch's threads when the job
computes on the CPU: the CLI asks for 1 (``pipeline`` says why); a library caller leaves torch be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import api, cache, devices, sinks, sources
from .destinations import destination
from .errors import DataError, DisagreementError, UsageError
from .names import variable_name

Note = Callable[[str], None]


class Progress:
    """What a progress line is told: rows done, and the share of the work done where it is known."""

    def update(self, rows: int = 0, done: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Input:
    """Where the rows come from: ``--input`` and the options that go with it, checked once for
    every command."""

    input: str | None = None
    input_format: str | None = None
    no_header: bool = False
    columns: str | None = None
    mapping: list[str] | None = None
    delimiter: str | None = None
    skip_bad_rows: bool = False
    batch_size: int = 65_536

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be positive, got {self.batch_size}")
        if self.no_header and self.columns is None:
            raise UsageError("--no-header needs --columns to name the columns: --no-header --columns x,y")
        if self.names:
            from .readers import misnamed

            problem = misnamed(self.names)
            if problem:
                raise UsageError(f"--columns {self.columns}: column {problem[0]}: {problem[1]}")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise UsageError(f"--delimiter must be one character, got {self.delimiter!r}")

    @property
    def names(self) -> list[str] | None:
        """The names ``--columns`` gives."""
        return [c.strip() for c in self.columns.split(",")] if self.columns is not None else None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where the work runs: ``--engine local`` (this process) or ``dask`` (each file of the
    input on a worker of ``--scheduler``, or of a cluster of ``--workers`` started for the run)."""

    engine: str = "local"
    scheduler: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ("local", "dask"):
            raise UsageError(f"--engine must be local or dask, got {self.engine!r}")
        for flag, value in (("--scheduler", self.scheduler), ("--workers", self.workers)):
            if value is not None and self.engine != "dask":
                raise UsageError(f"{flag} needs --engine dask")
        if self.scheduler is not None and self.workers is not None:
            raise UsageError("--scheduler uses that cluster's workers; --workers starts a cluster: give one")
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--workers must be positive, got {self.workers}")


@dataclasses.dataclass(frozen=True)
class Gate:
    """``--expect``, ``--expect-file`` and their tolerances: the results compared as they are written."""

    expect: list[str] | None = None
    expect_file: str | None = None
    rtol: float | None = None
    atol: float | None = None

    def expectations(self, stack: contextlib.ExitStack, dtype: Any, layout: sinks.Layout, source: Input) -> Any:
        """The expectations against the results of ``layout`` (None if none), checked before any work."""
        if not self.expect and self.expect_file is None:
            return None
        import polars as pl

        from . import expect

        rows = None
        if self.expect_file is not None:
            if self.expect_file == "-" and source.input == "-":
                raise UsageError("--input - reads stdin: give --expect-file a file")
            reader = _reader(stack, self.expect_file, Input())  # no options of its own
            reader.numeric = set(reader.header()) & set(layout.columns)
            rows = expect.shaped(
                pl.concat(list(reader), how="vertical_relaxed"), layout.quantities, layout.prefix, layout.suffix
            )
        rtol, atol = api.tolerances(self.rtol, self.atol, dtype)
        expectations = expect.Expectations(expect.wanted(self.expect or []), rows, rtol, atol)
        expectations.bind(layout.columns)
        return expectations

    @staticmethod
    def watching(expectations: Any, write: Callable[[Any], None]) -> Callable[[Any], None]:
        """``write``, comparing each batch first."""
        if expectations is None:
            return write

        def checked(frame: Any) -> None:
            expectations.check(frame)
            write(frame)

        return checked

    @staticmethod
    def verdict(expectations: Any) -> None:
        """Exit 5 with one line if any result was off."""
        if expectations is not None and expectations.report():
            raise DisagreementError(f"--expect: {'; '.join(expectations.report())}")


def evaluate(
    operation: str,
    *,
    exprs: str | list[str],
    at: list[str] | None = None,
    grid: list[str] | None = None,
    aux: list[str] | None = None,
    device: str = "auto",
    dtype: str = "float64",
    fmt: str = "auto",
    output: str | None = None,
    precision: int | None = None,
    symbolic: bool = False,
    latex: bool = False,
    prefix: str = "",
    suffix: str = "",
    wrt: str | None = None,
    tangent: str | None = None,
    cotangent: str | None = None,
    order: int | None = None,
    source: Input = Input(),
    gate: Gate = Gate(),
    note: Note = lambda text: None,
    progress: Callable[[], Progress] = Progress,
    cpu_threads: int | None = None,
    cluster: Cluster = Cluster(),
) -> None:
    """``diffcli value|grad|jacobian|hessian|jvp|vjp|derivative|taylor``: parse, plan, read in
    batches, evaluate, write. ``--engine dask`` hands this same job, once parsed here, to Dask's
    workers, one file of the input each (``dask.evaluate``)."""
    job = dict(locals())  # the arguments, before anything else is named here
    _check_precision(precision)
    texts = [exprs] if isinstance(exprs, str) else exprs
    options = {
        "wrt": wrt,
        "tangent": tangent,
        "cotangent": cotangent,
        "order": order,
        "prefix": prefix,
        "suffix": suffix,
    }
    name = cache.key({"command": operation, "exprs": texts, "aux": aux or [], **options})
    entry = None if symbolic or latex or cluster.engine == "dask" else cache.load(name)
    if entry is None:
        formula = api.formula(texts, aux or [])
        notes, label = formula.notes, _label(formula)
    else:  # parsed, differentiated and compiled by an earlier run
        notes, label = entry.notes, entry.label
    for text in notes:
        note(text)
    if cluster.engine == "dask":
        from . import dask

        dask.evaluate(evaluate, notes, **job)
        return
    fmt = _format(fmt, output)
    points = _points(at, grid)
    if entry is None:
        compiled: api.Compiled | cache.Compiled = formula.compiled(
            operation,
            wrt=wrt,
            tangent=sources.assignments(tangent, "--tangent") if tangent else None,
            cotangent=sources.assignments(cotangent, "--cotangent") if cotangent else None,
            order=order,
            prefix=prefix,
            suffix=suffix,
        )
        _keep(name, compiled, notes, label)
    else:
        compiled = entry.compiled
    plan = compiled.plan
    if (symbolic or latex) and plan.variables and not (at or grid or source.input):
        _formulas_alone(plan, symbolic, latex, gate, fmt, output, note)
        return
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, plan, points, source)
        fmt = _follow_input(fmt, output, reader)
        layout = sinks.Layout(  # clashing names: before any work
            coordinates, [(q.path, q.column) for q in plan.quantities], prefix=prefix, suffix=suffix
        )
        layout.formulas = _formulas(plan, symbolic, latex, note)

        from . import pipeline

        frames = pipeline.ahead(points.frames(source.batch_size) if reader is None else map(points.cross, reader))
        torch_dtype, target = _torch(dtype, device, cpu_threads)
        compute = pipeline.Evaluator(compiled, from_file, torch_dtype, target)
        expectations = gate.expectations(stack, torch_dtype, layout, source)
        sink, write, _ = _rows(stack, output, fmt, layout, precision, ", ".join(texts), expectations)
        pipeline.run(frames, compute, write, watch=_watched(reader, progress()))
        sink.close()
    if reader is not None and reader.skipped:
        note(f"skipped {reader.skipped} bad rows of {reader.rows} in {reader.name}")
    _kink_notes(compute.kinks, sink.rows, label, note)
    _non_finite_notes(sink, fmt, note)
    gate.verdict(expectations)


def scan(
    *,
    updates: list[str],
    init: str,
    steps: int,
    wrt: str | None = None,
    outputs: list[str] | None = None,
    trajectory: bool = False,
    method: str = "auto",
    check: bool = False,
    at: list[str] | None = None,
    grid: list[str] | None = None,
    device: str = "auto",
    dtype: str = "float64",
    fmt: str = "auto",
    output: str | None = None,
    precision: int | None = None,
    prefix: str = "",
    suffix: str = "",
    source: Input = Input(),
    gate: Gate = Gate(),
    note: Note = lambda text: None,
    progress: Callable[[], Progress] = Progress,
    cpu_threads: int | None = None,
    plot: bool = False,
    plot_output: str | None = None,
) -> None:
    """``diffcli scan``: the points as for every command, one run of the recurrence per point;
    with ``check``, the report of ``check`` instead of the results; with ``plot``, the trajectory
    drawn on stdout instead of written there (``plot_output``: a figure, or the drawing, in a file)."""
    if (plot or plot_output) and not trajectory:
        raise UsageError("--plot draws the steps of a run: add --trajectory")
    _check_plot_stdout(plot, output, ("--format", fmt != "auto"), ("--precision", precision is not None))
    _check_plot_output(plot_output)
    if steps < 0:
        raise UsageError(f"--steps must be 0 or more, got {steps}")
    _check_precision(precision)
    api.check_method(method, trajectory)
    if check and (trajectory or method != "auto"):
        raise UsageError("--check compares both methods at the last step: drop --trajectory and --method")
    if check and (gate.expect or gate.expect_file):
        raise UsageError("--check reports instead of the results: --expect compares the results; use one")
    if check and (prefix or suffix):
        raise UsageError("--check reports in the schema of diffcli check: drop --prefix and --suffix")

    from .language import parse

    parsed = [parse(u) for u in updates]
    results = [parse(o) for o in outputs or []]
    for text in (n for p in [*parsed, *results] for n in p.notes):
        note(text)
    if any(r.name is None for r in results):
        raise UsageError("--output-expr needs a name: --output-expr loss=(x-0.5)**2")
    fmt = _format(fmt, output)
    points = _points(at, grid)
    if (plot or plot_output) and (source.input is not None or len(points) != 1):
        raise UsageError("--plot draws one run: give the parameters one value each (--at r=2.8), no --input")
    recurrence = api.recurrence_of(
        updates, sources.assignments(init, "--init"), outputs=results, wrt=wrt, prefix=prefix, suffix=suffix
    )
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, recurrence, points, source)
        fmt = _follow_input(fmt, output, reader)
        recurrence.sources = from_file
        from . import pipeline

        torch_dtype, target = _torch(dtype, device, cpu_threads)
        frames = pipeline.ahead(points.frames(source.batch_size) if reader is None else map(points.cross, reader))
        if check:
            from .check import ScanChecker

            rtol, atol = api.tolerances(gate.rtol, gate.atol, torch_dtype)
            checker = ScanChecker(recurrence, steps, rtol=rtol, atol=atol, dtype=torch_dtype, device=target)
            for frame in _watched(None, progress())(frames):
                checker.add(frame)
            _conditioning_note(recurrence, torch_dtype, note)
            report(checker.report.rows(), fmt, output)
            return
        layout = sinks.Layout(
            [*coordinates, *(["step"] if trajectory else [])], recurrence.columns, prefix=prefix, suffix=suffix
        )
        expectations = gate.expectations(stack, torch_dtype, layout, source)
        sink, write, kept = _rows(
            stack, output, fmt, layout, precision, ", ".join(updates), expectations, plot, plot_output
        )
        shown = progress()
        recurrence.step_done = lambda share: shown.update(done=share)
        for frame in _watched(reader, shown)(frames):
            for result in recurrence.run(
                frame, steps, trajectory=trajectory, method=method, dtype=torch_dtype, device=target
            ):
                write(result)
        sink.close()
    if plot or plot_output:
        import polars as pl

        from .plots import trajectory

        frame = pl.concat(kept)
        values = [c for path, c in recurrence.columns if path[0] == "value"]
        derivatives = [c for _, c in recurrence.columns if c not in values]
        _draw(trajectory(frame.to_dict(), values, derivatives, title=", ".join(updates)), plot, plot_output)
    _conditioning_note(recurrence, torch_dtype, note)
    _non_finite_notes(sink, fmt, note)
    gate.verdict(expectations)


def check(
    *,
    exprs: list[str],
    wrt: str | None = None,
    order: int = 1,
    allow_kinks: bool = False,
    rtol: float | None = None,
    atol: float | None = None,
    at: list[str] | None = None,
    grid: list[str] | None = None,
    device: str = "auto",
    dtype: str = "float64",
    fmt: str = "auto",
    output: str | None = None,
    source: Input = Input(),
    note: Note = lambda text: None,
    progress: Callable[[], Progress] = Progress,
    cpu_threads: int | None = None,
) -> None:
    """``diffcli check``: the points as for every command, then one report row per output,
    quantity and engine; exit 5 after the report if any disagreed."""
    if order not in (1, 2):
        raise UsageError(f"--order must be 1 or 2, got {order}")
    fmt = _format(fmt, output)
    formula = api.formula(exprs)
    for text in formula.notes:
        note(text)
    points = _points(at, grid)
    probe = formula.compiled("jacobian", wrt=wrt).plan
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, probe, points, source)
        fmt = _follow_input(fmt, output, reader)

        from . import check, pipeline

        torch_dtype, target = _torch(dtype, device, cpu_threads)
        rtol, atol = api.tolerances(rtol, atol, torch_dtype)
        checker = check.Checker(
            formula.parsed, wrt=probe.wrt, order=order, rtol=rtol, atol=atol, dtype=torch_dtype, device=target,
            allow_kinks=allow_kinks,
        )  # fmt: skip
        frames = points.frames(source.batch_size) if reader is None else map(points.cross, reader)
        for frame in _watched(reader, progress())(pipeline.ahead(frames)):
            checker.add(frame, from_file)
        report(checker.report.rows(), fmt, output)


def propagate(
    *,
    exprs: list[str],
    sigma: list[str] | None = None,
    corr: list[str] | None = None,
    cov: str | None = None,
    order: int = 1,
    coverage: float | None = None,
    check: bool = False,
    samples: int | None = None,
    seed: int | None = None,
    check_tolerance: float | None = None,
    plot: bool = False,
    plot_output: str | None = None,
    at: list[str] | None = None,
    grid: list[str] | None = None,
    aux: list[str] | None = None,
    device: str = "auto",
    dtype: str = "float64",
    fmt: str = "auto",
    output: str | None = None,
    precision: int | None = None,
    symbolic: bool = False,
    latex: bool = False,
    prefix: str = "",
    suffix: str = "",
    source: Input = Input(),
    gate: Gate = Gate(),
    note: Note = lambda text: None,
    progress: Callable[[], Progress] = Progress,
    cpu_threads: int | None = None,
) -> None:
    """``diffcli propagate``: the inputs' uncertainties from ``--at m=2±0.1``, ``--sigma`` (numbers,
    or columns), ``--cov`` and the input's ``u_m`` columns; then as ``evaluate``, with the Monte
    Carlo's columns beside the analytic ones under ``--check`` (exit 5 where they disagree); with
    ``plot``, each value and its ±sigma band over the one ``--grid``, drawn instead of the rows
    (``plot_output``: into a file)."""
    from . import uncertainty

    _check_precision(precision)
    _check_plot_output(plot_output)
    for flag, given in (("--samples", samples), ("--seed", seed), ("--check-tolerance", check_tolerance)):
        if given is not None and not check:
            raise UsageError(f"{flag} sets the Monte Carlo of --check: add --check")
    samples, seed = uncertainty.SAMPLES if samples is None else samples, seed or 0
    check_tolerance = uncertainty.TOLERANCE if check_tolerance is None else check_tolerance
    if (plot or plot_output) and (len(grid or []) != 1 or source.input is not None):
        raise UsageError("--plot draws the value and its ±sigma band over one --grid (and no --input)")
    _check_plot_stdout(plot, output, ("--format", fmt != "auto"), ("--symbolic", symbolic), ("--latex", latex))
    formula = api.formula(exprs, aux or [])
    for text in formula.notes:
        note(text)
    fmt = _format(fmt, output)
    measured = [sources.assignments(t, "--at", uncertain=True) for t in at or []]
    marked = {sources.uncertain(n) for point in measured for n in point} - {None}
    for point in measured:  # a point without ± where others have one: that value is exact
        point.update({sources.uncertainty(n): 0.0 for n in marked if n in point} | point)
    numbers: dict[str, float] = {}
    given = uncertainty.Given()  # the columns --sigma names, and the correlations
    for item in (i for text in sigma or [] for i in sources.split(text)):
        name, value = _pair(item, "--sigma")
        name = variable_name(name)
        if name in numbers or name in given.columns:
            raise UsageError(f"--sigma {name}: its uncertainty is given twice")
        try:
            numbers[name] = sources.number(value, f"--sigma {name}")
        except UsageError:
            if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", value, re.IGNORECASE):  # a number: 1e400
                raise
            given.columns[name] = value
    for text in corr or []:
        names, _, value = text.rpartition("=")
        pair = names.split(",")
        if len(pair) != 2 or not all(n.strip() for n in pair):
            raise UsageError(f"--corr {text!r}: expected NAME,NAME=COEFFICIENT, e.g. --corr m,g=0.3")
        given.correlate(*pair, sources.number(value, f"--corr {names}"))
    keep = uncertainty.bases(formula.variables, formula.compiled("value").plan.indexed)
    if cov is not None:
        given.numbers = numbers
        try:
            given.cover(_matrix(cov), keep)
        except UsageError as e:  # the file's numbers: bad input data, named by the file
            if not e.message.startswith("--cov: "):
                raise
            raise DataError(f"{cov}: {e.message.removeprefix('--cov: ')}") from None
        if given.left_out:
            note(f"--cov {cov}: {', '.join(given.left_out)} not in the formula (left out)")
    for name, value in numbers.items():
        if not 0 <= value < math.inf:
            raise UsageError(f"--sigma {name}: an uncertainty is a finite number, 0 or more, got {value!r}")
        if name in marked:
            raise UsageError(f"{name}'s uncertainty is given twice: by --at {name}=…±… and by --sigma or --cov")
    for name in sorted({*marked, *numbers, *given.columns}):
        if name not in keep:
            raise UsageError(f"{name} has an uncertainty, but it is not a variable of the formula")
    if numbers:
        measured.append({sources.uncertainty(n): v for n, v in numbers.items()})
    points = sources.points(measured, [sources.grid(t) for t in grid or []])

    with contextlib.ExitStack() as stack:
        reader = _reader(stack, source.input, source) if source.input is not None else None
        header = reader.header() if reader else []
        for name, column in given.columns.items():
            if column not in header:
                raise UsageError(
                    f"--sigma {name}={column}: {column!r} is not a number"
                    + (f", nor a column of {reader.name}" if reader else " (nor a column: there is no --input)")
                )
        torch_dtype, target = _torch(dtype, device, cpu_threads)
        mapped = [variable_name(_pair(m, "--map")[0]) for m in source.mapping or []]  # --map u_m=dm
        propagation = formula.propagation(
            [*points.names, *header, *mapped], sigma=given.columns, correlation=given.pairs, order=order,
            coverage=coverage, check=check, samples=samples, seed=seed, tolerance=check_tolerance, prefix=prefix,
            suffix=suffix, dtype=torch_dtype, device=target,
        )  # fmt: skip
        plan, monte_carlo = propagation.plan, propagation.monte_carlo
        if (symbolic or latex) and not (at or grid or source.input):
            _formulas_alone(plan, symbolic, latex, gate, fmt, output, note)
            return
        renames = propagation.given.renames(plan.wrt)
        mapping = [*(source.mapping or []), *(f"{u}={c}" for u, c in renames.items())]
        reader, from_file, coordinates = _sources(
            stack, plan, points, dataclasses.replace(source, mapping=mapping), reader
        )
        fmt = _follow_input(fmt, output, reader)

        def place(row: int, variable: str) -> str:
            where = f"{reader.name}: row {row + 1}" if reader else f"row {row + 1}"
            return f"{where}, column {from_file.get(variable, variable)!r}"

        propagation.place = place
        layout = sinks.Layout(coordinates, propagation.columns, prefix=prefix, suffix=suffix)
        layout.formulas = _formulas(plan, symbolic, latex, note)

        from . import pipeline

        frames = pipeline.ahead(points.frames(source.batch_size) if reader is None else map(points.cross, reader))
        compute = pipeline.Evaluator(propagation, from_file, torch_dtype, target)
        expectations = gate.expectations(stack, torch_dtype, layout, source)
        sink, write, kept = _rows(
            stack, output, fmt, layout, precision, ", ".join(exprs), expectations, plot, plot_output
        )
        pipeline.run(frames, compute, write, watch=_watched(reader, progress()))
        sink.close()
    if plot or plot_output:
        import polars as pl

        from .plots import band

        values = [q.column for q in plan.quantities if q.path[0] == "value"]
        sigmas = [q.column for q in plan.quantities if q.path[0] == "sigma"]
        data = pl.concat(kept).to_dict()
        _draw(band(data, points.groups[-1].names[0], values, sigmas, title=", ".join(exprs)), plot, plot_output)
    if reader is not None and reader.skipped:
        note(f"skipped {reader.skipped} bad rows of {reader.rows} in {reader.name}")
    _kink_notes(compute.kinks, propagation.rows, _label(formula), note)
    for text in propagation.notes(propagation.rows, order):
        note(text)
    _non_finite_notes(sink, fmt, note)
    gate.verdict(expectations)
    if monte_carlo is not None and monte_carlo.failures:
        raise DisagreementError(f"propagate --check: {monte_carlo.verdict(propagation.rows)}")


def _matrix(path: str) -> dict[str, dict[str, float]]:
    """The covariance matrix of ``--cov FILE``: JSON ``{"m": {"m": 0.01, "g": 0.0003}, ...}``, or CSV/TSV
    with the names in a header line and, optionally, first in each row (under an empty header)."""
    import csv

    try:
        with open(path, "rb") as stream:
            text = stream.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    if text.lstrip().startswith(("{", "[")):
        import orjson

        try:
            matrix = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(matrix, dict) or not all(isinstance(r, dict) for r in matrix.values()):
            raise DataError(f'{path}: expected an object of objects: {{"m": {{"m": 0.01, "g": 0.0003}}, ...}}')
        return matrix
    rows = [r for r in csv.reader(text.splitlines(), delimiter="\t" if "\t" in text.partition("\n")[0] else ",") if r]
    if not rows:
        raise DataError(f"{path}: is empty: expected a header line of names")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    labelled = header[0] == "" or sorted(r[0].strip() for r in body) == sorted(header[1:])  # names first in rows too
    names = header[1:] if labelled else header
    twice = sorted(
        {n for n in names if names.count(n) > 1}
        | {r[0] for r in body if labelled and [b[0] for b in body].count(r[0]) > 1}
    )
    if twice:
        raise DataError(f"{path}: {twice[0]} is named twice")
    if len(body) != len(names):
        raise DataError(f"{path}: {len(names)} names in the header, but {len(body)} rows: the matrix must be square")
    matrix: dict[str, dict[str, float]] = {}
    for i, row in enumerate(body, start=1):
        name = row[0].strip() if labelled else names[i - 1]
        cells = row[1:] if labelled else row
        if len(cells) != len(names):
            raise DataError(f"{path}: row {i}: {len(cells)} numbers, expected {len(names)}")
        try:
            matrix[name] = {n: float(c) for n, c in zip(names, cells)}
        except ValueError:
            raise DataError(f"{path}: row {i}: not a number") from None
    return matrix


def plot(
    *,
    exprs: list[str],
    grid: list[str] | None = None,
    at: list[str] | None = None,
    show: str = "value,grad",
    size: str | None = None,
    device: str = "auto",
    dtype: str = "float64",
    fmt: str = "auto",
    output: str | None = None,
    precision: int | None = None,
    note: Note = lambda text: None,
    cpu_threads: int | None = None,
) -> None:
    """``diffcli plot``: the plot of ``plots.of_formula`` drawn for the terminal (``--format
    plot``: the default on one), as a figure (PNG, SVG, PDF), or as its numbers (in a pipe: CSV)."""
    from . import plots

    _check_precision(precision)
    target = _plot_target(fmt, output)
    if not grid or len(grid) > 2:
        raise UsageError(
            f"plot draws over one --grid (curves) or two (a heatmap), got {len(grid or [])}",
            hint="give the x axis: --grid x=-3:3:400",
        )
    if at and len(at) > 1:
        raise UsageError("plot takes one value of each other variable: give --at once (--at y=1,z=2)")
    if target == "plot" and len(grid) == 2:
        raise UsageError(
            "a heatmap over two grids is drawn as a figure, not in the terminal", hint="write one: --output plot.png"
        )
    if target in plots.FIGURES:
        plots.require_matplotlib(f"--output {output}" if output and output != "-" else f"--format {target}")
    width, height = _size(size, target in plots.FIGURES)
    formula = api.formula(exprs)
    for text in formula.notes:
        note(text)
    grids = [sources.grid(g) for g in grid]
    if grids[0].names == grids[-1].names and len(grids) == 2:
        raise UsageError(f"--grid {grids[0].names[0]} is given twice; a heatmap takes two variables")
    torch_dtype, target_device = _torch(dtype, device, cpu_threads)
    drawn = plots.of_formula(
        formula,
        {g.names[0]: g for g in grids},
        at=sources.assignments(at[0], "--at") if at else None,
        show=show,
        dtype=torch_dtype,
        device=target_device,
    )
    rows = len(drawn.kinked)
    _kink_notes({o: int(k.sum()) for o, k in drawn.kinks.items()}, rows, _label(formula), note)
    if target not in ("plot", *plots.FIGURES):
        import polars as pl

        layout = sinks.Layout([c for c in drawn.data if c not in drawn.labels], drawn.quantities)
        with destination(output) as stream:
            sink = sinks.open_sink(target, stream, layout, precision=precision, title=drawn.title)
            sink.write(pl.DataFrame(drawn.data))
            sink.close()
        _non_finite_notes(sink, target, note)
        return
    with destination(output) as stream:
        stream.write(_picture(drawn, target, output, width, height))
    for column, bad in drawn.non_finite().items():
        note(f"{column} is not finite at {bad} of {rows} points (left out: a gap in the plot)")


def _rows(
    stack: contextlib.ExitStack,
    output: str | None,
    fmt: str,
    layout: sinks.Layout,
    precision: int | None,
    title: str,
    expectations: Any,
    plot: bool = False,
    plot_output: str | None = None,
) -> tuple[sinks.Sink, Callable[[Any], None], list[Any]]:
    """The sink of a command's rows, the function that writes a batch there (compared with
    ``--expect`` first), and the batches kept for a plot: where ``--plot`` takes stdout the rows go
    nowhere, else they are written and kept."""
    drawn_here = plot and output in (None, "-")
    stream = io.BytesIO() if drawn_here else stack.enter_context(destination(output))
    sink = sinks.open_sink(fmt, stream, layout, precision=precision, title=title)
    kept: list[Any] = []

    def both(frame: Any) -> None:
        sink.write(frame)
        kept.append(frame)

    store = kept.append if drawn_here else both if plot or plot_output else sink.write
    return sink, Gate.watching(expectations, store), kept


def _check_plot_output(plot_output: str | None) -> None:
    """``--plot-output FILE`` checked before any work: a figure (matplotlib installed) or the drawing."""
    if plot_output:
        from .plots import FIGURES, require_matplotlib

        target = _plot_target("auto", plot_output, "--plot-output")
        if target not in ("plot", *FIGURES):
            raise UsageError(f"--plot-output {plot_output}: a figure (.png, .svg, .pdf) or the drawing (.txt)")
        if target in FIGURES:
            require_matplotlib(f"--plot-output {plot_output}")
        if os.path.isdir(plot_output):
            raise UsageError(f"--plot-output {plot_output} is a folder; name a file")
        folder = os.path.dirname(os.path.abspath(plot_output))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):  # found before any work, not after
            reason = "no such folder" if not os.path.isdir(folder) else "permission denied"
            raise UsageError(f"cannot write --plot-output {plot_output}: {reason}")


def _check_plot_stdout(plot: bool, output: str | None, *given: tuple[str, bool]) -> None:
    """``--plot`` draws on stdout instead of the rows: refuse the options (flag, given) that shape rows there."""
    if plot and output in (None, "-"):
        for flag, was_given in given:
            if was_given:
                raise UsageError(f"--plot draws on stdout instead of the rows: {flag} has nothing to shape there")


def _draw(drawn: Any, plot: bool, plot_output: str | None) -> None:
    """A ``plots.Plot`` drawn on stdout (``plot``; colour on a terminal) and, with ``plot_output``,
    into that file (a figure or the drawing, by its extension)."""
    if plot:
        with destination(None) as stream:
            stream.write(_picture(drawn, "plot", None))
    if plot_output:
        picture = _picture(drawn, _plot_target("auto", plot_output), plot_output)  # made whole before the file
        with destination(plot_output, "--plot-output") as stream:
            stream.write(picture)


def _picture(drawn: Any, target: str, output: str | None, width: int | None = None, height: int | None = None) -> bytes:
    """A ``plots.Plot`` as the bytes of ``target``: the drawing (``plot``; colour only on a terminal's
    stdout, unless NO_COLOR) or a figure's format."""
    from . import plots

    if target == "plot":
        colour = output in (None, "-") and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        return (drawn.text(width, height, colour=colour) + "\n").encode()
    buffer = io.BytesIO()
    drawn.figure(width or plots.SIZE[0], height or plots.SIZE[1]).savefig(buffer, format=target, dpi=plots.DPI)
    return buffer.getvalue()


def report(rows: list[dict[str, Any]], fmt: str, output: str | None) -> None:
    """Write a check report whole, then exit 5 if any engine disagreed."""
    with destination(output) as stream:
        sinks.write_report(rows, fmt, stream)
    failures = sum(int(r["failures"]) for r in rows)
    if failures:
        raise DisagreementError(f"check: {failures} disagreement(s) beyond the tolerances: the rows with ok=false")


def _formulas_alone(plan: Any, symbolic: bool, latex: bool, gate: Gate, fmt: str, output: str | None, note: Note):
    """``--symbolic``/``--latex`` without a point: the formulas, one row per quantity."""
    if gate.expect or gate.expect_file:
        raise UsageError("--expect compares results: give a point (--at, --grid or --input)")
    formulas = _formulas(plan, symbolic, latex, note)
    rows = [{"quantity": q.column, **{k: texts[q.column] for k, texts in formulas.items()}} for q in plan.quantities]
    with destination(output) as stream:
        sinks.write_report(rows, _follow_input(fmt, output, None), stream)


def _watched(reader: Any, progress: Progress) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """Frames counted on ``progress`` as they are taken; for a regular file, how much of it has been read."""
    size = None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        status = os.fstat(reader.stream.fileno())
        size = status.st_size if stat.S_ISREG(status.st_mode) and status.st_size else None

    def watch(frames: Iterator[Any]) -> Iterator[Any]:
        try:
            for frame in frames:
                yield frame
                progress.update(frame.height, min(reader.stream.tell() / size, 1.0) if size else None)
        finally:
            progress.close()

    return watch


def _plot_target(fmt: str, output: str | None, flag: str = "--output") -> str:
    """What ``plot`` writes: ``plot`` (the drawing, as text), a figure's format, or a data format;
    ``auto`` by the ``--output`` file's extension, else the drawing on a terminal and CSV in a pipe."""
    from .plots import FIGURES

    if fmt == "auto":
        if output and output != "-":
            extension = os.path.splitext(output)[1].lower().lstrip(".")
            known = {"jsonl": "ndjson", "pq": "parquet", "txt": "plot"}.get(extension, extension)
            if known in (*FIGURES, *sinks.FORMATS, "plot") and known != "table":
                return known
            raise UsageError(
                f"{flag} {output}: plot writes a figure (.png, .svg, .pdf), the drawing (.txt) or its numbers "
                "(.csv, .tsv, .json, .ndjson, .parquet)",
                hint="or name the format: --format png",
            )
        return "plot" if sys.stdout.isatty() else "csv"
    if fmt not in ("plot", *FIGURES, *sinks.FORMATS):
        raise UsageError(f"unknown --format {fmt!r}; expected auto, plot, {', '.join((*FIGURES, *sinks.FORMATS))}")
    if fmt == "parquet" and not output:
        raise UsageError("--format parquet needs --output FILE")
    if fmt in FIGURES and output in (None, "-") and sys.stdout.isatty():
        raise UsageError(f"--format {fmt} is an image, not text: give --output FILE or redirect stdout")
    return fmt


def _size(text: str | None, pixels: bool) -> tuple[int | None, int | None]:
    """``--size WxH``: a figure's pixels, or the drawing's columns and lines (None: the defaults)."""
    if text is None:
        return None, None
    w, _, h = text.lower().partition("x")
    least = 100 if pixels else 20
    if not (w.strip().isdigit() and h.strip().isdigit() and least <= int(w) <= 20_000 and 8 <= int(h) <= 20_000):
        unit = "pixels" if pixels else "columns x lines"
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT in {unit}, at least {least}x8, e.g. 960x600")
    return int(w), int(h)


def _check_precision(precision: int | None) -> None:
    if precision is not None and not 1 <= precision <= 17:
        raise UsageError(f"--precision must be between 1 and 17, got {precision}")


def _sources(
    stack: contextlib.ExitStack,
    plan: Any,  # a transforms.Plan or a recurrences.Scan: what matters is its ``variables``
    points: sources.Points,
    source: Input,
    reader: Any = None,
) -> tuple[Any, dict[str, str], list[str]]:
    """The input reader (``reader``, or one opened here; None without input), the input column of
    each variable, and the coordinate columns; usage errors for variables that nothing gives a value.
    A ``reader`` given has read its header."""
    renames = {variable_name(v): c for v, c in (_pair(m, "--map") for m in source.mapping or [])}
    stray = sorted(set(renames) - set(plan.variables) - {m.rpartition("_")[0] for m in plan.indexed})
    if stray:
        raise UsageError(f"--map {stray[0]}=…: {stray[0]} is not a variable of the expression")
    from_file: dict[str, str] = {}  # variable -> input column
    if source.input is not None:
        if reader is None:
            reader = _reader(stack, source.input, source)
            reader.header()
        names = reader.names
        for variable, column in renames.items():
            if column not in names:  # the name may be shown: the user typed it
                raise UsageError(f"--map {variable}={column}: {reader.name} has no column {column!r}")
        from_file = {v: renames.get(v, v) for v in plan.variables if renames.get(v, v) in names}
        clash = sorted(set(from_file) & set(points.names))
        if clash:
            raise UsageError(f"{clash[0]} is both a column of {reader.name} and given by --at/--grid")
    unmapped = [v for v in plan.variables if v not in from_file]
    given = [*points.names, *(reader.names if reader else [])]
    from_file.update(sources.family_columns(unmapped, plan.indexed, given, renames))
    if reader is not None:
        reader.numeric = {c for c in from_file.values() if c in reader.names}
    named = set(points.names)  # a property: built once, not once per variable (5,000 of them)
    missing = [v for v in plan.variables if v not in named and v not in from_file]
    if missing:
        where = f"not a column of {reader.name}, " if reader else ""
        raise UsageError(
            f"no value for {', '.join(missing)} ({where}not given by --at or --grid)",
            hint=f"give it with --at {missing[0]}=VALUE" + (f" or --map {missing[0]}=COLUMN" if reader else ""),
        )
    return reader, from_file, [*(reader.names if reader else []), *points.names]


def _conditioning_note(recurrence: Any, dtype: Any, note: Note) -> None:
    text = recurrence.conditioning(dtype)
    if text:
        note(text)


def _points(at: list[str] | None, grid: list[str] | None) -> sources.Points:
    """The points of ``--at`` and ``--grid`` options."""
    return sources.points([sources.assignments(t, "--at") for t in at or []], [sources.grid(t) for t in grid or []])


def _torch(dtype: str, device: str, cpu_threads: int | None) -> tuple[Any, Any]:
    """The torch dtype and device of ``--dtype`` and ``--device``; on the CPU, ``cpu_threads``."""
    torch_dtype, target = devices.resolve(dtype, device)
    if target.type == "cpu" and cpu_threads is not None:
        import torch

        torch.set_num_threads(cpu_threads)
    return torch_dtype, target


def _label(formula: api.Formula) -> str | None:
    """How notes name the output of a lone formula without a name: its text (else by its name)."""
    return None if len(formula.texts) > 1 or formula.parsed[0].name else repr(formula.texts[0])


def _keep(name: str, compiled: api.Compiled, notes: tuple[str, ...], label: str | None) -> None:
    """Keep a command's compiled plan in the cache, unless Taylor mode computes part of it."""
    plan = compiled.plan
    if not plan.taylor_mode:
        outline = cache.Outline(
            tuple(cache.Column(q.path, q.column) for q in plan.quantities),
            plan.variables,
            plan.outputs,
            plan.wrt,
            plan.indexed,
        )
        cache.store(name, cache.Entry(cache.Compiled(outline, compiled.evaluation), notes, label))


def _kink_notes(kinks: Mapping[str, int], rows: int, label: str | None, note: Note) -> None:
    """Where each output is not differentiable, counted (``label``: see ``_label``)."""
    for name, count in kinks.items():
        if count:
            note(
                f"{label or name} is not differentiable at {count} of {rows} points (a kink, tie, jump or "
                "branch boundary); the derivatives there follow the conventions in the README"
            )


def _non_finite_notes(sink: Any, fmt: str, note: Note) -> None:
    shown = "null" if fmt in ("json", "ndjson") else "NaN/inf"
    for column, bad in sink.non_finite.items():
        note(f"{column} is not finite in {bad} of {sink.rows} rows (written as {shown})")


def _pair(text: str, option: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip() or not value.strip():
        raise UsageError(f"{option} {text!r}: expected NAME=VALUE")
    return name.strip(), value.strip()


def _reader(stack: contextlib.ExitStack, path: str, source: Input) -> Any:
    """The input reader for ``--input path``: a file or stdin, format named or sniffed."""
    from .readers import Reader, first_bytes, input_format

    if path == "-":
        if sys.stdin.isatty():
            raise UsageError(
                "--input - reads stdin, but stdin is a terminal", hint="pipe data in: cat f.csv | diffcli ..."
            )
        try:  # a descriptor of its own: a reading thread left behind (in the server) keeps reading this
            stream = stack.enter_context(open(os.dup(sys.stdin.fileno()), "rb"))  # noqa: SIM115 - closed by the stack
        except (io.UnsupportedOperation, AttributeError):  # not a file (a test's stdin)
            stream = sys.stdin.buffer
        name = "stdin"
    else:
        try:
            stream = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
        except OSError as e:
            raise DataError(f"{path}: cannot read: {e.strerror}") from None
        name = path
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)  # type: ignore[arg-type]  # e.g. a test's BytesIO stdin
    try:
        fmt = input_format(path, source.input_format, first_bytes(stream))
    except OSError as e:
        raise DataError(f"{name}: cannot read: {e.strerror}") from None
    if source.columns is not None and fmt not in ("csv", "tsv"):
        raise UsageError(f"--columns names the columns of CSV and TSV input; {fmt} names its own: use --map VAR=NAME")
    return Reader(
        stream,
        name,
        fmt,
        columns=source.names,
        no_header=source.no_header,
        delimiter=source.delimiter,
        skip_bad=source.skip_bad_rows,
        batch_rows=source.batch_size,
    )


def _formulas(plan: Any, symbolic: bool, latex: bool, note: Note) -> dict[str, dict[str, str]]:
    formulas = {}
    for kind, wanted in (("symbolic", symbolic), ("latex", latex)):
        if wanted:
            from . import transforms

            formulas[kind], slow = transforms.symbolic(plan, latex=kind == "latex")
            if slow:
                note(f"not simplified (too slow): {', '.join(slow)}")
    return formulas


def _format(fmt: str, output: str | None) -> str:
    """``--format`` checked; ``auto`` decided where the command line decides it: by the ``--output``
    file's extension, else as a table on a terminal; else left ``auto`` for ``_follow_input``."""
    if fmt == "auto":
        if output and output != "-":
            extension = os.path.splitext(output)[1].lower().lstrip(".")
            known = {"jsonl": "ndjson", "pq": "parquet"}.get(extension, extension)
            return known if known in sinks.FORMATS and known != "table" else "auto"
        return "table" if sys.stdout.isatty() else "auto"
    if fmt not in sinks.FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; expected auto, {', '.join(sinks.FORMATS)}")
    if fmt == "parquet" and not output:
        raise UsageError("--format parquet needs --output FILE")
    return fmt


def _follow_input(fmt: str, output: str | None, reader: Any) -> str:
    """``auto`` as ``_format`` left it: the input's format, so a pipe answers as it is fed (Parquet
    only into a file: CSV on stdout); JSON without an input."""
    if fmt != "auto":
        return fmt
    if reader is None:
        return "json"
    return "csv" if reader.fmt == "parquet" and output in (None, "-") else reader.fmt
