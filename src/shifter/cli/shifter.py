"""`shifter`: run a command inside an image (the runtime's entry point).

This is the latency-critical launch path: standard library and `shifter.runtime` only.
Like the original, the configuration is loaded and validated before anything else, and a
container process is never run as root.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter"


def _launch(argv: list[str]) -> int:
    from shifter.errors import PermissionDeniedError, ShifterError
    from shifter.runtime.config import load_udiroot_config

    load_udiroot_config()
    if os.getuid() == 0 or os.getgid() == 0:
        raise PermissionDeniedError(
            "shifter does not run containers as root (uid 0 or gid 0)",
            hint="run it as an ordinary user; root prepares job environments with setupRoot",
        )
    raise ShifterError(
        "the container runtime is not built yet in this version",
        hint="the configuration is valid; container launch arrives with the runtime issue",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    return common.run_command(PROG, lambda: _launch(args), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
