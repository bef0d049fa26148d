"""``diffcli run``: many requests in one process, one NDJSON line in and one out, in order.

A request names a command and its options as JSON fields, e.g.
``{"id": 7, "op": "grad", "expr": "x*y", "at": {"x": 1, "y": 2}}``; the answer is the JSON
object with the ``id`` first (``{"id": 7, "results": [...]}`` for several points), or
``{"id": 7, "error": {"code": 3, "message": "..."}}``, after which the stream goes on. Each
formula is parsed, differentiated and compiled once: a repeated formula at new points costs only
its evaluation. A request answers at most ``MAX_REQUEST_POINTS`` points.
"""

from __future__ import annotations

import collections
import contextlib
import io
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
import orjson
import polars as pl
import torch

from . import api, devices, language, pipeline, sinks, sources, transforms, uncertainty
from .errors import DataError, DiffcliError, ExitCode, UsageError, spelled
from .names import variable_name

FIELDS = ("op", "expr", "wrt", "aux", "tangent", "cotangent", "order", "dtype")  # what a compiled formula depends on
CHECK_FIELDS = ("op", "expr", "wrt", "order", "rtol", "atol", "allow_kinks", "dtype")
SCAN_FIELDS = ("op", "expr", "init", "steps", "outputs", "wrt", "trajectory", "method", "dtype")
PROPAGATE_FIELDS = (
    *("op", "expr", "aux", "sigma", "correlation", "covariance", "order", "coverage"),
    *("check", "samples", "seed", "tolerance", "dtype"),
)
CACHED = 256  # compiled formulas kept
CPU = torch.device("cpu")
MAX_REQUEST_POINTS = 1_000_000  # per request: its answer is one line, built in memory (about 100 MB at this size)


def answer(source: str) -> None:
    """Answer the requests of the file ``source`` (``-``: stdin) on stdout, each line flushed as it is done."""
    from .destinations import destination

    with contextlib.ExitStack() as stack:
        if source == "-":
            lines = sys.stdin.buffer
        else:
            try:
                lines = stack.enter_context(open(source, "rb"))  # noqa: SIM115 - closed by the stack
            except OSError as e:
                raise DataError(f"{source}: cannot read: {e.strerror}") from None
        out = stack.enter_context(destination(None))
        for line in Session().answers(_lines(lines, "stdin" if source == "-" else source)):
            out.write(line)
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


