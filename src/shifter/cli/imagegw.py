"""`shifter-imagegw`: the image gateway's command, one module per subcommand.

    shifter-imagegw convert IMAGE_REF DEST_DIR   pull and convert one image (imagegw_convert)
    shifter-imagegw serve                        REST API and pull workers (imagegw_serve)
    shifter-imagegw prune                        shrink the layer cache (imagegw_prune)

Each subcommand module provides `add_parser(subparsers)`, which registers its options and
sets `handler` to the function that runs it. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shifter import __version__
from shifter.cli import common, imagegw_convert, imagegw_prune, imagegw_serve

PROG = "shifter-imagegw"
SUBCOMMANDS = (imagegw_convert, imagegw_serve, imagegw_prune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Shifter image gateway: pulls images from registries and converts them "
        "into the files the shifter runtime mounts.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="debug logging, and a traceback on errors"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # `import httpx` loads httpx's own command-line client (click, rich, pygments: ~15 ms of
    # every start) when those packages happen to be installed; it falls back to a stub when
    # that import fails, and this process never runs it.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    args = build_parser().parse_args(argv)
    common.configure_logging(debug=args.debug)
    return common.run_command(PROG, lambda: args.handler(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
