"""``--engine dask`` against the local engine on the same rows, alternating, in one run.

Makes (if missing) 8 Parquet files of ``--rows`` rows in all (columns key, x, y) and one file of
all those rows, then runs rounds of: the local engine on the one file, and ``--engine dask``
with ``--workers 1`` and ``--workers 2`` on the 8 files (each run starts and closes its cluster);
the same on 8 rows, one a file, for the fixed costs alone. Prints median wall times and their
ratios to the local engine as Markdown, after checking that the parts' rows, sorted by key, are
the local engine's bit for bit.

    python bench/dask.py --rows 4000000 --rounds 3 --diffcli .venv/bin/diffcli >> bench/RESULTS.md

Run it with the project's environment and the dask extra (``pip install -e '.[dask]'``), with
nothing else heavy running: on a machine of 2 cores, 2 workers and the local engine's three
threads contend for them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

F = "sin(x)*exp(-y**2) + x*y"
FILES = 8


def make(folder: Path, rows: int) -> None:
    """The 8 files and the one file of all their rows, unless they are there."""
    import numpy as np
    import polars as pl

    if (folder / "all.parquet").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(0)
    keys = np.arange(rows)
    frame = pl.DataFrame({"key": keys, "x": generator.normal(size=rows), "y": generator.normal(size=rows)})
    for number, part in enumerate(np.array_split(keys, FILES)):  # at least one row a file
        frame[int(part[0]) : int(part[-1]) + 1].write_parquet(folder / f"f{number}.parquet")
    frame.write_parquet(folder / "all.parquet")


def run(command: list[str]) -> float:
    """Wall seconds of one command, which must succeed."""
    start = time.perf_counter()
    cold = {**os.environ, "DIFFCLI_NO_SERVER": "1"}  # every run starts cold, the local engine's too
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cold)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {shlex.join(command)}\n{done.stderr}")
    return wall


def same_rows(parts: Path, local: Path) -> bool:
    """Whether the parts' rows, sorted by key, are the local engine's bit for bit."""
    import polars as pl

    spread = pl.concat([pl.read_parquet(p) for p in sorted(parts.glob("part-*.parquet"))]).sort("key")
    return spread.equals(pl.read_parquet(local).sort("key"))


def commands(diffcli: list[str], data: Path, out: Path, label: str) -> dict[str, list[str]]:
    """The three runs on one dataset: the local engine on its one file, the Dask engine on its 8."""
    local = [*diffcli, "grad", F, "--input", str(data / "all.parquet"), "-o", str(out / f"local-{label}.parquet")]
    spread = [*diffcli, "grad", F, "--input", str(data / "f*.parquet"), "--engine", "dask"]
    return {
        f"local engine, one file ({label})": local,
        **{
            f"--engine dask --workers {n}, 8 files ({label})": [
                *spread,
                "-o",
                str(out / f"dask{n}-{label}"),
                "--workers",
                str(n),
            ]
            for n in (1, 2)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--diffcli", default="diffcli", help="the diffcli command to measure")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "diffcli-bench-dask")
    args = parser.parse_args()

    sizes = {f"{args.rows:,} rows": args.rows, f"{FILES} rows": FILES}  # the second: the fixed costs alone
    for rows in sizes.values():
        make(args.data / str(rows), rows)
    diffcli = shlex.split(args.diffcli)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        runs = {}
        for label, rows in sizes.items():
            runs.update(commands(diffcli, args.data / str(rows), out, label))
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, command in runs.items():
                times[name].append(run(command))
        agree = all(
            same_rows(out / f"dask{n}-{label}", out / f"local-{label}.parquet") for n in (1, 2) for label in sizes
        )

    medians = {name: statistics.median(walls) for name, walls in times.items()}
    print(f"# Dask engine: {args.rows:,} rows in {FILES} Parquet files, {args.rounds} alternating rounds\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.")
    print(f"Command: `python bench/dask.py --rows {args.rows} --rounds {args.rounds}`; `grad` of `{F}`; every run")
    print(f"cold (no warm server). The runs on {FILES} rows (one a file) measure the fixed costs alone.\n")
    print("| run | median wall (s) | runs (s) | / local |")
    print("|---|---:|---|---:|")
    for name, walls in times.items():
        local = medians[f"local engine, one file ({name.rpartition('(')[2][:-1]})"]
        runs_text = ", ".join(f"{w:.2f}" for w in walls)
        print(f"| {name} | {medians[name]:.2f} | {runs_text} | {medians[name] / local:.2f}x |")
    big, small = sizes
    print()
    for engine in ("local engine, one file", *(f"--engine dask --workers {n}, 8 files" for n in (1, 2))):
        rows_cost = medians[f"{engine} ({big})"] - medians[f"{engine} ({small})"]
        print(f"- {engine}: {rows_cost:.2f} s for the rows beyond the fixed costs")
    print(f"- the parts' rows, sorted by key, are the local engine's bit for bit: **{'yes' if agree else 'NO'}**")


if __name__ == "__main__":
    main()
