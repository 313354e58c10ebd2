"""Manifests and indexes: media types, parsing, and choosing one platform of many.

Pure functions over bytes a registry sent: no I/O. Four documents are understood: the OCI
image manifest and image index, and Docker's schema 2 manifest and manifest list (the same
structures under other names). Docker schema 1 is refused with advice, because its
unverifiable v1Compatibility history is not worth supporting in 2024 (the original gateway
supported only that). A media type we do not know is refused rather than guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shifter.errors import ParseError
from shifter.registry.errors import ManifestError, PlatformNotFoundError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
# Schema 1 is accepted only so that the registry sends it and we can say why it fails;
# without it some registries answer 404 for a schema-1-only tag, which would mislead.
ACCEPT = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES, *DOCKER_SCHEMA1))

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)

# Filesystem layers; the flattener picks decompression from magic bytes, so the suffix
# only decides whether we accept the blob at all.
LAYER_TYPES = frozenset(
    {
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

SCHEMA1_MESSAGE = "unsupported manifest schema 1, re-push the image with a current Docker or skopeo"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PLATFORM_PART = re.compile(r"[A-Za-z0-9_.-]+")
# Architecture spellings of uname and distributions, mapped to the OCI (GOARCH) names.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}
# The variant an image means when it names none: arm64 is always v8, 32-bit arm images
# without a variant are v7 in practice, and amd64's baseline is v1 (v2, v3 need newer CPUs).
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: operating system, architecture and optional CPU variant."""

    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base

    def normalized(self) -> Platform:
        """Lower case, OCI architecture names, and the variant made explicit."""
        arch = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = (self.variant or DEFAULT_VARIANTS.get(arch) or "").lower() or None
        return Platform(self.os.lower(), arch, variant)

    def matches(self, other: Platform) -> bool:
        """Whether an image for `other` is what someone asking for `self` wants."""
        return self.normalized() == other.normalized()


def parse_platform(text: str) -> Platform:
    """`os/arch` or `os/arch/variant` (as `--platform` and DefaultPlatform take it)."""
    parts = text.split("/")
    if not 2 <= len(parts) <= 3 or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
        raise ParseError(
            f"invalid platform {text!r}",
            hint="write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm64/v8",
        )
    return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A pointer to content: what it is, its sha256 digest and its exact size."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None


@dataclass(frozen=True, slots=True)
class ImageManifest:
    """One platform's image: a config blob and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True, slots=True)
class ImageIndex:
    """A multi-platform image: one manifest descriptor per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


def parse_manifest(data: bytes, content_type: str | None, what: str) -> ImageManifest | ImageIndex:
    """Parse a manifest or index; `what` names it in messages (an image reference)."""
    document = _json_object(data, f"the manifest of {what}")
    schema = document.get("schemaVersion")
    declared = document.get("mediaType")
    header = (content_type or "").split(";")[0].strip().lower()
    if schema == 1 or header in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1:
        raise ManifestError(f"{what}: {SCHEMA1_MESSAGE}", hint=_SCHEMA1_HINT)
    if schema != 2:
        raise ManifestError(f"{what}: manifest has schemaVersion {schema!r}, expected 2")
    media_type = _media_type(document, declared, header, what)
    if media_type in INDEX_TYPES:
        entries = _list(document, "manifests", what)
        return ImageIndex(media_type, tuple(_descriptor(e, what, True) for e in entries))
    config = _descriptor(document.get("config"), what, False)
    layers = tuple(_descriptor(e, what, False) for e in _list(document, "layers", what))
    if config.media_type not in CONFIG_TYPES:
        raise ManifestError(
            f"{what} is not a container image: its config has media type {config.media_type!r}",
            hint="only OCI and Docker container images can be pulled, not other artifacts",
        )
    for number, layer in enumerate(layers, start=1):
        if layer.media_type not in LAYER_TYPES:
            raise ManifestError(
                f"{what}: layer {number} has media type {layer.media_type!r}, "
                "which is not a filesystem layer shifter can read",
                hint="encrypted and non-tar layers are not supported; re-push a plain image",
            )
    return ImageManifest(media_type, config, layers)


