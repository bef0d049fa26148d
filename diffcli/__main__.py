"""``python -m diffcli``."""

from .cli import main

main()
