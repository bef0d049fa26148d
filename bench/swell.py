"""Expression swell: diffcli against JAX and torch.func on formula families that grow, in one run.

Three families, each written out as diffcli text and built by the same loop in the JAX and
torch.func scripts (the same function, never an eval of the text):

1. ``chain:N``: sin(x1*x2)+sin(x2*x3)+...+sin(x{N-1}*xN); ``grad`` over N variables.
2. ``network:W``: a 2-layer tanh network on x1..xW, W units a layer, h_j = tanh(sum_i w_ji*x_i + b_j),
   g_k = tanh(sum_j v_kj*h_j + c_k), output sum_k u_k*g_k, every h_j written out inside every g_k;
   weights ``random.Random(1).uniform(-1, 1)`` to 3 decimals; ``grad``.
3. ``nested:D:K``: D levels alternating sin(1.1*U+0.2) and tanh(0.9*U-0.1) from U = x (sin
   innermost); ``derivative --wrt x --order K``.

Each measurement is a process of its own (wall time includes the imports) and all three read the
same CSV of ``--rows`` rows (uniform(-1, 1), numpy default_rng(0)) and write a CSV with polars.
JAX: ``jit(vmap(value_and_grad(f)))`` or K nested ``grad`` under ``jit(vmap)``, float64; the script
times its first call on the batch and a second one, and first - second is reported as its compile
time. torch.func: ``vmap(grad_and_value(f))`` or K nested ``grad`` under ``vmap``. After each case
diffcli's columns and torch.func's are compared with JAX's (the largest difference relative to the
column's largest magnitude; 1e-10 or less agrees). Tools alternate within each of ``--rounds``
rounds and the median wall is shown; a run that fails or passes ``--timeout`` is shown as its
last line of stderr or "> T s" and is not run again. Prints Markdown.

diffcli runs twice per round: a first run (``DIFFCLI_NO_CACHE=1``: it parses, differentiates and
compiles) and the same command again, its compiled formula read from the cache.

``--curve`` measures only diffcli's work before the first row, inside one process per formula
after the imports (parsing, the plan of derivatives, compiling it to torch calls), beside the
length of each formula's text and its number of torch calls.

diffcli gets the text last, after ``--`` (network:8 starts with a minus sign, which would be read as
an option). A text over 128 KiB (network:32) cannot be an argument at all on Linux (E2BIG): that
is reported as the run's failure, like diffcli's own limits (128 levels of nesting, 100,000
characters; in ``--curve`` the text is no argument, so only the limits apply).

    python bench/swell.py --diffcli .venv/bin/diffcli >> bench/RESULTS.md
    python bench/swell.py --curve --diffcli .venv/bin/diffcli >> bench/RESULTS.md
    python bench/swell.py --cases quick --rows 100 --rounds 1 --diffcli .venv/bin/diffcli  # smoke test

``--cases`` is ``main`` (the default: chain:100, network:16, nested:20:4, nested:20:6, nested:40:4),
``quick`` (chain:10, network:4, nested:5:4), or a comma-separated list of these and cases such as
``chain:50,network:8,nested:10:4``; with ``--curve`` the default is depths 5, 10, 20, 40 (order 4),
widths 4, 8, 16, 32 and 2 to 200 variables.
Run it with a Python that has jax, torch and polars (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from batch import _cpu  # bench/ is on sys.path when this runs as `python bench/swell.py`

CASES = {
    "main": "chain:100,network:16,nested:20:4,nested:20:6,nested:40:4",
    "quick": "chain:10,network:4,nested:5:4",
    "curve": "nested:5:4,nested:10:4,nested:20:4,nested:40:4,network:4,network:8,network:16,network:32,"
    "chain:2,chain:10,chain:50,chain:100,chain:200",
}
TOLERANCE = 1e-10
ENV = {**os.environ, "DIFFCLI_NO_SERVER": "1"}

# The function, built by the same code for JAX (M = jax.numpy) and torch.func (M = torch).
FAMILY = """
import json, sys, time
def function(spec, M):
    family, size = spec["family"], spec["size"]
    if family == "chain":
        return lambda x: M.sum(M.sin(x[:-1] * x[1:]))
    if family == "network":
        W, b, V, c, u = (M.asarray(spec["weights"][k], dtype=M.float64) for k in "WbVcu")
        return lambda x: M.dot(u, M.tanh(V @ M.tanh(W @ x + b) + c))
    def nested(x):
        for level in range(size):
            x = M.sin(1.1 * x + 0.2) if level % 2 == 0 else M.tanh(0.9 * x - 0.1)
        return x
    return nested
