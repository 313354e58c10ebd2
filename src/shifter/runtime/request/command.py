"""What runs in the container and where: the argv (command, `--entrypoint`, image ENTRY
and CMD), the working directory, where the command may be in the image (for the image
server's read-ahead), and the command line's request (`LaunchRequest`). Pure functions.

Decisions (docs/runtime.md):

- No command and no `--entrypoint`: the image's ENTRY followed by its CMD, as `docker run`
  does, when the image defines either; otherwise `/bin/sh` (the original always ran
  `/bin/sh`, which ignores what the image says it is for).
- `--entrypoint` (no value): ENTRY, then the command-line args, or CMD when there are none.
  Without an ENTRY: an error.
- `--entrypoint=X`: X, then the command-line args; CMD is never appended.
- Workdir: `--workdir=PATH` (or `-wPATH`) must exist in the container; bare `--workdir` or
  `-w` means the image's WORKDIR (an error when it has none); without the option, the
  caller's cwd if the container has it, else the image's WORKDIR, else `/`.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_SHELL = "/bin/sh"


def container_argv(
    command: Sequence[str],
    entrypoint: str | None,
    image_entry: Sequence[str] | None,
    image_cmd: Sequence[str] | None,
) -> tuple[str, ...]:
    """The argv to exec. `entrypoint`: None (option absent), "" (bare), or the program."""
    if entrypoint is None:
        if command:
            return tuple(command)
        default = (*(image_entry or ()), *(image_cmd or ()))
        return default or (DEFAULT_SHELL,)
    if entrypoint:
        return (entrypoint, *command)
    if not image_entry:
        raise ShifterError(
            "the image does not have a defined entrypoint",
            hint="give the program with --entrypoint=PROGRAM, or run a command",
        )
    return (*image_entry, *(command or image_cmd or ()))


class WorkdirPlan:
    """Directories to try in order after entering the container; `strict`: the first one
    must work (an explicit request), otherwise the next is tried. (Plain class: launch path.)
    """

    __slots__ = ("candidates", "strict")

    def __init__(self, candidates: tuple[str, ...], *, strict: bool) -> None:
        self.candidates = candidates
        self.strict = strict

    def __repr__(self) -> str:
        return f"WorkdirPlan({self.candidates!r}, strict={self.strict})"


def _absolute(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def plan_workdir(option: str | None, cwd: str | None, image_workdir: str | None) -> WorkdirPlan:
    """Where the command starts. `option`: None (absent), "" (bare), or a path."""
    if option:
        return WorkdirPlan((_absolute(option),), strict=True)
    if option is not None:
        if not image_workdir:
            raise ShifterError(
                "no workdir specified on the command line or in the image definition",
                hint="write --workdir=PATH or -wPATH (the value must be attached)",
            )
        return WorkdirPlan((_absolute(image_workdir),), strict=True)
    candidates = [path for path in (cwd, image_workdir) if path]
    return WorkdirPlan((*(_absolute(path) for path in candidates), "/"), strict=False)


class LaunchRequest:
    """What the command line asked for (the environment is read separately). `entrypoint`
    and `workdir`: None when the option is absent, "" when given without a value.
    (Plain class: launch path.)"""

    __slots__ = (
        "clear_env",
        "command",
        "entrypoint",
        "env",
        "env_file",
        "image",
        "modules",
        "verbose",
        "volumes",
        "workdir",
    )

    def __init__(
        self,
        command: Sequence[str] = (),
        *,
        image: str | None = None,
        volumes: Sequence[str] = (),
        modules: str | None = None,
        entrypoint: str | None = None,
        workdir: str | None = None,
        env: Sequence[str] = (),
        env_file: str | None = None,
        clear_env: bool = False,
        verbose: bool = False,
    ) -> None:
        self.command = tuple(command)
        self.image = image
        self.volumes = tuple(volumes)
        self.modules = modules
        self.entrypoint = entrypoint
        self.workdir = workdir
        self.env = tuple(env)
        self.env_file = env_file
        self.clear_env = clear_env
        self.verbose = verbose


def command_paths(program: str, search_path: str | None) -> tuple[str, ...]:
    """Where `program` may be in the container (as start.py's exec will search), for the
    read-ahead of the image server (image/fuse.py); relative names cannot be placed yet."""
    if "/" in program:
        return (program,) if program.startswith("/") else ()
    directories = (search_path or os.defpath).split(":")
    return tuple(f"{d.rstrip('/')}/{program}" for d in directories if d.startswith("/"))
