"""diffcli: a differentiation calculator for the shell, and the Python library under it.

    import diffcli
    f = diffcli.formula("x**2*sin(y)")
    f.grad({"x": 1.0, "y": 2.0})   # {'x': array([1.]), 'y': ..., 'value': ..., 'grad_x': ..., 'grad_y': ...}

The pipeline, one module per stage: ``language`` (text -> SymPy), ``transforms`` (the symbolic
plan of each command), ``lower`` (SymPy -> torch), ``data`` (tables in memory), ``sources`` and
``readers`` (points and files), ``pipeline`` (batches), ``sinks`` (output); ``api`` is the Python
API over them, and ``cli`` (typer), ``session`` (``diffcli run``) and ``server`` are shells over
it. Importing the package imports neither torch nor SymPy: they load when a formula is first made.
"""

from typing import TYPE_CHECKING, Any

from .errors import DataError, DiffcliError, DisagreementError, ExpressionError, UsageError

__version__ = "0.1.0"
__all__ = [
    "DataError", "DiffcliError", "DisagreementError", "ExpressionError", "Formula", "UsageError", "formula", "scan",
]  # fmt: skip

if TYPE_CHECKING:
    from .api import Formula, formula, scan


def __getattr__(name: str) -> Any:
    """``formula``, ``scan`` and ``Formula`` from ``api``, imported when first asked for."""
    if name in ("formula", "scan", "Formula"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffcli' has no attribute {name!r}")
