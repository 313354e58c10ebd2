"""The SPANK plugin of this installation: where it lives, how it is built, and the
configuration lines a site pastes into plugstack.conf and slurm.conf.

Slurm loads only plugins built against its own version, so the plugin is compiled on the
machine (`shifter-slurm-conf build`, run by the install) from `shifter_slurm.c` and the
installed `slurm/spank.h` (Debian: libslurm-dev). It goes to `<prefix>/lib/shifter/`, next
to this installation's commands (never a build directory a clean-up may remove), and runs
`<prefix>/bin/shifter-slurm-hook`, whose path is compiled in.
"""

from __future__ import annotations

import os
import sys
from importlib import resources

from shifter.errors import ShifterError, ToolNotFoundError
from shifter.proc import run
from shifter.runtime.config.load import DEFAULT_CONFIG_PATH
from shifter.wlm.state import STATE_DIR

PLUGIN_NAME = "shifter_slurm.so"
SPANK_HEADER = "/usr/include/slurm/spank.h"
# Allocation-time prolog on every node of the job (setupRoot before the first task), and
# the extern step (the job's processes contained from the start).
SLURM_LINES = ("PrologFlags=Alloc,Contain",)


class BuildError(ShifterError):
    """The plugin cannot be compiled here."""


def prefix() -> str:
    return sys.prefix


def plugin_path() -> str:
    return os.path.join(prefix(), "lib", "shifter", PLUGIN_NAME)


def hook_path() -> str:
    return os.path.join(prefix(), "bin", "shifter-slurm-hook")


def plugstack_lines(shifter_config: str | None = None) -> list[str]:
    """`required PLUGIN shifter_config=FILE`; other arguments may follow on the line."""
    config = os.path.abspath(shifter_config or DEFAULT_CONFIG_PATH)
    return [f"required {plugin_path()} shifter_config={config}"]


def slurm_lines() -> list[str]:
    return list(SLURM_LINES)


def build(
    output: str | None = None, *, compiler: str = "gcc", spank_header: str = SPANK_HEADER
) -> str:
    """Compile the plugin; its path. (`spank_header`: where Slurm's header must be.)"""
    target = output or plugin_path()
    if not os.path.isfile(spank_header):
        raise BuildError(
            f"cannot build the Slurm plugin: {spank_header} is missing",
            hint="install Slurm's development headers (Debian: apt-get install libslurm-dev)",
        )
    source = resources.files("shifter.wlm").joinpath("shifter_slurm.c")
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    temporary = f"{target}.tmp"
    with resources.as_file(source) as path:
        argv = [
            compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
            f'-DSHIFTER_HOOK="{hook_path()}"', f'-DSHIFTER_STATE_DIR="{STATE_DIR}"',
            "-o", temporary, str(path),
        ]  # fmt: skip
        try:
            run(argv, timeout=300)
        except ToolNotFoundError:
            raise BuildError(
                f"cannot build the Slurm plugin: no C compiler ({compiler})",
                hint="install one (Debian: apt-get install gcc)",
            ) from None
    os.chmod(temporary, 0o755)
    os.replace(temporary, target)
    return target
