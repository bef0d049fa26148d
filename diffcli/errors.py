"""Exit codes and the exceptions that carry them: the only place the codes live (README: "Exit codes")."""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Iterator


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    EXPRESSION = 3
    DATA = 4
    CHECK_FAILED = 5
    BROKEN_PIPE = 141  # 128 + SIGPIPE: what `yes | head` reports, without SIG_DFL's risks
    INTERRUPTED = 130


class DiffcliError(Exception):
    """An expected failure: one line for stderr and the exit code it maps to."""

    code = ExitCode.INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"diffcli: error: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class UsageError(DiffcliError):
    """A bad option value, an unknown device, a missing variable value."""

    code = ExitCode.USAGE


class ExpressionError(DiffcliError):
    """Expression text rejected: syntax, unknown name, disallowed construct or a limit.

    ``source`` and ``position`` (a 0-based offset into ``source``) draw a caret under the spot.
    """

    code = ExitCode.EXPRESSION

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        position: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.source = source
        self.position = position

    def render(self) -> str:
        text = f"diffcli: error: {self.message}"
        if self.source is not None and self.position is not None:
            text += f"\n  {self.source}\n  {' ' * self.position}^"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class DataError(DiffcliError):
    """Unreadable input data or a bad value in it."""

    code = ExitCode.DATA


class DisagreementError(DiffcliError):
    """``check`` found engines that disagree beyond the tolerances (after writing its report)."""

    code = ExitCode.CHECK_FAILED


# How messages name a parameter: ``wrt`` to a Python caller, ``--wrt`` on the command line,
# ``"wrt"`` in a ``run`` request.
_STYLE = contextvars.ContextVar("diffcli_spelling", default="python")
_SPELLED = {
    "mapping": "--map",
    "outputs": "--output-expr",
    "fmt": "--format",
    "correlation": "--corr",
    "covariance": "--cov",
    "tolerance": "--check-tolerance",
}  # flags not named as parameters


def spelling() -> str:
    """How the caller writes options: ``python``, ``flags`` (the command line) or ``fields`` (``run``)."""
    return _STYLE.get()


def option(name: str) -> str:
    """The parameter ``name`` as the caller writes it: ``tangent``, ``--tangent`` or ``"tangent"``."""
    style = _STYLE.get()
    if style == "flags":
        return _SPELLED.get(name, "--" + name.replace("_", "-"))
    return f'"{name}"' if style == "fields" else name


def example(name: str, flag: str, python: str) -> str:
    """An option with a value, as the caller writes it: ``--tangent x=1``, ``tangent={'x': 1}``
    or ``"tangent": {"x": 1}`` (``flag`` and ``python`` are the value in the two syntaxes)."""
    style = _STYLE.get()
    if style == "flags":
        return f"{option(name)} {flag}"
    return f'"{name}": {python.replace(chr(39), chr(34))}' if style == "fields" else f"{name}={python}"


@contextlib.contextmanager
def spelled(style: str) -> Iterator[None]:
    """Messages raised within write options in ``style`` (the CLI's commands run under ``flags``)."""
    token = _STYLE.set(style)
    try:
        yield
    finally:
        _STYLE.reset(token)
