"""Ctrl-C at random moments: every run ends with 130 (or 0 if it had finished), no traceback, and an
`--output` that is either the old file or the complete new one.

    python bench/interrupts.py [RUNS] [--warm]    (default 200 cold runs)

Each run is `diffcli grad ... --input big.csv --output out.{csv,parquet}` (over an old file) or the
same to stdout, interrupted after a random delay spanning the import, reading, computing,
writing and renaming.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 200
    warm = "--warm" in sys.argv
    folder = tempfile.mkdtemp()
    env = {**os.environ, "XDG_RUNTIME_DIR": folder}
    if warm:
        env.pop("DIFFCLI_NO_SERVER", None)
        subprocess.run([sys.executable, "-m", "diffcli", "serve", "--background"], env=env, check=True)
    else:
        env["DIFFCLI_NO_SERVER"] = "1"
    data = os.path.join(folder, "big.csv")
    with open(data, "w") as f:
        f.write("x,y\n" + "".join(f"{i / 7},{i % 13}\n" for i in range(400_000)))
    base = [sys.executable, "-m", "diffcli", "grad", "sin(x)*y**2", "--input", data]
    expected, span = {}, 0.0
    for kind in ("csv", "parquet"):
        reference = os.path.join(folder, f"reference.{kind}")
        start = time.perf_counter()
        subprocess.run([*base, "--output", reference], env=env, check=True)
        span = max(span, time.perf_counter() - start)
        with open(reference, "rb") as f:
            expected[kind] = f.read()
    rng = random.Random(int(os.environ.get("SEED", "1")))
    outcomes: dict[str, int] = {}
    problems = []
    for i in range(runs):
        kind = rng.choice(["csv", "parquet", "stdout"])
        target = os.path.join(folder, f"out.{kind}")
        if kind != "stdout":
            with open(target, "wb") as f:
                f.write(b"old\n")
        command = base if kind == "stdout" else [*base, "--output", target]
        delay = rng.uniform(0, span * 1.1)
        with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                problems.append(f"run {i}: no exit within 30 s of Ctrl-C at {delay:.2f} s")
                continue
        code = proc.returncode
        outcomes[str(code)] = outcomes.get(str(code), 0) + 1
        if code not in (0, 130) or b"Traceback" in err or err not in (b"", b"diffcli: interrupted\n"):
            problems.append(f"run {i} ({kind}, Ctrl-C at {delay:.2f} s): exit {code}, stderr {err[-300:]!r}")
        if kind != "stdout":
            with open(target, "rb") as f:
                now = f.read()
            if now not in (b"old\n", expected[kind]):
                problems.append(f"run {i} ({kind}, Ctrl-C at {delay:.2f} s): the output is neither old nor complete")
            leftovers = [n for n in os.listdir(folder) if n.endswith(".part")]
            if leftovers:
                problems.append(f"run {i}: left {leftovers}")
    if warm:
        subprocess.run([sys.executable, "-m", "diffcli", "serve", "--stop"], env=env)
    print(f"{runs} runs ({'warm' if warm else 'cold'}), Ctrl-C within 0-{span * 1.1:.1f} s; exit codes: {outcomes}")
    print("\n".join(problems) or "no problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
