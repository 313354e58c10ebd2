"""`<id>.json`: everything about a converted image that the `.meta` file cannot hold.

The runtime reads only `.meta` (and warns about any key it does not know), so labels, the
user, the platform, digests, the source reference, layers and how the image was converted
go here, for the gateway, admins and tools. The run config is repeated in full, because
`.meta` may have had to trim or leave out values.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shifter.engine.source import ImageSource
from shifter.registry.imageconfig import ImageConfig
from shifter.registry.manifest import ImageManifest

SCHEMA = 1


@dataclass(frozen=True)
class ConversionSettings:
    image_format: str
    ownership: str
    converter_options: Sequence[str]
    requested_platform: str


def describe(
    *,
    image_id: str,
    source: ImageSource,
    manifest: ImageManifest,
    manifest_digest: str,
    index_digest: str | None,
    config: ImageConfig,
    options: ConversionSettings,
    skipped: Sequence[tuple[str, str]] | None,
    warnings: Sequence[str],
) -> dict[str, Any]:
    """The sidecar document; `skipped` is None when the image was converted earlier."""
    return {
        "schema": SCHEMA,
        "id": image_id,
        "format": options.image_format,
        "source": {
            "reference": source.reference,
            "resolved": source.display,
            "registry": source.url,
            "repository": source.repository,
            "tag_or_digest": source.tag_or_digest,
        },
        "manifest_digest": manifest_digest,
        "manifest_media_type": manifest.media_type,
        "index_digest": index_digest,
        "config_digest": manifest.config.digest,
        "platform": {
            "requested": options.requested_platform,
            "os": config.os,
            "architecture": config.architecture,
            "variant": config.variant,
        },
        "created": config.created,
        "labels": dict(config.labels),
        "user": config.user,
        "env": list(config.env),
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "workdir": config.working_dir,
        "layers": [
            {"digest": layer.digest, "size": layer.size, "media_type": layer.media_type}
            for layer in manifest.layers
        ],
        "conversion": {
            "format": options.image_format,
            "ownership": options.ownership,
            "converter_options": list(options.converter_options),
            "skipped": None if skipped is None else [list(entry) for entry in skipped],
            "converted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "meta_warnings": list(warnings),
    }


def encode(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
