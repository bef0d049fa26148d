"""diffcli: a command-line differentiation calculator.

The pipeline, one module per stage: ``language`` (text -> SymPy), ``transforms`` (the symbolic
plan of each command), ``lower`` (SymPy -> torch), ``sources`` (points), ``sinks`` (output),
and ``cli`` (the typer app). Importing the package imports neither torch nor sympy.
"""

__version__ = "0.1.0"
