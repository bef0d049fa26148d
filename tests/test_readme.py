"""The README's examples are real: each `$ diffcli ...` line of its console blocks is run, and what
it prints (stdout, then stderr) must be what the README shows. Lines with `...` are abridged, the
`serve` block needs a server, and `cat` only shows a file: those are skipped, and so are the Dask
examples without the dask extra."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
FILES = {
    "pts.csv": "x,y,label\n0.5,3,a\n-1.25,0.125,b\n2,-4.5,c\n",
    "bad.csv": "x,y\n1,2\n3,oops\n",
    "excel.csv": "\ufeffSample ID,Sample value,Weight\nA-1,2,3\nB-2,0.5,4\n",  # a byte order mark, as Excel writes
    "lab.csv": "m,u_m,h,dh\n2.0,0.1,3.0,0.2\n2.5,0.05,1.5,0.1\n",
}

DASK = pytest.mark.skipif(not importlib.util.find_spec("dask"), reason="the dask extra is not installed")


def examples() -> list:
    found = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), re.S):
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            lines = part.split("\n")
            command, rest = lines[0], lines[1:]
            while command.endswith("\\"):
                command, rest = command[:-1] + rest[0].strip(), rest[1:]
            shown = "\n".join(rest).rstrip("\n")
            if "serve" not in command and "..." not in shown and not command.startswith("cat "):
                found.append(pytest.param(command, shown, marks=DASK if "--engine dask" in command else ()))
    return found


@pytest.mark.parametrize(("command", "shown"), examples(), ids=lambda v: v[:50] if isinstance(v, str) else "")
def test_readme_example(tmp_path, command, shown):
    for name, content in FILES.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    line = re.sub(r"\bdiffcli\b(?= )", f"{sys.executable} -m diffcli", command, count=0)
    env = {**{k: v for k, v in os.environ.items() if k != "COLUMNS"}, "DIFFCLI_NO_SERVER": "1"}  # tables unbounded
    got = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert (got.stdout + got.stderr).rstrip("\n") == shown


def test_readme_python_examples():
    """The ``pycon`` blocks of "From Python" run as doctests, outputs as shown."""
    import doctest

    blocks = re.findall(r"```pycon\n(.*?)```", README.read_text(), re.S)
    text = "\n".join(b for b in blocks if "dask" not in b or importlib.util.find_spec("dask"))
    test = doctest.DocTestParser().get_doctest(text, {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert test.examples and runner.summarize(verbose=False).failed == 0
