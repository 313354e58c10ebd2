"""`python -m shifter.cli.launcher PATH...`: write `shifter`, `setupRoot`, `unsetupRoot` and
`shifterimg` scripts that start Python isolated.

pip's console script runs the interpreter with `site`, which reads every `.pth` file in
site-packages (an editable install's path entry, setuptools' distutils hook) before
`shifter` imports anything: about 2 ms of every launch. The script written here starts with
`#!PYTHON -IS` and puts the directory holding the `shifter` package, then site-packages, on
`sys.path` itself. Isolated mode also keeps the caller's PYTHONPATH, PYTHONHOME and user
site-packages out of the launcher: the command imports what the site installed. That
matters most for setupRoot and unsetupRoot, which a job prolog and epilog run as root.

Each PATH's file name says which command it launches (`COMMANDS`). `scripts/install.sh`
replaces the venv's `bin/shifter`, `bin/setupRoot`, `bin/unsetupRoot` and `bin/shifterimg`
(which workflow tools call in loops) with them; a site
that installs with pip can run this module the same way. A later `pip install` writes pip's
scripts back, which are slower but otherwise the same.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from collections.abc import Sequence

# Linux reads at most this much of a `#!` line; a longer one would be cut silently.
SHEBANG_MAX = 255
# The commands that get an isolated launcher, by file name: the module whose `main` runs.
COMMANDS = {
    "shifter": "shifter.cli.shifter",
    "setupRoot": "shifter.cli.setuproot",
    "unsetupRoot": "shifter.cli.unsetuproot",
    "shifterimg": "shifter.cli.shifterimg",
    "shifter-slurm-hook": "shifter.cli.slurm_hook",  # run as root by the Slurm plugin
    "shifter-mountd": "shifter.cli.mountd",  # the node's image mount helper, root
}


def launcher_text(
    python: str, package_parent: str, site_packages: str, module: str = "shifter.cli.shifter"
) -> str:
    """The script: `python -IS`, the package's parent then site-packages on sys.path."""
    paths = [package_parent]
    if site_packages != package_parent:
        paths.append(site_packages)
    return (
        f"#!{python} -IS\n"
        "# Written by `python -m shifter.cli.launcher`: isolated and without `site`, because\n"
        "# start-up time is part of every launch (docs/performance.md).\n"
        "import sys\n"
        f"sys.path += {paths!r}\n"
        f"from {module} import main\n"
        "sys.exit(main())\n"
    )


def shebang_problem(python: str) -> str | None:
    """Why `python` cannot be named on a `#!` line, or None."""
    if any(char.isspace() for char in python):
        return f"the interpreter path {python!r} contains whitespace"
    if len(f"#!{python} -IS") > SHEBANG_MAX:
        return f"the interpreter path is longer than a #! line allows ({SHEBANG_MAX})"
    return None


def write_launcher(
    target: str,
    python: str,
    package_parent: str,
    site_packages: str,
    module: str = "shifter.cli.shifter",
) -> None:
    """Write the script to `target` (mode 0755), replacing what is there in one step."""
    temporary = f"{target}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(launcher_text(python, package_parent, site_packages, module))
    os.chmod(temporary, 0o755)
    os.replace(temporary, target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shifter.cli.launcher",
        description="Write command scripts that start this Python with -I -S.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help=f"where to write one, e.g. the venv's bin/shifter; its file name is one of "
        f"{', '.join(COMMANDS)}",
    )
    args = parser.parse_args(argv)
    unknown = [path for path in args.paths if os.path.basename(path) not in COMMANDS]
    if unknown:
        parser.error(f"no command is named {os.path.basename(unknown[0])!r}")
    python = os.path.abspath(sys.executable)
    problem = shebang_problem(python)
    if problem is not None:
        left = ", ".join(args.paths)
        print(f"shifter.cli.launcher: {problem}; {left} left as they are", file=sys.stderr)
        return 1
    import shifter

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(shifter.__file__)))
    for path in args.paths:
        module = COMMANDS[os.path.basename(path)]
        write_launcher(path, python, package_parent, sysconfig.get_path("purelib"), module)
    return 0


if __name__ == "__main__":
    sys.exit(main())
