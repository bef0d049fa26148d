"""diffcli on Dask (README: "Beyond one machine").

``apply`` runs a formula's method (``f.grad``) on every partition of a Dask DataFrame, lazily.
``evaluate`` is the command line's ``--engine dask``: the local job (``jobs.evaluate``) on each
file of ``--input``, one task per file on the workers of ``dask.distributed``, each writing one
part of the ``--output`` folder. Each file is read, computed and written exactly as the local
engine would (readers, messages naming file, row and column, formats, numbers); only the
files are spread.

``import dask`` below is Dask itself (imports are absolute). Nothing here imports ``api`` or
``jobs``, so no import makes a circle: ``api`` imports this module when it is handed a Dask
DataFrame, and ``jobs`` hands its job in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from . import signals
from .errors import UsageError

PART_FORMATS = ("csv", "tsv", "json", "ndjson", "parquet")
PART = re.compile(r"part-\d{5,}\.(csv|tsv|json|ndjson|parquet)")  # a part of a run: replaced by the next run


def apply(frame: Any, method: Callable[..., Any], **options: Any) -> Any:
    """``method`` (``f.grad``, called with ``options``) on every partition of the Dask DataFrame
    ``frame``: a Dask DataFrame, computed when asked. Its ``meta`` is ``method`` on the empty
    frame, so the result's columns and dtypes are known before anything runs."""
    import dask.dataframe as dd

    if not isinstance(frame, dd.DataFrame):
        raise UsageError(f"data of Dask must be a Dask DataFrame, got {type(frame).__name__}")
    return frame.map_partitions(method, **options, meta=method(frame._meta, **options))


def evaluate(
    job: Callable[..., None],
    noted: tuple[str, ...],
    operation: str,
    *,
    at: list[str] | None,
    grid: list[str] | None,
    fmt: str,
    output: str | None,
    source: Any,  # jobs.Input
    gate: Any,  # jobs.Gate
    cluster: Any,  # jobs.Cluster
    note: Callable[[str], None],
    progress: Callable[[], Any],
    **options: Any,
) -> None:
    """``--engine dask``: ``job`` (``jobs.evaluate``, whose arguments these are) on each file of
    ``source.input`` (a glob or a folder) on a worker, into ``output/part-NNNNN.FORMAT`` (by the
    files' sorted names). The parts are written in a folder of their own inside ``output`` and
    moved into place once all are done, so a failure or Ctrl-C leaves ``output`` as it was; the
    first error of a worker stops the run. The workers' notes come back with their parts, naming
    them, but for those of the formula, already ``noted`` here."""
    fmt = _checked(at, grid, fmt, output, source, gate)
    try:
        import dask  # noqa: F401 - the extra's two packages: either missing is this usage error
        import distributed
    except ImportError:
        raise UsageError("--engine dask needs Dask: pip install 'diffcli[dask]'") from None

    files = _files(source.input)
    parts = [f"part-{number:05d}.{fmt}" for number in range(len(files))]
    task = {"job": job, "operation": operation, "at": at, "grid": grid, "fmt": fmt, "source": source, **options}
    with _staged(output) as staging, _client(cluster) as client:
        staged = [os.path.join(staging, p) for p in parts]
        futures = client.map(_part, files, staged, pure=False, cwd=os.getcwd(), **task)
        part_of = dict(zip(futures, parts))
        shown, done = progress(), 0
        try:
            for future in distributed.as_completed(futures):
                rows, notes = future.result()  # a worker's error is raised here, as the local engine's
                done += 1
                shown.update(rows, done / len(files))
                for text in notes:
                    if text not in noted:
                        note(f"{part_of[future]}: {text}")
        except BaseException:
            client.cancel(futures)
            raise
        finally:
            shown.close()
    _publish(staging, output, parts)


def _checked(at: Any, grid: Any, fmt: str, output: str | None, source: Any, gate: Any) -> str:
    """The options that mean nothing spread over files refused, naming the option; the parts' format."""
    if source.input is None:
        given = "--at without --input: " if at else "--grid without --input: " if grid else ""
        raise UsageError(f"{given}--engine dask evaluates the rows of files: give --input GLOB")
    if source.input == "-":
        raise UsageError("--input -: --engine dask reads files, not stdin: give a glob or a folder")
    if output in (None, "-"):
        raise UsageError("--engine dask writes a folder of parts, not stdout: give --output FOLDER")
    for flag, value in (("--expect", gate.expect), ("--expect-file", gate.expect_file)):
        if value:
            raise UsageError(f"{flag} compares the results in one process: not with --engine dask")
    fmt = "parquet" if fmt == "auto" else fmt
    if fmt not in PART_FORMATS:
        raise UsageError(f"--format {fmt}: --engine dask writes its parts as {', '.join(PART_FORMATS)}")
    return fmt


