"""`setupRoot [-V] [-v VOLUME]... [-s SSH_PUBKEY] [-u USER] [-U UID] [-G GID] [-N NODESPEC]
[-m MODULES] [--gpus LIST] IMAGE_TYPE IMAGE_ID`: build a job's container at udiMount (as root).

The original's command line, parsed with getopt as the original did. Order: udiRoot.conf
is loaded and checked first, then root is required, then the arguments are read (only
`--help` works before all that). `-s PUBKEY` starts the job's sshd in the container
(runtime/job/sshd.py). `-N` writes the hostsfile.
"""

from __future__ import annotations

import sys

from shifter.cli import common

TYPE_CHECKING = False  # `typing` costs start-up time (setupRoot runs in every job's prolog)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from shifter.runtime.job.setup import SetupRequest

PROG = "setupRoot"
# The original's getopt string "Vv:s:u:U:G:N:m:", in `shifter`'s option tables (whose
# parser follows getopt's rules; the getopt module would import gettext and re).
SHORT = {
    "h": ("flag", "help"),
    "V": ("flag", "verbose"),
    "v": ("required", "volume"),
    "s": ("required", "ssh_pubkey"),
    "u": ("required", "user"),
    "U": ("required", "uid"),
    "G": ("required", "gid"),
    "N": ("required", "nodespec"),
    "m": ("required", "modules"),
}
LONG = {"help": ("flag", "help"), "debug": ("flag", "debug"), "gpus": ("required", "gpus")}
HELP = """\
Usage: setupRoot [-V] [-v VOLUME]... [-s SSH_PUBKEY] [-u USER] [-U UID] [-G GID]
                 [-N NODESPEC] [-m MODULES] [--gpus LIST] IMAGE_TYPE IMAGE_ID

Build the container of a job at udiMount (run as root, by the batch system's prolog).
The job's user then enters it with `shifter` when it asks for the same image, volumes and
modules; unsetupRoot takes it down.

  -u USER        the job's user (required)
  -U UID         the user's uid (default: USER's); must agree with USER
  -G GID         the job's gid (default: USER's primary group)
  -v VOLUME      a user volume, SRC:DEST[:ro|:perNodeCache=size=SIZE[,fs=xfs]] (repeatable)
  -m MODULES     site modules, comma-separated, or none (default: the site's)
  -V             print what was built, and udiRoot.conf's warnings on stderr
      --gpus LIST  the job's GPUs (indices or GPU-<uuid>, comma-separated; the batch
                 system's plugin passes the job's allocation): their device nodes and
                 the site's GPU driver files go into the container (docs/gpu.md)
  -s SSH_PUBKEY  start the job's sshd in the container, as the user, accepting only this key
  -N NODESPEC    the hostsfile, "HOST/COUNT ..." (each HOST COUNT times in /var/hostsfile)
      --debug    show tracebacks of errors
  -h, --help     show this help

IMAGE_TYPE is id (IMAGE_ID names <imagePath>/IMAGE_ID.meta), docker or custom (looked up
at the image gateway), or local (with allowLocalChroot=1).
"""


def _number(option: str, value: str) -> int:
    from shifter.errors import ShifterError

    if not value.isdigit():
        raise ShifterError(f"{option} {value}: expected a number", hint=f"see {PROG} --help")
    return int(value)


def _request(args: list[str]) -> tuple[SetupRequest, bool]:
    from shifter.cli.shifter import UsageError, parse_options
    from shifter.errors import ShifterError
    from shifter.runtime.job.setup import SetupRequest

    try:
        options, positional = parse_options(args, SHORT, LONG, ("volume",))
    except UsageError as error:
        raise ShifterError(str(error), hint=f"see {PROG} --help") from None
    if len(positional) != 2:
        raise ShifterError(
            "must specify image type and image identifier", hint=f"see {PROG} --help"
        )

    def text(name: str) -> str | None:
        value = options.get(name)
        return None if value is None else str(value)

    uid, gid = text("uid"), text("gid")
    request = SetupRequest(
        positional[0],
        positional[1],
        volumes=tuple(options.get("volume", ())),  # type: ignore[arg-type]
        user=text("user"),
        uid=None if uid is None else _number("-U", uid),
        gid=None if gid is None else _number("-G", gid),
        modules=text("modules"),
        ssh_pubkey=text("ssh_pubkey"),
        nodespec=text("nodespec"),
        gpus=text("gpus"),
    )
    return request, bool(options.get("verbose"))


def _run(args: list[str]) -> int:
    from shifter.cli.rootcommand import load_config_as_root
    from shifter.runtime.job.setup import setup_root
    from shifter.runtime.trace import Steps

    config, stamp = load_config_as_root(PROG)
    request, verbose = _request(args)
    if verbose:
        common.configure_logging(debug=True)
        common.print_config_warnings(PROG, config)
    result = setup_root(config, request, config_stamp=stamp, steps=Steps(verbose))
    if verbose:
        device = f" on {result.loop_device}" if result.loop_device else ""
        print(f"udiMount: {config.udi_mount}")
        print(f"image: {result.image_path}{device}")
        print(f"signature: {result.signature}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.root_command_main(PROG, HELP, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
