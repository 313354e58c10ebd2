"""`shifterimg images`: the READY images of this system that the user may use.

The table is the original's (one row per tag, sorted by tag); `--json` prints the gateway's
records instead, as a JSON array, for scripts.
"""

from __future__ import annotations

from shifter.cli.shifterimg_common import Context, describe

TYPE_CHECKING = False  # `shifterimg images` runs without argparse (shifterimg.py)
if TYPE_CHECKING:
    import argparse

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
    return list_images(ctx, as_json=args.json)


def list_images(ctx: Context, *, as_json: bool = False) -> int:
    """Print the table (or, `as_json`, the records)."""
    from shifter.cli.shifterimg_format import image_rows

    records = ctx.client().images()
    if as_json:
        import json

        ctx.out.write(json.dumps([dict(record.raw) for record in records], indent=2) + "\n")
        return 0
    for row in image_rows(records):
        ctx.out.write(row + "\n")
    return 0
