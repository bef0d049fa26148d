"""Shared helpers: run the real console script, and evaluate with independent oracles."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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


@pytest.fixture
def cli():
    return run_cli
