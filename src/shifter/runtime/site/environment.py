"""The container's environment, built in the original's order (lowest precedence first):

1. the host environment (less the variables below), or nothing with `--clearenv`;
2. `SHIFTER_IMAGEREQUEST=<request>` when there is one; `SHIFTER_IMAGE=<image id>`;
3. the image's ENV entries, in order;
4. the `--env-file` entries, then the `--env` entries;
5. each active module's siteEnv, siteEnvAppend, siteEnvPrepend, siteEnvUnset;
6. the global siteEnv, siteEnvAppend, siteEnvPrepend, siteEnvUnset.

Host variables that glibc strips from a setuid program's environment (LD_PRELOAD,
LD_LIBRARY_PATH, TMPDIR, ...) are dropped, as the original's users have always seen (it is
setuid); a user who needs one inside sets it with `--env`. Append gives `OLD:NEW`, prepend
`NEW:OLD`, and both simply set the variable when it is unset or empty.

The site's part (5 and 6) is a list of steps, `(operation, name, value)`, computed from the
configuration by `site_env_steps`: setupRoot stores them in the enter record, so entering
its container builds the same environment without loading udiRoot.conf.

Pure functions, except `read_env_file` (the env-file is read on the host). On the enter path:
nothing heavy is imported unless `--env` or `--env-file` needs the name check.
"""

from __future__ import annotations

from shifter.errors import ParseError

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from shifter.runtime.config.load import EnvEntry, ModuleConfig, UdiRootConfig

SET, APPEND, PREPEND, UNSET = "set", "append", "prepend", "unset"

# glibc's UNSECURE_ENVVARS (sysdeps/generic/unsecvars.h): what a setuid program never sees.
UNSECURE_VARIABLES = frozenset(
    (
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LD_AUDIT",
        "LD_DEBUG",
        "LD_DEBUG_OUTPUT",
        "LD_DYNAMIC_WEAK",
        "LD_HWCAP_MASK",
        "LD_LIBRARY_PATH",
        "LD_ORIGIN_PATH",
        "LD_PRELOAD",
        "LD_PROFILE",
        "LD_SHOW_AUXV",
        "LD_USE_LOAD_BIAS",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TMPDIR",
        "TZDIR",
    )
)
ENV_HINT = "write NAME=VALUE with a non-empty NAME and VALUE"
LC_CTYPE = "LC_CTYPE"
# What CPython's locale coercion may set LC_CTYPE to (_TARGET_LOCALES in Python/pylifecycle.c).
COERCION_TARGETS = ("C.UTF-8", "C.utf8", "UTF-8")


def split_assignment(text: str) -> tuple[str, str] | None:
    """`NAME=VALUE` with a non-empty name and value, or None (the original's rule)."""
    name, eq, value = text.partition("=")
    if not eq or not name or not value:
        return None
    return name, value


def parse_env_option(text: str) -> tuple[str, str]:
    """One `--env` value; `ParseError` for anything but NAME=VALUE."""
    from shifter.runtime.config.values import is_env_name

    assignment = split_assignment(text)
    if assignment is None or not is_env_name(assignment[0]):
        raise ParseError(
            f"improperly formatted environment variable {text!r}", source="--env", hint=ENV_HINT
        )
    return assignment


