"""``python -m diffcli``: through the warm server if one runs, else cold."""

from .client import main

main()
