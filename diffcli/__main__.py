"""``python -m diffcli`` and the console script: Ctrl-C handled from the first moment diffcli's
code runs, then the command, through the warm server if one runs, else cold."""

from . import signals

signals.install()

import contextlib  # noqa: E402 - after the handler: importing takes a moment too
import os  # noqa: E402
import sys  # noqa: E402

from . import client  # noqa: E402 - the standard library only: a warm answer imports nothing more


def main() -> None:
    """The console script: the command through a warm server if one may answer it, else cold."""
    args = sys.argv[1:]
    try:
        client.hold_closed_streams()
        if args[:1] != ["serve"] and not os.environ.get("DIFFCLI_NO_SERVER"):
            code = client.through_server(args)
            if code is not None:
                os._exit(code)
        from .cli import main as cold

        cold()
    except KeyboardInterrupt:  # before any command started: still no traceback
        with contextlib.suppress(OSError):
            sys.stderr.write("diffcli: interrupted\n")
            sys.stderr.flush()
        os._exit(130)


if __name__ == "__main__":
    main()
