"""Does a warm server keep what its commands used? Descriptors, threads and RSS of `diffcli serve`
before and after N commands that their reader leaves early (`| head -1`).

    python bench/server_leaks.py [N]     (default 100; the acceptance bound is ±10%)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def measure(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as file:
        status = dict(line.split(":", 1) for line in file)
    return {
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "rss_mb": int(status["VmRSS"].split()[0]) // 1024,
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    runtime = tempfile.mkdtemp()
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    env.pop("DIFFCLI_NO_SERVER", None)
    diffcli = f"{sys.executable} -m diffcli"
    data = os.path.join(runtime, "rows.csv")
    with open(data, "w") as f:
        f.write("x,y\n" + "".join(f"{i},{i % 7}\n" for i in range(300_000)))
    subprocess.run([*diffcli.split(), "serve", "--background", "--idle", "600"], env=env, check=True)
    pid = int(
        subprocess.run(["pgrep", "-f", "diffcli serve --idle 600"], capture_output=True, text=True).stdout.split()[0]
    )
    commands = [
        f"{diffcli} value 'sin(x)' --grid x=0:1:3000000 --format csv | head -1",
        f"{diffcli} grad 'x*y' --input {data} | head -1",
        f"cat {data} | {diffcli} hessian 'x*y**2' --input - --format ndjson | head -1",
    ]
    if os.environ.get("ONLY"):
        commands = [commands[int(os.environ["ONLY"])]]
    try:
        for command in commands:  # one of each first: the caches a command fills once are not leaks
            subprocess.run(command, shell=True, env=env, capture_output=True)
        time.sleep(1)  # the server gives memory back once it is quiet
        before = measure(pid)
        for i in range(count):
            subprocess.run(commands[i % len(commands)], shell=True, env=env, capture_output=True)
            if os.environ.get("TRACE") and i % 30 == 29:
                time.sleep(1)
                print(i + 1, measure(pid), flush=True)
        time.sleep(1)
        after = measure(pid)
    finally:
        subprocess.run([*diffcli.split(), "serve", "--stop"], env=env)
    print(f"{count} commands | head -1")
    for key in before:
        print(f"  {key:8} {before[key]:6} -> {after[key]:6}  ({after[key] / before[key] - 1:+.0%})")


if __name__ == "__main__":
    main()
