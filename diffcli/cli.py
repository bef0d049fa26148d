"""The typer app: commands, shared options, and the one error boundary (README: "Examples", "Exit codes").

Only this module knows typer. It imports neither torch nor sympy at module level, so ``--help``,
``--version`` and shell completion stay fast; each command imports what it uses when it runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import inspect
import math
import os
import sys
import time
import traceback
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from . import __version__, signals
from .destinations import broken_pipe
from .errors import DiffcliError, ExitCode, UsageError, spelled

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
CPU_THREADS = 1  # torch's threads on the CPU: polars reads and writes beside it (``pipeline``)


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
ENGINE = [
    _option(
        "engine",
        str,
        "local",
        "--engine",
        metavar="ENGINE",
        autocompletion=_choices("local", "dask"),
        help="local, or dask: each file of --input on a Dask worker, into --output FOLDER.",
    ),
    _option("scheduler", _Text, None, "--scheduler", metavar="ADDRESS", help="With dask: this scheduler's cluster."),
    _option("workers", int | None, None, "--workers", metavar="N", help="With dask: a local cluster of N processes."),
]


def _register(operation: str, parameters: list[inspect.Parameter], doc: str) -> None:
    def command(**options: Any) -> None:
        with _error_boundary():
            from . import jobs

            jobs.evaluate(operation, **_job(options, jobs.Input, jobs.Gate, jobs.Cluster))

    command.__signature__ = inspect.Signature([*parameters, *COMMON, *EXPECT, *ENGINE])  # type: ignore[attr-defined]
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
        from . import jobs

        jobs.check(**_job(options, jobs.Input))


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
    _option("plot", bool, False, "--plot", help="With --trajectory: draw the steps on stdout instead of the rows."),
    _option(
        "plot_output",
        _Text,
        None,
        "--plot-output",
        metavar="FILE",
        help="With --trajectory: a figure (.png .svg .pdf).",
    ),
    *EXPECT,
]


def _scan_command(**options: Any) -> None:
    with _error_boundary():
        from . import jobs

        jobs.scan(**_job(options, jobs.Input, jobs.Gate))


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


PROPAGATE_OPTIONS = [
    _option("sigma", _Many, None, "--sigma", metavar="X=U,...", help="Standard uncertainties: numbers or columns."),
    _option("corr", _Many, None, "--corr", metavar="X,Y=R", help="A correlation coefficient; repeat for more."),
    _option("cov", _Text, None, "--cov", metavar="FILE", help="A covariance matrix by name (CSV or JSON)."),
    _option("order", int, 1, "--order", metavar="N", help="1: first order (GUM); 2: adds the second-order terms."),
    _option("coverage", float | None, None, "--coverage", metavar="K", help="Also expanded = K·sigma."),
    _option("check", bool, False, "--check", help="Compare with Monte Carlo (JCGM 101); exit 5 if apart."),
    _option("samples", int | None, None, "--samples", metavar="N", help="Monte Carlo draws per row (100000)."),
    _option("seed", int | None, None, "--seed", metavar="N", help="The Monte Carlo's random seed (0)."),
    _option(
        "check_tolerance",
        float | None,
        None,
        "--check-tolerance",
        metavar="SHARE",
        help="Allowed difference, as a share of sigma (0.1).",
    ),
    _option("plot", bool, False, "--plot", help="Over one --grid: draw the value and its ±sigma band instead."),
    _option(
        "plot_output", _Text, None, "--plot-output", metavar="FILE", help="Draw it into FILE (.png .svg .pdf .txt)."
    ),
]


def _propagate_command(**options: Any) -> None:
    with _error_boundary():
        from . import jobs

        jobs.propagate(**_job(options, jobs.Input, jobs.Gate))


_propagate_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [EXPRESSIONS, *PROPAGATE_OPTIONS, *COMMON, *EXPECT]
)
_propagate_command.__doc__ = (
    "Standard uncertainty of expressions from their inputs' (GUM law of propagation), per point or row: "
    "value, sigma, relative, each input's contribution.\n\n"
    "Example: diffcli propagate 'm*g*h' --at m=2±0.1,g=9.81±0.01,h=3±0.2\n\n"
    "Uncertainties: m=2±0.1 (or 2+-0.1) in --at, --sigma m=0.1, --sigma m=COLUMN, or input columns u_m."
)
app.command("propagate")(_propagate_command)


PLOT_OPTIONS = [
    _option(
        "grid", _Many, None, "--grid", metavar="NAME=START:STOP:COUNT", help="The x axis; a second one: a heatmap."
    ),
    _option("at", _Many, None, "--at", metavar="NAME=VALUE,...", help="The other variables' values."),
    _option(
        "show",
        str,
        "value,grad",
        "--show",
        metavar="CURVES",
        autocompletion=_choices("value", "grad", "hessian", "derivative:"),
        help="value, grad, hessian, derivative:N, comma-separated.",
    ),
    _option(
        "size", _Text, None, "--size", metavar="WxH", help="A figure's pixels (960x600); a drawing's columns x lines."
    ),
    _option(
        "fmt",
        str,
        "auto",
        "--format",
        "-f",
        metavar="FORMAT",
        autocompletion=_choices("auto", "plot", "png", "svg", "pdf", "csv", "tsv", "json", "ndjson", "parquet"),
        help="auto (a drawing on a terminal, CSV in a pipe), plot, png, svg, pdf, csv, tsv, json, ndjson, parquet.",
    ),
    _option("output", _Text, None, "--output", "-o", metavar="FILE", help="Write here (.png .svg .pdf .txt .csv ...)."),
]


def _plot_command(**options: Any) -> None:
    with _error_boundary():
        from . import jobs

        jobs.plot(**options, note=_note, cpu_threads=CPU_THREADS)


_plot_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [EXPRESSIONS, *PLOT_OPTIONS, *(p for p in COMMON if p.name in ("device", "dtype", "precision"))]
)
_plot_command.__doc__ = (
    "Plot expressions and their derivatives: in the terminal, as a PNG/SVG/PDF figure, or as numbers in a pipe.\n\n"
    "Example: diffcli plot 'x*sin(x)' --grid x=-3:3:400 --show value,grad,hessian"
)
app.command("plot")(_plot_command)


@app.command("run")
def run_requests(
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="NDJSON requests (default: stdin).")] = "-",
) -> None:
    """Answer NDJSON requests, one line each, in order, flushed per line: a co-process for scripts.

    Example: echo '{"id": 1, "op": "grad", "expr": "x*y", "at": {"x": 1, "y": 2}}' | diffcli run
    """
    with _error_boundary():
        import torch

        from . import session

        torch.set_num_threads(CPU_THREADS)
        session.answer(source)


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
            server.start_in_background(idle)
        else:
            server.serve(run, idle)


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
    """The one place where failures become a line on stderr and an exit code; messages within
    name the command line's flags (``errors.spelled``)."""
    try:
        with spelled("flags"):
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
        if broken_pipe(e):
            # The reader left (`| head`): silence the flush at exit (Python docs, "Note on SIGPIPE").
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
            raise typer.Exit(ExitCode.BROKEN_PIPE) from None
        if _debug or not isinstance(e, Exception):
            raise
        sys.stderr.write(f"diffcli: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)\n")
        raise typer.Exit(ExitCode.INTERNAL) from None


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


def _job(options: dict[str, Any], *groups: Any) -> dict[str, Any]:
    """A command's options as its job takes them: the option groups (``jobs.Input``,
    ``jobs.Gate``) taken out as objects, and where notes and progress go."""
    taken = {
        group.__name__.lower(): group(
            **{f.name: options.pop(f.name) for f in dataclasses.fields(group) if f.name in options}
        )
        for group in groups
    }
    taken["source"] = taken.pop("input")
    return {**options, **taken, "note": _note, "progress": _Progress, "cpu_threads": CPU_THREADS}


def _note(text: str) -> None:
    sys.stderr.write(f"diffcli: note: {text}\n")


def main() -> None:
    """The console script: run the command, then leave without the interpreter's teardown."""
    _one_malloc_arena()
    os._exit(run(sys.argv[1:]))


def _one_malloc_arena() -> None:
    """Keep glibc from giving each thread its own heap: those arenas fragment, and peak memory
    grew with the row count (1.15x from 1M to 5M rows; 1.03x with one arena, at the same speed).
    A setting of the process: the command line's to make, not the library's."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX is -8 in glibc's malloc.h


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
