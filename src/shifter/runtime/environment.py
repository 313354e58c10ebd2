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

Pure functions; the one file read (the env-file) is done by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shifter.errors import ParseError
from shifter.runtime.config import EnvEntry, ModuleConfig, UdiRootConfig
from shifter.runtime.config_values import is_env_name

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


def split_assignment(text: str) -> tuple[str, str] | None:
    """`NAME=VALUE` with a non-empty name and value, or None (the original's rule)."""
    name, eq, value = text.partition("=")
    if not eq or not name or not value:
        return None
    return name, value


def parse_env_option(text: str) -> tuple[str, str]:
    """One `--env` value; `ParseError` for anything but NAME=VALUE."""
    assignment = split_assignment(text)
    if assignment is None or not is_env_name(assignment[0]):
        raise ParseError(
            f"improperly formatted environment variable {text!r}", source="--env", hint=ENV_HINT
        )
    return assignment


def parse_env_file(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """An env-file: one NAME=VALUE per line, trimmed; blank lines and `#` lines skipped;
    quotes are kept literally (the original's format)."""
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


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the caller's environment the container starts from."""
    return {name: value for name, value in environ.items() if name not in UNSECURE_VARIABLES}


def _append(env: dict[str, str], name: str, value: str, *, prepend: bool) -> None:
    old = env.get(name)
    if not old:
        env[name] = value
    else:
        env[name] = f"{value}:{old}" if prepend else f"{old}:{value}"


def apply_site_env(
    env: dict[str, str],
    set_entries: Iterable[EnvEntry],
    append: Iterable[EnvEntry],
    prepend: Iterable[EnvEntry],
    unset: Iterable[str],
) -> None:
    """One siteEnv group (a module's or the global one), in the documented order."""
    for entry in set_entries:
        env[entry.name] = entry.value
    for entry in append:
        _append(env, entry.name, entry.value, prepend=False)
    for entry in prepend:
        _append(env, entry.name, entry.value, prepend=True)
    for name in unset:
        env.pop(name, None)


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
) -> dict[str, str]:
    """The environment the command is exec'd with. `base` is `host_environment(...)` or
    empty (`--clearenv`)."""
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
    for module in modules:
        apply_site_env(
            env,
            module.site_env,
            module.site_env_append,
            module.site_env_prepend,
            module.site_env_unset,
        )
    if config is not None:
        apply_site_env(
            env,
            config.site_env,
            config.site_env_append,
            config.site_env_prepend,
            config.site_env_unset,
        )
    return env