def write(spec, value, derivative, side):
    import numpy as np, polars as pl
    value, derivative = np.asarray(value), np.asarray(derivative)
    if spec["order"]:
        columns = {"derivative": derivative}
    else:
        columns = {f"grad_{n}": derivative[:, i] for i, n in enumerate(spec["columns"])}
    pl.DataFrame({"value": value, **columns}).write_csv(spec["output"])
    with open(spec["side"], "w") as file:
        json.dump(side, file)
spec = json.loads(sys.argv[1])
"""

JAX = (
    FAMILY
    + """
import jax, jax.numpy as jnp, numpy as np, polars as pl
jax.config.update("jax_enable_x64", True)
f = function(spec, jnp)
x = jnp.asarray(pl.read_csv(spec["input"]).select(spec["columns"]).to_numpy())
if spec["order"]:
    x, g = x[:, 0], f
    for _ in range(spec["order"]):
        g = jax.grad(g)
    program = jax.jit(jax.vmap(lambda x: (f(x), g(x))))
else:
    program = jax.jit(jax.vmap(jax.value_and_grad(f)))
start = time.perf_counter()
jax.block_until_ready(program(x))
first = time.perf_counter() - start
start = time.perf_counter()
value, derivative = jax.block_until_ready(program(x))
second = time.perf_counter() - start
write(spec, value, derivative, {"first": first, "second": second, "version": jax.__version__})
"""
)

TORCH = (
    FAMILY
    + """
import numpy as np, polars as pl, torch
f = function(spec, torch)
x = torch.from_numpy(np.ascontiguousarray(pl.read_csv(spec["input"]).select(spec["columns"]).to_numpy()))
if spec["order"]:
    x, g = x[:, 0], f
    for _ in range(spec["order"]):
        g = torch.func.grad(g)
    value, derivative = torch.func.vmap(lambda x: (f(x), g(x)))(x)
else:
    derivative, value = torch.func.vmap(torch.func.grad_and_value(f))(x)
write(spec, value, derivative, {"version": torch.__version__})
"""
)

INPUTS = """
import json, sys
import numpy as np, polars as pl
for rows, columns, path in json.loads(sys.argv[1]):
    data = np.random.default_rng(0).uniform(-1, 1, (rows, len(columns)))
    pl.DataFrame({n: data[:, i] for i, n in enumerate(columns)}).write_csv(path)
