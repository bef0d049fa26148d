"""The typer app: commands, shared options, and the one error boundary (README: "Examples", "Exit codes").

Only this module knows typer. It imports neither torch nor sympy at module level, so ``--help``,
``--version`` and shell completion stay fast; each command imports what it uses when it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import os
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from typing import IO, Annotated, Any

import typer

from . import __version__, signals
from .errors import DataError, DiffcliError, DisagreementError, ExitCode, UsageError

app = typer.Typer(
    name="diffcli",
    help="Differentiate formulas from the shell: values, gradients, Jacobians, Hessians, JVPs, VJPs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: Rich's help renderer doubled the time of --help (0.05 -> 0.10 s)
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 expression rejected, 4 bad input data, "
    "5 a check or --expect failed, 130 interrupted, 141 the reader of stdout left.",
)
_debug = False


def _argument_usage(self: Any) -> str:
    name = self.display_name_raw
    return name if self.nargs == 1 or name.endswith("...") else f"{name}..."


# Help as users write commands: `diffcli grad EXPR` (typer writes `{EXPR}`, and `EXPR <str>` below)
typer.core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diffcli {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of internal errors.")] = False,
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("DIFFCLI_DEBUG"))


def _parameter(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _option(name: str, kind: Any, default: Any, *flags: str, **settings: Any) -> inspect.Parameter:
    """A command-line option as a parameter of the generated command signatures."""
    return _parameter(name, Annotated[kind, typer.Option(*flags, **settings)], default)


def _choices(*values: str) -> Any:
    """Shell completion of an option's values (validation stays the command's, with its message)."""

    def complete(incomplete: str) -> list[str]:
        return [v for v in values if v.startswith(incomplete)]

    return complete


_Text = str | None
_Many = list[str] | None
EXPRESSIONS = _parameter(
    "exprs",
    Annotated[list[str], typer.Argument(metavar="EXPR...", help="Expressions, optionally named: f=x**2.")],
)
EXPRESSION = _parameter(
    "exprs", Annotated[str, typer.Argument(metavar="EXPR", help="The expression, e.g. 'x**2*sin(y)'.")]
)
COMMON = [
    _option("at", _Many, None, "--at", metavar="NAME=VALUE,...", help="A point; repeat for a list of points."),
    _option("grid", _Many, None, "--grid", metavar="NAME=START:STOP:COUNT", help="COUNT values, ends included."),
    _option("aux", _Many, None, "--aux", metavar="NAME=EXPR", help="An auxiliary output, not differentiated."),
    _option(
        "device",
        str,
        "auto",
        "--device",
        metavar="DEVICE",
        autocompletion=_choices("auto", "cpu", "cuda", "mps"),
        help="auto, cpu, cuda, cuda:N or mps.",
    ),
    _option(
        "dtype",
        str,
        "float64",
        "--dtype",
        metavar="DTYPE",
        autocompletion=_choices("float64", "float32"),
        help="float64 or float32.",
    ),
    _option(
        "fmt",
        str,
        "auto",
        "--format",
        "-f",
        metavar="FORMAT",
        autocompletion=_choices("auto", "table", "csv", "tsv", "json", "ndjson", "parquet"),
        help="auto, table, csv, tsv, json, ndjson, parquet.",
    ),
    _option("output", _Text, None, "--output", "-o", metavar="FILE", help="Write here, whole or not at all."),
    _option("prefix", str, "", "--prefix", metavar="TEXT", help="Put TEXT before each result's name: d_value."),
    _option("suffix", str, "", "--suffix", metavar="TEXT", help="Put TEXT after each result's name: value_2."),
    _option("precision", int | None, None, "--precision", metavar="DIGITS", help="Significant digits to write."),
    _option("symbolic", bool, False, "--symbolic", help="Also print each formula, simplified."),
    _option("latex", bool, False, "--latex", help="Also print each formula as LaTeX."),
    _option("input", _Text, None, "--input", "-i", metavar="FILE|-", help="Evaluate at every row of a file."),
    _option(
        "input_format",
        _Text,
        None,
        "--input-format",
        metavar="FORMAT",
        autocompletion=_choices("csv", "tsv", "json", "ndjson", "parquet"),
        help="csv, tsv, json, ndjson, parquet.",
    ),
    _option("no_header", bool, False, "--no-header", help="The input has no header line; see --columns."),
    _option("columns", _Text, None, "--columns", metavar="A,B", help="Name the input's columns; replaces a header."),
    _option("mapping", _Many, None, "--map", metavar="VAR=COLUMN", help="Take VAR from input column COLUMN."),
    _option("delimiter", _Text, None, "--delimiter", metavar="CHAR", help="The input's field separator."),
    _option("skip_bad_rows", bool, False, "--skip-bad-rows", help="Skip bad input rows, counted on stderr."),
    _option(
        "batch_size", int, 65_536, "--batch-size", metavar="ROWS", help="Rows read, computed and written at a time."
    ),
]
WRT = _option("wrt", _Text, None, "--wrt", metavar="X,Y", help="Differentiate with respect to these (default: all).")
TANGENT = _option("tangent", _Text, None, "--tangent", metavar="X=1,Y=0", help="v of J·v; missing components are 0.")
COTANGENT = _option("cotangent", _Text, None, "--cotangent", metavar="F=1", help="u of uᵀJ; missing components are 0.")
ORDER = _option("order", int | None, None, "--order", metavar="N", help="With one --wrt variable: the N-th derivative.")
DEGREE = _option("order", int | None, None, "--order", metavar="N", help="The highest total degree (default 5).")

COMMANDS = {
    "value": ([EXPRESSIONS], "Values of expressions.\n\nExample: diffcli value 'hypot(x, y)' --at x=3,y=4"),
    "grad": (
        [EXPRESSION, WRT],
        "Value and gradient (grad_and_value).\n\nExample: diffcli grad 'x**2*sin(y)' --at x=1,y=2",
    ),
    "jacobian": (
        [EXPRESSIONS, WRT],
        "Values and the Jacobian of several expressions.\n\nExample: diffcli jacobian 'u=x*y' 'v=x+y' --at x=2,y=3",
    ),
    "hessian": ([EXPRESSION, WRT], "Value, gradient and Hessian.\n\nExample: diffcli hessian 'x**2*y' --at x=1,y=2"),
    "jvp": (
        [EXPRESSIONS, WRT, TANGENT],
        "Values and the Jacobian-vector product J·v (forward mode).\n\n"
        "Example: diffcli jvp 'x*y' --at x=2,y=3 --tangent x=1",
    ),
    "vjp": (
        [EXPRESSIONS, WRT, COTANGENT],
        "Values and the vector-Jacobian product uᵀJ (reverse mode).\n\n"
        "Example: diffcli vjp 'u=x*y' 'v=x+y' --at x=2,y=3 --cotangent u=1",
    ),
    "derivative": (
        [EXPRESSION, WRT, ORDER],
        "One mixed or n-th partial derivative: --wrt x,x,y is d³f/dx²dy.\n\n"
        "Example: diffcli derivative 'x**3*y' --wrt x,x,y --at x=2,y=5",
    ),
    "taylor": (
        [EXPRESSION, WRT, DEGREE],
        "Taylor coefficients about the point, by Taylor-mode arithmetic: taylor_1, taylor_x, taylor_x^2, ...\n\n"
        "Example: diffcli taylor 'exp(x)*sin(y)' --at x=0,y=1 --order 3",
    ),
}


TOLERANCES = [
    _option("rtol", float | None, None, "--rtol", metavar="TOL", help="Relative tolerance (default: sqrt(eps)/10)."),
    _option("atol", float | None, None, "--atol", metavar="TOL", help="Absolute tolerance (default: as --rtol)."),
]
EXPECT = [
    _option("expect", _Many, None, "--expect", metavar="COLUMN=VALUE,...", help="Exit 5 unless every row gives this."),
    _option("expect_file", _Text, None, "--expect-file", metavar="FILE", help="Exit 5 unless the rows match these."),
    *TOLERANCES,
]


def _register(operation: str, parameters: list[inspect.Parameter], doc: str) -> None:
    def command(**options: Any) -> None:
        with _error_boundary():
            _run(operation, source=_taken(_Input, options), gate=_taken(_Gate, options), **options)

    command.__signature__ = inspect.Signature([*parameters, *COMMON, *EXPECT])  # type: ignore[attr-defined]
    command.__doc__ = doc
    command.__name__ = operation
    app.command(operation)(command)


for _operation, (_parameters, _doc) in COMMANDS.items():
    _register(_operation, _parameters, _doc)


CHECK_OPTIONS = [
    _option("order", int, 1, "--order", metavar="N", help="1: the gradient; 2: also the Hessian."),
    _option("allow_kinks", bool, False, "--allow-kinks", help="Report kinks, but do not count them as failures."),
    *TOLERANCES,
]


def _check_command(**options: Any) -> None:
    with _error_boundary():
        _check(source=_taken(_Input, options), **options)


_check_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        EXPRESSIONS,
        WRT,
        *CHECK_OPTIONS,
        *(p for p in COMMON if p.name not in ("aux", "symbolic", "latex", "precision", "prefix", "suffix")),
    ]
)
_check_command.__doc__ = (
    "Check each derivative against the same formulas at 50 digits and against finite differences "
    "(exit 5 on a disagreement).\n\n"
    "Example: diffcli check 'sin(x)*exp(-y**2)' --grid x=-2:2:50 --grid y=-2:2:50 --order 2\n\n"
    "For a recurrence: diffcli scan ... --check"
)
app.command("check")(_check_command)


SCAN_OPTIONS = [
    _option("init", str, ..., "--init", metavar="X=0.2,V=1", help="The initial state."),
    _option("steps", int, ..., "--steps", metavar="N", help="How many times the update is applied."),
    _option("outputs", _Many, None, "--output-expr", metavar="NAME=EXPR", help="Outputs of the final state."),
    _option("trajectory", bool, False, "--trajectory", help="Report every step, not only the last."),
    _option(
        "method",
        str,
        "auto",
        "--method",
        metavar="MODE",
        autocompletion=_choices("auto", "forward", "reverse"),
        help="auto, forward or reverse (see the README).",
    ),
    _option(
        "check",
        bool,
        False,
        "--check",
        help="Instead of the results: forward mode against reverse mode and finite differences (exit 5 if apart).",
    ),
    *EXPECT,
]


def _scan_command(**options: Any) -> None:
    with _error_boundary():
        _scan(source=_taken(_Input, options), gate=_taken(_Gate, options), **options)


_scan_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        _parameter("updates", Annotated[list[str], typer.Argument(metavar="UPDATE...", help="x = r*x*(1-x), ...")]),
        WRT,
        *SCAN_OPTIONS,
        *(p for p in COMMON if p.name not in ("aux", "symbolic", "latex", "mapping")),
    ]
)
_scan_command.__doc__ = (
    "Iterate a map and differentiate the outputs with respect to parameters and initial values (x0).\n\n"
    "Example: diffcli scan 'x = r*x*(1-x)' --init x=0.2 --steps 50 --at r=2.8 --wrt r,x0"
)
app.command("scan")(_scan_command)


@app.command("run")
def run_requests(
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="NDJSON requests (default: stdin).")] = "-",
) -> None:
    """Answer NDJSON requests, one line each, in order, flushed per line: a co-process for scripts.

    Example: echo '{"id": 1, "op": "grad", "expr": "x*y", "at": {"x": 1, "y": 2}}' | diffcli run
    """
    with _error_boundary(), contextlib.ExitStack() as stack:
        from .session import Session

        if source == "-":
            lines = sys.stdin.buffer
        else:
            try:
                lines = stack.enter_context(open(source, "rb"))  # noqa: SIM115 - closed by the stack
            except OSError as e:
                raise DataError(f"{source}: cannot read: {e.strerror}") from None
        out = stack.enter_context(_destination(None))
        for answer in Session().answers(_lines(lines, "stdin" if source == "-" else source)):
            out.write(answer)
            out.flush()


def _lines(stream: IO[bytes], name: str) -> Iterator[bytes]:
    """The lines of ``stream`` as they come; a failing read is a data error naming it."""
    while True:
        try:
            line = stream.readline()
        except OSError as e:
            raise DataError(f"{name}: cannot read: {e.strerror}") from None
        if not line:
            return
        yield line


@app.command()
def serve(
    background: Annotated[bool, typer.Option("--background", help="Start it detached and return.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the running server.")] = False,
    idle: Annotated[
        float, typer.Option("--idle", metavar="SECONDS", help="Stop after this long without a command.")
    ] = 900.0,
) -> None:
    """Keep a warm diffcli running: every diffcli command of this user then skips the imports.

    Example: diffcli serve --background; diffcli grad 'x*x' --at x=2; diffcli serve --stop
    """
    with _error_boundary():
        from . import server

        if not (math.isfinite(idle) and idle > 0):
            raise UsageError(f"--idle must be a positive number of seconds, got {idle}")
        if stop:
            if not server.stop():
                raise UsageError("no server is running")
        elif background:
            _start_in_background(idle)
        else:
            server.serve(run, idle)


def _start_in_background(idle: float) -> None:
    """Start ``diffcli serve`` detached and return once it answers (warm), or say why it did not."""
    import subprocess

    from . import client, server

    if server.running():
        raise UsageError(f"a server is already running on {client.socket_path()}")
    with tempfile.TemporaryFile() as errors:
        started = subprocess.Popen(  # -P and /: no module of the working folder is ever imported
            [sys.executable, "-P", "-m", "diffcli", "serve", "--idle", repr(idle)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not server.running():
            if started.poll() is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace").strip().splitlines()
                raise UsageError(f"the server did not start: {said[-1] if said else f'exit {started.returncode}'}")
            if time.monotonic() > deadline:
                raise UsageError("the server did not start within 120 s")
            time.sleep(0.05)
    sys.stderr.write(f"diffcli: serving on {client.socket_path()}\n")


@app.command()
def completion(
    shell: Annotated[
        str, typer.Argument(metavar="SHELL", help="bash, zsh or fish.", autocompletion=_choices("bash", "zsh", "fish"))
    ],
) -> None:
    """Print the shell completion script.

    Example: eval "$(diffcli completion bash)"
    """
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        _fail(UsageError(f"unsupported shell {shell!r}; expected bash, zsh or fish"))
    typer.echo(get_completion_script(prog_name="diffcli", complete_var="_DIFFCLI_COMPLETE", shell=shell))


def _fail(error: DiffcliError) -> None:
    sys.stderr.write(error.render() + "\n")
    raise typer.Exit(error.code)


@contextlib.contextmanager
def _error_boundary() -> Iterator[None]:
    """The one place where failures become a line on stderr and an exit code."""
    try:
        yield
    except DiffcliError as e:
        if _debug:
            traceback.print_exc()
        _fail(e)
    except typer.Exit:
        raise
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt) or signals.pending():  # also what a Rust panic made of Ctrl-C
            sys.stderr.write("diffcli: interrupted\n")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        if _broken_pipe(e):
            # The reader left (`| head`): silence the flush at exit (Python docs, "Note on SIGPIPE").
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
            raise typer.Exit(ExitCode.BROKEN_PIPE) from None
        if _debug or not isinstance(e, Exception):
            raise
        sys.stderr.write(f"diffcli: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)\n")
        raise typer.Exit(ExitCode.INTERNAL) from None


def _broken_pipe(error: BaseException) -> bool:
    return isinstance(error, BrokenPipeError) or (isinstance(error, OSError) and "Broken pipe" in str(error))  # polars'


def _run(
    operation: str,
    *,
    exprs: str | list[str],
    at: list[str] | None,
    grid: list[str] | None,
    aux: list[str] | None,
    device: str,
    dtype: str,
    fmt: str,
    output: str | None,
    precision: int | None,
    symbolic: bool,
    latex: bool,
    prefix: str,
    suffix: str,
    source: _Input,
    gate: _Gate,
    wrt: str | None = None,
    tangent: str | None = None,
    cotangent: str | None = None,
    order: int | None = None,
) -> None:
    """Parse, plan, read in batches, evaluate, write: the whole pipeline of one command."""
    _check_precision(precision)

    texts = [exprs] if isinstance(exprs, str) else exprs
    parsed = _parse(texts)
    auxiliary = _parse(aux or [])
    fmt = _format(fmt, output)

    from . import sinks, sources, transforms

    points = _points(at, grid)
    plan = transforms.plan(
        operation,
        parsed,
        wrt=[n.strip() for n in wrt.split(",")] if wrt else [],
        aux=auxiliary,
        tangent=sources.assignments(tangent, "--tangent") if tangent else None,
        cotangent=sources.assignments(cotangent, "--cotangent") if cotangent else None,
        order=order,
        prefix=prefix,
        suffix=suffix,
    )
    if (symbolic or latex) and plan.variables and not (at or grid or source.input):  # the formulas alone
        if gate.expect or gate.expect_file:
            raise UsageError("--expect compares results: give a point (--at, --grid or --input)")
        formulas = _formulas(plan, symbolic, latex)
        rows = [
            {"quantity": q.column, **{k: texts[q.column] for k, texts in formulas.items()}} for q in plan.quantities
        ]
        with _destination(output) as stream:
            _write_report(rows, _follow_input(fmt, output, None), stream)
        return
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, plan, points, source)
        fmt = _follow_input(fmt, output, reader)
        layout = sinks.Layout(  # clashing names: before any work
            coordinates, [(q.path, q.column) for q in plan.quantities], prefix=prefix, suffix=suffix
        )
        layout.formulas = _formulas(plan, symbolic, latex)

        from . import pipeline

        frames = pipeline.ahead(points.frames(source.batch_size) if reader is None else map(points.cross, reader))

        torch_dtype, target = _torch(dtype, device)
        compute = pipeline.Evaluator(plan, from_file, torch_dtype, target)
        expectations = gate.expectations(stack, torch_dtype, layout, source)
        stream = stack.enter_context(_destination(output))
        sink = sinks.open_sink(fmt, stream, layout, precision=precision, title=", ".join(texts))
        pipeline.run(
            frames, compute, gate.watching(expectations, sink.write), watch=lambda frames: _progress(frames, reader)
        )
        sink.close()
    if reader is not None and reader.skipped:
        sys.stderr.write(f"diffcli: note: skipped {reader.skipped} bad rows of {reader.rows} in {reader.name}\n")
    for output, count in compute.kinks.items():
        if count:
            label = output if len(texts) > 1 or parsed[0].name else repr(texts[0])
            sys.stderr.write(
                f"diffcli: note: {label} is not differentiable at {count} of {sink.rows} points (a kink, tie, jump "
                "or branch boundary); the derivatives there follow the conventions in the README\n"
            )
    _non_finite_notes(sink, fmt)
    gate.verdict(expectations)


class _Progress:
    """A progress line on stderr, when it is a terminal and the run takes over a second: rows done
    and, where the total is known (a file's bytes, a scan's steps), the share done and the time left."""

    def __init__(self, after: float = 1.0) -> None:
        self.shown, self.after, self.start = sys.stderr.isatty(), after, time.monotonic()
        self.rows, self.done, self.bar, self.task = 0, None, None, None

    def update(self, rows: int = 0, done: float | None = None) -> None:
        self.rows += rows
        self.done = done if done is not None else self.done
        elapsed = time.monotonic() - self.start
        if not self.shown or elapsed < self.after:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn

            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                console=Console(stderr=True),
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("")
        text = f"{self.rows:,} rows, {self.rows / elapsed:,.0f} rows/s" if self.rows else ""
        if self.done:
            left = elapsed * (1 - self.done) / self.done
            text += f"{', ' if text else ''}{self.done:.0%} done, {left:,.0f} s left"
        self.bar.update(self.task, description=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _progress(frames: Iterator[Any], reader: Any = None, progress: _Progress | None = None) -> Iterator[Any]:
    """``frames``, counted on a progress line; for a regular file, how much of it has been read."""
    progress = progress or _Progress()
    size = None
    with contextlib.suppress(AttributeError, OSError, ValueError):
        status = os.fstat(reader.stream.fileno())
        size = status.st_size if stat.S_ISREG(status.st_mode) and status.st_size else None
    try:
        for frame in frames:
            yield frame
            progress.update(frame.height, min(reader.stream.tell() / size, 1.0) if size else None)
    finally:
        progress.close()


def _taken(group: Any, options: dict[str, Any]) -> Any:
    """The options of a dataclass ``group`` (``_Input``, ``_Gate``), taken out of a command's
    ``options``; one a command lacks (``scan`` has no ``--map``) is None."""
    return group(**{f.name: options.pop(f.name, None) for f in dataclasses.fields(group)})


@dataclasses.dataclass(frozen=True)
class _Gate:
    """``--expect``, ``--expect-file`` and their tolerances: the results compared as they are written."""

    expect: list[str] | None
    expect_file: str | None
    rtol: float | None
    atol: float | None

    def expectations(self, stack: contextlib.ExitStack, dtype: Any, layout: Any, source: _Input) -> Any:
        """The expectations against the results of ``layout`` (None if none), checked before any work."""
        if not self.expect and self.expect_file is None:
            return None
        import polars as pl

        from . import expect

        rows = None
        if self.expect_file is not None:
            if self.expect_file == "-" and source.input == "-":
                raise UsageError("--input - reads stdin: give --expect-file a file")
            plain = _Input(self.expect_file, None, False, None, None, None, False, 65_536)  # no options of its own
            reader = _reader(stack, self.expect_file, plain)
            reader.numeric = set(reader.header()) & set(layout.columns)
            rows = expect.shaped(
                pl.concat(list(reader), how="vertical_relaxed"), layout.quantities, layout.prefix, layout.suffix
            )
        rtol, atol = _tolerances(self.rtol, self.atol, dtype)
        expectations = expect.Expectations(expect.wanted(self.expect or []), rows, rtol, atol)
        expectations.bind(layout.columns)
        return expectations

    @staticmethod
    def watching(expectations: Any, write: Any) -> Any:
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


@dataclasses.dataclass(frozen=True)
class _Input:
    """Where the rows come from: ``--input`` and the options that go with it, checked once for
    every command."""

    input: str | None
    input_format: str | None
    no_header: bool
    columns: str | None
    mapping: list[str] | None
    delimiter: str | None
    skip_bad_rows: bool
    batch_size: int

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


def _check_precision(precision: int | None) -> None:
    if precision is not None and not 1 <= precision <= 17:
        raise UsageError(f"--precision must be between 1 and 17, got {precision}")


def _sources(
    stack: contextlib.ExitStack,
    plan: Any,  # a transforms.Plan or a scan.Scan: what matters is its ``variables``
    points: Any,
    source: _Input,
) -> tuple[Any, dict[str, str], list[str]]:
    """The input reader (or None), the input column of each variable, and the coordinate columns;
    usage errors for variables that nothing gives a value."""
    from . import sources
    from .language import variable_name

    renames = {variable_name(v): c for v, c in (_pair(m, "--map") for m in source.mapping or [])}
    stray = sorted(set(renames) - set(plan.variables) - {m.rpartition("_")[0] for m in plan.indexed})
    if stray:
        raise UsageError(f"--map {stray[0]}=…: {stray[0]} is not a variable of the expression")
    reader = None
    from_file: dict[str, str] = {}  # variable -> input column
    if source.input is not None:
        reader = _reader(stack, source.input, source)
        names = reader.header()
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


def _scan(
    *,
    updates: list[str],
    wrt: str | None,
    init: str,
    steps: int,
    outputs: list[str] | None,
    trajectory: bool,
    method: str,
    check: bool,
    at: list[str] | None,
    grid: list[str] | None,
    device: str,
    dtype: str,
    fmt: str,
    output: str | None,
    precision: int | None,
    prefix: str,
    suffix: str,
    source: _Input,
    gate: _Gate,
) -> None:
    """``diffcli scan``: the points as for every command, one run of the recurrence per point;
    with ``--check``, the report of ``check`` instead of the results."""
    if steps < 0:
        raise UsageError(f"--steps must be 0 or more, got {steps}")
    _check_precision(precision)
    from . import language
    from .scan import METHODS

    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "reverse" and trajectory:
        raise UsageError("reverse mode differentiates the last step only; --trajectory needs --method forward")
    if check and (trajectory or method != "auto"):
        raise UsageError("--check compares both methods at the last step: drop --trajectory and --method")
    if check and (gate.expect or gate.expect_file):
        raise UsageError("--check reports instead of the results: --expect compares the results; use one")
    if check and (prefix or suffix):
        raise UsageError("--check reports in the schema of diffcli check: drop --prefix and --suffix")

    parsed = _parse(updates)
    results = _parse(outputs or [])
    if any(r.name is None for r in results):
        raise UsageError("--output-expr needs a name: --output-expr loss=(x-0.5)**2")
    fmt = _format(fmt, output)
    from . import sinks, sources
    from .scan import Scan

    points = _points(at, grid)
    with language.symbolic_time_limit("scan (symbolic differentiation)"):
        recurrence = Scan(
            parsed,
            sources.assignments(init, "--init"),
            outputs=results,
            wrt=[n.strip() for n in wrt.split(",")] if wrt else [],
            prefix=prefix,
            suffix=suffix,
        )
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, recurrence, points, source)
        fmt = _follow_input(fmt, output, reader)
        recurrence.sources = from_file
        from . import pipeline

        torch_dtype, target = _torch(dtype, device)
        frames = pipeline.ahead(points.frames(source.batch_size) if reader is None else map(points.cross, reader))
        if check:
            from .check import ScanChecker

            rtol, atol = _tolerances(gate.rtol, gate.atol, torch_dtype)
            checker = ScanChecker(recurrence, steps, rtol=rtol, atol=atol, dtype=torch_dtype, device=target)
            for frame in _progress(frames):
                checker.add(frame)
            _conditioning_note(recurrence, torch_dtype)
            _report(checker.report.rows(), fmt, output)
            return
        layout = sinks.Layout(
            [*coordinates, *(["step"] if trajectory else [])], recurrence.columns, prefix=prefix, suffix=suffix
        )
        expectations = gate.expectations(stack, torch_dtype, layout, source)
        stream = stack.enter_context(_destination(output))
        sink = sinks.open_sink(fmt, stream, layout, precision=precision, title=", ".join(updates))
        write = gate.watching(expectations, sink.write)
        progress = _Progress()
        recurrence.step_done = lambda share: progress.update(done=share)
        for frame in _progress(frames, reader, progress):
            for result in recurrence.run(
                frame, steps, trajectory=trajectory, method=method, dtype=torch_dtype, device=target
            ):
                write(result)
        sink.close()
    _conditioning_note(recurrence, torch_dtype)
    _non_finite_notes(sink, fmt)
    gate.verdict(expectations)


def _conditioning_note(recurrence: Any, dtype: Any) -> None:
    note = recurrence.conditioning(dtype)
    if note:
        sys.stderr.write(f"diffcli: note: {note}\n")


def _check(
    *,
    exprs: list[str],
    wrt: str | None,
    order: int,
    allow_kinks: bool,
    rtol: float | None,
    atol: float | None,
    at: list[str] | None,
    grid: list[str] | None,
    device: str,
    dtype: str,
    fmt: str,
    output: str | None,
    source: _Input,
) -> None:
    """``diffcli check``: the points as for every command, then one report row per output,
    quantity and engine."""
    if order not in (1, 2):
        raise UsageError(f"--order must be 1 or 2, got {order}")
    fmt = _format(fmt, output)
    from . import transforms

    parsed = _parse(exprs)
    points = _points(at, grid)
    probe = transforms.plan("jacobian", parsed, wrt=[n.strip() for n in wrt.split(",")] if wrt else [])
    with contextlib.ExitStack() as stack:
        reader, from_file, coordinates = _sources(stack, probe, points, source)
        fmt = _follow_input(fmt, output, reader)

        from . import check, pipeline

        torch_dtype, target = _torch(dtype, device)
        rtol, atol = _tolerances(rtol, atol, torch_dtype)
        checker = check.Checker(
            parsed, wrt=probe.wrt, order=order, rtol=rtol, atol=atol, dtype=torch_dtype, device=target,
            allow_kinks=allow_kinks,
        )  # fmt: skip
        frames = points.frames(source.batch_size) if reader is None else map(points.cross, reader)
        for frame in pipeline.ahead(frames):
            checker.add(frame, from_file)
        _report(checker.report.rows(), fmt, output)


def _parse(texts: list[str]) -> list[Any]:
    """The parsed expressions; how an ambiguous one was read (1/2x) is a note on stderr."""
    from . import language

    parsed = [language.parse(t) for t in texts]
    for note in (n for p in parsed for n in p.notes):
        sys.stderr.write(f"diffcli: note: {note}\n")
    return parsed


def _tolerances(rtol: float | None, atol: float | None, dtype: Any) -> tuple[float, float]:
    """``--rtol`` and ``--atol``: each defaults to the other, then to the dtype's."""
    from . import check

    for name, given in (("--rtol", rtol), ("--atol", atol)):
        if given is not None and not (math.isfinite(given) and given >= 0):
            raise UsageError(f"{name} must be a finite number >= 0, got {given}")
    rtol = rtol if rtol is not None else check.tolerance(dtype)
    return rtol, atol if atol is not None else rtol


