"""`shifter-prep-libs`: prepare a site's libraries (an MPI, a GPU runtime) as a module tree
for udiRoot.conf's `module_<name>_copyPath` (or a siteFs bind), the seed's
`prep_cray_mpi_libs.py` generalised. See docs/mpi.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter-prep-libs"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Copy LIBRARY files (and the symlinks naming them) to TARGET/lib64 and "
        "their dependencies, found as the dynamic loader would find them (the C library's "
        "own excepted), to TARGET/lib64/dep; set the DT_RPATH of every copied library to "
        "/opt/udiImage/modules/NAME/lib64/dep. Running it again changes only what differs.",
    )
    parser.add_argument("--module", required=True, metavar="NAME",
                        help="the module's name in udiRoot.conf (module_NAME_copyPath)")
    parser.add_argument("--dry-run", action="store_true",
                        help="only list what would be copied and linked")
    parser.add_argument("--mpich-abi-hook", action="store_true",
                        help="also write TARGET/bin/init.sh, a userhook refusing images "
                        "whose MPI does not follow the MPICH ABI")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("target", metavar="TARGET", help="the module tree's directory")
    parser.add_argument("libraries", metavar="LIBRARY", nargs="+",
                        help="shared libraries (symlinks are copied as symlinks)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from shifter.libprep import prep
    from shifter.libprep.mpichhook import HOOK_PATH, write_hook

    steps = prep.plan(args.module, args.libraries)
    print(f"rpath {prep.module_rpath(args.module)}")
    if args.dry_run:
        for step in steps:
            print(step.describe(args.target))
        if args.mpich_abi_hook:
            print(f"write {args.target}/{HOOK_PATH}")
        return 0
    results = prep.apply(args.module, args.target, steps)
    for status, step in results:
        print(f"{status}: {step.describe(args.target)}")
    if args.mpich_abi_hook:
        path, changed = write_hook(args.target)
        print(f"{'written' if changed else 'unchanged'}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    return common.run_command(PROG, lambda: _run(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