"""


# The formula families as diffcli text.


def chain(n: int) -> str:
    return "+".join(f"sin(x{i}*x{i + 1})" for i in range(1, n))


def network_weights(width: int) -> dict[str, list]:
    rng = random.Random(1)

    def draw() -> float:
        return float(f"{rng.uniform(-1, 1):.3f}")

    matrix = lambda: [[draw() for _ in range(width)] for _ in range(width)]  # noqa: E731
    vector = lambda: [draw() for _ in range(width)]  # noqa: E731
    W, b, V, c, u = matrix(), vector(), matrix(), vector(), vector()  # noqa: N806
    return {"W": W, "b": b, "V": V, "c": c, "u": u}


def affine(weights: list[float], terms: list[str], constant: float | None) -> str:
    parts = [f"{w:.3f}*{t}" for w, t in zip(weights, terms)] + ([f"{constant:.3f}"] if constant is not None else [])
    return parts[0] + "".join(p if p.startswith("-") else "+" + p for p in parts[1:])


def network(width: int) -> str:
    weights = network_weights(width)
    xs = [f"x{i}" for i in range(1, width + 1)]
    hidden = [f"tanh({affine(weights['W'][j], xs, weights['b'][j])})" for j in range(width)]
    outer = [f"tanh({affine(weights['V'][k], hidden, weights['c'][k])})" for k in range(width)]
    return affine(weights["u"], outer, None)


def nested(depth: int) -> str:
    text = "x"
    for level in range(depth):
        text = f"sin(1.1*{text}+0.2)" if level % 2 == 0 else f"tanh(0.9*{text}-0.1)"
    return text


@dataclass
class Case:
    family: str
    size: int
    order: int = 0  # 0: grad; K: the K-th derivative in x

    @property
    def name(self) -> str:
        return f"{self.family}:{self.size}" + (f":{self.order}" if self.order else "")

    @property
    def text(self) -> str:
        return {"chain": chain, "network": network, "nested": nested}[self.family](self.size)

    @property
    def columns(self) -> list[str]:
        return ["x"] if self.family == "nested" else [f"x{i}" for i in range(1, self.size + 1)]

    def command(self, diffcli: list[str], source: Path, output: Path) -> list[str]:
        """The text goes last, after ``--``: one that starts with '-' (network:8 does) would be taken for an option."""
        options = ["derivative", "--wrt", "x", "--order", str(self.order)] if self.order else ["grad"]
        return [*diffcli, *options, "--input", str(source), "--output", str(output), "--", self.text]

    @property
    def label(self) -> str:
        what = f"order {self.order}" if self.order else "grad"
        return {"chain": "chain", "network": "network width", "nested": "nested depth"}[self.family] + (
            f" {self.size}, {what}"
        )


def parse_cases(text: str) -> list[Case]:
    cases = []
    for item in ",".join(CASES.get(name.strip(), name) for name in text.split(",")).split(","):
        family, *numbers = item.strip().split(":")
        if family not in ("chain", "network", "nested") or len(numbers) != (2 if family == "nested" else 1):
            raise SystemExit(f"--cases: {item!r} is not chain:N, network:W or nested:D:K")
        cases.append(Case(family, *(int(n) for n in numbers)))
    return cases


@dataclass
class Run:
    wall: float | None  # None: failed, see message
    rss: float  # MiB
    message: str = ""


def run(command: list[str], timeout: float) -> Run:
    """Wall seconds and peak RSS in MiB of one command, from wait4, killed after ``timeout`` seconds.

    Linux counts a child's memory from before its exec too, so this process stays small: it imports
    nothing heavy, and inputs and comparisons are made in children of their own. Unlike batch.run a
    failure is a result here (its last line of stderr), not the end of the benchmark.
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        try:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=ENV)
        except OSError as error:  # e.g. an argument over the kernel's 128 KiB (E2BIG)
            return Run(None, 0.0, f"cannot start: {error.strerror}")
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout, kill)  # Popen.kill polls first: a reaped child is not signalled
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted: leave nothing behind
            process.kill()
            process.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        rss = usage.ru_maxrss / 1024
        if killed.is_set():
            return Run(None, rss, f"> {timeout:g} s")
        if process.returncode:
            errors.seek(0)
            return Run(None, rss, last_error(errors.read().decode(errors="replace"), process.returncode))
        return Run(wall, rss)


