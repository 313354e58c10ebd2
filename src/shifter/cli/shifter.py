"""`shifter [options] COMMAND [ARG]...`: run a command inside an image.

The latency-critical launch path: standard library only, no `logging` unless `--verbose`
or `--debug`, and no argparse. The options follow the original's getopt_long rules, which
argparse cannot express: parsing stops at the first non-option (so `shifter --image=x ls
-l` needs no `--`); `--entrypoint[=PROGRAM]`, `--workdir[=PATH]` and `-w[PATH]` take an
*optional, attached* value; short options cluster (`-vE`); unambiguous prefixes of long
options work (`--ima=...`).

Order, as in the original: udiRoot.conf is loaded and checked first (only `--help` works
without it), then the options are checked, then root is refused, then the launch.

First, though, the fast way into a job's container (runtime/job/enter.py): when setupRoot built
one for exactly this request from this very udiRoot.conf (whose safety it checks), `shifter`
enters it without loading the configuration model or anything heavy. Whatever it cannot
decide, it leaves to the full launch, which may still enter.
"""

from __future__ import annotations

import gc
import os
import sys

from shifter.cli import common

TYPE_CHECKING = False  # the launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence

PROG = "shifter"
FLAG, REQUIRED, OPTIONAL = "flag", "required", "optional"
# option -> (kind, destination); short names and long names map to the same destinations
SHORT = {
    "h": (FLAG, "help"),
    "n": (FLAG, "n"),
    "v": (FLAG, "verbose"),
    "V": (REQUIRED, "volume"),
    "i": (REQUIRED, "image"),
    "e": (REQUIRED, "env"),
    "E": (FLAG, "clearenv"),
    "w": (OPTIONAL, "workdir"),
    "m": (REQUIRED, "module"),
}
LONG = {
    "help": (FLAG, "help"),
    "volume": (REQUIRED, "volume"),
    "verbose": (FLAG, "verbose"),
    "image": (REQUIRED, "image"),
    "entry": (OPTIONAL, "entrypoint"),
    "entrypoint": (OPTIONAL, "entrypoint"),
    "workdir": (OPTIONAL, "workdir"),
    "module": (REQUIRED, "module"),
    "env": (REQUIRED, "env"),
    "env-file": (REQUIRED, "env_file"),
    "clearenv": (FLAG, "clearenv"),
    "debug": (FLAG, "debug"),
    "check-config": (FLAG, "check_config"),
}
REPEATED = ("volume", "env")  # every value is kept; for the others the last one wins
HELP = """\
Usage: shifter [OPTIONS] [COMMAND [ARG]...]

Run COMMAND in a container made from an image. Options end at the first word that is not
an option: everything after it is the command and its arguments.

Options:
  -i, --image=TYPE:IMAGE   the image: docker:REPO[:TAG], custom:NAME[:TAG], id:ID or
                           local:/PATH (when the site allows it); TYPE defaults to the
                           site's defaultImageType
  -V, --volume=SRC:DEST[:FLAG]...
                           bind directory SRC (a path the container can already see: site
                           filesystems, /tmp, /var/tmp, the image) at DEST; FLAG is ro or
                           perNodeCache=size=SIZE[,fs=xfs]; repeat for more volumes
  -m, --module=LIST        site modules, comma-separated, or none (default: the site's)
  -e, --env=NAME=VALUE     set a variable in the container (repeatable)
      --env-file=FILE      set the NAME=VALUE lines of FILE
  -E, --clearenv           start from an empty environment instead of the caller's
      --entrypoint[=PROG]  run the image's entrypoint (or PROG) with the arguments
  -w, --workdir[=PATH]     start in PATH (attached: --workdir=PATH, -wPATH), or in the
                           image's WORKDIR when no PATH is given
  -v, --verbose            log the launch steps and their durations, and print
                           udiRoot.conf's warnings (deprecated or repeated keys)
      --debug              like --verbose, and show tracebacks of errors
      --check-config       check udiRoot.conf ($SHIFTER_CONFIG, else
                           /etc/shifter/udiRoot.conf), print its warnings and exit:
                           0 when it loads, 1 when it does not
  -h, --help               show this help
      --version            print the version (alone, as the first argument)

Without --image: $SHIFTER (TYPE:IMAGE), then $SHIFTER_IMAGETYPE with $SHIFTER_IMAGE, then
$SLURM_SPANK_SHIFTER_IMAGETYPE with $SLURM_SPANK_SHIFTER_IMAGE. Without --volume:
$SHIFTER_VOLUME. Without --module: $SHIFTER_MODULE.

Without COMMAND: the image's entrypoint and command, or /bin/sh when it has neither.
The command starts in the caller's working directory when the container has it.
Exit status: the command's; 127 if it is not found, 126 if it cannot run; 1 if shifter
fails before running it.
"""


class UsageError(Exception):
    """A command line that does not follow the rules above."""


