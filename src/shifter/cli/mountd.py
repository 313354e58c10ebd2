"""`shifter-mountd`: the node's image mount helper, as root (runtime/image/mountd.py).

Serves udiRoot.conf's `mountHelperSocket` until SIGTERM or SIGINT, then detaches what is
still mounted. A systemd unit runs it on every node (shifter-mountd.service, written by
`shifter-site-install --mountd`); docs/mountd.md.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter-mountd"
KEEP_DEFAULT_S = 60.0
KEEP_MAX_S = 86400
HELP = """\
Usage: shifter-mountd [--keep SECONDS] [--debug]

Serve kernel mounts of squashfs images to launches without setupRoot, on udiRoot.conf's
mountHelperSocket (run as root, by systemd; docs/mountd.md). Stops on SIGTERM or SIGINT.

      --keep SECONDS  keep an image mounted this long after its last launch, so that
                 the page cache of what its containers read outlives them (default 60;
                 0: not at all)
      --debug    show tracebacks of errors
  -h, --help     show this help
"""


def _run(args: list[str]) -> int:
    from shifter.cli.rootcommand import load_config_as_root
    from shifter.errors import ShifterError
    from shifter.runtime.image.mountd import MountHelper

    config, _ = load_config_as_root(PROG)
    keep_s = KEEP_DEFAULT_S
    rest = list(args)
    if "--keep" in rest:
        at = rest.index("--keep")
        value = rest[at + 1] if at + 1 < len(rest) else ""
        if not value.isdigit() or int(value) > KEEP_MAX_S:
            raise ShifterError(f"--keep needs a number of seconds up to {KEEP_MAX_S}, "
                               f"not {value!r}")  # fmt: skip
        keep_s = float(value)
        del rest[at : at + 2]
    unknown = [arg for arg in rest if arg != "--debug"]
    if unknown:
        raise ShifterError(f"unexpected argument {unknown[0]!r}", hint=f"see {PROG} --help")
    if not config.mount_helper_socket:
        raise ShifterError(
            f"mountHelperSocket is not set in {config.source}",
            hint="set it to the socket's path, e.g. /run/shifter/mountd.sock",
        )
    helper = MountHelper(config, config.mount_helper_socket, keep_s)
    helper.start()

    def stop(signum: int, frame: object) -> None:
        helper.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{PROG}: serving {config.mount_helper_socket}", file=sys.stderr, flush=True)
    try:
        helper.serve()
    finally:
        helper.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.root_command_main(PROG, HELP, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
