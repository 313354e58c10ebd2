"""`shifterimg images`: the READY images of this system that the user may use.

The table is the original's (one row per tag, sorted by tag); `--json` prints the gateway's
records instead, as a JSON array, for scripts.
"""

from __future__ import annotations

import argparse
import json

from shifter.cli.shifterimg_common import Context, describe

HELP = "list the images of this system"


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser(
        "images", parents=parents, help=HELP, description=describe(__doc__)
    )
    parser.add_argument(
        "--json", action="store_true", help="print the gateway's image records as JSON"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    from shifter.cli.shifterimg_format import image_rows

    records = ctx.client().images()
    if args.json:
        ctx.out.write(json.dumps([dict(record.raw) for record in records], indent=2) + "\n")
        return 0
    for row in image_rows(records):
        ctx.out.write(row + "\n")
    return 0
