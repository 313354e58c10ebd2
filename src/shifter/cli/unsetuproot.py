"""`unsetupRoot`: take down the job's container at udiMount and loopMount (as root).

Idempotent; exits 0 when nothing is left mounted (also when there was nothing to take
down) and 1 when mounts remain (the original always exited 0: an epilog should hear
about a node left with mounts), here or as copies in other processes' mount namespaces
(named, so that the site can end them). Processes still inside keep their (detached) tree.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "unsetupRoot"
MAX_NAMED = 10  # processes named in the message; the rest are counted
# How long copies may take to go. At a job's end the epilog can run while the job's
# processes are still exiting, and a launch in flight holds a copy for a moment before its
# namespace becomes a slave of the host's; only copies that outlast this are an error.
COPY_GRACE_S = 3.0
COPY_RESCAN_S = 0.05
HELP = """\
Usage: unsetupRoot [-v] [--debug]

Take down the container setupRoot built at udiMount: every mount at or below udiMount and
loopMount is detached (lazily, so processes still inside keep running), and the loop
devices detach when their last user is gone. Run as root, by the batch system's epilog.
Exits 1, naming the processes, when processes outside the container hold copies of its
mounts in mount namespaces of their own (made while it was up).

  -v, --verbose  print what was detached
      --debug    show tracebacks of errors
  -h, --help     show this help
"""


def _run(args: list[str]) -> int:
    from shifter.cli.rootcommand import load_config_as_root
    from shifter.errors import ShifterError
    from shifter.runtime.job.teardown import TeardownError, lingering_copies, teardown

    config, _ = load_config_as_root(PROG)
    unknown = [arg for arg in args if arg not in ("-v", "--verbose", "--debug")]
    if unknown:
        raise ShifterError(f"unexpected argument {unknown[0]!r}", hint=f"see {PROG} --help")
    report = teardown(config)
    if "-v" in args or "--verbose" in args:
        for path in report.detached:
            print(f"detached {path}")
        for device in report.still_attached:
            print(f"{device} stays attached until its last user is gone")
    holders = lingering_copies(config, report.root_devices)
    if holders:
        import time

        deadline = time.monotonic() + COPY_GRACE_S
        while holders and time.monotonic() < deadline:
            time.sleep(COPY_RESCAN_S)
            holders = lingering_copies(config, report.root_devices)
    if holders:
        shown = ", ".join(f"{pid} ({name})" for pid, name in holders[:MAX_NAMED])
        more = f" and {len(holders) - MAX_NAMED} more" if len(holders) > MAX_NAMED else ""
        raise TeardownError(
            f"copies of the container's mounts live on in other mount namespaces, held by "
            f"processes {shown}{more}",
            hint="they made a mount namespace while the container was up and keep its "
            "loop devices attached; end them, then run unsetupRoot again",
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return common.root_command_main(PROG, HELP, _run, argv)


if __name__ == "__main__":
    sys.exit(main())