def last_error(stderr: str, status: int) -> str:
    """The line of ``stderr`` that says what went wrong: the last one that says 'error:' (not diffcli's ^ under
    the text, nor the expression a polars error quotes), else the last one."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = [line for line in lines if "error:" in line.lower()] or lines
    message = said[-1].removeprefix("diffcli: error: ") if said else f"exit status {status}"
    return message[:160].replace("|", "\\|")


@dataclass
class Measure:
    walls: list[float] = field(default_factory=list)
    rss: float = 0.0
    message: str = ""  # set once a run failed; it is not run again
    extra: list[dict] = field(default_factory=list)  # the scripts' side files

    def add(self, result: Run, side: Path | None = None) -> None:
        self.rss = max(self.rss, result.rss)
        if result.wall is None:
            self.message = result.message
            return
        self.walls.append(result.wall)
        if side is not None and side.exists():
            self.extra.append(json.loads(side.read_text()))

    @property
    def median(self) -> float | None:
        return None if self.message or not self.walls else statistics.median(self.walls)

    def cell(self) -> str:
        if self.message:
            return ("" if self.message.startswith(">") else "fails: ") + self.message
        return f"{self.median:.2f}"


def make_inputs(python: str, files: list[tuple[int, list[str], Path]]) -> None:
    subprocess.run([python, "-c", INPUTS, json.dumps([(r, c, str(p)) for r, c, p in files])], check=True)


def compare(theirs: str, *others: str) -> None:
    """Print, as JSON, for each of ``others``: the largest difference from ``theirs`` over its
    columns, relative to each column's largest magnitude, and the column where it is."""
    import numpy as np
    import polars as pl

    def read(path: str) -> pl.DataFrame:  # all text, then numbers: "nan" would make a column of strings
        return pl.read_csv(path, infer_schema=False).with_columns(pl.all().cast(pl.Float64))

    reference = read(theirs)
    answers = []
    for path in others:
        if not Path(path).exists():
            answers.append({"error": "no output"})
            continue
        try:
            frame = read(path)
        except Exception as error:  # any unreadable output is a result, not the end
            answers.append({"error": "unreadable: " + str(error).splitlines()[0][:100]})
            continue
        missing = [c for c in reference.columns if c not in frame.columns]
        if missing or frame.height != reference.height:
            answers.append({"error": f"no column {missing[0]}" if missing else "rows differ"})
            continue
        worst: dict = {"worst": 0.0, "column": ""}
        for column in reference.columns:
            a, b = frame[column].to_numpy(), reference[column].to_numpy()
            same = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities too
            difference = np.where(same, 0.0, np.abs(a - b))
            difference = np.where(np.isnan(difference), np.inf, difference)  # NaN against a number
            finite = np.abs(b[np.isfinite(b)])
            scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
            relative = float(difference.max()) / scale
            if relative > worst["worst"]:
                worst = {"worst": relative, "column": column}
        answers.append(worst)
    print(json.dumps(answers))


def agreement(python: str, theirs: Path, *others: Path) -> list[dict]:
    if not theirs.exists():
        return [{"error": "no JAX output"} for _ in others]
    done = subprocess.run(
        [python, __file__, "--compare", str(theirs), *map(str, others)], capture_output=True, text=True
    )
    if done.returncode:
        return [{"error": "comparison failed: " + last_error(done.stderr, done.returncode)} for _ in others]
    return json.loads(done.stdout)


def agree_cell(found: dict | None) -> str:
    if found is None:
        return "—"
    if "error" in found:
        return found["error"]
    mark = "yes" if found["worst"] <= TOLERANCE else f"**NO** ({found['column']})"
    return f"{mark}, {found['worst']:.1e}"


def both(first: dict | None, second: dict | None) -> dict | None:
    return first if second is None else worse(first, second)


def worse(old: dict | None, new: dict) -> dict:
    if old is None or "error" in new:
        return new
    if "error" in old:
        return old
    return new if new["worst"] > old["worst"] else old


