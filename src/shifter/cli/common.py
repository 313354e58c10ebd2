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

TYPE_CHECKING = False  # the `typing` module itself costs start-up time on the launch path
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn, TextIO

    from shifter.runtime.config.load import UdiRootConfig

EXIT_INTERRUPTED = 130
EXIT_BUG = 70  # EX_SOFTWARE: an internal error, not the user's


def log_format() -> str:
    """`host:pid LEVEL logger: message`; the pid is the record's, so forks stay right."""
    return f"{os.uname().nodename}:%(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(
    *, debug: bool = False, level: str = "WARNING", stream: TextIO | None = None
) -> None:
    """Log to stderr with the `host:pid` prefix. Calling it again only changes the level:
    the handler is installed once per process."""
    import logging

    root = logging.getLogger()
    if not any(getattr(h, "shifter_handler", False) for h in root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(log_format()))
        handler.shifter_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else level)


def print_config_warnings(prog: str, config: UdiRootConfig, stream: TextIO | None = None) -> None:
    """udiRoot.conf's warnings (deprecated keys, repeated keys), one line each, on stderr."""
    out = stream or sys.stderr
    for warning in config.warnings:
        print(f"{prog}: warning: {warning}", file=out)
    out.flush()


def check_config(prog: str, config: UdiRootConfig, out: TextIO) -> int:
    """`--check-config`: the loaded file's warnings on stderr, a summary on `out`; 0.
    (A file that does not load has already raised, which ends the command with 1.)"""
    print_config_warnings(prog, config)
    count = len(config.warnings)
    noun = "warning" if count == 1 else "warnings"
    print(f"{config.source}: loads ({count} {noun})", file=out)
    return 0


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


def exit_now(status: int) -> NoReturn:
    """End the process with `status` after flushing the standard streams, skipping the
    interpreter's finalization (module teardown costs a short command milliseconds). Only
    for commands that hold nothing else to flush or release. A failed flush exits 120,
    as the interpreter does."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = 120
    os._exit(status)


def print_version(prog: str, args: list[str]) -> bool:
    """`PROG --version` as the first argument: print `PROG VERSION` and say so (the callers
    then exit 0 before reading any configuration)."""
    if args[:1] != ["--version"]:
        return False
    from shifter import __version__

    print(f"{prog} {__version__}")
    return True


def root_command_main(
    prog: str, help_text: str, run: Callable[[list[str]], int | None], argv: Sequence[str] | None
) -> int:
    """The `main` of a root command whose options `run` reads itself (setupRoot,
    unsetupRoot, shifter-mountd): `--version` and `--help` first, then `run(args)` with
    errors reported as every command reports them."""
    args = list(sys.argv[1:] if argv is None else argv)
    if print_version(prog, args):
        return 0
    if "-h" in args or "--help" in args:
        sys.stdout.write(help_text)
        return 0
    return run_command(prog, lambda: run(args), debug="--debug" in args)