def _report(rows: list[dict[str, Any]], fmt: str, output: str | None) -> None:
    """Write a check report whole, then exit 5 if any engine disagreed."""
    with _destination(output) as stream:
        _write_report(rows, fmt, stream)
    failures = sum(int(r["failures"]) for r in rows)
    if failures:
        raise DisagreementError(f"check: {failures} disagreement(s) beyond the tolerances: the rows with ok=false")


def _write_report(rows: list[dict[str, Any]], fmt: str, stream: IO[bytes]) -> None:
    """Rows of a report (check's, or the formulas alone) in ``fmt``: JSON, CSV and Parquet write a
    NaN or an infinity as null (strict JSON), a table as ``nan`` or ``inf``."""
    import json

    import polars as pl

    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        return None if isinstance(value, float) and not math.isfinite(value) else value

    strict = [finite(r) for r in rows]
    if fmt in ("json", "ndjson"):
        lines = [json.dumps(r, allow_nan=False, separators=(",", ":")) for r in strict]
        if fmt == "ndjson":
            text = "".join(line + "\n" for line in lines)
        else:
            text = "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
        stream.write(text.encode())
    elif fmt in ("csv", "tsv", "parquet"):
        flat = pl.DataFrame([{**r, "at": json.dumps(r["at"])} if "at" in r else r for r in strict])
        if fmt == "parquet":
            flat.write_parquet(stream)
        else:
            flat.write_csv(stream, separator="," if fmt == "csv" else "\t")
    else:
        from rich.table import Table
        from rich.text import Text

        from . import sinks

        def cell(key: str, value: Any) -> Text:
            if key == "at":
                return Text(", ".join(f"{k}={v!r}" for k, v in value.items()))
            if key == "ok":
                return Text("ok" if value else "DISAGREE", style="" if value else "bold red")
            return Text(repr(value) if isinstance(value, float) else str(value))

        names = list(rows[0]) if rows else []
        cells = [[cell(k, v) for k, v in r.items()] for r in rows]
        table = Table()
        for name in names:
            table.add_column(
                name, justify="left" if name in ("output", "quantity", "engine", "at", "symbolic", "latex") else "right"
            )
        for row in cells:
            table.add_row(*row)
        records = [(f"row {i} of {len(rows)}", list(zip(names, row))) for i, row in enumerate(cells, 1)]
        with sinks.rich_console(stream) as console:
            sinks.show(console, [table], records)


