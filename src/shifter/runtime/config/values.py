"""What a udiRoot.conf value may look like: one converter per kind of value.

Each converter takes the trimmed text, where it came from and the key, and returns the typed
value or raises `ConfigError` naming the file, the line and the key. They are pure.
"""

from __future__ import annotations

from shifter.errors import ConfigError, ParseError
from shifter.frozen import Frozen
from shifter.runtime.volumes.spec import VolumeSpec, parse_size, parse_volume_specs

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Callable

BOOLEAN_WORDS = {"1": True, "true": True, "0": False, "false": False}
# `--module=none` means "no modules", so no module may be called that.
NO_MODULES = "none"
# Character sets instead of regular expressions: compiling patterns at import time costs
# the launch path more than these checks ever will.
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# Module names end up in paths (/opt/udiImage/modules/<name>) and in comma lists, and the
# original splits keys on '_', so: no '_', no ',', no '/', and they start alphanumeric.
_MODULE_CHARS = _ALNUM | frozenset(".+-")
_USER_CHARS = _ALNUM | frozenset("_.@-$")
_SYSTEM_CHARS = _ALNUM | frozenset("_.-")


def is_env_name(word: str) -> bool:
    """A portable environment variable name: [A-Za-z_][A-Za-z0-9_]*."""
    return word.isascii() and word.isidentifier()


def _made_of(word: str, allowed: frozenset[str]) -> bool:
    return bool(word) and all(char in allowed for char in word)


def is_user_name(word: str) -> bool:
    return _made_of(word, _USER_CHARS) and word[0] not in "-@$"


