"""`shifterimg expire IMAGE` and `shifterimg autoexpire`: remove images (gateway admins).

`expire` removes one image from the system's image store; `autoexpire` removes every image
not looked up within the gateway's expiry time and prints the ids it queued. The gateway
decides who is an admin; anyone else gets an error (the original exited 0 regardless).
"""

from __future__ import annotations

import argparse

from shifter.cli.shifterimg_common import Context

EXPIRE_HELP = "remove an image from the system (gateway admins only)"
AUTOEXPIRE_HELP = "remove images unused for the gateway's expiry time (gateway admins only)"


def add_parsers(subparsers: argparse._SubParsersAction, parents: list) -> None:
    expire = subparsers.add_parser(
        "expire", parents=parents, help=EXPIRE_HELP, description=EXPIRE_HELP
    )
    expire.add_argument("image", help="the image, e.g. docker:ubuntu:22.04")
    expire.set_defaults(run=run_expire)
    autoexpire = subparsers.add_parser(
        "autoexpire", parents=parents, help=AUTOEXPIRE_HELP, description=AUTOEXPIRE_HELP
    )
    autoexpire.set_defaults(run=run_autoexpire)


def run_expire(args: argparse.Namespace, ctx: Context) -> int:
    image = ctx.image(args.image)
    ctx.client().expire(image.type.value, image.spec)
    return 0


def run_autoexpire(args: argparse.Namespace, ctx: Context) -> int:
    for image_id in ctx.client().autoexpire():
        ctx.out.write(f"{image_id}\n")
    return 0
