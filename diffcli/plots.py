"""Plots of a formula's numbers (README: "Plots"): the curves over one grid variable, or the value
and its gradient field over two, drawn as text for a terminal (uniplot: braille, or a distinct
character per curve without colour) or as a figure (matplotlib, the ``plot`` extra).

The numbers come from the Python API's methods (``of_formula``), so a plot draws exactly what
``grad``, ``hessian`` and ``derivative`` report. No typer here, and neither drawing library is
imported before something is drawn; matplotlib is used without pyplot, so no backend or other
setting of the process changes.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .errors import UsageError, example, option, spelling

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .api import Formula

FIGURES = ("png", "svg", "pdf")  # what a figure is written as
SIZE = (960, 600)  # a figure's default size in pixels
DPI = 100  # pixels per inch of a figure: a PNG of SIZE pixels; SVG and PDF of SIZE / DPI inches
MAX_POINTS = 10_000_000  # a plot holds its points in memory
ARROWS = 20  # the gradient field's arrows along each axis
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclasses.dataclass(frozen=True)
class Plot:
    """What a plot draws. ``data``: the numbers, as ``diffcli plot`` writes them (the grid columns,
    then the other variables', then one column per curve); ``grid``: the one or two grid variables;
    ``quantities``: each curve's (JSON path, column); ``panels``: the columns drawn on one y axis
    together; ``labels``: each column's legend; ``kinks``: per expression, True at the points where
    it is not differentiable; ``title``.

    ``str(plot)`` is the drawing for this terminal, ``plot.text(...)`` one of a chosen size,
    ``plot.figure()`` a matplotlib Figure, ``plot.save(path)`` a PNG, SVG or PDF file."""

    data: dict[str, np.ndarray]
    grid: tuple[str, ...]
    quantities: tuple[tuple[tuple[str, ...], str], ...]
    panels: tuple[tuple[str, ...], ...]
    labels: dict[str, str]
    kinks: dict[str, np.ndarray]
    shape: tuple[int, ...]  # the grids' lengths: the data's rows are their product, the last fastest
    title: str = ""
    bands: dict[str, str] = dataclasses.field(default_factory=dict)  # a curve's column -> its sigma's: ±σ drawn

    @property
    def kinked(self) -> np.ndarray:
        """True where any expression is not differentiable."""
        rows = len(next(iter(self.data.values())))
        return np.logical_or.reduce([*self.kinks.values(), np.zeros(rows, dtype=bool)])

    def non_finite(self) -> dict[str, int]:
        """How many points of each curve are not finite numbers (drawn as gaps)."""
        bad = {c: int((~np.isfinite(self.data[c])).sum()) for _, c in self.quantities}
        return {c: n for c, n in bad.items() if n}

    def text(self, width: int | None = None, height: int | None = None, *, colour: bool = False) -> str:
        """The drawing for a terminal of ``width`` columns and ``height`` lines (default: this one's)."""
        if len(self.grid) != 1:
            to_file = f"{option('output')} plot.png" if spelling() == "flags" else "plot.save('plot.png')"
            raise UsageError(
                "a heatmap over two grids is drawn as a figure, not in the terminal",
                hint=f"write one: {to_file}",
            )
        import shutil

        _sizes(width, height, least=20)
        columns, lines = shutil.get_terminal_size()
        width, height = width or columns, height or max(12, min(lines - 4, 30))
        each = max(6, (height - 1) // len(self.panels) - 5)  # a panel's frame, axis and legend: 5 lines
        x = self.data[self.grid[0]]
        marks = x[self.kinked]
        drawn = [
            terminal(
                x,
                [curve for c in panel for curve in self._with_band(c)],
                marks=marks,
                width=width,
                height=each,
                colour=colour,
            )
            for panel in self.panels
        ]
        return "\n".join([self.title[:width], *drawn]) if self.title else "\n".join(drawn)

    def __str__(self) -> str:
        return self.text()

    def _with_band(self, column: str) -> list[tuple[str, np.ndarray]]:
        """A curve, and in the terminal its band's edges as curves of their own."""
        curve = (self.labels[column], self.data[column])
        if column not in self.bands:
            return [curve]
        sigma = self.data[self.bands[column]]
        return [
            curve,
            (f"{column} + {self.bands[column]}", curve[1] + sigma),
            (f"{column} - {self.bands[column]}", curve[1] - sigma),
        ]

    def figure(self, width: int = SIZE[0], height: int = SIZE[1]) -> Figure:
        """A matplotlib Figure of ``width`` × ``height`` pixels (at ``DPI``), not tied to pyplot."""
        _sizes(width, height, least=100)
        if len(self.grid) == 2:
            x, y = self.grid
            gradient = [c for p, c in self.quantities if p[0] in ("grad", "jacobian")]
            value = next((c for p, c in self.quantities if p[0] == "value"), None)
            if value is None:
                raise UsageError(f"a heatmap shows the value: {option('show')} value")
            shape = self.shape
            return field(
                self.data[x].reshape(shape)[:, 0],
                self.data[y].reshape(shape)[0],
                self.data[value].reshape(shape),
                *(self.data[c].reshape(shape) for c in gradient[:2]),
                names=(x, y),
                label=self.labels[value],
                width=width,
                height=height,
                title=self.title,
            )
        x = self.data[self.grid[0]]
        return figure(
            x,
            [[(self.labels[c], self.data[c]) for c in panel] for panel in self.panels],
            marks=x[self.kinked],
            x_label=self.grid[0],
            width=width,
            height=height,
            title=self.title,
            bands={self.labels[c]: (self.bands[c], self.data[s]) for c, s in self.bands.items()},
        )

    def save(self, file: str | IO[bytes], format: str | None = None, width: int = SIZE[0], height: int = SIZE[1]):  # noqa: A002
        """Write the figure to ``file`` (a path, or a binary stream with ``format``) as PNG, SVG or PDF."""
        if format is None and isinstance(file, str):
            format = file.rpartition(".")[2].lower()  # noqa: A001
        if format not in FIGURES:
            raise UsageError(f"a figure is written as {', '.join(FIGURES)}, got {format!r}")
        try:
            self.figure(width, height).savefig(file, format=format, dpi=DPI)
        except OSError as e:
            raise UsageError(f"cannot write {file}: {e.strerror or e}") from None


def of_formula(
    formula: Formula,
    grid: Mapping[str, Any],
    *,
    at: Mapping[str, float] | None = None,
    show: Sequence[str] | str = ("value", "grad"),
    dtype: Any = "float64",
    device: Any = None,
) -> Plot:
    """The plot of ``formula`` over ``grid`` (one or two variables, each ``(start, stop, count)``,
    ends included, or its values), the other variables from ``at``. ``show`` picks the curves:
    ``value``, ``grad`` (d/dx along the first grid variable), ``hessian`` (d²/dx²), ``derivative:N``
    (dⁿ/dxⁿ, by Taylor mode from order 3); over two grids, the value and its gradient field."""
    from . import sources

    groups = _grids(grid)
    names = tuple(g.names[0] for g in groups)
    items = shown(show, len(names), len(formula.texts))
    if at is not None and not (
        isinstance(at, Mapping) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in at.values())
    ):
        raise UsageError(f"{option('at')} must be a mapping of names to single numbers, got {at!r:.60}")
    points = sources.points([dict(at)] if at else [], groups)
    if len(points) > MAX_POINTS:
        raise UsageError(f"a plot draws at most {MAX_POINTS:,} points, the grids give {len(points):,}")
    frame = points.take(np.arange(len(points)))
    data = {n: frame[n].to_numpy() for n in (*names, *(n for n in frame.columns if n not in names))}
    _check_given(formula, data)
    inputs, options = dict(data), dict(dtype=dtype, device=device)
    quantities: list[tuple[tuple[str, ...], str]] = []
    labels = {}
    single = len(formula.texts) == 1
    for item in items:
        order = {"value": 0, "grad": 1, "hessian": 2}[item] if ":" not in item else int(item.partition(":")[2])
        if item == "value":
            compiled, kinds, results = formula.compiled("value"), ("value",), formula.value(inputs, **options)
        elif item == "grad":
            operation = "grad" if single else "jacobian"
            compiled, kinds = formula.compiled(operation, wrt=list(names)), ("grad", "jacobian")
            results = getattr(formula, operation)(inputs, wrt=list(names), **options)
        elif item == "hessian":
            compiled, kinds = formula.compiled("hessian", wrt=[names[0]]), ("hessian",)
            results = formula.hessian(inputs, wrt=[names[0]], **options)
        else:
            compiled, kinds = formula.compiled("derivative", wrt=[names[0]], order=order), ("derivative",)
            results = formula.derivative(inputs, wrt=[names[0]], order=order, **options)
        for q in compiled.plan.quantities:
            if q.path[0] in kinds:
                column = f"derivative_{order}" if item.startswith("derivative") else q.column
                data[column] = results[q.column]
                quantities.append((q.path if column == q.column else (column,), column))
                labels[column] = _label(column, q.path, names[0], order)
    found = formula.kinks(inputs, **options) if len(names) == 1 else {}
    kinks = {k.removeprefix("kink_"): np.asarray(v, dtype=bool) for k, v in found.items() if k.startswith("kink_")}
    title = ", ".join(formula.texts) + "".join(f"  {k}={v:g}" for k, v in (at or {}).items())
    panels = (tuple(c for _, c in quantities),)
    return Plot(data, names, tuple(quantities), panels, labels, kinks, tuple(len(g) for g in groups), title)


def trajectory(data: Mapping[str, Any], values: Sequence[str], derivatives: Sequence[str], *, title: str = "") -> Plot:
    """The plot of one run of ``diffcli.scan(..., trajectory=True)``: its ``values`` (the states, or
    the outputs) over the steps, and below them their ``derivatives`` (the sensitivities)."""
    steps = np.asarray(data["step"], dtype=np.float64)
    if len(np.unique(steps)) != len(steps):
        raise UsageError("a trajectory plot draws one run: give one point of the parameters")
    columns = {c: np.asarray(data[c], dtype=np.float64) for c in [*values, *derivatives]}
    quantities = tuple(((c,), c) for c in columns)
    panels = tuple(p for p in (tuple(values), tuple(derivatives)) if p)
    labels = {c: c for c in columns}
    return Plot({"step": steps, **columns}, ("step",), quantities, panels, labels, {}, (len(steps),), title)


def band(data: Mapping[str, Any], x: str, values: Sequence[str], sigmas: Sequence[str], *, title: str = "") -> Plot:
    """The plot of ``propagate`` over one grid variable ``x``: each of ``values`` with its band
    value ± sigma (``sigmas``, in the same order)."""
    grid = np.asarray(data[x], dtype=np.float64)
    if len(np.unique(grid)) != len(grid):
        raise UsageError(f"a band is drawn over one {option('grid')}: give the other variables one value each")
    columns = {c: np.asarray(data[c], dtype=np.float64) for c in [*values, *sigmas]}
    quantities = tuple(((c,), c) for c in values)
    bands = dict(zip(values, sigmas))
    return Plot(
        {x: grid, **columns}, (x,), quantities, (tuple(values),), {c: c for c in values}, {}, (len(grid),), title, bands
    )


def shown(show: Sequence[str] | str, grids: int, expressions: int) -> list[str]:
    """The curves ``show`` asks for (``"value,grad"`` or a list), checked."""
    flag = option("show")
    if not isinstance(show, str) and not (isinstance(show, Sequence) and all(isinstance(s, str) for s in show)):
        raise UsageError(f"{flag} must be names of curves, as a list or 'value,grad'; got {show!r:.60}")
    items = [s.strip() for s in show.split(",")] if isinstance(show, str) else list(show)
    for item in items:
        kind, colon, order = item.partition(":")
        if item in ("value", "grad", "hessian"):
            continue
        if kind != "derivative" or not colon:
            raise UsageError(f"unknown {flag} item {item!r}; expected value, grad, hessian or derivative:N")
        if not order.isdigit() or not 1 <= int(order) <= 100:
            raise UsageError(f"{flag} {item}: N of derivative:N must be a whole number from 1 to 100")
    if not items or len(set(items)) != len(items):
        raise UsageError(f"{flag} must name each curve once, got {show!r}")
    if grids == 2 and (not set(items) <= {"value", "grad"} or expressions > 1):
        raise UsageError(f"over two grids a plot is one expression's value and gradient field: {flag} value,grad")
    higher = [i for i in items if i not in ("value", "grad")]
    if expressions > 1 and higher:
        raise UsageError(f"{flag} {higher[0]} takes one expression, got {expressions}: plot them one at a time")
    return items


def terminal(
    x: np.ndarray,
    curves: Sequence[tuple[str, np.ndarray]],
    *,
    marks: Sequence[float] = (),
    width: int = 80,
    height: int = 15,
    colour: bool = False,
) -> str:
    """Curves (label, y over ``x``) as text at most ``width`` columns wide with ``height`` lines of
    plot, non-finite points left as gaps, each of ``marks`` a vertical rule ("kink"). In colour the
    curves are braille lines; without colour several curves each get a character of their own."""
    import uniplot

    drawn = [(label, _finite(y)) for label, y in curves if np.isfinite(_finite(y)).any()]  # all gaps: no curve
    if not drawn:
        return "(nothing to draw: no value is a finite number)"
    labels, ys = [label for label, _ in drawn], [y for _, y in drawn]
    largest = max(float(np.nanmax(np.abs(y))) for y in ys)
    if largest > 1e15 or 0 < largest < 1e-4:  # uniplot's axis overflows near 1e200, its labels round 1e-20 to 0
        power = math.floor(math.log10(largest))
        ys = [y / 10.0**power for y in ys]
        labels = [f"{label} (×1e{power})" for label in labels]
    low, high = limits(ys)
    span = high - low  # points far off the range (a pole) drawn just off it: a line to 1e300 would be 1e300 pixels
    ys = [np.clip(y, low - span, high + span) for y in ys]
    xs: list[np.ndarray] = [x] * len(ys)
    if len(marks):
        rule = np.repeat(np.asarray(marks[:50], dtype=np.float64), 3)
        xs.append(rule)
        ys.append(np.tile([low, high, math.nan], len(rule) // 3))
        labels.append("kink (not differentiable)")
    return uniplot.plot_to_string(
        ys,
        xs,
        lines=True,
        width=max(width - 12, 10),
        height=height,
        line_length_hard_cap=width,
        legend_labels=labels,
        y_min=low,
        y_max=high,
        color=colour,
        character_set="braille" if colour or len(ys) == 1 else "ascii",
    )


def figure(
    x: np.ndarray,
    panels: Sequence[Sequence[tuple[str, np.ndarray]]],
    *,
    marks: Sequence[float] = (),
    x_label: str = "",
    width: int = SIZE[0],
    height: int = SIZE[1],
    title: str = "",
    bands: Mapping[str, tuple[str, np.ndarray]] = {},
) -> Figure:
    """Curves (label, y over ``x``) in ``panels`` stacked over a shared x axis, each a line style of
    its own (distinct in grey too); non-finite points are gaps, ``marks`` dotted rules; ``bands``
    shades y ± sigma under the curve of a label (label -> (sigma's name, sigma))."""
    fig = _new_figure(width, height)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    styles = ["-", "--", ":", "-."]
    for ax, panel in zip(axes, panels):
        ys = [_finite(y) for _, y in panel]
        for i, ((label, _), y) in enumerate(zip(panel, ys)):
            line = ax.plot(x, y, styles[i % len(styles)], label=label, linewidth=1.6)[0]
            if label in bands:
                name, sigma = bands[label]
                low, high = y - _finite(sigma), y + _finite(sigma)
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0, label=f"± {name}")
                ys += [low, high]
        for i, m in enumerate(marks[:50]):
            ax.axvline(m, color="0.4", linestyle=":", linewidth=1, label="not differentiable" if i == 0 else None)
        ax.set_ylim(*limits(ys))
        ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
        ax.grid(True, color="0.92")
        ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(x_label)
    if title:
        fig.suptitle(title)
    return fig


def field(
    x: np.ndarray,
    y: np.ndarray,
    value: np.ndarray,
    grad_x: np.ndarray | None = None,
    grad_y: np.ndarray | None = None,
    *,
    names: tuple[str, str] = ("x", "y"),
    label: str = "value",
    width: int = SIZE[0],
    height: int = SIZE[1],
    title: str = "",
) -> Figure:
    """A heatmap of ``value`` (``value[i, j]`` at ``x[i]``, ``y[j]``) with contour lines and, if
    given, the gradient as arrows on a subsampled grid; non-finite cells are left blank."""
    fig = _new_figure(width, height)
    ax = fig.subplots()
    z = np.ma.masked_invalid(value).T
    mesh = ax.pcolormesh(x, y, z, shading="auto", cmap="viridis")
    fig.colorbar(mesh, ax=ax, label=label)
    if z.count() and np.ptp(z.compressed()) > 0 and min(z.shape) > 1:
        ax.contour(x, y, z, levels=10, colors="white", linewidths=0.6, alpha=0.7)
    if grad_x is not None and grad_y is not None:
        i = np.unique(np.linspace(0, len(x) - 1, min(ARROWS, len(x))).round().astype(int))
        j = np.unique(np.linspace(0, len(y) - 1, min(ARROWS, len(y))).round().astype(int))
        u, v = (np.ma.masked_invalid(g[np.ix_(i, j)]).T for g in (grad_x, grad_y))
        ax.quiver(x[i], y[j], u, v, color="white", edgecolor="black", linewidth=0.4, angles="xy", pivot="mid")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(title + ("  (arrows: the gradient)" if grad_x is not None else ""))
    return fig


def limits(ys: Sequence[np.ndarray]) -> tuple[float, float]:
    """The y range to draw: every finite value's, unless a few points (near a pole) stretch it more
    than ten times beyond where 90% of them lie; then that middle range, widened by half."""
    finite = np.concatenate([y[np.isfinite(y)] for y in ys] or [np.zeros(0)])
    if not finite.size:
        return -1.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    q05, q95 = (float(q) for q in np.quantile(finite, [0.05, 0.95]))
    if high - low > 10 * (q95 - q05) > 0:
        low, high = q05 - (q95 - q05) / 2, q95 + (q95 - q05) / 2
    if low == high:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.03
    return low - margin, high + margin


def require_matplotlib(what: str) -> None:
    """A usage error naming ``what`` (``--output plot.png``) if matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"{what} needs matplotlib: pip install 'diffcli[plot]'") from None


def _new_figure(width: int, height: int) -> Figure:
    require_matplotlib("a figure")
    from matplotlib.figure import Figure

    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _sizes(width: Any, height: Any, least: int) -> None:
    """A drawing's or figure's size checked: whole numbers of at least ``least`` by 8 (or None)."""
    for name, value in (("width", width), ("height", height)):
        if value is not None and (
            not isinstance(value, numbers.Integral)
            or isinstance(value, bool)
            or not (8 if name == "height" else least) <= value <= 20_000
        ):
            raise UsageError(
                f"{name} must be a whole number from {8 if name == 'height' else least} to 20000, got {value!r:.30}"
            )


def _finite(y: Any) -> np.ndarray:
    """``y`` as float64 with every non-finite number NaN: a gap, in either library."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(np.isfinite(y), y, math.nan)


def _label(column: str, path: tuple[str, ...], x: str, order: int) -> str:
    """A curve's legend: its column, and for a derivative what it is (``grad_x (d/dx)``)."""
    if path[0] == "value":
        return column
    of = path[1] if path[0] == "jacobian" else ""
    power = str(order).translate(SUPERSCRIPTS) if order > 1 else ""
    return f"{column} (d{power}{of}/d{x}{power})"


def _grids(grid: Mapping[str, Any]) -> list[Any]:
    """``grid`` as ``sources`` groups: ``(start, stop, count)`` a range, ends included, as ``--grid``;
    a list or array, the values themselves."""
    from . import sources
    from .names import variable_name

    if not isinstance(grid, Mapping) or not 1 <= len(grid) <= 2:
        raise UsageError(
            f"a plot draws over one {option('grid')} variable (curves) or two (a heatmap), "
            f"got {len(grid) if isinstance(grid, Mapping) else repr(grid)}",
            hint=f"give {example('grid', 'x=-3:3:400', repr({'x': (-3, 3, 400)}))}",
        )
    groups = []
    for name, spec in grid.items():
        name = variable_name(str(name))
        if isinstance(spec, sources.Group):
            groups.append(spec)
        elif isinstance(spec, tuple):
            whole = len(spec) == 3 and isinstance(spec[-1], numbers.Integral) and not isinstance(spec[-1], bool)
            if len(spec) != 3 or not whole or not all(isinstance(v, numbers.Real) for v in spec):
                raise UsageError(
                    f"{option('grid')} {name!r}: (start, stop, count) with a whole count, got {spec!r:.60}"
                )
            groups.append(sources.grid(f"{name}={float(spec[0])!r}:{float(spec[1])!r}:{int(spec[2])}"))
        else:
            try:
                values = np.asarray(spec, dtype=np.float64)
            except (TypeError, ValueError):
                values = np.zeros((0, 0))
            if values.ndim != 1 or not values.size or not np.isfinite(values).all():
                raise UsageError(f"{option('grid')} {name!r}: (start, stop, count) or finite values, got {spec!r:.60}")
            groups.append(sources.Group((name,), tuple((float(v),) for v in values)))
    return groups


def _check_given(formula: Formula, data: Mapping[str, Any]) -> None:
    """A usage error naming the variables that neither the grid nor ``at`` gives."""
    from .sources import family_columns

    plan = formula.compiled("value").plan
    absent = [v for v in plan.variables if v not in data]
    missing = [v for v in absent if v not in family_columns(absent, plan.indexed, data)]
    if missing:
        raise UsageError(
            f"no value for {', '.join(missing)} (not given by {option('grid')} or {option('at')})",
            hint=f"give it with {example('at', f'{missing[0]}=VALUE', repr({missing[0]: 1.0}))}",
        )
