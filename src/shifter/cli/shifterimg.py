"""`shifterimg`: the image gateway's client (pull, lookup, images, login, expire, import).

As in the original, udiRoot.conf is loaded and validated before anything else (only
`--help` works without it): `imageGateway` names the gateways, `system` this cluster,
`gatewayTimeout` bounds each request. Options may come before the subcommand, as the
original required, or after it. Exit status: 0 success, 1 failure (the message says
which), 2 a usage error, 130 interrupted. `docs/shifterimg.md` describes every command.

Workflow tools call `shifterimg lookup IMAGE` (and `images`) in loops: exactly those two
command lines run without argparse (~7 ms to import) and the parser's modules; every other
command line, `--help` included, goes through the parser.
"""

from __future__ import annotations

import gc
import sys

from shifter.cli import common

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from shifter.cli.shifterimg_common import Context

PROG = "shifterimg"
EPILOG = (
    "IMAGE is [TYPE:]NAME, e.g. docker:ubuntu:22.04 or ubuntu:22.04 (TYPE defaults to "
    "udiRoot.conf's defaultImageType). SHIFTER_CONFIG names another udiRoot.conf, "
    "SHIFTER_MUNGE_SOCKET another munged socket."
)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from shifter.cli import (
        shifterimg_expire,
        shifterimg_images,
        shifterimg_import,
        shifterimg_login,
        shifterimg_lookup,
        shifterimg_pull,
    )

    # SUPPRESS: an option given before the subcommand is not reset by the subparser's default.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="print every gateway reply (Message: ...) and each status on its own line",
    )
    shared.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="log each request and show the traceback of an error",
    )
    parser = argparse.ArgumentParser(
        prog=PROG, parents=[shared], epilog=EPILOG,
        description="Pull, list and look up the container images of this system's "
        "image gateway.",
    )
    shifterimg_pull.add_acl_options(parser, main=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = [shared]
    shifterimg_pull.add_parser(subparsers, parents)
    shifterimg_lookup.add_parser(subparsers, parents)
    shifterimg_images.add_parser(subparsers, parents)
    shifterimg_login.add_parsers(subparsers, parents)
    shifterimg_expire.add_parsers(subparsers, parents)
    shifterimg_import.add_parser(subparsers, parents)
    return parser


def _run(argv: list[str]) -> int:
    from shifter.cli.shifterimg_common import Context
    from shifter.runtime.config.load import load_udiroot_config

    parser = build_parser()
    if "-h" in argv or "--help" in argv:
        parser.parse_args(argv)  # prints the help and exits 0
    config = load_udiroot_config()
    args = parser.parse_args(argv)
    if getattr(args, "debug", False):
        common.configure_logging(debug=True)
    if args.command != "pull" and ("main_user" in args or "main_group" in args):
        parser.error("--user and --group only apply to pull")
    ctx = Context(config, verbose=getattr(args, "verbose", False))
    return args.run(args, ctx)


def _quick(argv: list[str]) -> Callable[[], int] | None:
    """`lookup IMAGE` and `images`, exactly: what they do, without the parser; else None."""
    if len(argv) == 2 and argv[0] == "lookup" and not argv[1].startswith("-"):
        from shifter.cli.shifterimg_lookup import lookup

        return lambda: lookup(_context(), argv[1])
    if argv == ["images"]:
        from shifter.cli.shifterimg_images import list_images

        return lambda: list_images(_context())
    return None


def _context() -> Context:
    from shifter.cli.shifterimg_common import Context
    from shifter.runtime.config.load import load_udiroot_config

    return Context(load_udiroot_config())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if common.print_version(PROG, args):
        return 0
    action = _quick(args)
    if action is not None:
        # Called in loops: no collections during the imports (~1.5 ms), and as a program
        # no interpreter finalization either (~2 ms of module teardown), nothing being left
        # to clean up but the output.
        gc.disable()
        status = common.run_command(PROG, action, debug=False)
        if argv is None:
            common.exit_now(status)
        gc.enable()
        return status
    return common.run_command(PROG, lambda: _run(args), debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(main())
