"""`shifter-udiimage`: install the udiImage's OpenSSH (sshd, ssh, ssh-keygen with their
libraries and their own loader, libprep/sshbundle.py) and its `etc` templates. Run by
scripts/install.sh; without TARGET, the installation's own udiImage directory, the one
setupRoot uses when udiRoot.conf leaves optUdiImage unset. See docs/sshd.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter-udiimage"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Copy the host's sshd, ssh and ssh-keygen with their library closure and "
        "loader to TARGET/{sbin,bin,lib}, patched to load only from /opt/udiImage/lib, and "
        "write TARGET/etc/sshd_config and ssh_config unless they exist.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("target", metavar="TARGET", nargs="?",
                        help="the udiImage directory (default: the installation's own)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)

    def run() -> int:
        from shifter.libprep.sshbundle import build
        from shifter.runtime.rootfs.udiimage import installed_udi_image

        target = args.target or installed_udi_image()
        written = build(target)
        for path in written:
            print(f"written: {path}")
        if not written:
            print(f"unchanged: {target}")
        return 0

    return common.run_command(PROG, run, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
