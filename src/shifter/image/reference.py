"""Docker image references: parse what a user types into a registry, repository, tag, digest.

The grammar is the distribution reference grammar, written here from its specification:

    reference  := name [":" tag] ["@" digest]
    name       := [registry "/"] component ("/" component)*
    registry   := host [":" port]      host := domain-name | "[" ipv6 "]"
    component  := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := algorithm ":" hex    (sha256: 64 hex, sha512: 128 hex, others: 32 or more)

The first path component is a registry only if it contains "." or ":" or is "localhost", so
`ubuntu:22.04` and `group/app` name Docker Hub repositories. `docs/image-references.md` lists
every normalisation and where we differ from the original Shifter.

This module is on the `shifter` launch path: standard library only, and the grammar is
checked with character sets rather than regular expressions (`re` and the compilation of
the patterns cost that path about 3 ms; the unit tests check both agree).
"""

from __future__ import annotations

from shifter.errors import ImageReferenceError
from shifter.frozen import Frozen

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Collection

DOCKER_HUB = "registry-1.docker.io"
# Every spelling of Docker Hub means the registry that serves its v2 API.
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DEFAULT_TAG = "latest"
# The distribution grammar's limit on a repository name with its registry.
NAME_MAX = 255
# Far above any valid reference: bounds the work done on hostile environment variables.
TEXT_MAX = 4096

DOCKER_HINT = (
    "expected docker:[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. docker:ubuntu:22.04"
)

_LOWER = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
# ASCII only: str.isalnum() and str.isdigit() accept other scripts' letters and digits.
ASCII_ALNUM = frozenset(_LOWER + _LOWER.upper() + _DIGITS)
LOWER_HEX = frozenset(_DIGITS + "abcdef")
_LOWER_ALNUM = frozenset(_LOWER + _DIGITS)
# Every character that can occur anywhere in a reference; the structural checks below then
# say which part is wrong. Checking this first lets us name the offending character.
_REFERENCE_CHARS = ASCII_ALNUM | frozenset("._:/@+[]-")
_TAG_FIRST = ASCII_ALNUM | {"_"}
_TAG_CHARS = _TAG_FIRST | frozenset(".-")
_HOST_CHARS = ASCII_ALNUM | {"-"}
_IPV6_CHARS = frozenset(_DIGITS + "abcdefABCDEF:")
# Registered algorithms have a fixed length; anything else only the grammar's minimum.
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}


def reference_error(kind: str, text: str, problem: str, hint: str) -> ImageReferenceError:
    """The one shape of every message here: what was typed, then what is wrong with it."""
    return ImageReferenceError(f"invalid {kind} {text!r}: {problem}", hint=hint)


def made_of(text: str, allowed: frozenset[str]) -> bool:
    """Whether every character of `text` is in `allowed` (true for empty text)."""
    return all(char in allowed for char in text)


def first_disallowed(text: str, allowed: frozenset[str], start: int = 0) -> str | None:
    """Describe the first character from `start` on that is not in `allowed`, or None."""
    for position in range(start, len(text)):
        if text[position] not in allowed:
            return f"character {text[position]!r} at position {position + 1} is not allowed"
    return None


def is_tag(text: str) -> bool:
    """The grammar's tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`."""
    return 0 < len(text) <= 128 and text[0] in _TAG_FIRST and made_of(text, _TAG_CHARS)


def _is_component(text: str) -> bool:
    """`[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`: lowercase runs joined by one separator each."""
    separator = ""
    for char in text:
        if char in _LOWER_ALNUM:
            if separator not in ("", ".", "_", "__") and separator.strip("-"):
                return False
            separator = ""
        elif char in "._-":
            separator += char
        else:
            return False
    return bool(text) and text[0] in _LOWER_ALNUM and not separator


def _is_host(host: str) -> bool:
    """A domain name (dot-separated labels of letters, digits and inner '-') or `[IPv6]`."""
    if host.startswith("["):
        return len(host) > 2 and host.endswith("]") and made_of(host[1:-1], _IPV6_CHARS)
    return all(
        label and label[0] != "-" and label[-1] != "-" and made_of(label, _HOST_CHARS)
        for label in host.split(".")
    )


def _is_algorithm(text: str) -> bool:
    """`[a-z][a-z0-9]*([+._-][a-z][a-z0-9]*)*`."""
    for separator in "._-":
        text = text.replace(separator, "+")
    return all(
        piece and piece[0] in _LOWER and made_of(piece, _LOWER_ALNUM) for piece in text.split("+")
    )


def _is_hex(text: str) -> bool:
    """`[a-f0-9]{32,}`."""
    return len(text) >= 32 and made_of(text, LOWER_HEX)


def is_docker_hub(registry: str) -> bool:
    """Whether a registry host names Docker Hub (where one-component names get `library/`)."""
    return registry.lower() in DOCKER_HUB_ALIASES


