"""`diffcli scan` over many rows and steps, next to a hand-written JAX `lax.scan` + `jax.jacfwd`
script in the same run: wall time and peak RSS of each (compare the ratios; machines are noisy).

    python bench/scan.py --rows 10000 --steps 100000 --diffcli .venv/bin/diffcli >> bench/RESULTS.md

Run it with a Python that has jax and polars (see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JAX = """
import sys
import jax, jax.numpy as jnp, numpy as np, polars as pl
jax.config.update("jax_enable_x64", True)
rows, steps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = jnp.asarray(pl.read_csv(sys.argv[4])["r"].to_numpy())
def final(theta):
    r, x0 = theta
    x, _ = jax.lax.scan(lambda x, _: (r * x * (1 - x), None), x0, None, length=steps)
    return x
f = jax.jit(jax.vmap(lambda r: (final(jnp.stack([r, 0.2])), jax.jacfwd(final)(jnp.stack([r, 0.2])))))
value, grad = f(r)
pl.DataFrame({"r": np.asarray(r), "value": np.asarray(value), "grad_r": np.asarray(grad[:, 0]),
              "grad_x0": np.asarray(grad[:, 1])}).write_csv(out)
"""


def run(command: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"failed: {shlex.join(command)}\n{process.stderr.read().decode()}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--diffcli", default="diffcli")
    parser.add_argument("--python", default=sys.executable, help="a Python with jax and polars")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder) / "r.csv"
        params.write_text("r\n" + "".join(f"{2.5 + i / args.rows:.6f}\n" for i in range(args.rows)))
        ours = run(
            [
                *shlex.split(args.diffcli),
                "scan",
                "x = r*x*(1-x)",
                "--init",
                "x=0.2",
                "--steps",
                str(args.steps),
                "--input",
                str(params),
                "--wrt",
                "r,x0",
                "--output",
                str(Path(folder) / "ours.csv"),
            ]
        )
        theirs = run(
            [args.python, "-c", JAX, str(args.rows), str(args.steps), str(Path(folder) / "jax.csv"), str(params)]
        )
    print(f"# scan: logistic map, {args.rows:,} rows x {args.steps:,} steps, d/dr and d/dx0\n")
    print("| program | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    print(f"| diffcli scan (forward sensitivities) | {ours[0]:.2f} | {ours[1]:.0f} |")
    print(f"| JAX lax.scan + jacfwd, jit(vmap) | {theirs[0]:.2f} | {theirs[1]:.0f} |")


if __name__ == "__main__":
    main()
