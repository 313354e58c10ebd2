"""`unsetupRoot`: tears down the job's container environment at udiMount (as root)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "unsetupRoot"


def _run() -> int:
    from shifter.cli.rootcommand import load_config_as_root
    from shifter.errors import ShifterError

    load_config_as_root(PROG)
    raise ShifterError(
        f"{PROG} is not built yet in this version",
        hint="the configuration is valid; it arrives with the runtime issue",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return common.run_command(PROG, _run, debug="--debug" in args)


if __name__ == "__main__":
    sys.exit(main())
