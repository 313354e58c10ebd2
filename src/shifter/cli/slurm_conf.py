"""`shifter-slurm-conf plugstack|slurm|build`: the Slurm integration of this installation,
for site admins.

  plugstack [--shifter-config FILE]   the plugstack.conf line (absolute plugin path and
                                      arguments; more arguments may be appended)
  slurm [--shifter-config FILE]       the slurm.conf lines it needs, one Key=value a line
  build [--output PATH]               compile the SPANK plugin against the installed Slurm
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from shifter.cli import common

PROG = "shifter-slurm-conf"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("plugstack", "print the plugstack.conf line of this installation"),
        ("slurm", "print the slurm.conf lines the plugin needs"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--shifter-config",
            metavar="FILE",
            help="the udiRoot.conf the plugin uses (default /etc/shifter/udiRoot.conf)",
        )
    build = commands.add_parser(
        "build",
        help="compile shifter_slurm.so here",
        description="compile shifter_slurm.so against slurm/spank.h",
    )
    build.add_argument("--output", metavar="PATH", help="where to put it (default: the install's)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from shifter.wlm import plugin

    if args.command == "plugstack":
        lines = plugin.plugstack_lines(args.shifter_config)
        if not os.path.isfile(plugin.plugin_path()):
            print(
                f"{PROG}: warning: {plugin.plugin_path()} is not built yet (run {PROG} build)",
                file=sys.stderr,
            )
    elif args.command == "slurm":
        lines = plugin.slurm_lines()
    else:
        lines = [plugin.build(args.output)]
    for line in lines:
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return common.run_command(PROG, lambda: _run(args), debug=False)


if __name__ == "__main__":
    sys.exit(main())
