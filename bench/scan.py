"""`diffcli scan` over many rows and steps, next to hand-written JAX `lax.scan` scripts in the same
run: wall time and peak RSS of each (compare the ratios; machines are noisy).

1. The logistic map, d/dr and d/dx0 over ``--steps`` steps: diffcli (forward mode; reverse would
   keep too many states) beside ``jit(vmap(jacfwd))``.
2. A ring of 8 coupled states with 9 parameters and a scalar loss, over ``--loss-steps`` steps: its
   17 derivatives by diffcli's forward mode, reverse mode and ``auto``, beside
   ``jit(vmap(value_and_grad))``.

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

LOSS = """
import sys
import jax, jax.numpy as jnp, numpy as np, polars as pl
jax.config.update("jax_enable_x64", True)
steps, out = int(sys.argv[1]), sys.argv[2]
k = jnp.asarray(pl.read_csv(sys.argv[3]).to_numpy())
def loss(theta):
    k, h, u0 = theta[:8], theta[8], theta[9:]
    step = lambda u, _: (u + h * k * (jnp.roll(u, -1) - u) - h * u**3 / 10, None)
    u, _ = jax.lax.scan(step, u0, None, length=steps)
    return jnp.sum(u**2)
theta = jnp.concatenate([k, jnp.full((k.shape[0], 1), 0.01), jnp.tile(jnp.arange(8) / 8, (k.shape[0], 1))], axis=1)
value, grad = jax.jit(jax.vmap(jax.value_and_grad(loss)))(theta)
names = [f"k{i}" for i in range(1, 9)] + ["h"] + [f"u{i}0" for i in range(1, 9)]
columns = {f"grad_{n}": np.asarray(grad[:, i]) for i, n in enumerate(names)}
pl.DataFrame({"loss": np.asarray(value), **columns}).write_csv(out)
"""
RING = [f"u{i} = u{i} + h*k{i}*(u{i % 8 + 1} - u{i}) - h*u{i}**3/10" for i in range(1, 9)]
RING_OPTIONS = [
    "--init",
    ",".join(f"u{i}={(i - 1) / 8}" for i in range(1, 9)),
    "--at",
    "h=0.01",
    "--output-expr",
    "loss=" + "+".join(f"u{i}**2" for i in range(1, 9)),
    "--wrt",
    ",".join([*(f"k{i}" for i in range(1, 9)), "h", *(f"u{i}0" for i in range(1, 9))]),
]


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
    parser.add_argument("--loss-steps", type=int, default=300, help="(reverse mode keeps 8 states a step)")
    args = parser.parse_args()
    diffcli = shlex.split(args.diffcli)
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder) / "r.csv"
        params.write_text("r\n" + "".join(f"{2.5 + i / args.rows:.6f}\n" for i in range(args.rows)))
        logistic = ["scan", "x = r*x*(1-x)", "--init", "x=0.2", "--steps", str(args.steps), "--wrt", "r,x0"]
        ours = run([*diffcli, *logistic, "--input", str(params), "--output", str(Path(folder) / "ours.csv")])
        theirs = run(
            [args.python, "-c", JAX, str(args.rows), str(args.steps), str(Path(folder) / "jax.csv"), str(params)]
        )
        rates = Path(folder) / "k.csv"
        rates.write_text(
            ",".join(f"k{i}" for i in range(1, 9))
            + "\n"
            + "".join(",".join(f"{1 + i / 8 + j / args.rows:.6f}" for i in range(8)) + "\n" for j in range(args.rows))
        )
        loss = ["scan", *RING, "--steps", str(args.loss_steps), *RING_OPTIONS, "--input", str(rates)]
        modes = {
            m: run([*diffcli, *loss, "--method", m, "--output", str(Path(folder) / f"{m}.csv")])
            for m in ("forward", "reverse", "auto")
        }
        jax_loss = run([args.python, "-c", LOSS, str(args.loss_steps), str(Path(folder) / "jl.csv"), str(rates)])
        apart = largest_difference(*(Path(folder) / f"{name}.csv" for name in ("forward", "reverse", "jl")))
    print(f"# scan: logistic map, {args.rows:,} rows x {args.steps:,} steps, d/dr and d/dx0\n")
    print("| program | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    print(f"| diffcli scan (forward sensitivities) | {ours[0]:.2f} | {ours[1]:.0f} |")
    print(f"| JAX lax.scan + jacfwd, jit(vmap) | {theirs[0]:.2f} | {theirs[1]:.0f} |\n")
    print(
        f"# scan: a ring of 8 states, {args.rows:,} rows x {args.loss_steps:,} steps, a scalar loss, 17 derivatives\n"
    )
    print("| program | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for mode, (wall, rss) in modes.items():
        print(f"| diffcli scan --method {mode} | {wall:.2f} | {rss:.0f} |")
    print(f"| JAX lax.scan + value_and_grad, jit(vmap) | {jax_loss[0]:.2f} | {jax_loss[1]:.0f} |\n")
    print(f"The three sets of derivatives agree to {apart:.1e} of each column's scale.")


def largest_difference(*paths: Path) -> float:
    """The largest difference between the same column of these CSV files, in units of the column's
    largest magnitude (needs polars)."""
    import polars as pl

    frames = [pl.read_csv(p) for p in paths]
    columns = [c for c in frames[0].columns if c.startswith(("loss", "grad_"))]
    return max(
        (f[c] - frames[0][c]).abs().max() / frames[0][c].abs().max()  # type: ignore[operator]
        for f in frames[1:]
        for c in columns
    )


if __name__ == "__main__":
    main()
