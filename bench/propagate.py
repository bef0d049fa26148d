"""`diffcli propagate` over a file of measurements with sigma columns, beside `diffcli grad` on the
same file in the same run (these machines are noisy: compare the ratios). The file has the
measurements m, g, h and their standard uncertainties u_m, u_g, u_h; propagate reports value,
sigma, relative and three contributions, grad the value and three partials: the same count of
columns. Also `--order 2` (Hessian and third-derivative terms) and, on a few rows, `--check`
(100,000 Monte Carlo draws per row). Rounds alternate the commands. Prints Markdown.

    python bench/propagate.py --rows 1000000 --rounds 3 >> bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import polars as pl

FORMULA = "m*g*h"


def wall(command: list[str]) -> float:
    env = {**os.environ, "DIFFCLI_NO_SERVER": "1"}  # cold: a warm server from elsewhere must not answer
    start = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check-rows", type=int, default=100)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "lab.csv")
    n = args.rows
    pl.DataFrame(
        {
            "m": rng.uniform(1, 3, n),
            "u_m": rng.uniform(0.01, 0.1, n),
            "g": np.full(n, 9.81),
            "u_g": np.full(n, 0.01),
            "h": rng.uniform(1, 10, n),
            "u_h": rng.uniform(0.01, 0.2, n),
        }
    ).write_csv(path)
    few = os.path.join(folder, "few.csv")
    pl.read_csv(path, n_rows=args.check_rows).write_csv(few)
    diffcli = [sys.executable, "-m", "diffcli"]
    out = os.path.join(folder, "out.csv")
    jobs = {
        f"grad '{FORMULA}' --wrt m,g,h": [*diffcli, "grad", FORMULA, "--wrt", "m,g,h", "-i", path, "-o", out],
        f"propagate '{FORMULA}'": [*diffcli, "propagate", FORMULA, "-i", path, "-o", out],
        f"propagate '{FORMULA}' --order 2": [*diffcli, "propagate", FORMULA, "--order", "2", "-i", path, "-o", out],
        f"propagate '{FORMULA}' --check ({args.check_rows} rows)": [
            *diffcli, "propagate", FORMULA, "--check", "-i", few, "-o", out,
        ],  # fmt: skip
    }
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, command in jobs.items():
            times[name].append(wall(command))
    baseline = statistics.median(times[next(iter(jobs))])
    print(f"\n### propagate vs grad: {n:,} rows ({args.rounds} rounds, medians, `python bench/propagate.py`)\n")
    print("| command | wall s | rows/s | vs grad |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        rows = args.check_rows if "--check" in name else n
        print(f"| `{name}` | {median:.2f} | {rows / median:,.0f} | {median / baseline:.2f}× |")


if __name__ == "__main__":
    main()
