"""Image configs, manifests and indexes, as OCI or Docker schema 2 JSON.

Everything is serialised with sorted keys and no whitespace so the same inputs always give
the same bytes, hence the same digests. `BuiltImage` is what `push` needs: the blobs, the
manifests an index points at, and the top-level manifest or index pushed by tag.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from shifter.ocibuild.layer import Compression, Layer, sha256_digest

FIXED_CREATED = "2020-01-01T00:00:00Z"  # matches layer.FIXED_MTIME; keeps digests stable


class Flavor(enum.Enum):
    """The two media-type families registries accept for the same image structure."""

    OCI = "oci"
    DOCKER = "docker"

    @property
    def manifest_type(self) -> str:
        if self is Flavor.OCI:
            return "application/vnd.oci.image.manifest.v1+json"
        return "application/vnd.docker.distribution.manifest.v2+json"

    @property
    def index_type(self) -> str:
        if self is Flavor.OCI:
            return "application/vnd.oci.image.index.v1+json"
        return "application/vnd.docker.distribution.manifest.list.v2+json"

    @property
    def config_type(self) -> str:
        if self is Flavor.OCI:
            return "application/vnd.oci.image.config.v1+json"
        return "application/vnd.docker.container.image.v1+json"

    def layer_type(self, compression: Compression) -> str:
        if self is Flavor.OCI:
            suffix = {Compression.GZIP: "+gzip", Compression.ZSTD: "+zstd", Compression.NONE: ""}
            return "application/vnd.oci.image.layer.v1.tar" + suffix[compression]
        if compression is Compression.ZSTD:
            raise ValueError("Docker schema 2 has no zstd layer media type; use Flavor.OCI")
        if compression is Compression.GZIP:
            return "application/vnd.docker.image.rootfs.diff.tar.gzip"
        return "application/vnd.docker.image.rootfs.diff.tar"


@dataclass(frozen=True)
class Blob:
    """Bytes a registry stores under their sha256, with the media type they are sent as."""

    media_type: str
    data: bytes

    @functools.cached_property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Platform:
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None

    def as_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class RunConfig:
    """The `config` object of an image config: how a container of this image starts."""

    env: Sequence[str] = ()
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.labels:
            out["Labels"] = dict(self.labels)
        return out


def to_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def image_config(
    layers: Sequence[Layer],
    *,
    platform: Platform = Platform(),
    run: RunConfig = RunConfig(),
    flavor: Flavor = Flavor.OCI,
    created: str = FIXED_CREATED,
) -> Blob:
    """The image config blob: platform, run config, rootfs diff_ids and one history entry
    per layer (its comment says what the layer is for)."""
    config: dict[str, object] = {
        "created": created,
        **platform.as_json(),
        "config": run.as_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": created, "created_by": "shifter.ocibuild", "comment": layer.comment}
            for layer in layers
        ],
    }
    return Blob(flavor.config_type, to_json(config))


def image_manifest(
    config: Blob,
    layers: Sequence[Layer],
    *,
    flavor: Flavor = Flavor.OCI,
    annotations: Mapping[str, str] | None = None,
) -> Blob:
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": flavor.manifest_type,
        "config": config.descriptor(),
        "layers": [
            {
                "mediaType": flavor.layer_type(layer.compression),
                "digest": layer.digest,
                "size": layer.size,
            }
            for layer in layers
        ],
    }
    if annotations and flavor is Flavor.OCI:
        manifest["annotations"] = dict(annotations)
    return Blob(flavor.manifest_type, to_json(manifest))


def image_index(manifests: Sequence[tuple[Blob, Platform]], *, flavor: Flavor = Flavor.OCI) -> Blob:
    """An OCI image index or Docker manifest list pointing at one manifest per platform."""
    index = {
        "schemaVersion": 2,
        "mediaType": flavor.index_type,
        "manifests": [blob.descriptor(platform=platform.as_json()) for blob, platform in manifests],
    }
    return Blob(flavor.index_type, to_json(index))


@dataclass(frozen=True)
class SingleImage:
    """One platform's image: its config, layers and manifest."""

    config: Blob
    layers: tuple[Layer, ...]
    manifest: Blob
    platform: Platform

    def blobs(self, flavor: Flavor) -> tuple[Blob, ...]:
        return (
            self.config,
            *(Blob(flavor.layer_type(layer.compression), layer.blob) for layer in self.layers),
        )


def single_image(
    layers: Sequence[Layer],
    *,
    platform: Platform = Platform(),
    run: RunConfig = RunConfig(),
    flavor: Flavor = Flavor.OCI,
) -> SingleImage:
    config = image_config(layers, platform=platform, run=run, flavor=flavor)
    manifest = image_manifest(config, layers, flavor=flavor)
    return SingleImage(config, tuple(layers), manifest, platform)


@dataclass(frozen=True)
class BuiltImage:
    """Everything a registry needs to serve one image reference.

    `top` is pushed by tag last; `manifests` (the platform manifests of an index) are pushed
    by digest before it, and `blobs` (configs and layers, no duplicates) before those.
    """

    name: str
    top: Blob
    manifests: tuple[Blob, ...]
    blobs: tuple[Blob, ...]
    flavor: Flavor

    @property
    def digest(self) -> str:
        return self.top.digest

    @property
    def is_index(self) -> bool:
        return bool(self.manifests)


def _unique(blobs: Sequence[Blob]) -> tuple[Blob, ...]:
    seen: dict[str, Blob] = {}
    for blob in blobs:
        seen.setdefault(blob.digest, blob)
    return tuple(seen.values())


def built_image(name: str, image: SingleImage, flavor: Flavor) -> BuiltImage:
    return BuiltImage(name, image.manifest, (), _unique(image.blobs(flavor)), flavor)


def built_index(name: str, images: Sequence[SingleImage], flavor: Flavor) -> BuiltImage:
    index = image_index([(image.manifest, image.platform) for image in images], flavor=flavor)
    blobs = _unique([blob for image in images for blob in image.blobs(flavor)])
    return BuiltImage(name, index, tuple(image.manifest for image in images), blobs, flavor)
