"""Shared helpers: run the real console script, and evaluate with independent oracles."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

# Every command of the suite, in this process or a child, keeps its compiled formulas in a cache
# of its own (so repeated commands are served from it, as a user's are), not in the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="diffcli-tests-")


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m diffcli`` as a real process, with pipes for stdin, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "diffcli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def first_lines(pipeline: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    """Run a shell ``pipeline`` that ends in ``| head -count`` (``diffcli`` is this checkout's)."""
    command = pipeline.replace("diffcli", f"{sys.executable} -m diffcli") + f" | head -{count}"
    return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)


def write_formats(frame, folder, stem: str) -> dict:  # noqa: ANN001 - a polars frame, a pathlib folder
    """``frame`` written as ``stem.csv``, ``.tsv``, ``.json``, ``.ndjson`` and ``.parquet`` in ``folder``."""
    paths = {fmt: folder / f"{stem}.{fmt}" for fmt in ("csv", "tsv", "json", "ndjson", "parquet")}
    frame.write_csv(paths["csv"])
    frame.write_csv(paths["tsv"], separator="\t")
    frame.write_json(paths["json"])
    frame.write_ndjson(paths["ndjson"])
    frame.write_parquet(paths["parquet"])
    return paths


@pytest.fixture
def cli():
    return run_cli


SLOW_MODULES = {"test_accuracy.py", "test_readme.py", "test_server.py"}  # mpmath at 1,000 digits; processes


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark as slow every test that spawns a process (the ``cli`` fixture, ``first_lines``, a
    ``subprocess`` call) or runs long, so ``-m 'not slow'`` is a quick subset."""
    for item in items:
        source = getattr(item.function, "__code__", None)
        spawns = source is not None and {"run_cli", "first_lines", "subprocess", "pty_run"} & set(source.co_names)
        if item.path.name in SLOW_MODULES or "cli" in getattr(item, "fixturenames", ()) or spawns:
            item.add_marker(pytest.mark.slow)
