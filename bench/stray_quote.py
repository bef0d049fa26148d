"""Reading stays linear in the file's size whatever its quoting: a CSV with one stray quote
(mid-field, near the top: every later block holds an unclosed quote) against the same file clean.

    python bench/stray_quote.py [ROWS]     (default 600,000; prints seconds and the ratio)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def seconds(path: str, via_pipe: bool) -> float:
    command = [sys.executable, "-m", "diffcli", "value", "x*y", "--format", "csv", "--input", "-" if via_pipe else path]
    start = time.perf_counter()
    with open(path, "rb") as data:
        subprocess.run(
            command,
            stdin=data if via_pipe else None,
            stdout=subprocess.DEVNULL,
            check=True,
            env={**os.environ, "DIFFCLI_NO_SERVER": "1"},
        )
    return time.perf_counter() - start


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    folder = tempfile.mkdtemp()
    clean, stray = os.path.join(folder, "clean.csv"), os.path.join(folder, "stray.csv")
    lines = ["x,y,label\n", *(f"{i},{i % 97},row{i}\n" for i in range(rows))]
    with open(clean, "w") as f:
        f.writelines(lines)
    lines[10] = lines[10].replace("row", 'ro"w')  # one quote inside a field, never closed
    with open(stray, "w") as f:
        f.writelines(lines)
    for via_pipe in (False, True):
        base, odd = seconds(clean, via_pipe), seconds(stray, via_pipe)
        where = "(pipe)" if via_pipe else "(file)"
        print(f"{rows:,} rows {where}: clean {base:.2f} s, stray quote {odd:.2f} s, ratio {odd / base:.2f}")


if __name__ == "__main__":
    main()