_SCHEMA1_HINT = "e.g. `skopeo copy docker://IMAGE docker://IMAGE` writes schema 2"


def _media_type(document: Mapping[str, Any], declared: object, header: str, what: str) -> str:
    """The body's mediaType wins; then Content-Type; then the shape (old OCI manifests
    carry no mediaType and some registries send a generic Content-Type)."""
    candidate = declared if isinstance(declared, str) else header
    if candidate in MANIFEST_TYPES or candidate in INDEX_TYPES:
        return candidate
    if declared is None and header in ("", "application/json", "application/octet-stream"):
        if "manifests" in document:
            return OCI_INDEX
        if "config" in document and "layers" in document:
            return OCI_MANIFEST
    raise ManifestError(
        f"{what} has media type {candidate!r}, which is not a container image manifest",
        hint="shifter pulls OCI and Docker schema 2 images and their multi-platform indexes",
    )


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"{what} is not a JSON object")
    return document


def _list(document: Mapping[str, Any], key: str, what: str) -> Sequence[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise ManifestError(f"the manifest of {what} has no {key!r} list")
    return value


def _descriptor(entry: object, what: str, with_platform: bool) -> Descriptor:
    if not isinstance(entry, dict):
        raise ManifestError(f"the manifest of {what} has a descriptor that is not an object")
    media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
    if not isinstance(media_type, str):
        raise ManifestError(f"the manifest of {what} has a descriptor without a mediaType")
    check_digest(digest, what)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"the manifest of {what} gives {digest} an invalid size {size!r}")
    platform = _platform(entry.get("platform")) if with_platform else None
    return Descriptor(media_type, str(digest), size, platform)


def check_digest(digest: object, what: str) -> str:
    """A sha256 digest as content-addressed storage needs it, or ManifestError."""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        algorithm = digest.split(":", 1)[0] if isinstance(digest, str) else None
        detail = (
            f"digest algorithm {algorithm!r} is not supported (only sha256)"
            if isinstance(digest, str) and ":" in digest and algorithm != "sha256"
            else f"invalid digest {digest!r}"
        )
        raise ManifestError(f"{what}: {detail}")
    return digest


def _platform(value: object) -> Platform | None:
    if not isinstance(value, dict):
        return None
    os_name, arch, variant = value.get("os"), value.get("architecture"), value.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        return None
    return Platform(os_name, arch, variant if isinstance(variant, str) and variant else None)


def available_platforms(index: ImageIndex) -> tuple[str, ...]:
    """The platforms an index offers, for messages (attestation entries left out)."""
    seen: list[str] = []
    for entry in index.manifests:
        if entry.platform is None or entry.platform.os == "unknown":
            continue
        if entry.media_type in MANIFEST_TYPES and str(entry.platform) not in seen:
            seen.append(str(entry.platform))
    return tuple(seen)


def select_platform(index: ImageIndex, wanted: Platform, what: str) -> Descriptor:
    """The first image manifest in `index` for `wanted`; PlatformNotFoundError listing the
    platforms there are otherwise. Index order is the publisher's preference."""
    for entry in index.manifests:
        if entry.platform is None or not wanted.matches(entry.platform):
            continue
        if entry.media_type in MANIFEST_TYPES:
            return entry
        if entry.media_type in INDEX_TYPES:
            raise ManifestError(f"{what}: nested image indexes are not supported")
    offered = available_platforms(index)
    raise PlatformNotFoundError(
        f"{what} has no image for platform {wanted}; available platforms: "
        + (", ".join(offered) or "none"),
        hint="choose one of them with --platform (DefaultPlatform in imagemanager.json)",
    )