def _points(at: list[str] | None, grid: list[str] | None) -> Any:
    """The points of ``--at`` and ``--grid`` options."""
    from . import sources

    return sources.points([sources.assignments(t, "--at") for t in at or []], [sources.grid(t) for t in grid or []])


def _torch(dtype: str, device: str) -> tuple[Any, Any]:
    """The torch dtype and device that ``--dtype`` and ``--device`` name (usage errors if unusable);
    on the CPU, one torch thread (pipeline.Evaluator says why)."""
    import torch

    from . import lower

    if dtype not in ("float64", "float32"):
        raise UsageError(f"unknown --dtype {dtype!r}; expected float64 or float32")
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    try:
        target = lower.device(device, torch_dtype)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if target.type == "cpu":
        torch.set_num_threads(1)
    return torch_dtype, target


def _non_finite_notes(sink: Any, fmt: str) -> None:
    shown = "null" if fmt in ("json", "ndjson") else "NaN/inf"
    for column, bad in sink.non_finite.items():
        sys.stderr.write(f"diffcli: note: {column} is not finite in {bad} of {sink.rows} rows (written as {shown})\n")


def _pair(text: str, option: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip() or not value.strip():
        raise UsageError(f"{option} {text!r}: expected NAME=VALUE")
    return name.strip(), value.strip()


def _reader(stack: contextlib.ExitStack, path: str, source: _Input) -> Any:
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


def _formulas(plan: Any, symbolic: bool, latex: bool) -> dict[str, dict[str, str]]:
    from . import transforms

    formulas = {}
    for kind, wanted in (("symbolic", symbolic), ("latex", latex)):
        if wanted:
            formulas[kind], slow = transforms.symbolic(plan, latex=kind == "latex")
            if slow:
                sys.stderr.write(f"diffcli: note: not simplified (too slow): {', '.join(slow)}\n")
    return formulas


def _format(fmt: str, output: str | None) -> str:
    """``--format`` checked; ``auto`` decided where the command line decides it: by the ``--output``
    file's extension, else as a table on a terminal; else left ``auto`` for ``_follow_input``."""
    from .sinks import FORMATS

    if fmt == "auto":
        if output and output != "-":
            extension = os.path.splitext(output)[1].lower().lstrip(".")
            known = {"jsonl": "ndjson", "pq": "parquet"}.get(extension, extension)
            return known if known in FORMATS and known != "table" else "auto"
        return "table" if sys.stdout.isatty() else "auto"
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r}; expected auto, {', '.join(FORMATS)}")
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


