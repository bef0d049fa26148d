"""Ctrl-C at any moment ends a command with exit 130 (README: "Exit codes"), never with a crash.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside an import that
runs C++ or Rust code calling back into Python (torch's, polars'), an exception there aborts the
whole process (``terminate called ... pybind11::error_already_set``, exit 134), and inside polars
it makes Rust panic and print the panic. So an interrupt that arrives during an import or inside
those libraries (or a ``held`` block) is held and delivered again every ``RETRY_SECONDS`` until
it can be raised; and ``pending`` tells the error boundary that whatever escaped after it is the
interrupt's doing. Standard library only, and only modules Python has loaded before it starts:
``python -m diffcli`` and the console script install it first.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

RETRY_SECONDS = 0.05  # how soon a held interrupt is delivered again
NATIVE = {"polars", "pyarrow", "torch"}  # packages whose native code calls back into Python
_pending = False
_holding = 0  # nesting of ``held`` blocks
_epoch = 0  # advanced by ``clear``: an interrupt held for a command that has ended is dropped
_main = _thread.get_ident()  # the thread that handles signals


def install(signum: int = signal.SIGINT, *, when: Callable[[], bool] = lambda: True) -> None:
    """Handle ``signum`` as Ctrl-C in this process, while ``when()`` holds (else it is ignored)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if when():
            _on_interrupt(signum, frame)

    global _main
    with contextlib.suppress(ValueError):  # not the main thread: Python allows no handler
        signal.signal(signum, handle)
        _main = _thread.get_ident()


def pending() -> bool:
    """Whether an interrupt came since the last ``clear``."""
    return _pending


def clear() -> None:
    """Forget interrupts so far, held ones too (the server does, around each client's command)."""
    global _pending, _epoch
    _pending = False
    _epoch += 1


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold interrupts (raised when the block is over): for steps that must not be cut in two,
    such as creating a file and noting that it must be removed."""
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    if _holding or _in_native_code(frame):
        _thread.start_new_thread(_again, (signum, _epoch))
        return
    raise KeyboardInterrupt


def _again(signum: int, epoch: int) -> None:
    time.sleep(RETRY_SECONDS)
    if epoch == _epoch:
        signal.pthread_kill(_main, signum)  # to the main thread alone: a read it waits in is interrupted


def _in_native_code(frame: FrameType | None) -> bool:
    """Whether Python runs here for an import or a library's native code (polars, pyarrow, torch),
    where an exception would abort the process or panic (and print the panic)."""
    while frame is not None:
        package = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if package in NATIVE or frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
