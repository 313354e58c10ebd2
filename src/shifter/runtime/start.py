"""The last steps of every launch, once the process is inside its container (a private one
it built, or a setupRoot one it entered): drop privileges, change to the workdir, run the
module userhooks, check the privileges as the kernel reports them, exec the command.

After the chroot Python can import nothing more (the host's library is out of reach), so
`prepare` imports beforehand what these steps will need.
"""

from __future__ import annotations

import _signal  # `signal` wraps it in enums: importing enum costs the enter path ~1.5 ms
import os
import sys

from shifter.errors import ShifterError
from shifter.runtime.identity import privileges

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from shifter.runtime.request.command import WorkdirPlan
    from shifter.runtime.site.hooks import HookVerdicts

EXIT_NOT_FOUND = 127  # like a shell: the command does not exist
EXIT_NOT_EXECUTABLE = 126  # like a shell: it exists but cannot be run


def prepare(userhooks: Sequence[tuple[str, str]]) -> None:
    """Import now what `run_in_container` will need inside the container."""
    if userhooks:
        from shifter import proc  # noqa: F401  (run_hook starts the hook through it)
        from shifter.runtime.site import hooks  # noqa: F401


def run_in_container(
    *,
    uid: int,
    gid: int,
    groups: Iterable[int],
    workdir: WorkdirPlan,
    userhooks: Sequence[tuple[str, str]],
    argv: Sequence[str],
    env: Mapping[str, str],
    hook_verdicts: HookVerdicts | None = None,
) -> int:
    """Become `argv` as `uid`/`gid` with nothing else; `groups`: how the supplementary
    groups must show; `hook_verdicts`: where userhooks' successes are remembered (None:
    nowhere). Returns only when the command cannot be exec'd (the shell's status)."""
    privileges.drop_privileges(uid, gid, None)
    enter_workdir(workdir)
    if userhooks:
        from shifter.runtime.site.hooks import run_userhook  # imported by `prepare`

        for key, path in userhooks:
            run_userhook(path, key, os.getcwd(), hook_verdicts)
    privileges.verify_dropped(uid, gid, groups)
    return exec_command(argv, env)


def enter_workdir(plan: WorkdirPlan) -> None:
    first = plan.candidates[0]
    for candidate in plan.candidates:
        try:
            os.chdir(candidate)
        except OSError as error:
            if plan.strict:
                raise ShifterError(
                    f"cannot change to working directory {candidate}: {error.strerror}",
                    hint="give a directory that exists in the container",
                ) from None
            continue
        if candidate != first:
            print(
                f"shifter: note: {first} is not in the container; starting in {candidate}",
                file=sys.stderr,
            )
        return


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Become `argv` (searched on the container's PATH); on failure print why and return
    the shell's status for it."""
    # Python ignores these; an exec'd program would inherit that.
    for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(number, _signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        _execvpe(argv[0], list(argv), dict(env))
    except OSError as error:
        print(f"shifter: {argv[0]}: {error.strerror}", file=sys.stderr)
        missing = isinstance(error, (FileNotFoundError, NotADirectoryError))
        return EXIT_NOT_FOUND if missing else EXIT_NOT_EXECUTABLE
    raise AssertionError("execve returned")  # pragma: no cover


def _execvpe(program: str, argv: list[str], env: dict[str, str]) -> None:
    """execvpe(3) with the environment's PATH. (os.execvpe would import `warnings`, which
    inside the container can no longer be imported.) Like the C library: the first error
    other than "not there" is the one reported."""
    if "/" in program:
        os.execve(program, argv, env)
    first: OSError | None = None
    for directory in (env.get("PATH") or os.defpath).split(":"):
        try:
            os.execve(os.path.join(directory, program), argv, env)
        except (FileNotFoundError, NotADirectoryError) as error:
            last = error
        except OSError as error:
            last = error
            first = first or error
    raise first or last
