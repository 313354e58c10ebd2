"""The sections of imagemanager.json below the top level: Locations and Platforms.

Also the annotated types the whole model shares (absolute paths, read-only mappings).
`shifter.gateway.config` re-exports what callers need; import from there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    model_validator,
)

from shifter.gateway import config_values as values
from shifter.gateway.config_source import key_error


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A parser that lets JSON null (or an absent key) through as None."""
    return lambda value: None if value is None else parse(value)


AbsolutePath = Annotated[str, BeforeValidator(values.absolute_path)]
OptionalPath = Annotated[str | None, BeforeValidator(_optional(values.absolute_path))]
HostName = Annotated[str, BeforeValidator(partial(values.name, what="host"))]
UserName = Annotated[str, BeforeValidator(values.user_name)]
# Checked item by item so that a message points at the bad entry's line.
UserNames = Annotated[tuple[UserName, ...], BeforeValidator(values.name_list)]


# Validated dicts are handed out read-only; serialising turns them back into dicts.
_AS_DICT = PlainSerializer(dict)


class Section(BaseModel):
    """A JSON object of the file: frozen, and no key it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Keys the original used that no longer do anything here, with what replaces them.
    obsolete_keys: ClassVar[Mapping[str, str]] = {}


class Location(Section):
    """One registry (`Locations.<name>`); the name is a registry host[:port] or an alias."""

    remotetype: Annotated[Literal["dockerv2"], BeforeValidator(values.remote_type)] = "dockerv2"
    # Present in every example of the original ("http") but never read by it.
    authentication: str | None = None
    url: Annotated[str | None, BeforeValidator(_optional(values.registry_url))] = None
    sslcacert: OptionalPath = None
    auth_method: Literal["token", "basic"] = Field("token", alias="authMethod")
    # New: users' registry credentials may travel over a plain http:// url (a trusted
    # internal network only).
    allow_plain_http_credentials: StrictBool = Field(False, alias="allowPlainHttpCredentials")

    @property
    def plain_http(self) -> bool:
        return bool(self.url and self.url.startswith("http://"))

    @property
    def refuses_credentials(self) -> bool:
        """Whether users' registry credentials may not be sent to this registry."""
        return self.plain_http and not self.allow_plain_http_credentials

    @model_validator(mode="after")
    def _credentials_not_in_clear(self) -> Location:
        if self.refuses_credentials and self.authentication not in (None, "none"):
            raise key_error(
                "url",
                f"{self.url} is plain http, and authentication {self.authentication!r} "
                "says this registry takes credentials: the gateway never sends them in clear "
                "text, so every pull that needs them would fail. Serve the registry over "
                "https, remove authentication, or set \"allowPlainHttpCredentials\": true "
                "for a registry on a trusted network",
            )
        return self


class LocalAccess(Section):
    """`Platforms.<name>.local`: the gateway writes images straight into imageDir."""

    image_dir: AbsolutePath = Field(alias="imageDir")


class SshAccess(Section):
    """`Platforms.<name>.ssh`: the gateway copies images to imageDir on the first host."""

    # A name starting with '-' would become an ssh option; the validators refuse it.
    username: UserName
    key: OptionalPath = None
    image_dir: AbsolutePath = Field(alias="imageDir")
    ssh_cmd_options: tuple[str, ...] = Field((), alias="sshCmdOptions")
    scp_cmd_options: tuple[str, ...] = Field((), alias="scpCmdOptions")


UNUSED_IN_ORIGINAL = "ignored: the original never used it either"


class Platform(Section):
    """One target system (`Platforms.<name>`), named like `system` in its udiRoot.conf."""

    obsolete_keys: ClassVar[Mapping[str, str]] = {
        "use_external": "ignored: the skopeo/umoci pull path is gone; the built-in registry "
        "client handles OCI images and opaque whiteouts itself",
        "policy_file": "ignored: it configured skopeo, which is no longer used",
        "usergroupService": UNUSED_IN_ORIGINAL,
        "mountCommand": UNUSED_IN_ORIGINAL,
        "ldap": UNUSED_IN_ORIGINAL,
    }

    munge_socket_path: AbsolutePath = Field(
        "/var/run/munge/munge.socket.2", alias="mungeSocketPath"
    )
    accesstype: Literal["local", "remote"]
    admins: UserNames = ()
    local: LocalAccess | None = None
    host: tuple[HostName, ...] = ()
    ssh: SshAccess | None = None

    @model_validator(mode="after")
    def _access_is_configured(self) -> Platform:
        if self.accesstype == "local" and self.local is None:
            raise key_error("local", 'is required with accesstype "local": {"imageDir": "/images"}')
        if self.accesstype == "remote" and not self.host:
            raise key_error("host", 'is required with accesstype "remote": a list of host names')
        if self.accesstype == "remote" and self.ssh is None:
            raise key_error(
                "ssh", 'is required with accesstype "remote": {"username": ..., "imageDir": ...}'
            )
        return self

    @property
    def image_dir(self) -> str:
        """Where this system's images live: local.imageDir or ssh.imageDir."""
        access = self.local if self.accesstype == "local" else self.ssh
        assert access is not None  # guaranteed by _access_is_configured
        return access.image_dir

    def is_admin(self, user: str) -> bool:
        """May `user` expire images and read metrics on this system."""
        return user in self.admins


def _read_only_locations(locations: Mapping[str, Location]) -> Mapping[str, Location]:
    """Check the names and fill in the default URL, https://<name>."""
    for name in locations:
        _check_name(name, what="location")
    return MappingProxyType(
        {
            name: loc if loc.url else loc.model_copy(update={"url": f"https://{name}"})
            for name, loc in locations.items()
        }
    )


def _read_only_platforms(platforms: Mapping[str, Platform]) -> Mapping[str, Platform]:
    for name in platforms:
        _check_name(name, what="platform")
    return MappingProxyType(dict(platforms))


def _check_name(name: str, *, what: str) -> None:
    try:
        values.name(name, what=what)
    except ValueError as error:
        # Placed at the name's key, not at the whole section.
        raise key_error((name,), str(error)) from None


LocationMap = Annotated[Mapping[str, Location], AfterValidator(_read_only_locations), _AS_DICT]
PlatformMap = Annotated[Mapping[str, Platform], AfterValidator(_read_only_platforms), _AS_DICT]
OptionsMap = Annotated[
    Mapping[str, tuple[str, ...]],
    BeforeValidator(values.converter_options),
    AfterValidator(MappingProxyType),
    _AS_DICT,
]
