"""Uncertainty propagation (``diffcli propagate``): the GUM's law of propagation of uncertainty
(JCGM 100:2008 §5) as a plan of formulas, and a Monte Carlo propagation (JCGM 101:2008) to check it.

Each uncertain input x has a standard uncertainty u(x), given per row as the variable ``u_x``
(a column of the data, or a constant), and the inputs' correlation coefficients r are constants.
With the covariance C = r·u·uᵀ and the outputs' gradients g, first order (GUM eq. 13) gives
cov(f, h) = g_fᵀ C g_h. Second order (``order=2``) adds the terms of order u⁴ for Gaussian
inputs: ½ tr(H_f C H_h C) + ½ (g_fᵀ C t_h + g_hᵀ C t_f), t_i = Σ_jk C_jk ∂³f/∂x_i∂x_j∂x_k — with
independent inputs, exactly the GUM's §5.1.2 note. Each input's share of a variance is its
Euler allocation: every term is shared among the uncertainties it multiplies, by their powers;
the shares add up to 1.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from . import rules, transforms
from .errors import DataError, UsageError, example, option
from .language import Parsed, option_name, symbol, symbolic_time_limit
from .names import in_order, variable_name
from .sources import uncertainty

if TYPE_CHECKING:
    import torch

    from .api import Compiled

Pairs = Mapping[tuple[str, str], float]  # a correlation coefficient per pair of inputs
SAMPLES = 100_000  # Monte Carlo trials per row (JCGM 101 asks 10⁶ for a 95 % interval to two digits)
TOLERANCE = 0.1  # the Monte Carlo check's allowance, as a share of the analytic standard uncertainty
STANDARD_ERRORS = 4.0  # and its Monte Carlo noise allowed, in standard errors
SAMPLE_ELEMENTS = 1 << 22  # numbers per variable in one Monte Carlo batch


def coverage_probability(k: float) -> float:
    """The probability that y ± k·u covers a Gaussian output: 0.9545 for k = 2."""
    return math.erf(k / math.sqrt(2))


def plan(
    parsed: Sequence[Parsed],
    inputs: Sequence[str],
    *,
    correlation: Pairs | None = None,
    order: int = 1,
    coverage: float | None = None,
    aux: Sequence[Parsed] = (),
    prefix: str = "",
    suffix: str = "",
) -> transforms.Plan:
    """The quantities of ``propagate``: each output's value, ``sigma`` (its standard uncertainty),
    ``relative`` (sigma/|value|), ``expanded`` (k·sigma, with ``coverage`` k), each input's
    ``contribution`` (its share of the variance) and, between outputs, their ``correlation``."""
    if order not in (1, 2):
        raise UsageError(f"{option('order')} must be 1 or 2, got {order!r}")
    if coverage is not None and not (_real(coverage) and math.isfinite(coverage) and coverage > 0):
        raise UsageError(f"{option('coverage')} must be a positive number (k: 2 for about 95 %), got {coverage!r}")
    if not parsed:
        raise UsageError("no expression given")
    names = transforms.output_names(parsed)
    exprs = [rules.accurate(p.expr) for p in parsed]
    free = set().union(*(transforms.variables_of(e) for e in exprs))
    inputs = transforms.members([variable_name(v) for v in inputs], free)  # x for the family x[i]
    if not inputs:
        raise UsageError(
            "propagate needs the inputs' uncertainties: "
            + f"{example('at', 'm=2±0.1', repr({'m': 2.0}))}, {example('sigma', 'm=0.1', repr({'m': 0.1}))}, "
            + f"a column u_m, or {example('covariance', 'FILE', repr({'m': {'m': 0.01}}))}"
        )
    for name in inputs:
        option_name(name, option("sigma"))
        if name not in free:
            raise UsageError(f"{name} has an uncertainty, but it is not a variable of the formula")
        if uncertainty(name) in free:
            raise UsageError(f"the uncertainty of {name} is the variable {uncertainty(name)}, which the formula uses")
    inputs = in_order(set(inputs))
    r = matrix(inputs, correlation or {})
    s = [symbol(uncertainty(v)) for v in inputs]
    cov = {  # C_ij = r_ij u_i u_j, where not 0
        (i, j): transforms.exact(r[i][j]) * s[i] * s[j]
        for i in range(len(inputs))
        for j in range(len(inputs))
        if r[i][j]
    }

    with symbolic_time_limit("propagate (symbolic differentiation)"):
        d = transforms.Differentiator()
        g = [[d(e, v) for v in inputs] for e in exprs]
        variance = {}  # (output, output) -> (first-order terms, second-order terms)
        if order == 2:
            h = [[[d(gi[a], v) for v in inputs] for a in range(len(inputs))] for gi in g]
            t = [_contracted(d, hk, inputs, cov) for hk in h]
        for k in range(len(exprs)):
            for m in range(k, len(exprs)):
                first = sympy.Add(*(g[k][i] * c * g[m][j] for (i, j), c in cov.items()))
                second = sympy.S.Zero
                if order == 2:
                    second = sympy.Rational(1, 2) * sympy.Add(
                        *(h[k][i][j] * cov[j, a] * h[m][a][b] * cov[b, i]
                          for i in range(len(inputs)) for j in range(len(inputs))
                          for a in range(len(inputs)) if (j, a) in cov
                          for b in range(len(inputs)) if (b, i) in cov),
                        *(g[k][i] * c * t[m][j] + g[m][i] * c * t[k][j] for (i, j), c in cov.items()),
                    )  # fmt: skip
                variance[k, m] = (first, second)

        single = len(parsed) == 1
        quantities = transforms.values(parsed, names)
        value_of = [q.column for q in quantities]

        def named(head: str, *keys: str) -> tuple[tuple[str, ...], str]:
            path = (head, *keys) if not single else (head, *keys[1:])
            return path, "_".join(path)

        for k, n in enumerate(names):
            first, second = variance[k, k]
            var = first + second
            sigma = sympy.sqrt(var)
            quantities.append(transforms.Quantity(*named("sigma", n), sigma, (value_of[k],)))
            quantities.append(transforms.Quantity(*named("relative", n), sigma / sympy.Abs(exprs[k]), (value_of[k],)))
            if coverage is not None:
                expanded = transforms.exact(coverage) * sigma
                quantities.append(transforms.Quantity(*named("expanded", n), expanded, (value_of[k],)))
            for i, v in enumerate(inputs):  # Euler: s·∂V/∂s over the degree, 2 for first order, 4 for second
                share = s[i] * d(first, s[i].name) / 2 + s[i] * d(second, s[i].name) / 4
                quantities.append(transforms.Quantity(*named("contribution", n, v), share / var, (value_of[k],)))
        for k, n in enumerate(names):
            for m in range(k + 1, len(names)):
                first, second = variance[k, m]
                own = [sum(variance[o, o]) for o in (k, m)]
                quantities.append(
                    transforms.Quantity(
                        ("correlation", n, names[m]),
                        f"correlation_{n}_{names[m]}",
                        (first + second) / sympy.sqrt(own[0] * own[1]),
                        (value_of[k], value_of[m]),
                    )
                )
    needs = [uncertainty(v) for v in inputs]
    plan = transforms.assemble("propagate", quantities, parsed, names, exprs, inputs, aux, prefix, suffix, needs)
    indexed = {uncertainty(v) for v in inputs if v in plan.indexed}  # u_x for x[1], x[2], … as x itself
    return dataclasses.replace(plan, indexed=plan.indexed | indexed)


def _contracted(
    d: transforms.Differentiator,
    hessian: list[list[sympy.Expr]],
    inputs: Sequence[str],
    cov: dict[tuple[int, int], Any],
) -> list[sympy.Expr]:
    """t_i = Σ_jk C_jk ∂³f/∂x_i∂x_j∂x_k, the third derivatives taken from the Hessian's entries."""
    return [sympy.Add(*(d(hessian[j][k], inputs[i]) * c for (j, k), c in cov.items())) for i in range(len(inputs))]