def parse_env_file(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """An env-file: one NAME=VALUE per line, trimmed; blank lines and `#` lines skipped;
    quotes are kept literally (the original's format)."""
    from shifter.runtime.config.values import is_env_name

    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assignment = split_assignment(line)
        if assignment is None or not is_env_name(assignment[0]):
            raise ParseError(
                f"invalid env-file entry {line!r}", source=source, line=number, hint=ENV_HINT
            )
        entries.append(assignment)
    return tuple(entries)


def read_env_file(path: str) -> tuple[tuple[str, str], ...]:
    """The entries of the env-file at `path` (read before entering the container)."""
    from shifter.errors import ShifterError

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            text = file.read()
    except OSError as error:
        raise ShifterError(f"cannot open env-file {path}: {error.strerror}") from None
    return parse_env_file(text, path)


def caller_environment(
    environ: Mapping[str, str], path: str = "/proc/self/environ"
) -> dict[str, str]:
    """`environ` (the interpreter's `os.environ`) with LC_CTYPE as the caller gave it.

    When the caller's LC_CTYPE locale is C or POSIX (LANG and LC_ALL unset, `LANG=C`, a
    locale that is not installed), CPython's locale coercion (PEP 538) sets LC_CTYPE to
    one of `COERCION_TARGETS` before any of our code runs, and `-I` keeps its opt-out
    (PYTHONCOERCECLOCALE=0) from working. The kernel keeps the strings `execve` was given
    where `setenv` does not write: /proc/self/environ shows the caller's LC_CTYPE, or that
    there was none. Nothing else is taken from there, so a caller that runs `main()` in
    its own process and changed its environment keeps its changes.
    """
    env = dict(environ)
    if env.get(LC_CTYPE) not in COERCION_TARGETS:
        return env
    try:
        with open(path, "rb") as file:
            given = exec_environment(file.read()).get(LC_CTYPE)
    except OSError:
        return env  # no /proc: nothing to tell a coerced value from a given one
    if given is None:
        del env[LC_CTYPE]
    else:
        env[LC_CTYPE] = given
    return env


def exec_environment(data: bytes) -> dict[str, str]:
    """The NUL-separated `NAME=VALUE` strings of /proc/PID/environ, decoded as `os.environ`
    decodes them: the first of repeated names wins, strings without `=` are left out."""
    from os import fsdecode

    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, eq, value = item.partition(b"=")
        if eq:
            env.setdefault(fsdecode(name), fsdecode(value))
    return env


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the caller's environment the container starts from."""
    return {name: value for name, value in environ.items() if name not in UNSECURE_VARIABLES}


def _append(env: dict[str, str], name: str, value: str, *, prepend: bool) -> None:
    old = env.get(name)
    if not old:
        env[name] = value
    else:
        env[name] = f"{value}:{old}" if prepend else f"{old}:{value}"


def _group_steps(
    set_entries: Iterable[EnvEntry],
    append: Iterable[EnvEntry],
    prepend: Iterable[EnvEntry],
    unset: Iterable[str],
) -> list[tuple[str, str, str]]:
    """One siteEnv group (a module's or the global one), in the documented order."""
    return [
        *((SET, entry.name, entry.value) for entry in set_entries),
        *((APPEND, entry.name, entry.value) for entry in append),
        *((PREPEND, entry.name, entry.value) for entry in prepend),
        *((UNSET, name, "") for name in unset),
    ]


def site_env_steps(
    modules: Sequence[ModuleConfig], config: UdiRootConfig | None
) -> tuple[tuple[str, str, str], ...]:
    """The site's environment changes: each active module's group, then the global one."""
    steps = []
    for module in modules:
        steps += _group_steps(
            module.site_env, module.site_env_append, module.site_env_prepend, module.site_env_unset
        )
    if config is not None:
        steps += _group_steps(
            config.site_env, config.site_env_append, config.site_env_prepend, config.site_env_unset
        )
    return tuple(steps)


def apply_site_env(env: dict[str, str], steps: Iterable[tuple[str, str, str]]) -> None:
    for operation, name, value in steps:
        if operation == SET:
            env[name] = value
        elif operation == UNSET:
            env.pop(name, None)
        else:
            _append(env, name, value, prepend=operation == PREPEND)


def build_environment(
    base: Mapping[str, str],
    *,
    request: str | None,
    image_id: str,
    image_env: Sequence[str],
    env_file: Sequence[tuple[str, str]] = (),
    env_options: Sequence[tuple[str, str]] = (),
    modules: Sequence[ModuleConfig] = (),
    config: UdiRootConfig | None = None,
    site_steps: Sequence[tuple[str, str, str]] | None = None,
) -> dict[str, str]:
    """The environment the command is exec'd with. `base` is `host_environment(...)` or
    empty (`--clearenv`). The site's part: `site_steps` when given (an enter record's),
    else computed from `modules` and `config`."""
    env = dict(base)
    if request:
        env["SHIFTER_IMAGEREQUEST"] = request
    env["SHIFTER_IMAGE"] = image_id
    for item in image_env:
        # Malformed image entries are skipped silently, as in the original.
        assignment = split_assignment(item)
        if assignment is not None:
            env[assignment[0]] = assignment[1]
    for name, value in (*env_file, *env_options):
        env[name] = value
    if site_steps is None:
        site_steps = site_env_steps(modules, config)
    apply_site_env(env, site_steps)
    return env