def looks_like_registry(component: str) -> bool:
    """The grammar's rule for a first path component that is a registry, not a repository."""
    return "." in component or ":" in component or component == "localhost"


# Frozen, not a dataclass: `dataclasses` costs the launch path ~10 ms (see shifter.frozen).
class DockerReference(Frozen):
    """A fully normalised docker image reference.

    `registry` is a lowercase host[:port] (Docker Hub is always `registry-1.docker.io`),
    `repository` the path below it (with `library/` for one-component Docker Hub names), and
    at least one of `tag` and `digest` is set: `tag` defaults to `latest` without a digest.
    """

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ValueError("a DockerReference needs a tag, a digest or both")

    @property
    def name(self) -> str:
        """Registry and repository: the part the 255-character limit applies to."""
        return f"{self.registry}/{self.repository}"

    @property
    def manifest_ref(self) -> str:
        """What goes after `/manifests/` in the v2 API: the digest pins harder than a tag."""
        return self.digest if self.digest is not None else str(self.tag)

    @property
    def repository_path(self) -> str:
        """The repository as the v2 API spells it: `/v2/<repository_path>/manifests/...`."""
        return self.repository

    def canonical(self) -> str:
        """The fully qualified form; parsing it gives this reference back under any default."""
        return self.name + self._suffix()

    def familiar(self) -> str:
        """The short form users see: Docker Hub and `library/` left out where unambiguous."""
        repository = self.repository
        if not is_docker_hub(self.registry):
            return self.canonical()
        if repository.startswith("library/") and repository.count("/") == 1:
            repository = repository.removeprefix("library/")
        first = repository.split("/", 1)[0]
        # A Docker Hub path whose first component looks like a host must keep its registry,
        # or reading the familiar form back would take that component as the registry.
        if "/" in repository and looks_like_registry(first):
            return self.canonical()
        return repository + self._suffix()

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest


class LocationSplit(Frozen):
    """Where the gateway pulls an image from: a `Locations` key, a repository, a tag or digest."""

    location: str
    repository: str
    tag_or_digest: str


def parse_docker_reference(text: str, *, default_registry: str = DOCKER_HUB) -> DockerReference:
    """Parse a docker image reference; raise `ImageReferenceError` if it is not one."""
    registry_default = _default_registry(default_registry)
    _check_text(text)
    first, rest = _split_first(text)
    if rest is not None and looks_like_registry(first):
        registry = _parse_registry(first, text)
        remainder = rest
    else:
        registry = registry_default
        remainder = text
    repository, tag, digest = _parse_remote(remainder, text)
    if is_docker_hub(registry) and "/" not in repository:
        repository = f"library/{repository}"
    reference = DockerReference(registry, repository, tag, digest)
    if len(reference.name) > NAME_MAX:
        problem = f"the name {reference.name!r} is longer than {NAME_MAX} characters"
        raise reference_error("image reference", text, problem, DOCKER_HINT)
    return reference


def split_location(
    reference_text: str, location_names: Collection[str], default_location: str
) -> LocationSplit:
    """Map a docker tag to the gateway location that serves it (the original's rule, made strict).

    If the first path component is a `Locations` key (an alias such as `myalias` or a host
    such as `quay.io`) that is the location and the rest is the repository; a first component
    that the grammar reads as a registry but which is not configured is an error rather than
    a silently wrong pull from the default location. Docker Hub spellings select whichever
    configured location is Docker Hub. The repository is returned as typed: the registry
    client adds `library/` when the location's host is Docker Hub.

    Empty `location_names` means the site configured no `Locations`, so any registry may be
    used: a registry in the reference is then its own location (normalised host[:port]).
    """
    _check_text(reference_text)
    names = {*location_names, default_location}
    first, rest = _split_first(reference_text)
    location = default_location
    remainder = reference_text
    if rest is not None:
        matched = _match_location(
            first, names, default_location, reference_text, open_registries=not location_names
        )
        if matched is not None:
            location, remainder = matched, rest
    repository, tag, digest = _parse_remote(remainder, reference_text)
    return LocationSplit(location, repository, digest if digest is not None else str(tag))


def _match_location(
    first: str, names: set[str], default: str, text: str, *, open_registries: bool
) -> str | None:
    if first in names:
        return first
    if not looks_like_registry(first):
        return None
    by_host = {name.lower(): name for name in names}
    if first.lower() in by_host:
        return by_host[first.lower()]
    if is_docker_hub(first):
        if is_docker_hub(default):
            return default
        hubs = sorted(name for name in names if is_docker_hub(name))
        if hubs:
            return hubs[0]
    if open_registries:
        return _parse_registry(first, text)
    configured = ", ".join(sorted(names))
    raise reference_error(
        "image reference",
        text,
        f"registry {first!r} is not a location of this image gateway",
        f"use one of the configured locations ({configured}) or ask your site to add "
        f'{first!r} under "Locations" in imagemanager.json',
    )


