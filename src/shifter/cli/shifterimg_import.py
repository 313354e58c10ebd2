"""`shifterimg import FILE IMAGE`: make a ready-built image file available as IMAGE.

The gateway copies the file (one you can read, on a file system the gateway sees at the
same path) into the image store under the id of its content, then serves it like a pulled
image, e.g. `shifter --image=custom:mytool:v1`. Only users the gateway's `ImportUsers`
allows may import, and imported images are public. The status is printed as
for `pull`; the original needed curl for this.
"""

from __future__ import annotations

import argparse
import os
import stat

from shifter.cli.shifterimg_common import Context, describe
from shifter.errors import ShifterError

HELP = "import an image file (squashfs) built elsewhere"
_BY_SUFFIX = {
    ".squashfs": "squashfs", ".sqsh": "squashfs", ".sqfs": "squashfs", ".sfs": "squashfs",
    ".ext4": "ext4", ".cramfs": "cramfs",
}


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser(
        "import", parents=parents, help=HELP, description=describe(__doc__)
    )
    parser.add_argument("file", help="the image file")
    parser.add_argument(
        "image", help="the name to give it, e.g. mytool:v1 (the type defaults to custom)"
    )
    parser.add_argument(
        "--format", default=None, metavar="FORMAT",
        help="the file's format, as the gateway names it (default: from the file's suffix, "
        "else squashfs)",
    )
    parser.set_defaults(run=run)


def image_format(path: str, given: str | None) -> str:
    if given is not None:
        return given
    return _BY_SUFFIX.get(os.path.splitext(path)[1].lower(), "squashfs")


def checked_file(path: str) -> str:
    """The file's absolute, symlink-free path: the gateway reads it by that name."""
    resolved = os.path.realpath(path)
    try:
        info = os.stat(resolved)
    except OSError as exc:
        raise ShifterError(f"cannot import {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ShifterError(f"cannot import {path}: not a regular file")
    return resolved


def run(args: argparse.Namespace, ctx: Context) -> int:
    from shifter.cli.shifterimg_format import Progress
    from shifter.cli.shifterimg_pull import PullInterrupted

    # Imports are custom images: a docker: name would claim to come from a registry.
    image = ctx.image(args.image, default_type="custom")
    path = checked_file(args.file)
    client = ctx.client()
    progress = Progress(ctx.out, "Importing", str(image), verbose=ctx.verbose,
                        tty=ctx.tty, replies=lambda: ctx.replies_printed)
    try:
        client.import_and_wait(
            image.type.value, image.spec, path, image_format(path, args.format),
            on_status=progress.show,
        )
    except KeyboardInterrupt:
        progress.interrupted()
        raise PullInterrupted(
            f"interrupted; the gateway goes on importing {image}",
            hint=f"run `shifterimg lookup {image}` later to see whether it is ready",
        ) from None
    except BaseException:
        progress.interrupted()
        raise
    return 0
