"""The batch loop: frames are read ahead on one thread, computed on this one and written behind
on another, so reading and writing (polars) overlap the computation (torch); all three release
the GIL. At most ten batches are in memory at once, whatever the row count.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl

from .program import KINK

if TYPE_CHECKING:
    import torch

    from .api import Compiled

T = TypeVar("T")
WRITES_AHEAD = 3  # computed batches that may wait for the writer
WAKE_SECONDS = 0.1  # the main thread's waits on the others wake this often: Ctrl-C may have
# been delivered to the thread it waits for (reading a pipe), which would not wake it


class Evaluator:
    """Frames of points (or input rows) -> the same frames with the results after; counts, per
    output, the points where it is not differentiable (``kinks``)."""

    def __init__(
        self, compiled: Compiled, columns: Mapping[str, str], dtype: torch.dtype, device: torch.device
    ) -> None:
        """``compiled``: a command's plan for a formula (``api.Compiled``); ``columns`` names the
        frame column of each variable where it is not the variable's name."""
        self.plan, self.evaluate = compiled.plan, compiled.evaluate
        self.columns, self.dtype, self.device = columns, dtype, device
        self.kinks: collections.Counter[str] = collections.Counter()

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        import torch

        count = frame.height if frame.width else 1  # no variables at all: one point
        values = tensors(frame, self.plan.variables, self.columns, self.dtype, self.device)
        with torch.inference_mode():
            results = self.evaluate(values, torch.empty(count, dtype=self.dtype, device=self.device))
        for key in [k for k in results if k.startswith(KINK)]:
            self.kinks[key.removeprefix(KINK)] += int(results.pop(key).sum())
        numbers = pl.DataFrame({c: r.cpu().numpy() for c, r in results.items()})
        return frame.hstack(numbers) if frame.width else numbers


def tensors(
    frame: pl.DataFrame, variables: Iterable[str], columns: Mapping[str, str], dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor]:
    """Each variable's column of ``frame`` as a tensor (``columns`` renames), without a copy on the CPU."""
    import torch

    # DLPack: polars' read-only arrays without a copy, and without torch's warning about them
    return {v: torch.from_dlpack(frame[columns.get(v, v)].to_numpy()).to(device, dtype) for v in variables}


def run(
    frames: Iterator[pl.DataFrame],
    compute: Callable[[pl.DataFrame], pl.DataFrame],
    write: Callable[[pl.DataFrame], None],
    *,
    watch: Callable[[Iterator[pl.DataFrame]], Iterator[pl.DataFrame]] = lambda frames: frames,
) -> None:
    """Write ``compute(frame)`` for every frame, in order, batch i being written while batch i+1 is
    computed (``frames`` come from ``ahead``, read meanwhile). ``watch`` sees the frames as they
    are taken (progress)."""
    writer = concurrent.futures.ThreadPoolExecutor(1)
    written: collections.deque[concurrent.futures.Future[None]] = collections.deque()
    try:
        for frame in watch(frames):
            written.append(writer.submit(write, compute(frame)))
            while len(written) > WRITES_AHEAD or (written and written[0].done()):
                _result(written.popleft())
        for future in written:
            _result(future)
    except BaseException:  # not waiting for a writer that may be stuck on a reader who never reads
        writer.shutdown(wait=False, cancel_futures=True)
        raise
    writer.shutdown()


def _result(future: concurrent.futures.Future[T]) -> T:
    while True:
        try:
            return future.result(WAKE_SECONDS)
        except concurrent.futures.TimeoutError:
            pass


def ahead(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """``items``, produced on a thread of their own up to ``depth`` ahead of the consumer.

    Started before torch is imported, the reading uses the second core during that second. When
    the consumer leaves early (an error, ``| head``, Ctrl-C), the producer stops at its next item
    and what it read is dropped: a warm server runs many commands and must not keep their threads.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stopped = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        """Hand ``entry`` on; False once the consumer has left."""
        while not stopped.is_set():
            with contextlib.suppress(queue.Full):
                buffer.put(entry, timeout=WAKE_SECONDS)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # handed to the consumer, which raises it
            put(("error", e))

    threading.Thread(target=produce, daemon=True).start()
    try:
        while True:
            try:
                kind, value = buffer.get(timeout=WAKE_SECONDS)
            except queue.Empty:
                continue
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stopped.set()  # not joined: it may be waiting for a slow pipe, and Ctrl-C must end the command now