def matrix(inputs: Sequence[str], pairs: Pairs) -> list[list[float]]:
    """The correlation matrix of ``inputs`` from the coefficients ``pairs`` (the rest are 0),
    checked: coefficients in [-1, 1], between two different inputs, once, and together a valid
    correlation matrix (positive semi-definite)."""

    index = {v: i for i, v in enumerate(inputs)}
    r = np.eye(len(inputs))
    for (a, b), value in pairs.items():
        a, b = variable_name(a), variable_name(b)
        where = f"{option('correlation')} {a},{b}"
        for name in (a, b):
            if any(re.fullmatch(rf"{re.escape(name)}_\d+", i) for i in index) and name not in index:
                raise UsageError(f"{where}: {name} is a family (x[1], x[2], …): name its members, like {name}[1]")
            if name not in index:
                raise UsageError(f"{where}: {name} has no uncertainty", hint=f"give it one: {option('sigma')} {name}=…")
        if a == b:
            raise UsageError(f"{where}: a correlation is between two different inputs")
        if not _real(value) or not -1 <= value <= 1:
            raise UsageError(f"{where}: a correlation coefficient is between -1 and 1, got {value!r}")
        if r[index[a], index[b]]:
            raise UsageError(f"{where}: this pair's correlation is given twice")
        r[index[a], index[b]] = r[index[b], index[a]] = value
    if len(inputs) and np.linalg.eigvalsh(r).min() < -1e-12:
        raise UsageError(
            "the correlations given are not possible together (their matrix is not positive semi-definite)"
        )
    return r.tolist()