class Session:
    """Answers requests, keeping the most recently used compiled formulas."""

    def __init__(self) -> None:
        self.compiled: OrderedDict[bytes, tuple[transforms.Plan, pipeline.Evaluator, tuple[str, ...]]] = OrderedDict()
        self.formulas: OrderedDict[bytes, api.Formula] = OrderedDict()  # propagate's, by text

    def answers(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            if line.strip():
                yield self.answer(line)

    def answer(self, line: bytes) -> bytes:
        """One NDJSON line (with its newline) for one request line."""
        identity: Any = None
        try:
            request = orjson.loads(line)
            if not isinstance(request, dict):
                raise UsageError("a request must be a JSON object")
            identity = request.get("id")
            with spelled("fields"):  # messages name the request's fields
                body = self._evaluate(request)
        except orjson.JSONDecodeError as e:
            return _error(identity, ExitCode.USAGE, f"not valid JSON ({e})")
        except DiffcliError as e:
            return _error(identity, e.code, e.message, getattr(e, "position", None))
        except Exception as e:  # a bug: this request's answer says so, the stream goes on
            return _error(identity, ExitCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
        return b'{"id":' + orjson.dumps(identity) + b"," + body[1:] + b"\n"

    def _evaluate(self, request: dict[str, Any]) -> bytes:
        op = request.get("op")
        fields = {"check": CHECK_FIELDS, "scan": SCAN_FIELDS, "propagate": PROPAGATE_FIELDS}
        fields = fields.get(op, FIELDS) if isinstance(op, str) else FIELDS
        unknown = sorted(set(request) - {*fields, "id", "at", "grid", "precision"})
        if unknown:
            raise UsageError(f"unknown request field {unknown[0]!r}", hint=f"fields: {', '.join(sorted(fields))}")
        points = self._points(request)
        if len(points) > MAX_REQUEST_POINTS:
            raise UsageError(
                f"a request answers at most {MAX_REQUEST_POINTS:,} points (one line); this one has {len(points):,}",
                hint="for more, the command line streams: diffcli value EXPR --grid ...",
            )
        if op == "check":
            return self._check(request, points)
        if op == "propagate":
            return self._propagate(request, points)
        notes: list[str] = []
        if op == "scan":
            recurrence, steps, trajectory, method = self._scan(request, notes)
            columns, variables, kinks = recurrence.columns, recurrence.parameters, None
        else:
            plan, evaluate, parsed_notes = self._compiled(request)
            notes += parsed_notes
            columns, variables = [(q.path, q.column) for q in plan.quantities], plan.variables
            kinks = collections.Counter(evaluate.kinks)
        family = sources.family_columns(variables, (recurrence if kinks is None else plan).indexed, points.names)
        missing = [v for v in variables if v not in points.names and v not in family]
        if missing:
            raise UsageError(f'no value for {", ".join(missing)} in "at" or "grid"')
        layout = sinks.Layout([*points.names, *(["step"] if kinks is None and trajectory else [])], columns)
        stream = io.BytesIO()
        sink = sinks.JsonSink(stream, layout, _precision(request.get("precision")), lines=True)
        frame = points.take(np.arange(len(points))).with_columns(pl.col(c).alias(v) for v, c in family.items())
        if kinks is None:
            for result in recurrence.run(
                frame, steps, trajectory=trajectory, method=method, dtype=_dtype(request), device=CPU
            ):
                sink.write(result)
        else:
            sink.write(evaluate(frame))
            single = repr(_strings(request["expr"], "expr")[0])
            notes += [
                f"{output if len(plan.outputs) > 1 else single} is not differentiable at {count} of {sink.rows} "
                "points (a kink, tie, jump or branch boundary); the derivatives there follow the conventions in the "
                "README"
                for output, count in (collections.Counter(evaluate.kinks) - kinks).items()
            ]
        notes += [f"{c} is not finite in {n} of {sink.rows} rows (written as null)" for c, n in sink.non_finite.items()]
        objects = stream.getvalue().rstrip(b"\n").split(b"\n")
        body = objects[0] if len(objects) == 1 else b'{"results":[' + b",".join(objects) + b"]}"
        return body[:-1] + b',"notes":' + orjson.dumps(notes) + b"}" if notes else body

    def _check(self, request: dict[str, Any], points: sources.Points) -> bytes:
        """A check request: the report's rows, and whether every engine agreed."""
        formula = api.formula(_strings(request.get("expr"), "expr"))
        probe = formula.compiled("jacobian", wrt=_names(request.get("wrt"))).plan
        family = sources.family_columns(probe.variables, probe.indexed, points.names)
        missing = [v for v in probe.variables if v not in points.names and v not in family]
        if missing:
            raise UsageError(f'no value for {", ".join(missing)} in "at" or "grid"')
        rows = formula.check(
            points.take(np.arange(len(points))),
            order=_integer(request.get("order"), "order") or 1,
            wrt=probe.wrt,
            rtol=_tolerance(request.get("rtol"), "rtol"),
            atol=_tolerance(request.get("atol"), "atol"),
            allow_kinks=_flag(request.get("allow_kinks"), "allow_kinks"),
            dtype=_dtype(request),
        )
        notes = {"notes": list(formula.notes)} if formula.notes else {}
        answer = {"report": rows, "ok": all(r["ok"] for r in rows), **notes}
        return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)

    def _propagate(self, request: dict[str, Any], points: sources.Points) -> bytes:
        """A propagate request: its results as the command's JSON, and its notes."""
        key = orjson.dumps({k: request.get(k) for k in ("expr", "aux")}, option=orjson.OPT_SORT_KEYS)
        if key not in self.formulas:
            aux = request.get("aux") or {}
            if not isinstance(aux, dict) or not all(isinstance(e, str) for e in aux.values()):
                raise UsageError('"aux" must be an object of name: expression')
            self.formulas[key] = api.formula(_strings(request.get("expr"), "expr"), aux)
            if len(self.formulas) > CACHED:
                self.formulas.popitem(last=False)
        formula = self.formulas[key]
        self.formulas.move_to_end(key)
        samples, seed = _integer(request.get("samples"), "samples"), _integer(request.get("seed"), "seed")
        order = _integer(request.get("order"), "order")
        order = 1 if order is None else order
        coverage, tolerance = request.get("coverage"), request.get("tolerance")
        check = _flag(request.get("check"), "check")
        for field in ("samples", "seed", "tolerance"):
            if request.get(field) is not None and not check:
                raise UsageError(f'"{field}" sets the Monte Carlo of "check": add "check": true')
        plan = formula.compiled("value").plan
        keep = uncertainty.bases(plan.variables, plan.indexed)
        given = uncertainty.Given.of(request.get("sigma"), request.get("correlation"), request.get("covariance"), keep)
        if given.numbers:  # in "at", as the command line writes them
            names = [sources.uncertainty(n) for n in given.numbers]
            for twice in sorted(set(names) & set(points.names)):
                raise UsageError(f'{twice} is given by "at" and by "sigma" or "covariance"')
            points = sources.Points((*points.groups, sources.Group(tuple(names), (tuple(given.numbers.values()),))))
        propagation = formula.propagation(
            points.names,
            sigma=given.columns,
            correlation=given.pairs,
            order=order,
            coverage=coverage,
            check=check,
            samples=uncertainty.SAMPLES if samples is None else samples,
            seed=seed or 0,
            tolerance=uncertainty.TOLERANCE if tolerance is None else tolerance,
            dtype=_dtype(request),
            device=CPU,
        )
        frame = points.take(np.arange(len(points)))
        results = api.propagated(propagation, frame)
        stream = io.BytesIO()
        sink = sinks.JsonSink(
            stream, sinks.Layout(points.names, propagation.columns), _precision(request.get("precision")), lines=True
        )
        sink.write(frame.hstack(pl.DataFrame({c: r.cpu().numpy() for c, r in results.items()})))
        notes = [*formula.notes, *propagation.notes(sink.rows, order)]
        if given.left_out:
            notes.append(f'"covariance": {", ".join(given.left_out)} not in the formula (left out)')
        if propagation.monte_carlo is not None and propagation.monte_carlo.failures:
            notes.append(propagation.monte_carlo.verdict(sink.rows))
        notes += [f"{c} is not finite in {n} of {sink.rows} rows (written as null)" for c, n in sink.non_finite.items()]
        objects = stream.getvalue().rstrip(b"\n").split(b"\n")
        body = objects[0] if len(objects) == 1 else b'{"results":[' + b",".join(objects) + b"]}"
        return body[:-1] + b',"notes":' + orjson.dumps(notes) + b"}" if notes else body

    def _scan(self, request: dict[str, Any], notes: list[str]) -> tuple[Any, int, bool, str]:
        """A scan request: the compiled recurrence, its steps, and how to run it."""
        updates = [self._parse(e, notes) for e in _strings(request.get("expr"), "expr")]
        outputs = request.get("outputs") or {}
        if not isinstance(outputs, dict) or not all(isinstance(e, str) for e in outputs.values()):
            raise UsageError('"outputs" must be an object of name: expression')
        for name in outputs:
            language.option_name(name, '"outputs"')
        steps = _integer(request.get("steps"), "steps")
        if steps is None or steps < 0:
            raise UsageError('"steps" must be an integer, 0 or more')
        method = request.get("method") or "auto"
        trajectory = _flag(request.get("trajectory"), "trajectory")
        api.check_method(method, trajectory)
        recurrence = api.recurrence_of(
            updates,
            _numbers(request.get("init"), "init") or {},
            outputs=[language.Parsed(n, self._parse(e, notes).expr) for n, e in outputs.items()],
            wrt=_names(request.get("wrt")),
        )
        return recurrence, steps, trajectory, method

    @staticmethod
    def _parse(text: str, notes: list[str]) -> language.Parsed:
        parsed = language.parse(text)
        notes += parsed.notes
        return parsed

    def _compiled(self, request: dict[str, Any]) -> tuple[transforms.Plan, pipeline.Evaluator, tuple[str, ...]]:
        """The plan, the evaluator and the parser's notes of a request's formula, each made once."""
        key = orjson.dumps({k: request.get(k) for k in FIELDS}, option=orjson.OPT_SORT_KEYS)
        if key in self.compiled:
            self.compiled.move_to_end(key)
            return self.compiled[key]
        operation = request.get("op")
        if operation not in transforms.OPERATIONS:
            raise UsageError(f"unknown op {operation!r}", hint=f"ops: {', '.join(transforms.OPERATIONS)}")
        aux = request.get("aux") or {}
        if not isinstance(aux, dict) or not all(isinstance(e, str) for e in aux.values()):
            raise UsageError('"aux" must be an object of name: expression')
        formula = api.formula(_strings(request.get("expr"), "expr"), aux)
        plan = formula.compiled(
            operation,
            wrt=_names(request.get("wrt")),
            tangent=_numbers(request.get("tangent"), "tangent"),
            cotangent=_numbers(request.get("cotangent"), "cotangent"),
            order=_integer(request.get("order"), "order"),
        )
        compiled = plan.plan, pipeline.Evaluator(plan, {}, _dtype(request), CPU), formula.notes
        self.compiled[key] = compiled
        if len(self.compiled) > CACHED:
            self.compiled.popitem(last=False)
        return compiled

    def _points(self, request: dict[str, Any]) -> sources.Points:
        at = request.get("at") or []
        if not isinstance(at, (dict, list)):
            raise UsageError('"at" must be an object of name: number, or a list of them')
        assignments = [
            {variable_name(n): v for n, v in (_numbers(point, "at") or {}).items()}
            for point in ([at] if isinstance(at, dict) else at)
        ]
        for name in {n for a in assignments for n in a}:
            language.option_name(name, '"at"')
        return sources.points(
            assignments, [sources.grid(text) for text in _strings(request.get("grid") or [], "grid", empty=True)]
        )


def _dtype(request: dict[str, Any]) -> torch.dtype:
    """The torch dtype of a request's ``"dtype"``: its computations run on the CPU."""
    return devices.dtype(request.get("dtype") or "float64")


def _names(value: Any) -> list[str]:
    """``"wrt"``: a comma-separated string or a list of names."""
    return [n.strip() for n in value.split(",")] if isinstance(value, str) else _strings(value or [], "wrt", empty=True)


def _flag(value: Any, field: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise UsageError(f'"{field}" must be true or false')
    return bool(value)


def _tolerance(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf"):
        raise UsageError(f'"{field}" must be a finite number >= 0')
    return float(value)


def _strings(value: Any, field: str, *, empty: bool = False) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not (values or empty) or not all(isinstance(v, str) for v in values):
        raise UsageError(f'"{field}" must be a string or a list of strings')
    return values


def _numbers(value: Any, field: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
    ):
        raise UsageError(f'"{field}" must be an object of name: number')
    return {str(k): float(v) for k, v in value.items()}


def _integer(value: Any, field: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise UsageError(f'"{field}" must be an integer')
    return value


def _precision(value: Any) -> int | None:
    if value is None:
        return None
    if _integer(value, "precision") is None or not 1 <= value <= 17:
        raise UsageError('"precision" must be an integer from 1 to 17')
    return value


def _error(identity: Any, code: int, message: str, position: int | None = None) -> bytes:
    error: dict[str, Any] = {"code": int(code), "message": message}
    if position is not None:
        error["position"] = position  # 0-based, in the expression's text
    return orjson.dumps({"id": identity, "error": error}) + b"\n"
