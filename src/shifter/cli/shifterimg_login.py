"""`shifterimg login [LOCATION]` and `shifterimg logout [LOCATION]`: registry logins.

Asks for the user name and password of a registry location (a name the gateway lists
under `Locations`, or `default`, which the gateway uses for its default registry when no
login names that registry) and saves them for this system in a file only the user can
read. Every later `shifterimg pull` sends the saved logins to the gateway inside its munge
credential, so private images can be pulled. The prompts read the terminal (/dev/tty) with
the password not echoed; `--username` and `--password-stdin` serve scripts.
`shifterimg logout` forgets a login.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import warnings

from shifter.cli.shifterimg_common import Context
from shifter.errors import ShifterError

LOGIN_HELP = "save a registry login, sent with your pulls"
LOGOUT_HELP = "forget a saved registry login"


def add_parsers(subparsers: argparse._SubParsersAction, parents: list) -> None:
    from shifter.gwclient.logins import DEFAULT_LOCATION

    login = subparsers.add_parser(
        "login", parents=parents, help=LOGIN_HELP,
        description=" ".join(__doc__.split("\n\n")[1].split()),
    )
    login.add_argument(
        "location", nargs="?", default=DEFAULT_LOCATION,
        help=f"registry location (default: {DEFAULT_LOCATION})",
    )
    login.add_argument("--username", help="the user name (default: ask)")
    login.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of standard input",
    )
    login.set_defaults(run=run_login)
    logout = subparsers.add_parser(
        "logout", parents=parents, help=LOGOUT_HELP, description=LOGOUT_HELP
    )
    logout.add_argument(
        "location", nargs="?", default=DEFAULT_LOCATION,
        help=f"registry location (default: {DEFAULT_LOCATION})",
    )
    logout.set_defaults(run=run_logout)


NO_INPUT_HINT = ("run it on a terminal, or give --username and pipe the password with "
                 "--password-stdin")


def _read_line(prompt: str) -> str:
    """Ask on the terminal, as the original did; from stdin when there is none."""
    try:
        terminal = open("/dev/tty", "r+")  # noqa: SIM115 - closed below, fallback on failure
    except OSError:
        sys.stderr.write(prompt)
        sys.stderr.flush()
        line = sys.stdin.readline()
    else:
        with terminal:
            terminal.write(prompt)
            terminal.flush()
            line = terminal.readline()
    if not line:
        raise ShifterError("no user name given: the input ended", hint=NO_INPUT_HINT)
    return line.rstrip("\r\n")


def _read_password(prompt: str) -> str:
    # Without a terminal getpass reads stdin with echo on and warns about it; here that is
    # the expected way to feed it (a pipe), so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", getpass.GetPassWarning)
        try:
            return getpass.getpass(prompt)
        except EOFError:
            raise ShifterError("no password given: the input ended",
                               hint=NO_INPUT_HINT) from None


def run_login(args: argparse.Namespace, ctx: Context) -> int:
    from shifter.gwclient.logins import Login, check_location, save_login

    location = check_location(args.location)
    system = ctx.system
    username = args.username if args.username is not None else _read_line(
        f"{location} username: "
    )
    if not username.strip():
        raise ShifterError("no user name given", hint="type the registry user name")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = _read_password(f"{location} password: ")
    path = save_login(system, location, Login(username, password))
    ctx.out.write(f"Saved the login for {location} on {system} in {path}\n")
    return 0


def run_logout(args: argparse.Namespace, ctx: Context) -> int:
    from shifter.gwclient.logins import check_location, remove_login

    location = check_location(args.location)
    if remove_login(ctx.system, location):
        ctx.out.write(f"Removed the login for {location} on {ctx.system}\n")
    else:
        print(f"shifterimg: no login saved for {location} on {ctx.system}", file=sys.stderr)
    return 0