@contextlib.contextmanager
def _destination(output: str | None) -> Iterator[IO[bytes]]:
    """stdout, or a file that appears only complete: written beside it, then renamed into place.

    Paths that are not regular files (/dev/null, a FIFO, /dev/stdout) are written directly. A
    symbolic link is followed: its target is replaced. Writes that fail (a full disk, a file size
    limit, a closed stdout) are usage errors naming the destination, as a folder is.
    """
    target = os.path.realpath(output) if output and output != "-" else None
    name = f"--output {output}" if target else "stdout"
    try:
        if target is None or _is_stdout(target):  # also /dev/stdout: appended as the shell's >> opened it
            sys.stdout.flush()
            yield sys.stdout.buffer
            return
        if os.path.isdir(target):
            raise UsageError(f"{name} is a folder; name a file")
        if os.path.exists(target) and not os.path.isfile(target):
            with open(target, "wb") as stream:
                yield stream
            return
        with _replacing(target) as stream:
            yield stream
    except OSError as e:
        if _broken_pipe(e):
            raise
        reason = e.strerror or str(e).split(" (os error")[0]  # polars' errors carry only a message
        raise UsageError(f"cannot write {name}: {reason}") from None


def _is_stdout(path: str) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _replacing(target: str) -> Iterator[IO[bytes]]:
    """A new file beside ``target`` that replaces it when complete: a new file gets the mode the
    umask gives (as the shell's ``>``), a replaced one keeps its mode (and owner, where allowed).
    Ctrl-C at any moment leaves ``target`` old or complete, and no temporary file."""
    folder, base = os.path.split(target)
    temporary = None
    try:
        with signals.held():  # created and noted for removal together
            temporary, handle = _new_file(folder, f".{base[:200]}")  # names end at 255 bytes
        with contextlib.suppress(FileNotFoundError):
            old = os.stat(target)
            os.fchmod(handle, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(OSError):
                os.fchown(handle, old.st_uid, old.st_gid)
        with os.fdopen(handle, "wb") as stream:
            yield stream
        with signals.held():
            os.replace(temporary, target)
            temporary = None
    except BaseException:
        if temporary:
            with signals.held():
                os.unlink(temporary)
        raise


def _new_file(folder: str, prefix: str) -> tuple[str, int]:
    """A file of a new name in ``folder``, created with the mode the umask gives."""
    while True:
        path = os.path.join(folder, f"{prefix}.{os.urandom(4).hex()}.part")
        with contextlib.suppress(FileExistsError):
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)


