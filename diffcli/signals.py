"""Ctrl-C at any moment ends a command with exit 130 (README: "Exit codes"), never with a crash.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside an import that
runs C++ or Rust code calling back into Python (torch's, polars'), an exception there aborts the
whole process (``terminate called ... pybind11::error_already_set``, exit 134). So an interrupt
that arrives during an import is held and raised the moment the import is over; and ``pending``
tells the error boundary that whatever escaped after it (a Rust panic while a callback was being
interrupted) is the interrupt's doing. Standard library only: the client installs it first.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

RETRY_SECONDS = 0.05  # how soon an interrupt held during an import is delivered again
_pending = False


def install() -> None:
    """Handle SIGINT in this process (from the main thread; elsewhere Python allows no handlers)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_interrupt)


def pending() -> bool:
    """Whether Ctrl-C (or a client's interrupt, in the server) came since the last ``clear``."""
    return _pending


def clear() -> None:
    """Forget a handled interrupt (the server does, between its clients' commands)."""
    global _pending
    _pending = False


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    if _importing(frame):
        threading.Timer(RETRY_SECONDS, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