def covariance(given: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """A covariance matrix by name (``{"m": {"m": 0.01, "g": 0.0003}, "g": {...}}``) as standard
    uncertainties and correlation coefficients; it must be symmetric, with its variances >= 0."""
    names = [variable_name(str(n)) for n in given]
    rows = {variable_name(str(n)): {variable_name(str(c)): v for c, v in row.items()} for n, row in given.items()}
    where = option("covariance")
    for a in names:
        for b in rows[a]:
            if b not in rows:
                raise UsageError(f"{where}: row {a} has a column {b}, which has no row")
            value = rows[a][b]
            if not _real(value) or not math.isfinite(value):
                raise UsageError(f"{where}: the entry ({a}, {b}) is not a finite number: {value!r}")
            if abs(value - rows[b].get(a, 0.0)) > 1e-12 * max(abs(value), 1e-300):
                raise UsageError(f"{where}: not symmetric: ({a}, {b}) is {value!r}, ({b}, {a}) is {rows[b].get(a)!r}")
    sigma = {}
    for a in names:
        variance = rows[a].get(a, 0.0)
        if variance < 0:
            raise UsageError(f"{where}: the variance of {a} is negative: {variance!r}")
        sigma[a] = math.sqrt(variance)
    pairs = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            value = rows[a].get(b, 0.0)
            if value:
                if not sigma[a] or not sigma[b]:
                    raise UsageError(f"{where}: ({a}, {b}) is not 0, but the variance of {a if not sigma[a] else b} is")
                r = value / (sigma[a] * sigma[b])
                if abs(r) > 1 + 1e-12:
                    raise UsageError(
                        f"{where}: ({a}, {b}) is {value!r}, more than the variances allow "
                        f"(|covariance| <= u({a})·u({b}) = {sigma[a] * sigma[b]!r})"
                    )
                pairs[a, b] = max(-1.0, min(1.0, r))  # rounding
    return sigma, pairs


def bases(variables: Collection[str], indexed: Collection[str]) -> set[str]:
    """The names an uncertainty may be given by: the variables, and x for a family x[i] (``indexed``)."""
    return {*variables, *(v.rpartition("_")[0] for v in indexed)}


def check_uncertainties(values: Mapping[str, Any], inputs: Sequence[str], place: Any) -> None:
    """A data error at the first negative (or NaN) uncertainty of ``values`` (numpy arrays or
    tensors by variable); ``place(row, column)`` says where it is for the message."""

    for name in inputs:
        column = values.get(uncertainty(name))
        if column is None:
            continue
        numbers = column.cpu().numpy() if hasattr(column, "cpu") else np.asarray(column)
        bad = np.flatnonzero(~(numbers >= 0))
        if bad.size:
            raise DataError(
                f"{place(int(bad[0]), uncertainty(name))}: an uncertainty is 0 or more, got {float(numbers[bad[0]])!r}"
            )


@dataclasses.dataclass
class Given:
    """Where the inputs' standard uncertainties come from: ``numbers`` and data ``columns`` by
    variable (a family's name stands for its members), else the data's ``u_x`` columns; and the
    correlation coefficients by pair of names (in order)."""

    numbers: dict[str, float] = dataclasses.field(default_factory=dict)
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    pairs: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    left_out: list[str] = dataclasses.field(default_factory=list)  # a covariance matrix's names not in the formula

    @classmethod
    def of(cls, sigma: Any, correlation: Any, covariance: Any, keep: Collection[str]) -> Given:
        """The API's ``sigma``, ``correlation`` and ``covariance`` (of the names in ``keep``), checked."""
        given = cls()
        if sigma is not None and not isinstance(sigma, Mapping):
            raise UsageError(f"{option('sigma')} must be a mapping of names to numbers or columns, got {sigma!r:.60}")
        for key, value in (sigma or {}).items():
            name = variable_name(str(key))
            if isinstance(value, str):
                given.columns[name] = variable_name(value)
            elif not _real(value) or not 0 <= value < math.inf:
                raise UsageError(
                    f"{option('sigma')} {key!r}: an uncertainty is a number >= 0 or a column, got {value!r:.60}"
                )
            else:
                given.numbers[name] = float(value)
        if correlation is not None and not isinstance(correlation, Mapping):
            raise UsageError(f"{option('correlation')} must be a mapping of pairs to numbers, got {correlation!r:.60}")
        for key, value in (correlation or {}).items():
            names = key.split(",") if isinstance(key, str) else key
            if not isinstance(names, (tuple, list)) or len(names) != 2 or not all(isinstance(n, str) for n in names):
                raise UsageError(f"{option('correlation')} {key!r}: a pair of names, like ('m', 'g') or 'm,g'")
            given.correlate(*names, value)
        if covariance is not None:
            if not isinstance(covariance, Mapping) or not all(isinstance(r, Mapping) for r in covariance.values()):
                raise UsageError(f"{option('covariance')} must be a mapping of mappings (a matrix by name)")
            given.cover(covariance, keep)
        return given

    def correlate(self, a: str, b: str, value: float) -> None:
        """Add the coefficient of ``a`` and ``b`` (once)."""
        pair = tuple(sorted(variable_name(n) for n in (a, b)))
        if pair in self.pairs:
            raise UsageError(f"{option('correlation')} {pair[0]},{pair[1]}: this pair's correlation is given twice")
        self.pairs[pair] = value  # type: ignore[index]

    def cover(self, matrix: Mapping[str, Mapping[str, float]], keep: Collection[str]) -> None:
        """Add the uncertainties and correlations of a covariance ``matrix`` by name, of the names in
        ``keep`` (a lab's shared matrix names more: they are ``left_out``)."""
        self.left_out = [str(n) for n in matrix if variable_name(str(n)) not in keep]
        if matrix and len(self.left_out) == len(matrix):
            raise UsageError(f"{option('covariance')}: none of its names is a variable of the formula")
        sigma, pairs = covariance(
            {
                str(n): {str(c): v for c, v in row.items() if str(c) not in self.left_out}
                if isinstance(row, Mapping)
                else row
                for n, row in matrix.items()
                if str(n) not in self.left_out
            }
        )
        for name in sorted(set(sigma) & {*self.numbers, *self.columns}):
            raise UsageError(f"{name}'s uncertainty is given twice: by {option('sigma')} and by {option('covariance')}")
        for pair, value in pairs.items():
            self.correlate(*pair, value)
        self.numbers.update(sigma)

    def inputs(self, variables: Collection[str], indexed: Collection[str], columns: Collection[str]) -> list[str]:
        """The uncertain inputs among ``variables`` (``indexed``: those written x[i]) for data
        with ``columns``: those given, and those with a column ``u_x`` (not itself a variable)."""
        found = {n for n in bases(variables, indexed) if uncertainty(n) in columns and uncertainty(n) not in variables}
        return sorted({*self.numbers, *self.columns, *found})

    def constants(self, inputs: Sequence[str]) -> dict[str, float]:
        """The uncertainty variable of each input given a number, with it (x[2]'s from the family x's)."""
        found = {v: self.numbers.get(v, self.numbers.get(v.rpartition("_")[0])) for v in inputs}
        return {uncertainty(v): n for v, n in found.items() if n is not None}

    def renames(self, inputs: Sequence[str]) -> dict[str, str]:
        """The uncertainty variable of each input given a column, with the column."""
        found = {v: self.columns.get(v, self.columns.get(v.rpartition("_")[0])) for v in inputs}
        return {uncertainty(v): c for v, c in found.items() if c is not None}


class Propagation:
    """A compiled propagation, evaluated as a compiled plan is (``api.Compiled``): the inputs'
    uncertainties checked, the analytic columns, the Monte Carlo's beside them if asked. It counts,
    per output, the rows where first order gives 0 from uncertain inputs (``vanishing``) and where
    second order gives a negative variance (``negative``)."""

    def __init__(
        self,
        compiled: Compiled,
        given: Given,
        monte_carlo: MonteCarlo | None = None,
        *,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self.plan, self.analytic, self.given, self.monte_carlo = compiled.plan, compiled.evaluate, given, monte_carlo
        self.dtype, self.device = dtype, device
        self.place = lambda row, variable: f"row {row + 1}, {variable}"  # where an uncertainty is, for messages
        self.rows = 0
        self.vanishing: collections.Counter[str] = collections.Counter()
        self.negative: collections.Counter[str] = collections.Counter()

    @property
    def columns(self) -> list[tuple[tuple[str, ...], str]]:
        """The (JSON path, column) of every number it reports."""
        extra = [c for columns in self.monte_carlo.columns for c in columns] if self.monte_carlo else []
        return [*((q.path, q.column) for q in self.plan.quantities), *extra]

    def notes(self, rows: int, order: int) -> list[str]:
        """What a reader of ``rows`` results should know: sigmas that first order leaves at 0, and
        negative second-order variances."""
        notes = [
            f"{column} is 0 at first order in {count} of {rows} rows: the first derivatives vanish there; "
            f"{example('order', '2', '2')} adds the second-order terms"
            for column, count in self.vanishing.items()
            if count and order == 1
        ]
        why = (
            "the second-order variance is negative there (the uncertainties are too large for a Taylor "
            "expansion) or a second derivative undefined (at a kink)"
            if order == 2
            else "a first derivative is not a number there, or the variance overflows a double"
        )
        return notes + [
            f"{column} is NaN in {count} of {rows} rows: {why}; {option('check')} compares with Monte Carlo"
            for column, count in self.negative.items()
            if count
        ]

    def evaluate(self, values: Mapping[str, torch.Tensor], like: torch.Tensor) -> dict[str, torch.Tensor]:
        check_uncertainties(values, self.plan.wrt, lambda row, column: self.place(self.rows + row, column))
        results = self.analytic(values, like)
        uncertain = sum(values[uncertainty(v)] for v in self.plan.wrt) > 0
        for q in self.plan.quantities:
            if q.path[0] == "sigma":
                sigma, value = results[q.column], results[q.of[0]]
                self.vanishing[q.column] += int(((sigma == 0) & uncertain).sum())
                self.negative[q.column] += int((sigma.isnan() & ~value.isnan()).sum())
        if self.monte_carlo is not None:
            results.update(self.monte_carlo(values, results, self.rows))
        self.rows += len(like)
        return results


class MonteCarlo:
    """The propagation of JCGM 101 beside the analytic one: for each row, ``samples`` draws of
    the inputs from their Gaussian distribution (means the row's values, covariance from its
    uncertainties and the correlations), the outputs evaluated at each, and their mean, standard
    deviation and, with ``coverage`` k, the probabilistically symmetric interval of the
    probability that y ± k·u would have. The draws are the same for every row (seeded), so a
    row's answer does not depend on the batch it is in.

    The analytic answer agrees where its value and sigma are the Monte Carlo's mean and standard
    deviation (and its interval y ± k·u the Monte Carlo's) within ``tolerance``·u, plus four
    standard errors of the Monte Carlo's estimates (were the analytic answer right)."""

    def __init__(
        self,
        values: Compiled,
        plan: transforms.Plan,
        *,
        samples: int = SAMPLES,
        seed: int = 0,
        coverage: float | None = None,
        tolerance: float = TOLERANCE,
        correlation: Pairs | None = None,
        prefix: str = "",
        suffix: str = "",
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        """``values``: the formula's values compiled; ``plan``: the analytic propagation's."""
        import torch

        if not isinstance(samples, numbers.Integral) or isinstance(samples, bool) or not 100 <= samples <= 10**8:
            raise UsageError(f"{option('samples')} must be an integer from 100 to 100,000,000, got {samples!r}")
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise UsageError(f"{option('seed')} must be an integer from 0 to 2**63 - 1, got {seed!r}")
        if not _real(tolerance) or not 0 <= tolerance < math.inf:
            raise UsageError(f"{option('tolerance')} must be a number >= 0, got {tolerance!r}")
        self.evaluate, self.variables, self.plan = values.evaluate, values.plan.variables, plan
        self.samples, self.coverage, self.tolerance, seed = int(samples), coverage, float(tolerance), int(seed)
        self.dtype, self.device = dtype, device
        r = torch.tensor(matrix(plan.wrt, correlation or {}), dtype=torch.float64)
        eigenvalues, vectors = torch.linalg.eigh(r)  # r = L Lᵀ, also where r is singular (a correlation of 1)
        root = vectors * eigenvalues.clamp(min=0).sqrt()
        generator = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on every device
        normal = torch.randn(samples, len(plan.wrt), generator=generator, dtype=torch.float64)
        self.draws = (normal @ root.T).T.to(device, dtype).contiguous()  # one row of draws per input
        self.outputs = [q for q in plan.quantities if q.path[0] == "value"]
        self.drawn = [q.column for q in values.plan.quantities if q.path[0] == "value"]  # the same, unprefixed
        kinds = ["mc_mean", "mc_sigma", *(["mc_low", "mc_high"] if coverage else []), "mc_agrees"]
        single = len(self.outputs) == 1
        self.columns = [  # per output: (JSON path, column) of each number reported
            [((k,), f"{prefix}{k}{suffix}") if single else ((k, q.path[1]), f"{prefix}{k}_{q.path[1]}{suffix}")
             for k in kinds]
            for q in self.outputs
        ]  # fmt: skip
        sigma = {q.path[1:]: q.column for q in plan.quantities if q.path[0] == "sigma"}
        self.sigmas = [sigma[q.path[1:]] for q in self.outputs]
        self.failures = 0  # (row, output) pairs that disagree
        self.first: str | None = None  # the first of them, described

    def __call__(
        self, values: Mapping[str, torch.Tensor], results: Mapping[str, torch.Tensor], first_row: int = 0
    ) -> dict[str, torch.Tensor]:
        """The Monte Carlo's columns for a batch: ``values`` by variable, ``results`` the analytic
        columns; ``first_row`` numbers the batch's rows in messages."""
        import torch

        rows = len(results[self.outputs[0].column])
        found: dict[str, list[torch.Tensor]] = {c: [] for columns in self.columns for _, c in columns}
        step = max(1, SAMPLE_ELEMENTS // self.samples)
        for start in range(0, max(rows, 1), step):  # no rows: one empty part, for the columns' types
            part = slice(start, min(start + step, rows))
            drawn = {}
            for v in self.variables:
                column = values[v][part].unsqueeze(1)
                if v in self.plan.wrt:
                    column = column + values[uncertainty(v)][part].unsqueeze(1) * self.draws[self.plan.wrt.index(v)]
                drawn[v] = column.expand(-1, self.samples).reshape(-1)
            width = part.stop - part.start
            outputs = self.evaluate(drawn, torch.empty(width * self.samples, dtype=self.dtype, device=self.device))
            for q, drawn, sigma, columns in zip(self.outputs, self.drawn, self.sigmas, self.columns):
                sample = outputs[drawn].reshape(width, self.samples)
                numbers = self._statistics(
                    sample, results[q.column][part], results[sigma][part], first_row + start, q.column
                )
                for (_, name), column in zip(columns, numbers):
                    found[name].append(column)
        return {name: torch.cat(parts) for name, parts in found.items()}

    def _statistics(
        self, sample: torch.Tensor, value: torch.Tensor, sigma: torch.Tensor, row: int, column: str
    ) -> list[torch.Tensor]:
        """Mean, standard deviation, (interval), and whether the analytic answer agrees, per row."""
        import torch

        n = self.samples
        # in units of sigma about the value: squares of 1e200 (or of 1e25 in float32) would overflow
        finite = value.isfinite() & sigma.isfinite()
        centred = torch.where(finite, value, torch.zeros_like(value))  # no value to centre on: the draws' own
        size = centred.abs()
        scale = torch.where(finite & (sigma > 0), sigma, torch.where(size > 0, size, torch.ones_like(size)))
        z = (sample - centred.unsqueeze(1)) / scale.unsqueeze(1)
        centre = z.sum(dim=1) / n  # sums, not std(): they give a row the same digits in any batch
        spread = ((z - centre.unsqueeze(1)) ** 2).sum(dim=1).div(n - 1).sqrt()
        mean, deviation = centred + centre * scale, spread * scale
        relative = sigma / scale  # 1, or 0 where sigma is 0
        allowed = self.tolerance * relative + 64 * self._eps * size / scale  # u = 0: the same number, N times
        agrees = (centre.abs() <= allowed + STANDARD_ERRORS * relative / math.sqrt(n)) & (
            (spread - relative).abs() <= allowed + STANDARD_ERRORS * relative / math.sqrt(2 * n)
        )
        reported = [mean, deviation]
        if self.coverage:
            k = self.coverage
            inside = int(coverage_probability(k) * n + 0.5)  # JCGM 101 §7.7: y_(r), y_(r+q); q = pM, r = (M-q)/2
            low = (n - inside + 1) // 2 - 1
            ordered = z.sort(dim=1).values
            interval = [ordered[:, max(low, 0)], ordered[:, min(low + inside, n - 1)]]
            tail = (1 - coverage_probability(k)) / 2  # the endpoints are the tails' quantiles, at ±k for a Gaussian
            error = math.sqrt(tail * (1 - tail) / n) / (math.exp(-k * k / 2) / math.sqrt(2 * math.pi))
            band = allowed + STANDARD_ERRORS * error * relative
            for end, sign in zip(interval, (-1, 1)):
                agrees &= (end - sign * k * relative).abs() <= band
            reported += [centred + end * scale for end in interval]
        agrees = (agrees & finite & ~sample.isnan().any(dim=1)) | value.isnan()  # no value: nothing to compare
        bad = (~agrees).nonzero()
        self.failures += int(bad.numel())
        if bad.numel() and self.first is None:
            i = int(bad[0])
            outside = int(sample[i].isnan().sum())
            domain = f" ({outside:,} of {n:,} draws outside the formula's domain)" if outside else ""
            self.first = (
                f"row {row + i + 1}, {column}: {float(value[i]):.6g} ± {float(sigma[i]):.6g} analytic, "
                f"{float(mean[i]):.6g} ± {float(deviation[i]):.6g} by Monte Carlo{domain}"
            )
        return [*reported, agrees]

    def verdict(self, rows: int) -> str:
        """The disagreements over ``rows`` rows, in a line."""
        return (
            f"{self.failures} of {rows * len(self.outputs)} results disagree with Monte Carlo ({self.samples:,} "
            f"draws) beyond {option('tolerance')} {self.tolerance:g}·sigma; first: {self.first}"
        )

    @property
    def _eps(self) -> float:
        import torch

        return torch.finfo(self.dtype).eps


def _real(value: Any) -> bool:
    """A real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
