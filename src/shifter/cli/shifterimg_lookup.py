"""`shifterimg lookup IMAGE`: print the id of a READY image, as the runtime reads it.

The runtime takes the first line without a ':' of this output as the image id, so the id
is printed alone on its line. Exits 1 when the gateway has no such image for this user.
"""

from __future__ import annotations

from shifter.cli.shifterimg_common import Context, describe

TYPE_CHECKING = False  # `shifterimg lookup IMAGE` runs without argparse (shifterimg.py)
if TYPE_CHECKING:
    import argparse

HELP = "print the id of a pulled image"


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser(
        "lookup", parents=parents, help=HELP, description=describe(__doc__)
    )
    parser.add_argument("image", help="the image, e.g. docker:ubuntu:22.04 or ubuntu:22.04")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    return lookup(ctx, args.image)


def lookup(ctx: Context, text: str) -> int:
    """Print the id of the image `text` names."""
    image = ctx.image(text)
    record = ctx.client().lookup(image.type.value, image.spec)
    ctx.out.write(f"{record.id}\n")
    return 0
