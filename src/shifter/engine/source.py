"""Where an image comes from: a typed reference mapped to a registry URL and repository.

Two regimes, as in imagemanager.json. With Locations configured, the first path component
picks a location (`split_location`: an alias or a host the site listed; anything else is
refused) and the rest is the repository. With no Locations (`shifter-imagegw convert`
without a config file) the reference is a plain docker reference and its registry host is
contacted directly: https, or http when the caller said `insecure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shifter.image.reference import (
    DOCKER_HUB,
    is_docker_hub,
    parse_docker_reference,
    split_location,
)


@dataclass(frozen=True)
class RegistryLocation:
    """One configured registry: its base URL and the CA file to verify it with."""

    url: str
    ca_file: str | None = None


@dataclass(frozen=True)
class ImageSource:
    """A resolved reference: the registry to ask and what to ask it for."""

    reference: str  # as the user typed it
    url: str  # scheme://host[:port]
    repository: str
    tag_or_digest: str
    ca_file: str | None = None

    @property
    def display(self) -> str:
        """registry/repository:tag (or @digest): how messages and the sidecar name it."""
        host = urlsplit(self.url).netloc
        separator = "@" if self.tag_or_digest.startswith("sha256:") else ":"
        return f"{host}/{self.repository}{separator}{self.tag_or_digest}"


def resolve_source(
    reference: str,
    *,
    locations: Mapping[str, RegistryLocation],
    default_location: str = DOCKER_HUB,
    insecure: bool = False,
) -> ImageSource:
    """Map `reference` to the registry serving it; ImageReferenceError if it is malformed
    or names a registry that is not a configured location."""
    scheme = "http" if insecure else "https"
    if not locations:
        parsed = parse_docker_reference(reference)
        return ImageSource(
            reference=reference,
            url=f"{scheme}://{parsed.registry}",
            repository=parsed.repository,
            tag_or_digest=parsed.manifest_ref,
        )
    split = split_location(reference, tuple(locations), default_location)
    location = locations.get(split.location) or RegistryLocation(f"{scheme}://{split.location}")
    repository = split.repository
    host = urlsplit(location.url).hostname or ""
    if is_docker_hub(host) and "/" not in repository:
        repository = f"library/{repository}"
    return ImageSource(
        reference=reference,
        url=location.url,
        repository=repository,
        tag_or_digest=split.tag_or_digest,
        ca_file=location.ca_file,
    )
