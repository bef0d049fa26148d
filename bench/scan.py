"""`diffcli scan` over many rows and steps, next to hand-written JAX `lax.scan` scripts in the same
run: wall time and peak RSS of each (compare the ratios; machines are noisy).

1. The logistic map, d/dr and d/dx0 over ``--steps`` steps: diffcli (forward mode; reverse would
   keep too many states) beside ``jit(vmap(jacfwd))``.
2. A damped linear oscillator with 7 parameters and a scalar loss, over ``--loss-steps`` steps: its
   9 derivatives by diffcli's forward mode, reverse mode and ``auto``, beside ``jit(vmap(grad))``.

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
a = jnp.asarray(pl.read_csv(sys.argv[3])["a"].to_numpy())
def loss(theta):
    a, b, c, p, q, s, h, x0, v0 = theta
    def step(state, _):
        x, v = state
        return (x + h * (a * x + b * v + c), v + h * (p * x + q * v + s)), None
    (x, v), _ = jax.lax.scan(step, (x0, v0), None, length=steps)
    return x**2 + v**2
theta = jnp.stack([a, *(jnp.full_like(a, t) for t in (0.5, 0.1, -1.0, -0.1, 0.2, 0.01, 1.0, 0.0))], axis=1)
value, grad = jax.jit(jax.vmap(jax.value_and_grad(loss)))(theta)
names = ["a", "b", "c", "p", "q", "s", "h", "x0", "v0"]
pl.DataFrame({"a": np.asarray(a), "loss": np.asarray(value),
              **{f"grad_{n}": np.asarray(grad[:, i]) for i, n in enumerate(names)}}).write_csv(out)
"""
LINEAR = ["x = x + h*(a*x + b*v + c)", "v = v + h*(p*x + q*v + s)", "--init", "x=1,v=0"]
LINEAR_AT = ["--at", "b=0.5,c=0.1,p=-1,q=-0.1,s=0.2,h=0.01", "--output-expr", "loss=x**2+v**2"]


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
    parser.add_argument("--loss-steps", type=int, default=1_000)
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
        damping = Path(folder) / "a.csv"
        damping.write_text("a\n" + "".join(f"{-1 + i / args.rows / 2:.6f}\n" for i in range(args.rows)))
        loss = ["scan", *LINEAR, "--steps", str(args.loss_steps), *LINEAR_AT, "--input", str(damping)]
        modes = {
            m: run([*diffcli, *loss, "--method", m, "--output", str(Path(folder) / f"{m}.csv")])
            for m in ("forward", "reverse", "auto")
        }
        jax_loss = run([args.python, "-c", LOSS, str(args.loss_steps), str(Path(folder) / "jl.csv"), str(damping)])
        apart = largest_difference(*(Path(folder) / f"{name}.csv" for name in ("forward", "reverse", "jl")))
    print(f"# scan: logistic map, {args.rows:,} rows x {args.steps:,} steps, d/dr and d/dx0\n")
    print("| program | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    print(f"| diffcli scan (forward sensitivities) | {ours[0]:.2f} | {ours[1]:.0f} |")
    print(f"| JAX lax.scan + jacfwd, jit(vmap) | {theirs[0]:.2f} | {theirs[1]:.0f} |\n")
    print(f"# scan: linear oscillator, {args.rows:,} rows x {args.loss_steps:,} steps, a scalar loss, 9 derivatives\n")
    print("| program | wall (s) | peak RSS (MiB) |\n|---|---:|---:|")
    for mode, (wall, rss) in modes.items():
        print(f"| diffcli scan --method {mode} | {wall:.2f} | {rss:.0f} |")
    print(f"| JAX lax.scan + value_and_grad, jit(vmap) | {jax_loss[0]:.2f} | {jax_loss[1]:.0f} |\n")
    print(f"The three sets of derivatives agree to {apart:.1e} relative.")


def largest_difference(*paths: Path) -> float:
    """The largest relative difference between the same column of these CSV files (needs polars)."""
    import polars as pl

    frames = [pl.read_csv(p) for p in paths]
    columns = [c for c in frames[0].columns if c.startswith(("loss", "grad_"))]
    return max(
        ((f[c] - frames[0][c]).abs() / frames[0][c].abs().clip(lower_bound=1e-300)).max()  # type: ignore[operator]
        for f in frames[1:]
        for c in columns
    )


if __name__ == "__main__":
    main()
