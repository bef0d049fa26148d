"""Startup costs, each next to its baseline in the same run (these machines are noisy: compare the
ratios). Runs `--help`, one point query cold, one through `diffcli serve`, and 100 and 1,000 point
queries through `diffcli run`, beside `python -c "import typer, rich"`, `python -c "import torch,
sympy"` and `qalc -t` (Debian package qalc; left out if it is not installed). Prints Markdown.

    python bench/startup.py --diffcli .venv/bin/diffcli --python .venv/bin/python >> bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time

QUERY = ["grad", "x**2*sin(y)", "--at", "x=1,y=2", "--format", "json"]


def wall(command: list[str], env: dict[str, str], stdin: bytes | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, input=stdin, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def requests(count: int) -> bytes:
    rng = random.Random(count)
    lines = [
        json.dumps(
            {"id": i, "op": "grad", "expr": "x**2*sin(y)", "at": {"x": rng.uniform(-2, 2), "y": rng.uniform(-2, 2)}}
        )
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffcli", default="diffcli")
    parser.add_argument("--python", default="python3", help="the Python diffcli runs on")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    diffcli, python = shlex.split(args.diffcli), args.python

    runtime = tempfile.mkdtemp()
    cold = {**os.environ, "DIFFCLI_NO_SERVER": "1"}
    warm = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    warm.pop("DIFFCLI_NO_SERVER", None)
    subprocess.run([*diffcli, "serve", "--background", "--idle", "600"], env=warm, check=True)
    subprocess.run([*diffcli, *QUERY], env=warm, stdout=subprocess.DEVNULL, check=True)  # past the warm-up

    jobs: dict[str, tuple[list[str], dict[str, str], bytes | None]] = {
        'python -c "import typer, rich"': ([python, "-c", "import typer, rich"], cold, None),
        "diffcli --help": ([*diffcli, "--help"], cold, None),
        'python -c "import torch, sympy"': ([python, "-c", "import torch, sympy"], cold, None),
        "diffcli grad (cold)": ([*diffcli, *QUERY], cold, None),
        "diffcli grad (through serve)": ([*diffcli, *QUERY], warm, None),
        "diffcli run: 100 queries": ([*diffcli, "run"], cold, requests(100)),
        "diffcli run: 1,000 queries": ([*diffcli, "run"], cold, requests(1000)),
    }
    if shutil.which("qalc"):
        jobs['qalc -t "diff(x^2*sin(x), x)"'] = (["qalc", "-t", "diff(x^2*sin(x), x)"], cold, None)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, (command, env, stdin) in jobs.items():
            times[name].append(wall(command, env, stdin))
    subprocess.run([*diffcli, "serve", "--stop"], env=warm, check=False)

    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"# Startup: median of {args.rounds} alternating rounds\n")
    print("| command | median wall (s) |")
    print("|---|---:|")
    for name, value in median.items():
        print(f"| {name} | {value:.3f} |")
    print()
    cold_query = median["diffcli grad (cold)"]
    typer_rich = median['python -c "import typer, rich"']
    torch_sympy = median['python -c "import torch, sympy"']
    print(f"- `--help` / `import typer, rich`: **{median['diffcli --help'] / typer_rich:.2f}x**")
    print(f"- cold query / `import torch, sympy`: **{cold_query / torch_sympy:.2f}x**")
    print(f"- query through the server: **{median['diffcli grad (through serve)']:.3f} s**", end="")
    qalc = median.get('qalc -t "diff(x^2*sin(x), x)"')
    print(f", qalc {qalc:.3f} s" if qalc is not None else " (qalc not installed)")
    print(f"- 1,000 `run` queries / one cold query: **{median['diffcli run: 1,000 queries'] / cold_query:.2f}x**")


if __name__ == "__main__":
    main()