def _long_option(name: str, long: dict[str, tuple[str, str]]) -> tuple[str, tuple[str, str]]:
    if name in long:
        return name, long[name]
    matches = [known for known in long if known.startswith(name)]
    targets = {long[known] for known in matches}
    if len(targets) == 1:
        return matches[0], long[matches[0]]
    if not matches:
        raise UsageError(f"unrecognized option '--{name}'")
    raise UsageError(f"option '--{name}' is ambiguous: {', '.join('--' + m for m in matches)}")


def parse_options(
    argv: Sequence[str],
    short: dict[str, tuple[str, str]] = SHORT,
    long: dict[str, tuple[str, str]] = LONG,
    repeated: tuple[str, ...] = REPEATED,
) -> tuple[dict[str, object], list[str]]:
    """The options (destination -> value; repeated ones as lists) and the command.
    `short`, `long`, `repeated`: another command's tables (setupRoot's)."""
    options: dict[str, object] = {}

    def store(dest: str, value: object) -> None:
        if dest in repeated:
            options.setdefault(dest, []).append(value)  # type: ignore[union-attr]
        else:
            options[dest] = value

    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            index += 1
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            full, (kind, dest) = _long_option(name, long)
            if kind == FLAG and eq:
                raise UsageError(f"option '--{full}' doesn't allow an argument")
            if kind == REQUIRED and not eq:
                index += 1
                if index == len(argv):
                    raise UsageError(f"option '--{full}' requires an argument")
                value = argv[index]
            store(dest, True if kind == FLAG else value)
        elif arg.startswith("-") and arg != "-":
            position = 1
            while position < len(arg):
                letter = arg[position]
                if letter not in short:
                    raise UsageError(f"invalid option -- '{letter}'")
                kind, dest = short[letter]
                if kind == FLAG:
                    store(dest, True)
                    position += 1
                    continue
                value = arg[position + 1 :]
                if kind == REQUIRED and not value:
                    index += 1
                    if index == len(argv):
                        raise UsageError(f"option requires an argument -- '{letter}'")
                    value = argv[index]
                store(dest, value)
                break
        else:
            break
        index += 1
    return options, list(argv[index:])


def _request(options: dict[str, object], command: list[str]) -> object:
    from shifter.runtime.request.command import LaunchRequest

    def text(name: str) -> str | None:
        value = options.get(name)
        return None if value is None else str(value)

    return LaunchRequest(
        command,
        image=text("image"),
        volumes=options.get("volume", ()),  # type: ignore[arg-type]
        modules=text("module"),
        entrypoint=text("entrypoint"),
        workdir=text("workdir"),
        env=options.get("env", ()),  # type: ignore[arg-type]
        env_file=text("env_file"),
        clear_env=bool(options.get("clearenv")),
        verbose=bool(options.get("verbose") or options.get("debug")),
    )


def _launch(options: dict[str, object] | None, command: list[str], usage: str | None) -> int:
    from shifter.runtime.site.environment import caller_environment

    # What the caller gave: os.environ without the LC_CTYPE Python's locale coercion set.
    environ = caller_environment(os.environ)
    if options is not None and usage is None:
        from shifter.runtime.job.enter import try_enter

        status = try_enter(options, command, environ)
        if status is not None:
            return status
    from shifter.errors import ShifterError
    from shifter.runtime.config.load import load_udiroot_config
    from shifter.runtime.identity.user import refuse_root
    from shifter.runtime.launch import launch

    config = load_udiroot_config(environ=environ)
    if usage is not None or options is None:
        raise ShifterError(str(usage), hint=f"see {PROG} --help")
    if options.get("check_config"):
        return common.check_config(PROG, config, sys.stdout)
    if options.get("verbose") or options.get("debug"):
        common.print_config_warnings(PROG, config)
    refuse_root(os.getuid(), os.getgid())
    request = _request(options, command)
    return launch(request, config, environ)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    # The launcher lives some tens of milliseconds and then execs: cycles it leaves are
    # freed by the exec, while collections during its imports cost ~10% of its start-up.
    gc.disable()
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        gc.enable()  # only reached when shifter did not exec (an error, --help)


def _main(args: list[str]) -> int:
    if common.print_version(PROG, args):
        return 0
    options: dict[str, object] | None = None
    command: list[str] = []
    usage = None
    try:
        options, command = parse_options(args)
    except UsageError as error:
        usage = str(error)
    if options is not None and options.get("help"):
        sys.stdout.write(HELP)
        return 0
    debug = bool(options.get("debug")) if options is not None else "--debug" in args
    if debug or (options is not None and options.get("verbose")):
        common.configure_logging(debug=True)
    if debug:
        import traceback  # noqa: F401  (an error after the chroot can no longer import it)
    return common.run_command(PROG, lambda: _launch(options, command, usage), debug=debug)


if __name__ == "__main__":
    sys.exit(main())