def _default_registry(default_registry: str) -> str:
    if not looks_like_registry(default_registry):
        raise reference_error(
            "default registry",
            default_registry,
            "a registry must contain '.' or ':' or be 'localhost'",
            "set it to a host such as registry-1.docker.io or registry.example.org:5000",
        )
    return _parse_registry(default_registry, default_registry)


def _check_text(text: str) -> None:
    if not text:
        raise reference_error("image reference", text, "it is empty", DOCKER_HINT)
    if len(text) > TEXT_MAX:
        problem = f"it is {len(text)} characters long, more than {TEXT_MAX}"
        raise reference_error("image reference", text[:64] + "...", problem, DOCKER_HINT)
    bad = first_disallowed(text, _REFERENCE_CHARS)
    if bad is not None:
        raise reference_error("image reference", text, bad, DOCKER_HINT)
    if text.startswith("/"):
        raise reference_error(
            "image reference",
            text,
            "it starts with '/'",
            DOCKER_HINT + "; for a directory on this host write local:/PATH",
        )


def _split_first(text: str) -> tuple[str, str | None]:
    """The first path component and the rest, or (text, None) without a '/' before any '@'."""
    name = text.split("@", 1)[0]
    if "/" not in name:
        return text, None
    first, rest = text.split("/", 1)
    return first, rest


def _parse_registry(component: str, text: str) -> str:
    host, port = _split_port(component)
    if not _is_host(host):
        problem = f"registry host {host!r} is not a host name or a bracketed IPv6 address"
        raise reference_error("image reference", text, problem, DOCKER_HINT)
    if port is not None and not (port.isdigit() and port.isascii() and 0 < int(port) < 65536):
        problem = f"registry port {port!r} is not a number from 1 to 65535"
        raise reference_error("image reference", text, problem, DOCKER_HINT)
    registry = host.lower() if port is None else f"{host.lower()}:{int(port)}"
    return DOCKER_HUB if registry in DOCKER_HUB_ALIASES else registry


def _split_port(component: str) -> tuple[str, str | None]:
    """Host and port text; a bracketed IPv6 host has its own colons."""
    if component.startswith("["):
        close = component.find("]")
        after = component[close + 1 :]
        if close < 0 or not after:
            return component, None
        if after.startswith(":"):
            return component[: close + 1], after[1:]
        return component, None
    host, colon, port = component.partition(":")
    return host, port if colon else None


def _parse_remote(remote: str, text: str) -> tuple[str, str | None, str | None]:
    """Repository, tag and digest of what follows the registry; the tag defaults to latest."""
    name, at, digest_text = remote.partition("@")
    digest = _parse_digest(digest_text, text) if at else None
    tag: str | None = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        _check_tag(tag, text)
    if not name:
        raise reference_error("image reference", text, "the repository name is empty", DOCKER_HINT)
    for component in name.split("/"):
        _check_component(component, text)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return name, tag, digest


def _check_tag(tag: str, text: str) -> None:
    if is_tag(tag):
        return
    if not tag:
        problem = "the tag after ':' is empty"
    elif len(tag) > 128:
        problem = f"the tag is {len(tag)} characters long, more than 128"
    else:
        problem = (
            f"tag {tag!r} must be letters, digits, '_', '.' and '-', "
            "and must not start with '.' or '-'"
        )
    raise reference_error("image reference", text, problem, DOCKER_HINT)


def _check_component(component: str, text: str) -> None:
    if _is_component(component):
        return
    if not component:
        problem = "it has an empty path component (a '/' at the end or '//')"
    elif component != component.lower():
        upper = next(char for char in component if char.isupper())
        problem = f"repository names must be lowercase, found {upper!r}"
    else:
        problem = (
            f"path component {component!r} must be lowercase letters and digits, separated "
            "by single '.', '_' or '__', or by dashes"
        )
    raise reference_error("image reference", text, problem, DOCKER_HINT)


def _parse_digest(digest: str, text: str) -> str:
    algorithm, colon, hex_part = digest.partition(":")
    if not colon or not _is_algorithm(algorithm) or not _is_hex(hex_part):
        problem = (
            f"digest {digest!r} must be ALGORITHM:HEX with a lowercase algorithm and at least "
            "32 lowercase hex digits"
        )
        raise reference_error("image reference", text, problem, DOCKER_HINT)
    expected = _DIGEST_LENGTHS.get(algorithm)
    if expected is not None and len(hex_part) != expected:
        problem = f"a {algorithm} digest has {expected} hex digits, found {len(hex_part)}"
        raise reference_error("image reference", text, problem, DOCKER_HINT)
    return digest
