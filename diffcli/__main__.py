"""``python -m diffcli`` and the console script: Ctrl-C handled from the first moment diffcli's
code runs, then the command, through the warm server if one runs, else cold."""

from . import signals

signals.install()

from .client import main  # noqa: E402 - after the handler: importing takes a moment too

if __name__ == "__main__":
    main()
