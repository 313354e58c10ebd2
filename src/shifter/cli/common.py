"""What every shifter command shares: how errors reach the user, `--debug`, logging.

A `ShifterError` is printed as `PROG: message` plus `hint: ...` on stderr and the command
exits with the error's `exit_code`; with `--debug` the chained traceback follows. Any other
exception is a bug: one line says so, and `--debug` shows where. Logging is configured once
per process with a `host:pid` prefix, because a thousand ranks of one job write to one log.

Cheap to import (the `shifter` launch path uses it): only `os` and `sys` at module level.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

EXIT_INTERRUPTED = 130
EXIT_BUG = 70  # EX_SOFTWARE: an internal error, not the user's


def log_prefix() -> str:
    """`host:pid`, the prefix of every log line."""
    return f"{os.uname().nodename}:{os.getpid()}"


def configure_logging(
    *, debug: bool = False, level: str = "WARNING", stream: TextIO | None = None
) -> None:
    """Send log records to stderr as `host:pid LEVEL logger: message`; once per process."""
    import logging

    root = logging.getLogger()
    if getattr(configure_logging, "_configured", False):
        root.setLevel(logging.DEBUG if debug else level)
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(f"{log_prefix()} %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else level)
    configure_logging._configured = True  # type: ignore[attr-defined]


def report_error(
    prog: str, error: BaseException, *, debug: bool, stream: TextIO | None = None
) -> None:
    """Print `error` the way every command does (the traceback only with `debug`)."""
    from shifter.errors import ShifterError

    out = stream or sys.stderr
    if debug:
        import traceback

        traceback.print_exception(error, file=out)
    if isinstance(error, ShifterError):
        lines = str(error).splitlines() or [type(error).__name__]
        print(f"{prog}: {lines[0]}", file=out)
        for line in lines[1:]:
            print(f"  {line}", file=out)
        if error.hint:
            print(f"hint: {error.hint}", file=out)
    else:
        print(f"{prog}: internal error: {type(error).__name__}: {error}", file=out)
        if not debug:
            print("hint: run again with --debug for the traceback, and report it", file=out)
    out.flush()


def run_command(prog: str, action: Callable[[], int | None], *, debug: bool) -> int:
    """Run `action` and turn what it raises into a message and an exit status."""
    from shifter.errors import ShifterError

    try:
        return action() or 0
    except ShifterError as error:
        report_error(prog, error, debug=debug)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        report_error(prog, error, debug=debug)
        return EXIT_BUG
