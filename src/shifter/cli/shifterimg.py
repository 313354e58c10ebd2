"""`shifterimg`: the image gateway's client (pull, lookup, images, login, expire, import)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifterimg"


def _run() -> int:
    from shifter.errors import ShifterError
    from shifter.runtime.config import load_udiroot_config

    load_udiroot_config()
    raise ShifterError(
        "shifterimg is not built yet in this version",
        hint="the configuration is valid; the client arrives with the gateway issue",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return common.run_command(PROG, _run, debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(main())