def _files(pattern: str) -> list[str]:
    """The files of ``--input``: a folder's data files (by extension) or a glob's files, sorted by name."""
    from .readers import EXTENSIONS

    if os.path.isdir(pattern):
        names = (n for n in os.listdir(pattern) if not n.startswith(".") and os.path.splitext(n)[1] in EXTENSIONS)
        found = [os.path.join(pattern, n) for n in names]
    else:
        found = glob.glob(pattern)
    found = sorted(p for p in found if os.path.isfile(p))
    if not found:
        raise UsageError(f"--input {pattern}: no files found", hint="give a glob ('data/*.parquet') or a folder")
    return found


def _part(
    path: str, part: str, *, job: Callable[..., None], cwd: str, source: Any, **options: Any
) -> tuple[int, list[str]]:
    """On a worker: one input file through the local job into one part; its rows and its notes.
    Paths are the client's: as they were given where the worker works in the client's folder
    (the messages then name files as the local engine would), else under that folder."""
    from .errors import spelled

    here = os.getcwd() == cwd
    notes: list[str] = []
    counted = _Counted()
    with spelled("flags"):  # messages name the command line's flags
        job(
            source=dataclasses.replace(source, input=path if here else os.path.join(cwd, path)),
            output=part if here else os.path.join(cwd, part),
            note=notes.append,
            progress=lambda: counted,
            **options,
        )
    return counted.rows, notes


class _Counted:
    """A worker's progress: only counted, and sent back with the task's result."""

    rows = 0

    def update(self, rows: int = 0, done: float | None = None) -> None:
        self.rows += rows

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _staged(output: str) -> Iterator[str]:
    """A new folder inside ``output`` for this run's parts. If the run fails it goes with them,
    and so does ``output`` if this run made it."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"--output {output} is a file: --engine dask writes a folder of parts")
    made = not os.path.exists(output)
    try:
        os.makedirs(output, exist_ok=True)
        with signals.held():
            staging = tempfile.mkdtemp(prefix=".diffcli-", dir=output)
    except OSError as e:
        raise UsageError(f"cannot write --output {output}: {e.strerror}") from None
    try:
        yield staging
    except BaseException:
        with signals.held():
            shutil.rmtree(staging, ignore_errors=True)
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(output)
        raise


def _publish(staging: str, output: str, parts: list[str]) -> None:
    """This run's parts into ``output`` in place of the last run's (those beyond this run's count removed too)."""
    with signals.held():
        for name in os.listdir(output):
            if PART.fullmatch(name) and name not in parts:
                os.unlink(os.path.join(output, name))
        for name in parts:
            os.replace(os.path.join(staging, name), os.path.join(output, name))
        os.rmdir(staging)


@contextlib.contextmanager
def _client(cluster: Any) -> Iterator[Any]:
    """A client of ``--scheduler``'s cluster, or of a local cluster of ``--workers`` processes (one
    a core by default) on the loopback, closed with it. Dask's logs are silenced for good in this
    process and in the local workers: errors come back as diffcli's own, and a cluster still
    starting in the background after Ctrl-C must print nothing either."""
    from distributed import Client, LocalCluster

    for handler in logging.getLogger("distributed").handlers:  # Dask's own handlers, on stderr
        handler.setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        if cluster.scheduler is not None:
            try:
                client = stack.enter_context(Client(cluster.scheduler, timeout=10))
            except (OSError, ValueError) as e:
                raise UsageError(f"--scheduler {cluster.scheduler}: cannot connect: {str(e).splitlines()[0]}") from None
        else:
            with _quiet_children():
                local = stack.enter_context(
                    LocalCluster(
                        n_workers=cluster.workers or os.cpu_count() or 1,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                        silence_logs=logging.CRITICAL,
                    )
                )
            client = stack.enter_context(Client(local))
        yield client


@contextlib.contextmanager
def _quiet_children() -> Iterator[None]:
    """The processes started meanwhile get /dev/null for stderr. A terminal's Ctrl-C reaches the
    local workers too, and one still importing would print its traceback; they end with it, and
    their errors come back with their tasks."""
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
