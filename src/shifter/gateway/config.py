"""imagemanager.json: the image gateway's configuration, validated once and frozen.

`load_gateway_config()` finds the file (argument, else `GWCONFIG`, else
`/etc/shifter/imagemanager.json`), and `parse_gateway_config()` turns its text into a
`GatewayConfig`. Every problem is reported as `FILE:LINE key 'Platforms.x.accesstype': ...`;
keys of the original that no longer apply are dropped with a warning, any other unknown key
is an error. `docs/config-imagemanager.md` describes every key; a test keeps the two equal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    PrivateAttr,
    StrictBool,
    ValidationError,
    model_validator,
)

from shifter.errors import ConfigError
from shifter.gateway import config_values as values
from shifter.gateway.config_sections import (
    UNUSED_IN_ORIGINAL,
    AbsolutePath,
    LocalAccess,
    Location,
    LocationMap,
    OptionalPath,
    OptionsMap,
    Platform,
    PlatformMap,
    Section,
    SshAccess,
)
from shifter.gateway.config_source import (
    ConfigProblem,
    GatewayConfigError,
    KeyLines,
    check_keys,
    key_error,
    problems_from,
    read_config_text,
    read_json_object,
    render_path,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "GatewayConfig",
    "GatewayConfigError",
    "LocalAccess",
    "Location",
    "Platform",
    "SshAccess",
    "UnknownLocationError",
    "UnknownPlatformError",
    "gateway_config_from_data",
    "gateway_config_path",
    "load_gateway_config",
    "parse_gateway_config",
]

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = "/etc/shifter/imagemanager.json"
DEFAULT_METADATA_STORE = "sqlite:////var/lib/shifter/imagegw.sqlite"
DEFAULT_CACHE_SIZE_LIMIT = 50 << 30  # 50 GiB: dozens of typical images
CONFIG_HINT = "every key is described in config-imagemanager.md of shifter's documentation"
_BY_DEFAULT = "the default location"


class UnknownPlatformError(ConfigError):
    """A request named a system that is not under Platforms."""


class UnknownLocationError(ConfigError):
    """An image names a registry that is not under Locations."""


class GatewayConfig(Section):
    """The whole of imagemanager.json; the JSON key of each field is its alias.

    Build it with `load_gateway_config`, `parse_gateway_config` or `gateway_config_from_data`:
    they drop the original's obsolete keys with a warning and give readable errors, whereas
    `model_validate` alone would call those keys unknown.
    """

    obsolete_keys: ClassVar[Mapping[str, str]] = {
        "MongoDBURI": "ignored: image records now live in the database named by MetadataStore",
        "MongoDB": "ignored: image records now live in the database named by MetadataStore",
        "Broker": "ignored: there are no separate Celery workers since Shifter 18.03; "
        "WorkerThreads sets the number of worker threads",
        "DefaultLustreReplication": UNUSED_IN_ORIGINAL,
        "DefaultOstCount": UNUSED_IN_ORIGINAL,
        "PullUpdateTime": "ignored: the pull timeout is PullUpdateTimeout",
    }

    default_image_location: Annotated[
        str, BeforeValidator(partial(values.name, what="location"))
    ] = Field("registry-1.docker.io", alias="DefaultImageLocation")
    default_image_format: Literal["squashfs", "ext4", "cramfs"] = Field(
        "squashfs", alias="DefaultImageFormat"
    )
    pull_update_timeout: Annotated[
        timedelta,
        BeforeValidator(values.seconds),
        PlainSerializer(lambda duration: int(duration.total_seconds())),
    ] = Field(300, alias="PullUpdateTimeout")
    image_expiration_timeout: Annotated[
        timedelta,
        BeforeValidator(values.parse_expiration),
        PlainSerializer(values.format_expiration),
    ] = Field(values.EXPIRATION_EXAMPLE, alias="ImageExpirationTimeout")
    cache_directory: AbsolutePath = Field("/var/cache/shifter/imagegw", alias="CacheDirectory")
    # New: the layer cache is pruned to this size after every pull (least recently used
    # layers first); null for no limit.
    cache_size_limit: Annotated[
        int | None, BeforeValidator(values.byte_size), PlainSerializer(values.format_size)
    ] = Field(DEFAULT_CACHE_SIZE_LIMIT, alias="CacheSizeLimit")
    expand_directory: AbsolutePath = Field("/var/tmp/shifter/imagegw", alias="ExpandDirectory")
    locations: LocationMap = Field({}, alias="Locations")
    platforms: PlatformMap = Field({}, alias="Platforms")
    worker_threads: Annotated[int, BeforeValidator(partial(values.whole_number, minimum=1))] = (
        Field(2, alias="WorkerThreads")
    )
    metrics: StrictBool = Field(False, alias="Metrics")
    converter_options: OptionsMap = Field({}, alias="ConverterOptions")
    import_users: Annotated[
        frozenset[str] | Literal["all"] | None,
        BeforeValidator(values.import_users),
        PlainSerializer(lambda users: sorted(users) if isinstance(users, frozenset) else users),
    ] = Field(None, alias="ImportUsers")
    log_level: Annotated[str, BeforeValidator(values.log_level)] = Field("info", alias="LogLevel")
    # New: where the log goes (default stderr) and in what form (logsetup).
    log_file: OptionalPath = Field(None, alias="LogFile")
    log_format: Literal["text", "json"] = Field("text", alias="LogFormat")
    authentication: Annotated[Literal["munge"], BeforeValidator(values.authentication)] = Field(
        "munge", alias="Authentication"
    )
    examiner: OptionalPath = None
    examiner_timeout: Annotated[
        timedelta,
        BeforeValidator(values.seconds),
        PlainSerializer(lambda duration: int(duration.total_seconds())),
    ] = Field(600, alias="ExaminerTimeout")
    # New keys: none of these existed in the original.
    metadata_store: Annotated[str, BeforeValidator(values.metadata_store)] = Field(
        DEFAULT_METADATA_STORE, alias="MetadataStore"
    )
    default_platform: Annotated[str, BeforeValidator(values.platform_spec)] = Field(
        "linux/amd64", alias="DefaultPlatform"
    )
    layer_download_concurrency: Annotated[
        int, BeforeValidator(partial(values.whole_number, minimum=1))
    ] = Field(4, alias="LayerDownloadConcurrency")
    image_ownership: Literal["root", "preserve"] = Field("root", alias="ImageOwnership")

    _source: str | None = PrivateAttr(None)
    _lines: KeyLines = PrivateAttr(default_factory=KeyLines)

    @model_validator(mode="after")
    def _default_location_is_known(self) -> GatewayConfig:
        if self.locations and self.default_image_location not in self.locations:
            value = repr(self.default_image_location)
            if "default_image_location" not in self.model_fields_set:
                value = f"is not set, and its default {value}"
            raise key_error(
                "DefaultImageLocation",
                f"{value} is not one of the Locations ({', '.join(sorted(self.locations))})",
            )
        return self

    @classmethod
    def default(cls) -> GatewayConfig:
        """The built-in defaults, for `shifter-imagegw convert` without a file: no platforms,
        any registry host named by the image reference, over https."""
        return cls.model_validate({})

    @property
    def source(self) -> str | None:
        """The file this came from, or None for built-in defaults."""
        return self._source

    def where(self, *key: str | int) -> str:
        """Where a key's value came from, for messages: "FILE:LINE" or "built-in default".

        The key is given as its parts, `where("Platforms", "mycluster", "local", "imageDir")`,
        because registry names contain dots.
        """
        line = self._lines.lines.get(key)
        if self._source is None or line is None:
            return "built-in default"
        return f"{self._source}:{line}"

    def location_for(self, name: str) -> Location:
        """The effective settings for registry `name`, URL filled in.

        With no Locations configured any registry may be used, at https://<name>; once a
        site lists Locations, only those may be used.
        """
        if name in self.locations:
            return self.locations[name]
        if not self.locations:
            try:
                values.name(name, what="registry")
            except ValueError as error:
                raise UnknownLocationError(str(error), key=f"Locations.{name}") from None
            return Location.model_validate({"url": f"https://{name}"})
        raise UnknownLocationError(
            f"registry {name!r} is not one of the configured Locations",
            source=self._source,
            key=f"Locations.{name}",
            hint=f"the gateway may pull from: {', '.join(sorted(self.locations))}",
        )

    def platform(self, name: str) -> Platform:
        """The settings of system `name`; UnknownPlatformError if it is not configured."""
        if name in self.platforms:
            return self.platforms[name]
        known = ", ".join(sorted(self.platforms)) or "none"
        raise UnknownPlatformError(
            f"system {name!r} is not one of the configured Platforms",
            source=self._source,
            key=f"Platforms.{name}",
            hint=f"configured systems: {known}; the name must match 'system' in udiRoot.conf",
        )

    @property
    def import_enabled(self) -> bool:
        return self.import_users is not None

    def may_import(self, user: str) -> bool:
        """May `user` import a prepared image file (ImportUsers)."""
        if self.import_users is None:
            return False
        return self.import_users == "all" or user in self.import_users

    def converter_options_for(self, image_format: str) -> tuple[str, ...]:
        """Extra builder options for a format: appended after the converter's own, fixed
        safety options (such as -no-xattrs), which a configuration cannot remove."""
        return self.converter_options.get(image_format, ())

    @property
    def metadata_store_url(self) -> str:
        """MetadataStore as SQLAlchemy should be given it (driver named explicitly)."""
        return values.sqlalchemy_url(self.metadata_store)

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level.upper()))


def gateway_config_from_data(
    data: Mapping[str, Any], *, source: str | None = None, lines: KeyLines | None = None
) -> GatewayConfig:
    """Validate already-parsed JSON data: obsolete keys warn, every other problem raises a
    `GatewayConfigError` listing all of them."""
    lines = lines or KeyLines()
    check = check_keys(dict(data), GatewayConfig)
    where = source or "imagemanager.json"
    for path, reason in check.obsolete:
        line = lines.line_of(path)
        located = f"{where}:{line}" if line else where
        log.warning("%s key %r is obsolete and %s", located, render_path(path), reason)
    problems = list(lines.duplicates)
    problems += [ConfigProblem(lines.line_of(p), render_path(p), m) for p, m in check.unknown]
    config = None
    try:
        config = GatewayConfig.model_validate(check.cleaned)
    except ValidationError as error:
        problems += problems_from(error, lines)
    if config is None or problems:
        raise GatewayConfigError(sorted(problems), source=source, hint=CONFIG_HINT)
    config._source = source
    config._lines = lines
    return config


def parse_gateway_config(text: str, source: str | None = None) -> GatewayConfig:
    """imagemanager.json text to a `GatewayConfig` (no I/O; `source` names it in messages)."""
    data, lines = read_json_object(text, source)
    return gateway_config_from_data(data, source=source, lines=lines)


def gateway_config_path(
    path: str | None = None, *, environ: Mapping[str, str] = os.environ
) -> tuple[str, str]:
    """The file to read and who chose it: the argument, else GWCONFIG, else the default."""
    if path:
        return path, "named on the command line"
    if environ.get("GWCONFIG"):
        return environ["GWCONFIG"], "named by GWCONFIG"
    return DEFAULT_CONFIG_PATH, _BY_DEFAULT


def load_gateway_config(
    path: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    missing_ok: bool = False,
) -> GatewayConfig:
    """Read and validate imagemanager.json.

    `missing_ok` returns `GatewayConfig.default()` when no file was named (neither `path`
    nor GWCONFIG) and the default file does not exist; a named file must always exist.
    """
    chosen, chooser = gateway_config_path(path, environ=environ)
    try:
        text = read_config_text(chosen)
    except FileNotFoundError:
        if missing_ok and chooser == _BY_DEFAULT:
            return GatewayConfig.default()
        from shifter.data import IMAGEMANAGER_EXAMPLE, data_path

        raise ConfigError(
            f"does not exist ({chooser})",
            source=chosen,
            hint=f"start from {data_path(IMAGEMANAGER_EXAMPLE)} (shifter-site-install copies "
            "it next to the default path); name another file with --config or GWCONFIG",
        ) from None
    return parse_gateway_config(text, chosen)