def main() -> None:
    """The console script: run the command, then leave without the interpreter's teardown."""
    os._exit(run(sys.argv[1:]))


def run(args: list[str]) -> int:
    """One command line, as the console script runs it (and the warm server, for its clients):
    typer's usage errors as one line, exit codes as in the README's "Exit codes", stdout and stderr flushed."""
    from typer import _click

    if "_DIFFCLI_COMPLETE" in os.environ:  # a TAB press: answer with typer's completion classes
        from typer._completion_classes import completion_init

        completion_init()
    command = typer.main.get_command(app)
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:  # an option of diffcli itself, taken after the subcommand too
        args = ["--debug", *(a for a in args[:end] if a != "--debug"), *args[end:]]
    try:
        code = command.main(args, prog_name="diffcli", standalone_mode=False)
    except _click.exceptions.NoArgsIsHelpError as e:
        sys.stderr.write(e.ctx.get_help() + "\n" if e.ctx else "")
        code = ExitCode.USAGE
    except _click.exceptions.UsageError as e:
        hint = f" (see 'diffcli {e.ctx.info_name} --help')" if e.ctx and e.ctx.parent else " (see 'diffcli --help')"
        sys.stderr.write(f"diffcli: error: {e.format_message()}{hint}\n")
        code = ExitCode.USAGE
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("diffcli: interrupted\n")
        code = ExitCode.INTERRUPTED
    except SystemExit as e:  # the completion machinery exits by itself
        code = e.code if isinstance(e.code, int) else 0
    return _flushed(int(code or 0))


def _flushed(code: int) -> int:
    """Flush stdout and stderr: the exit (``os._exit``) skips the interpreter's teardown, since
    unloading torch, sympy and polars took 0.45 s of every run (5M rows: 2.80 s -> 2.36 s)."""
    try:
        if code != ExitCode.INTERRUPTED:  # interrupted: a stdout nobody reads must not hold the exit
            sys.stdout.flush()
    except BrokenPipeError:
        code = ExitCode.BROKEN_PIPE
    except OSError as e:
        if not code:
            with contextlib.suppress(OSError):
                sys.stderr.write(f"diffcli: error: cannot write stdout: {e.strerror}\n")
            code = ExitCode.USAGE
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    return code
