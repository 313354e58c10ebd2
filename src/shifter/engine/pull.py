"""Pull an image from a registry and convert it: the gateway worker's pipeline.

    reference -> registry, repository (source.resolve_source)
    GET manifest (index -> the wanted platform's manifest)    id = sha256(manifest bytes)
    <id>.<fmt> and <id>.meta already there? -> done (meta rewritten only if ACLs changed)
    the caller's `reuse(id)` says it has <id>.<fmt> elsewhere? -> config, sidecar, meta: done
    config blob, layer blobs -> shared BlobCache (concurrently, each verified), each
        layer's headers read as it arrives and planned in order (engine.layerplan)
    convert.build_image -> <id>.<fmt>      (atomic)
    <id>.json sidecar                      (atomic)
    <id>.meta                              (atomic, last: the runtime takes it as "ready")

The id is the digest of the platform's image manifest, not of a multi-arch index, so the
amd64 and arm64 images of one tag have different ids (each is a different file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Literal

from shifter.convert import build_image
from shifter.engine import sidecar
from shifter.engine.files import output_error, write_atomically
from shifter.engine.layerplan import LayerPlanner
from shifter.engine.progress import PullProgress, SilentProgress
from shifter.engine.source import ImageSource, RegistryLocation, resolve_source
from shifter.errors import ShifterError
from shifter.image.meta import format_meta
from shifter.image.reference import DOCKER_HUB
from shifter.registry.blobcache import BlobCache
from shifter.registry.client import FetchedManifest, RegistryClient
from shifter.registry.errors import ManifestError
from shifter.registry.imageconfig import ImageConfig, parse_image_config
from shifter.registry.manifest import (
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_manifest,
    parse_platform,
    select_platform,
)
from shifter.registry.retry import RetryPolicy

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("squashfs", "ext4", "cramfs")
CONFIG_MAX_BYTES = 16 << 20  # configs are kilobytes; this only bounds a hostile one


def image_id(manifest: bytes) -> str:
    """The image id: sha256 (bare hex, no `sha256:`) of the platform manifest's bytes as
    served; the runtime takes an id without a colon, and equal bytes mean equal images."""
    return hashlib.sha256(manifest).hexdigest()


class PullError(ShifterError):
    """A pull that cannot go ahead (output directory missing, pull cancelled...)."""


@dataclass(frozen=True)
class PullOptions:
    """How to pull and convert: the site's settings (imagemanager.json) and the caller's."""

    cache_dir: Path
    platform: str = "linux/amd64"
    image_format: str = "squashfs"
    locations: Mapping[str, RegistryLocation] = field(default_factory=lambda: MappingProxyType({}))
    default_location: str = DOCKER_HUB
    credentials: tuple[str, str] | None = None
    insecure: bool = False
    ca_file: str | None = None  # overrides the Location's sslcacert
    converter_options: tuple[str, ...] = ()
    ownership: Literal["root", "preserve"] = "root"
    layer_concurrency: int = 4
    mode: int = 0o644  # of the image, meta and sidecar files
    work_dir: Path | None = None  # for the ext4/cramfs tree (ExpandDirectory)
    retry: RetryPolicy | None = None
    progress: PullProgress = field(default_factory=SilentProgress)
    environ: Mapping[str, str] | None = None  # proxies; None: os.environ
    # Asked with the image id once the manifest is resolved, before any layer is fetched,
    # when the destination does not hold the image: True when the caller already has
    # `<id>.<fmt>` where it is needed (the gateway: published in imageDir). Then only the
    # config is fetched, `.meta` and the sidecar are written, and nothing is converted.
    reuse: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class PulledImage:
    """What a pull produced (or found already there, `reused`). With `image_elsewhere`
    the `reuse` hook said the caller has the image: only `.meta` and the sidecar were
    written and `image_path` does not exist."""

    id: str
    image_path: Path
    meta_path: Path
    sidecar_path: Path
    image_format: str
    manifest_digest: str
    config_digest: str
    reference: str
    reused: bool
    warnings: tuple[str, ...] = ()
    image_elsewhere: bool = False


@dataclass(frozen=True)
class _Resolved:
    source: ImageSource
    manifest: ImageManifest
    fetched: FetchedManifest
    index_digest: str | None


def pull_and_convert(
    reference: str,
    dest_dir: str | os.PathLike[str],
    *,
    options: PullOptions,
    user_acl: Sequence[int] | None = None,
    group_acl: Sequence[int] | None = None,
) -> PulledImage:
    """Pull `reference` and leave `<id>.<fmt>`, `<id>.json` and `<id>.meta` in `dest_dir`.

    `user_acl`/`group_acl` (uids/gids) are written for private images only: with either
    set, the runtime lets only those users and groups use the image.
    """
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise PullError(f"output directory {dest} does not exist", hint="create it first")
    if not os.access(dest, os.W_OK | os.X_OK):  # before minutes of downloading, not after
        raise PullError(
            f"output directory {dest} is not writable",
            hint="choose a directory this account can write to (imageDir of the platform)",
        )
    if options.image_format not in IMAGE_FORMATS:
        raise PullError(
            f"unknown image format {options.image_format!r}",
            hint=f"use one of {', '.join(IMAGE_FORMATS)}",
        )
    wanted = parse_platform(options.platform)
    source = resolve_source(
        reference,
        locations=options.locations,
        default_location=options.default_location,
        insecure=options.insecure,
    )
    cache = BlobCache(options.cache_dir).prepare()
    client = RegistryClient(
        source.url,
        credentials=options.credentials,
        ca_file=options.ca_file or source.ca_file,
        insecure=options.insecure,
        retry=options.retry,
        environ=options.environ,
    )
    try:
        with client:
            client.ping()
            resolved = _resolve_manifest(client, source, wanted)
            pull = _Pull(client, cache, resolved, dest, options)
            return pull.run(tuple(user_acl or ()), tuple(group_acl or ()))
    finally:
        cache.release()  # its layers may be pruned from now on
        options.progress.close()


def _resolve_manifest(client: RegistryClient, source: ImageSource, wanted: Platform) -> _Resolved:
    what = source.display
    fetched = client.get_manifest(source.repository, source.tag_or_digest, what)
    parsed = parse_manifest(fetched.data, fetched.media_type, what)
    index_digest = None
    if isinstance(parsed, ImageIndex):
        index_digest = fetched.digest
        chosen = select_platform(parsed, wanted, what)
        fetched = client.get_manifest(source.repository, chosen.digest, what)
        if len(fetched.data) != chosen.size:
            raise ManifestError(
                f"the {chosen.platform} manifest of {what} is {len(fetched.data)} bytes, "
                f"its index says {chosen.size}"
            )
        parsed = parse_manifest(fetched.data, fetched.media_type, f"{what} ({chosen.platform})")
        if isinstance(parsed, ImageIndex):
            raise ManifestError(f"{what}: nested image indexes are not supported")
    return _Resolved(source, parsed, fetched, index_digest)


class _Pull:
    """One image, from a resolved manifest to files in the destination directory."""

    def __init__(
        self,
        client: RegistryClient,
        cache: BlobCache,
        resolved: _Resolved,
        dest: Path,
        options: PullOptions,
    ) -> None:
        self.client = client
        self.cache = cache
        self.resolved = resolved
        self.options = options
        self.progress = options.progress
        self.what = resolved.source.display
        self.id = image_id(resolved.fetched.data)
        fmt = options.image_format
        self.image_path = dest / f"{self.id}.{fmt}"
        self.meta_path = dest / f"{self.id}.meta"
        self.sidecar_path = dest / f"{self.id}.json"

    def run(self, user_acl: tuple[int, ...], group_acl: tuple[int, ...]) -> PulledImage:
        reusable = self.image_path.is_file() and self.meta_path.is_file()
        hook = self.options.reuse
        elsewhere = not reusable and hook is not None and hook(self.id)
        config = self._config()
        meta_text, warnings = format_meta(
            self.options.image_format,
            env=config.env,
            entrypoint=config.entrypoint,
            cmd=config.cmd,
            workdir=config.working_dir,
            user_acl=user_acl,
            group_acl=group_acl,
        )
        for warning in warnings:
            log.warning("%s: %s", self.what, warning)
        if reusable:
            log.info("%s is already converted as %s", self.what, self.image_path)
            if not self.sidecar_path.is_file():
                self._write_sidecar(config, None, warnings)
            if _read_text(self.meta_path) != meta_text:
                write_atomically(self.meta_path, meta_text.encode(), self.options.mode)
            for path in (self.image_path, self.meta_path, self.sidecar_path):
                # A public image pulled again as private (or back) changes its mode.
                try:
                    if path.stat().st_mode & 0o7777 != self.options.mode:
                        path.chmod(self.options.mode)
                except OSError as exc:
                    raise output_error(path, exc) from exc
            return self._result(reused=True, warnings=warnings)
        if elsewhere:
            log.info("%s is unchanged: the caller already has image %s", self.what, self.id)
            self._write_sidecar(config, None, warnings)
            write_atomically(self.meta_path, meta_text.encode(), self.options.mode)
            return self._result(reused=True, warnings=warnings, elsewhere=True)
        planner = LayerPlanner(
            self.resolved.manifest.layers,
            self._fetch,
            self.cache.cached,
            self.cache.path,
            self.progress.layer_done,
        )
        self._begin_progress()
        layers, plan = planner.run(self.options.layer_concurrency, self.options.ownership)
        self.progress.stage(f"converting {self.what} to {self.options.image_format}")
        built = build_image(
            layers,
            self.image_path.parent,
            self.id,
            fmt=self.options.image_format,
            ownership=self.options.ownership,
            extra_options=self.options.converter_options,
            mode=self.options.mode,
            work_dir=self.options.work_dir,
            plan=plan,
        )
        self._write_sidecar(config, built.skipped, warnings)
        # Last: once the meta file exists the runtime considers the image present.
        write_atomically(self.meta_path, meta_text.encode(), self.options.mode)
        return self._result(reused=False, warnings=warnings)

    def _result(
        self, *, reused: bool, warnings: tuple[str, ...], elsewhere: bool = False
    ) -> PulledImage:
        return PulledImage(
            id=self.id,
            image_path=self.image_path,
            meta_path=self.meta_path,
            sidecar_path=self.sidecar_path,
            image_format=self.options.image_format,
            manifest_digest=self.resolved.fetched.digest,
            config_digest=self.resolved.manifest.config.digest,
            reference=self.resolved.source.reference,
            reused=reused,
            warnings=warnings,
            image_elsewhere=elsewhere,
        )

    def _config(self) -> ImageConfig:
        descriptor = self.resolved.manifest.config
        if descriptor.size > CONFIG_MAX_BYTES:
            raise ManifestError(f"the image config of {self.what} is {descriptor.size} bytes")
        path = self._fetch(descriptor)
        config = parse_image_config(path.read_bytes(), self.what)
        layers = self.resolved.manifest.layers
        if config.diff_ids and len(config.diff_ids) != len(layers):
            raise ManifestError(
                f"{self.what}: the manifest lists {len(layers)} layers but the image config "
                f"{len(config.diff_ids)}",
                hint="the image is damaged; re-push it",
            )
        if config.platform is not None and self.resolved.index_digest is None:
            wanted = parse_platform(self.options.platform)
            if not wanted.matches(config.platform):
                log.warning(
                    "%s is a single-platform image for %s, not %s",
                    self.what,
                    config.platform,
                    wanted,
                )
        return config

    def _fetch(
        self,
        descriptor: Descriptor,
        cancelled: threading.Event | None = None,
        tee: Callable[[BinaryIO], BinaryIO] | None = None,
    ) -> Path:
        """The blob's path in the cache, downloading it first if needed; `tee` wraps the
        partial file the download writes (the layer planner reads the bytes as they come)."""

        def download(file: BinaryIO) -> None:
            def report(nbytes: int) -> None:
                if cancelled is not None and cancelled.is_set():
                    raise PullError(f"download of {descriptor.digest} cancelled")
                self.progress.advance(nbytes)

            self.client.download_blob(
                self.resolved.source.repository,
                descriptor,
                tee(file) if tee is not None else file,
                self.what,
                report,
            )

        return self.cache.fetch(descriptor, download)

    def _begin_progress(self) -> None:
        layers = self.resolved.manifest.layers
        unique = {layer.digest: layer for layer in layers}.values()
        missing = sum(layer.size for layer in unique if self.cache.cached(layer) is None)
        self.progress.begin(len(unique), missing)

    def _write_sidecar(
        self,
        config: ImageConfig,
        skipped: tuple[tuple[str, str], ...] | None,
        warnings: tuple[str, ...],
    ) -> None:
        document = sidecar.describe(
            image_id=self.id,
            source=self.resolved.source,
            manifest=self.resolved.manifest,
            manifest_digest=self.resolved.fetched.digest,
            index_digest=self.resolved.index_digest,
            config=config,
            options=sidecar.ConversionSettings(
                image_format=self.options.image_format,
                ownership=self.options.ownership,
                converter_options=self.options.converter_options,
                requested_platform=self.options.platform,
            ),
            skipped=skipped,
            warnings=warnings,
        )
        write_atomically(self.sidecar_path, sidecar.encode(document), self.options.mode)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except OSError:
        return None
