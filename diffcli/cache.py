"""Compiled formulas kept between runs: a command run again (the usual CI job) skips parsing,
differentiation, CSE and lowering.

Each entry is one JSON file of data — the program of named kernels (``program.py``) and the names
of the plan's columns, never pickle or code — named by a hash of everything that decides it: the
formula's text and aux, the command and its options, diffcli's version and its source files. It
lives in a folder only its user can use (``$XDG_CACHE_HOME/diffcli``, else ``~/.cache/diffcli``),
is written whole (a temporary file renamed into place) and checked when read: a file that is not
exactly what this version writes is a miss, and is written again. ``DIFFCLI_NO_CACHE=1`` turns
the cache off. Nothing here imports SymPy or torch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .program import KINK, Evaluation

FORMAT = 1
MAX_BYTES = 64 << 20  # a larger file is not one this version wrote


@dataclass(frozen=True)
class Column:
    path: tuple[str, ...]  # where the number goes in JSON
    column: str  # its CSV column


@dataclass(frozen=True)
class Outline:
    """What a command needs of a plan (``transforms.Plan``) besides its formulas."""

    quantities: tuple[Column, ...]
    variables: tuple[str, ...]
    outputs: tuple[str, ...]
    wrt: tuple[str, ...]
    indexed: frozenset[str]


@dataclass(frozen=True)
class Compiled:
    """A cached command's plan and evaluation: what ``api.Compiled`` gives a job."""

    plan: Outline
    evaluation: Evaluation

    @functools.cached_property
    def evaluate(self) -> Callable[..., Any]:
        return self.evaluation.function()


@dataclass(frozen=True)
class Entry:
    compiled: Compiled
    notes: tuple[str, ...]  # how the formula was read (1/2x), said again on each run
    label: str | None  # how notes name a lone unnamed formula's output (its text); None: by name


def key(fields: Mapping[str, Any]) -> str:
    """The entry's name: a hash of ``fields`` (the formula, command and options), the format,
    diffcli's version and the size and time of each of its source files (an edited checkout), and
    the Python and SymPy that compiled it (another environment sharing the folder, an upgrade)."""
    from importlib.util import find_spec

    from . import __version__

    package = Path(__file__).parent
    sources = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in package.glob("*.py"))
    spec = find_spec("sympy")  # found, not imported: its release file changes with each version
    release = Path(spec.origin).with_name("release.py") if spec and spec.origin else None
    sympy = [str(release), release.stat().st_mtime_ns] if release and release.exists() else None
    made = [FORMAT, __version__, sources, sys.version, sys.prefix, sympy]
    return hashlib.sha256(json.dumps([*made, fields], sort_keys=True, default=list).encode()).hexdigest()


def folder() -> Path | None:
    """The cache's folder (made private if new); None when the cache is off or unusable."""
    if os.environ.get("DIFFCLI_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "diffcli"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path if private else None  # another user's, or readable by others: not to be trusted


def load(name: str) -> Entry | None:
    """The entry ``name``, or None: absent, unreadable, or not what this version writes."""
    path = folder()
    if path is None:
        return None
    try:  # not through a link, not a FIFO (it would block), not more than MAX_BYTES
        descriptor = os.open(path / f"{name}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return None
            text = file.read(MAX_BYTES + 1)
        if len(text) > MAX_BYTES:
            return None
        entry = _entry(json.loads(text), name)
        _try(entry.compiled)
        return entry
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, RuntimeError):
        return None


def store(name: str, entry: Entry) -> None:
    """Keep ``entry`` as ``name``, written whole; a cache that cannot be written is no cache."""
    path = folder()
    if path is None:
        return
    outline, evaluation = entry.compiled.plan, entry.compiled.evaluation
    data = {
        "format": FORMAT,
        "key": name,
        "outline": {
            "quantities": [[list(q.path), q.column] for q in outline.quantities],
            "variables": list(outline.variables),
            "outputs": list(outline.outputs),
            "wrt": list(outline.wrt),
            "indexed": sorted(outline.indexed),
        },
        "evaluation": evaluation.data(),
        "notes": list(entry.notes),
        "label": entry.label,
    }
    with contextlib.suppress(OSError, ValueError):
        with tempfile.NamedTemporaryFile("w", dir=path, suffix=".tmp", delete=False) as file:
            json.dump(data, file)
        os.replace(file.name, path / f"{name}.json")
        return
    with contextlib.suppress(OSError, NameError):
        os.unlink(file.name)


def _try(compiled: Compiled) -> None:
    """Run a program read back on one point (its function is then the command's): an entry that
    could not run (a kernel given the wrong arguments) raises here, as a miss, not in the command."""
    import torch

    like = torch.ones(1, dtype=torch.float64)
    with torch.inference_mode():
        compiled.evaluate({n: like for n in compiled.plan.variables}, like)


def _entry(data: Any, name: str) -> Entry:
    if data["format"] != FORMAT or data["key"] != name:
        raise ValueError("another version's entry")
    outline, evaluation = data["outline"], Evaluation.from_data(data["evaluation"])
    quantities = tuple(Column(tuple(_strings(path)), _string(column)) for path, column in outline["quantities"])
    outputs = tuple(_strings(outline["outputs"]))
    columns = [q.column for q in quantities]
    kinks = [c for c in evaluation.columns if c.startswith(KINK)]
    if not quantities or not all(q.path for q in quantities) or len(set(columns)) != len(columns):
        raise ValueError("a quantity is malformed")
    if set(columns) != set(evaluation.columns) - set(kinks) or not {k[len(KINK) :] for k in kinks} <= set(outputs):
        raise ValueError("the outline does not match the program")
    variables = tuple(_strings(outline["variables"]))
    if tuple(evaluation.program.names) != variables or len(set(variables)) != len(variables):
        raise ValueError("the program reads other variables")
    plan = Outline(
        quantities,
        variables,
        outputs,
        tuple(_strings(outline["wrt"])),
        frozenset(_strings(outline["indexed"])),
    )
    label = data["label"]
    return Entry(Compiled(plan, evaluation), tuple(_strings(data["notes"])), None if label is None else _string(label))


def _strings(items: Any) -> list[str]:
    if not isinstance(items, list):
        raise ValueError("not a list")
    return [_string(i) for i in items]


def _string(item: Any) -> str:
    if not isinstance(item, str):
        raise ValueError("not a string")
    return item
