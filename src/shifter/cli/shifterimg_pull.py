"""`shifterimg pull IMAGE`: have the gateway pull an image, printing its status until done.

The gateway is asked again every 0.5 s, as by the original, until the status leaves the
in-progress set. Unlike the original, a pull that ends in FAILURE exits 1. `--user` and
`--group` (comma lists of names or ids, repeatable) make the image private to them, if
the registry needed a login for it (an image anyone can pull stays public). Saved
registry logins (`shifterimg login`) go with every pull.
"""

from __future__ import annotations

import argparse
import grp
import pwd
import sys
from collections.abc import Callable, Iterable

from shifter.cli.shifterimg_common import Context, describe
from shifter.errors import ConfigError, ShifterError
from shifter.gwclient import Acl, ImageRecord

HELP = "pull an image into the system's image store through the gateway"


def add_acl_options(parser: argparse.ArgumentParser, *, main: bool = False) -> None:
    """`-u/--user`, `-g/--group`; on the main parser too, where the original took them.

    Those given before the command are kept under their own names: a subparser replaces,
    not extends, what the main parser collected under the same name.
    """
    prefix = "main_" if main else ""
    parser.add_argument(
        "-u", "--user", action="append", metavar="LIST", dest=f"{prefix}user",
        default=argparse.SUPPRESS,
        help="users (names or uids, comma-separated) allowed to use a private image",
    )
    parser.add_argument(
        "-g", "--group", action="append", metavar="LIST", dest=f"{prefix}group",
        default=argparse.SUPPRESS,
        help="groups (names or gids, comma-separated) allowed to use a private image",
    )


def acl_values(args: argparse.Namespace, kind: str) -> list[str]:
    """Every `--user` (or `--group`) value, given before or after the command."""
    return [*getattr(args, f"main_{kind}", []), *getattr(args, kind, [])]


def add_parser(subparsers: argparse._SubParsersAction, parents: list) -> None:
    parser = subparsers.add_parser(
        "pull", parents=parents, help=HELP, description=describe(__doc__)
    )
    add_acl_options(parser)
    parser.add_argument("image", help="the image, e.g. docker:ubuntu:22.04 or ubuntu:22.04")
    parser.set_defaults(run=run)


def _ids(
    items: Iterable[str], lookup: Callable[[str], int], kind: str
) -> tuple[int, ...]:
    ids: list[int] = []
    for item in items:
        for word in item.split(","):
            word = word.strip()
            if not word:
                continue
            try:
                number = lookup(word)
            except KeyError:
                if not word.isdigit():
                    raise ShifterError(
                        f"no {kind} named {word!r}",
                        hint=f"list {kind}s by name or number, comma-separated",
                    ) from None
                number = int(word)
            if number == 0:
                raise ShifterError(
                    f"{kind} {word!r} is root (id 0), which cannot be in an image ACL",
                    hint="root may use every image anyway; list the other users and groups",
                )
            if number not in ids:
                ids.append(number)
    return tuple(ids)


def parse_acl(users: Iterable[str], groups: Iterable[str]) -> Acl | None:
    """The ACL of `--user`/`--group` values; names first, then numbers, as the original."""
    acl = Acl(
        users=_ids(users, lambda name: pwd.getpwnam(name).pw_uid, "user"),
        groups=_ids(groups, lambda name: grp.getgrnam(name).gr_gid, "group"),
    )
    return acl if acl.users or acl.groups else None


class PullInterrupted(ShifterError):
    """Ctrl-C while waiting: only the waiting stops, not the gateway's pull."""

    exit_code = 130


def run(args: argparse.Namespace, ctx: Context) -> int:
    from shifter.cli.shifterimg_format import Progress
    from shifter.gwclient.logins import authorized_locations

    image = ctx.image(args.image)
    acl = parse_acl(acl_values(args, "user"), acl_values(args, "group"))
    client = ctx.client()
    try:
        credentials = authorized_locations(ctx.system)
    except ConfigError as error:
        # A broken login file must not stop pulls that need no login: say why it is
        # unused, and go on without it.
        print(f"shifterimg: warning: your registry logins are not used: {error}"
              + (f" (hint: {error.hint})" if error.hint else ""), file=sys.stderr)
        credentials = {}
    progress = Progress(ctx.out, "Pulling", str(image), verbose=ctx.verbose,
                        tty=ctx.tty, replies=lambda: ctx.replies_printed)
    try:
        record = client.pull_and_wait(
            image.type.value, image.spec, acl=acl, credentials=credentials,
            on_status=progress.show,
        )
    except KeyboardInterrupt:
        progress.interrupted()
        raise PullInterrupted(
            f"interrupted; the gateway goes on pulling {image}",
            hint=f"run `shifterimg pull {image}` again to follow it, or `shifterimg lookup "
            f"{image}` later",
        ) from None
    except BaseException:
        progress.interrupted()
        raise
    _warn_if_public(record, acl)
    return 0


def _warn_if_public(record: ImageRecord, acl: Acl | None) -> None:
    # The gateway keeps ACLs only for images whose registry needed a login; say so, or a
    # user would believe an image private that everybody can use.
    if acl is not None and not record.user_acl and not record.group_acl:
        print(
            "shifterimg: note: the image is public: its registry needs no login, so the "
            "gateway ignored --user/--group",
            file=sys.stderr,
        )