# The values below are `Frozen`, not dataclasses: this module is on the launch path.
class Origin(Frozen):
    """Where a value came from: a file and line, or the file's built-in default (no line)."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.source} (default)"
        return f"{self.source}:{self.line}"


class EnvEntry(Frozen):
    """One `NAME=VALUE` of a siteEnv, siteEnvAppend or siteEnvPrepend list."""

    name: str
    value: str
    origin: Origin

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class SiteVolume(Frozen):
    """One siteFs entry: the parsed spec and the line it was written on."""

    spec: VolumeSpec
    origin: Origin


if TYPE_CHECKING:
    Converter = Callable[[str, Origin, str], object]


def fail(origin: Origin, key: str, message: str, hint: str | None = None) -> ConfigError:
    """A `ConfigError` located at `origin` about `key`."""
    return ConfigError(message, source=origin.source, line=origin.line, key=key, hint=hint)


def to_text(value: str, origin: Origin, key: str) -> str:
    return value


def to_system_name(value: str, origin: Origin, key: str) -> str:
    if not _made_of(value, _SYSTEM_CHARS):
        raise fail(
            origin,
            key,
            f"{value!r} is not a system name (letters, digits, _ . -)",
            hint="use the platform name this cluster has in the gateway's imagemanager.json",
        )
    return value


def to_path(value: str, origin: Origin, key: str) -> str:
    """An absolute path, with repeated and trailing slashes removed (item 178 of the notes)."""
    if not value.startswith("/"):
        raise fail(
            origin, key, f"must be an absolute path, got {value!r}", hint="start it with '/'"
        )
    if any(char.isspace() for char in value):
        raise fail(origin, key, f"{value!r} contains whitespace", hint="paths cannot be quoted")
    parts = [part for part in value.split("/") if part]
    return "/" + "/".join(parts)


def to_paths(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """Whitespace-separated absolute paths (the GPU lists)."""
    return tuple(to_path(word, origin, key) for word in value.split())


def to_gpu_uuids(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """gpuDeviceUuids: `GPU-<uuid>` words, as nvidia-smi -L prints them."""
    words = value.split()
    for word in words:
        if not word.startswith("GPU-") or len(word) == 4:
            raise fail(origin, key, f"{word!r} is not a GPU UUID", hint="write GPU-<uuid>")
    return tuple(words)


def to_cdi_spec(value: str, origin: Origin, key: str) -> str:
    """gpuCdiSpec: a CDI spec, JSON (`*.json`) or YAML (`*.yaml`, `*.yml`: the subset
    cdiyaml.py reads, no YAML library); the name says which."""
    path = to_path(value, origin, key)
    if not path.endswith((".json", ".yaml", ".yml")):
        raise fail(
            origin,
            key,
            f"{path} is not a CDI spec (*.json, *.yaml or *.yml)",
            hint="name the file nvidia-ctk cdi generate wrote, e.g. /etc/cdi/nvidia.yaml",
        )
    return path


def to_bool(value: str, origin: Origin, key: str) -> bool:
    """0/1/true/false only: the original read `yes` as false (strtol), which bites."""
    word = BOOLEAN_WORDS.get(value.lower())
    if word is None:
        raise fail(origin, key, f"must be 0 or 1 (or true or false), got {value!r}",
                   hint="write 0 or 1")
    return word


def to_count(maximum: int) -> Converter:
    """A whole number from 0 to `maximum`."""

    def convert(value: str, origin: Origin, key: str) -> int:
        if not (value.isascii() and value.isdigit()) or int(value) > maximum:
            raise fail(
                origin,
                key,
                f"must be a whole number from 0 to {maximum}, got {value!r}",
                hint="write decimal digits only",
            )
        return int(value)

    return convert


def to_size(value: str, origin: Origin, key: str) -> int:
    try:
        return parse_size(value)
    except ParseError as error:
        raise fail(origin, key, error.message, error.hint) from None


def to_choice(*choices: str) -> Converter:
    """One of `choices`, exactly (case-sensitive, as the original compares)."""

    def convert(value: str, origin: Origin, key: str) -> str:
        if value not in choices:
            raise fail(origin, key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return convert


def to_env_entries(value: str, origin: Origin, key: str) -> tuple[EnvEntry, ...]:
    """Whitespace-separated NAME=VALUE items; an empty VALUE is refused (use siteEnvUnset)."""
    entries = []
    for item in value.split():
        name, eq, text = item.partition("=")
        if not eq or not is_env_name(name):
            raise fail(origin, key, f"{item!r} is not NAME=VALUE", hint="e.g. SHIFTER_RUNTIME=1")
        if not text:
            raise fail(
                origin,
                key,
                f"{item!r} has an empty value",
                hint="to remove a variable use siteEnvUnset",
            )
        entries.append(EnvEntry(name, text, origin))
    return tuple(entries)


def _words(accept: Callable[[str], bool], what: str) -> Converter:
    def convert(value: str, origin: Origin, key: str) -> tuple[str, ...]:
        words = tuple(value.split())
        for word in words:
            if not accept(word):
                raise fail(origin, key, f"{word!r} is not {what}")
        return words

    return convert


to_env_names = _words(is_env_name, "an environment variable name")
to_user_names = _words(is_user_name, "a user name")


def to_fs_types(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """Filesystem types a perNodeCache may use; only xfs is implemented."""
    words = tuple(value.split())
    for word in words:
        if word != "xfs":
            raise fail(
                origin,
                key,
                f"perNodeCache filesystem {word!r} is not supported (xfs)",
                hint="only xfs is implemented",
            )
    return words


def to_urls(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """Whitespace-separated http(s) base URLs; a trailing '/' is dropped."""
    urls = []
    for word in value.split():
        scheme, sep, rest = word.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.strip("/"):
            raise fail(
                origin,
                key,
                f"{word!r} is not an http:// or https:// URL",
                hint="e.g. imageGateway=http://imagegw:5000",
            )
        urls.append(word.rstrip("/"))
    return tuple(urls)


def to_site_fs(value: str, origin: Origin, key: str) -> tuple[SiteVolume, ...]:
    """`;`-separated site volume specs; a bare path mounts at the same place."""
    try:
        specs = parse_volume_specs(
            value, allow_bare_source=True, source=origin.source, line=origin.line
        )
    except ParseError as error:
        raise fail(origin, key, error.message, error.hint) from None
    return tuple(SiteVolume(spec, origin) for spec in specs)


def module_name_problem(name: str) -> str | None:
    """Why `name` cannot be a module name, or None when it can."""
    if name.lower() == NO_MODULES:
        return f"{name!r} is reserved: --module={NO_MODULES} means no modules"
    if not _made_of(name, _MODULE_CHARS) or name[0] not in _ALNUM:
        return f"{name!r} is not a module name (letters, digits, . + -; no '_')"
    return None


def _module_names(items: list[str], origin: Origin, key: str) -> tuple[str, ...]:
    for name in items:
        problem = module_name_problem(name)
        if problem:
            raise fail(origin, key, problem)
        if items.count(name) > 1:
            raise fail(origin, key, f"module {name!r} is listed twice")
    return tuple(items)


def to_module_csv(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """defaultModules: comma-separated names (spaces around commas allowed); `none` = ()."""
    if value.strip().lower() == NO_MODULES:
        return ()
    return _module_names([name.strip() for name in value.split(",")], origin, key)


def to_module_words(value: str, origin: Origin, key: str) -> tuple[str, ...]:
    """module_<name>_conflict: whitespace-separated module names."""
    return _module_names(value.split(), origin, key)
