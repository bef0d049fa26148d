"""diffcli's batch path against the hand-written reference scripts, alternating, in one run.

Makes the points with ../shared/bench/make_points.py, then runs rounds of
``diffcli grad`` / ``reference_grad.py`` and ``diffcli hessian`` / ``reference_hessian.py``
(and ``naive_grad.py`` once, for perspective), each diffcli command with its compiled formula
in the cache (warmed on a small file first: a command run again) and without it
(``DIFFCLI_NO_CACHE=1``: a first run), checks that the outputs agree to 1e-12, and
prints median wall times, their ratios and each program's peak RSS as Markdown. These machines
are noisy: only the ratios within one run mean anything.

    python bench/batch.py --rows 5000000 --rounds 3 --diffcli .venv/bin/diffcli > bench/RESULTS.md

Run it with a Python that has polars, torch, jax and pandas (the reference scripts need them):
see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
F = "sin(x)*exp(-y**2) + log(1 + z**2)*x*y"


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of one command, from wait4.

    Linux counts a child's memory from before its exec too, so this process must stay small:
    it imports nothing heavy, and comparisons run in children of their own.
    """
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {shlex.join(command)}\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def agree(python: str, ours: Path, theirs: Path) -> str:
    """How far two CSV outputs differ, computed in a child (this process stays small, see run)."""
    return subprocess.run(
        [python, __file__, "--compare", str(ours), str(theirs)], check=True, capture_output=True, text=True
    ).stdout.strip()


def compare(ours: str, theirs: str) -> None:
    """Print the largest difference over all columns relative to each column's scale (max |value|),
    and the share of numbers that differ by more than 1e-12 relative to themselves."""
    import numpy as np
    import polars as pl

    a, b = pl.read_csv(ours), pl.read_csv(theirs)
    scaled, loose, total = 0.0, 0, 0
    for column in b.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        difference = np.abs(x - y)
        scaled = max(scaled, float(difference.max() / np.abs(y).max()))
        loose += int((difference > 1e-12 * np.abs(y)).sum())
        total += len(y)
    print(f"{scaled:.1e} of the column scale; {loose / total:.1e} of the numbers beyond 1e-12 of themselves")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small", type=int, default=1_000_000, help="rows of the file for the memory ratio")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--diffcli", default="diffcli", help="the diffcli command to measure")
    parser.add_argument("--python", default=sys.executable, help="the Python for the reference scripts")
    parser.add_argument("--compare", nargs=2, metavar=("OURS", "THEIRS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["DIFFCLI_NO_SERVER"] = "1"  # cold: a warm server of another checkout could answer
    if args.compare:
        return compare(*args.compare)

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        big, small = tmp / "points.csv", tmp / "small.csv"
        for rows, path in ((args.rows, big), (args.small, small)):
            subprocess.run([args.python, str(SHARED / "make_points.py"), str(rows), str(path)], check=True)
        diffcli = shlex.split(args.diffcli)
        cold = ["env", "DIFFCLI_NO_CACHE=1", *diffcli]  # parses, differentiates and compiles, as a first run
        for command in ("grad", "hessian"):  # the cache made warm, as for a command run again
            subprocess.run([*diffcli, command, F, "--input", str(small), "--output", str(tmp / "warm.csv")], check=True)
        jobs = {
            "diffcli grad": diffcli + ["grad", F, "--input", str(big), "--output", str(tmp / "grad.csv")],
            "diffcli grad, no cache": cold + ["grad", F, "--input", str(big), "--output", str(tmp / "grad_cold.csv")],
            "reference_grad.py": [args.python, str(SHARED / "reference_grad.py"), str(big), str(tmp / "ref_grad.csv")],
            "diffcli hessian": diffcli + ["hessian", F, "--input", str(big), "--output", str(tmp / "hessian.csv")],
            "diffcli hessian, no cache": cold
            + ["hessian", F, "--input", str(big), "--output", str(tmp / "hessian_cold.csv")],
            "reference_hessian.py": [
                args.python,
                str(SHARED / "reference_hessian.py"),
                str(big),
                str(tmp / "ref_hessian.csv"),
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in jobs}
        memory: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, command in jobs.items():
                Path(command[-1]).unlink(missing_ok=True)  # each writes a new file, as a user's first run
                wall, rss = run(command)
                times[name].append(wall)
                memory[name] = max(memory.get(name, 0.0), rss)
            grad_error = agree(args.python, tmp / "grad.csv", tmp / "ref_grad.csv")
            hessian_error = agree(args.python, tmp / "hessian.csv", tmp / "ref_hessian.csv")
        naive, naive_rss = run([args.python, str(SHARED / "naive_grad.py"), str(big), str(tmp / "naive.csv")])
        _, small_rss = run(diffcli + ["grad", F, "--input", str(small), "--output", str(tmp / "small_out.csv")])

    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"# Batch benchmark: {args.rows:,} rows, {args.rounds} alternating rounds\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}.")
    print(f"Command: `python bench/batch.py --rows {args.rows} --rounds {args.rounds}`; f = `{F}`.\n")
    print("| program | median wall (s) | runs (s) | peak RSS (MiB) |")
    print("|---|---:|---|---:|")
    for name in jobs:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"| {name} | {median[name]:.2f} | {runs} | {memory[name]:.0f} |")
    print(f"| naive_grad.py (once) | {naive:.2f} | | {naive_rss:.0f} |\n")
    print(
        f"- grad: diffcli / reference = **{median['diffcli grad'] / median['reference_grad.py']:.2f}x**; "
        f"naive / diffcli = **{naive / median['diffcli grad']:.1f}x**"
    )
    print(
        f"- grad without the cache (parse, differentiate, compile, import SymPy): "
        f"{median['diffcli grad, no cache'] / median['reference_grad.py']:.2f}x"
    )
    print(f"- hessian: diffcli / reference = **{median['diffcli hessian'] / median['reference_hessian.py']:.2f}x**")
    print(f"- hessian without the cache: {median['diffcli hessian, no cache'] / median['reference_hessian.py']:.2f}x")
    print(
        f"- peak RSS of diffcli grad: {memory['diffcli grad']:.0f} MiB at {args.rows:,} rows, "
        f"{small_rss:.0f} MiB at {args.small:,} rows: **{memory['diffcli grad'] / small_rss:.2f}x**"
    )
    print(f"- difference from reference_grad.py: {grad_error}")
    print(f"- difference from reference_hessian.py: {hessian_error}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