def main_table(args: argparse.Namespace, diffcli: list[str], cases: list[Case], folder: Path) -> None:
    make_inputs(args.python, [(args.rows, case.columns, folder / f"{case.name}.csv") for case in cases])
    tools = ["diffcli", "cached", "jax", "torch"]
    for case in cases:  # the cache made warm: "cached" is the same command run again
        warm = folder / f"{case.name}.warm.csv"
        subprocess.run(case.command(diffcli, folder / f"{case.name}.csv", warm), env=ENV, capture_output=True)
    measures = {(case.name, tool): Measure() for case in cases for tool in tools}
    agreed: dict[tuple[str, str], dict | None] = {(case.name, tool): None for case in cases for tool in tools}
    for round_ in range(args.rounds):
        for case in cases:
            source = folder / f"{case.name}.csv"
            outputs = {tool: folder / f"{case.name}.{tool}.csv" for tool in tools}
            spec = {
                "family": case.family,
                "size": case.size,
                "order": case.order,
                "columns": case.columns,
                "input": str(source),
                "weights": network_weights(case.size) if case.family == "network" else None,
            }
            for tool in tools[round_ % 4 :] + tools[: round_ % 4]:
                measure = measures[case.name, tool]
                if measure.message:
                    continue
                outputs[tool].unlink(missing_ok=True)
                side = folder / f"{case.name}.{tool}.json"
                side.unlink(missing_ok=True)
                if tool == "diffcli":  # a first run: parse, differentiate, compile
                    command = ["env", "DIFFCLI_NO_CACHE=1", *case.command(diffcli, source, outputs[tool])]
                elif tool == "cached":
                    command = case.command(diffcli, source, outputs[tool])
                else:
                    script = JAX if tool == "jax" else TORCH
                    command = [
                        args.python,
                        "-c",
                        script,
                        json.dumps({**spec, "output": str(outputs[tool]), "side": str(side)}),
                    ]
                measure.add(run(command, args.timeout), side)
            ran = [tool for tool in ("diffcli", "cached", "torch") if not measures[case.name, tool].message]
            if ran:
                found = agreement(args.python, outputs["jax"], *(outputs[tool] for tool in ran))
                for tool, result in zip(ran, found):
                    agreed[case.name, tool] = worse(agreed[case.name, tool], result)

    versions = {tool: m.extra[0]["version"] for (_, tool), m in measures.items() if m.extra}
    print(f"# Expression swell: diffcli, JAX and torch.func, {args.rows:,} rows, median of {args.rounds} rounds\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}")
    print(f"(JAX {versions.get('jax', '?')}, torch {versions.get('torch', '?')}).")
    print(f"Command: `python bench/swell.py --rows {args.rows} --rounds {args.rounds} --cases {args.cases}`.\n")
    print(
        "| case | text (chars) | diffcli (s) | diffcli, cached (s) | JAX total (compile; 2nd call) (s) "
        "| torch.func (s) | diffcli / JAX | cached / JAX | peak RSS diffcli / JAX / torch.func (MiB) "
        "| diffcli = JAX | torch.func = JAX |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    for case in cases:
        ours, cached, jax, torch = (measures[case.name, tool] for tool in tools)
        jax_cell = jax.cell()
        if jax.median is not None and jax.extra:
            compile_ = statistics.median(e["first"] - e["second"] for e in jax.extra)
            second = statistics.median(e["second"] for e in jax.extra)
            jax_cell += f" ({compile_:.2f}; {second:.2g})"
        ratio, again = (f"{m.median / jax.median:.2f}x" if m.median and jax.median else "—" for m in (ours, cached))
        memory = " / ".join(f"{m.rss:.0f}" if m.rss else "—" for m in (ours, jax, torch))
        print(
            f"| {case.label} | {len(case.text):,} | {ours.cell()} | {cached.cell()} | {jax_cell} | {torch.cell()} "
            f"| {ratio} | {again} | {memory} "
            f"| {agree_cell(both(agreed[case.name, 'diffcli'], agreed[case.name, 'cached']))} "
            f"| {agree_cell(agreed[case.name, 'torch'])} |"
        )
    print(
        "\nEach program is one process from start to exit, imports and CSV input and output included. diffcli: a "
        "first run (DIFFCLI_NO_CACHE=1: it parses, differentiates and compiles); cached: the command run again, "
        "its compiled formula read from the cache (Taylor-mode derivatives, order 3 and up, are not cached). "
        "JAX's total "
        "includes a second call on the batch, timed to separate the compile (first call less second). "
        f"'=' is the largest difference from JAX's column relative to the column's largest magnitude "
        f"(at most {TOLERANCE:g} agrees).\n"
    )


def interpreter(diffcli: list[str], fallback: str) -> str:
    """diffcli's own Python, from its #! line (a console script's), else ``fallback``."""
    path = shutil.which(diffcli[0])
    try:
        first = Path(path).read_bytes()[:200].split(b"\n", 1)[0].decode() if path else ""
    except OSError:
        first = ""
    return first[2:].strip().split()[0] if first.startswith("#!") and "python" in first else fallback


CURVE = """
import json, sys, time
import torch, sympy, polars  # imported first: not the formula's cost
from diffcli import api
text, command, options = json.loads(sys.argv[1])
start = time.perf_counter()
formula = api.formula(text)
parsed = time.perf_counter()
compiled = formula.compiled(command, **options)
planned = time.perf_counter()
compiled.evaluate
done = time.perf_counter()
taylor = compiled.plan.taylor_mode
print(json.dumps({"parse": parsed - start, "plan": planned - parsed, "compile": done - planned,
                  "calls": len(compiled.evaluation.program.calls),
                  "path": "Taylor" if taylor else "graph" if compiled.plan.tape is not None else "symbolic"}))
"""


def curve_table(args: argparse.Namespace, diffcli: list[str], cases: list[Case], folder: Path) -> None:
    """diffcli's work before the first row, in one process per case after the imports: parsing,
    the derivatives' plan, compiling it (a Taylor-mode derivative's series come per batch)."""
    python = interpreter(diffcli, args.python)
    found: dict[str, list[dict]] = {case.name: [] for case in cases}
    failed: dict[str, str] = {}
    for _ in range(args.rounds):
        for case in cases:
            if case.name in failed:
                continue
            options = {"wrt": "x", "order": case.order} if case.order else {}
            command = "derivative" if case.order else "grad"
            done = subprocess.run(
                [python, "-c", CURVE, json.dumps([case.text, command, options])],
                capture_output=True,
                text=True,
                timeout=args.timeout,
                env=ENV,
            )
            if done.returncode:
                failed[case.name] = (done.stderr.strip().splitlines() or ["failed"])[-1][:100]
            else:
                found[case.name].append(json.loads(done.stdout))
    print(f"# Expression swell: diffcli's work before the first row, median of {args.rounds} rounds\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}.")
    print(f"Command: `python bench/swell.py --curve --rounds {args.rounds} --cases {args.cases}`.\n")
    print(
        "Measured inside one process per case, after `import torch, sympy, polars`: `diffcli.formula(text)` "
        "(parse), `.compiled(command)` (the plan: derivatives), `.evaluate` (lowering to torch calls). "
        "Calls: the torch calls of the compiled program (a Taylor-mode derivative's series arithmetic runs per "
        "batch, linear in the formula's nodes).\n"
    )
    print("| case | text (chars) | path | parse (s) | plan (s) | compile (s) | total (s) | torch calls |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for case in cases:
        if case.name in failed:
            print(f"| {case.label} | {len(case.text):,} | fails: {failed[case.name]} | | | | | |")
            continue
        runs = found[case.name]
        median = {k: statistics.median(r[k] for r in runs) for k in ("parse", "plan", "compile")}
        total = statistics.median(r["parse"] + r["plan"] + r["compile"] for r in runs)
        print(
            f"| {case.label} | {len(case.text):,} | {runs[0]['path']} | {median['parse']:.3f} | {median['plan']:.3f} "
            f"| {median['compile']:.3f} | {total:.3f} | {runs[0]['calls']:,} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run is killed")
    parser.add_argument("--cases", help="main, quick, or a list such as chain:50,network:8,nested:10:4")
    parser.add_argument("--curve", action="store_true", help="only diffcli's work before the first row")
    parser.add_argument("--diffcli", default="diffcli", help="the diffcli command to measure")
    parser.add_argument("--python", default=sys.executable, help="a Python with jax, torch and polars")
    parser.add_argument("--compare", nargs="+", metavar="CSV", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    args.cases = args.cases or ("curve" if args.curve else "main")
    cases = parse_cases(args.cases)
    diffcli = shlex.split(args.diffcli)
    with tempfile.TemporaryDirectory() as folder:
        (curve_table if args.curve else main_table)(args, diffcli, cases, Path(folder))


if __name__ == "__main__":
    main()
