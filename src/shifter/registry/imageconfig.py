"""The image config blob: how a container starts (env, entrypoint, cmd, workdir) and for what
platform the image was built.

Pure: bytes in, a frozen `ImageConfig` or `ManifestError` out. Field types follow the OCI
image spec; Docker's one leniency is kept, a string where a list of strings is expected
(Docker's own decoder accepts `"Cmd": "sh"` as `["sh"]`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shifter.registry.errors import ManifestError
from shifter.registry.manifest import Platform


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """What the gateway keeps from an image config."""

    os: str | None = None
    architecture: str | None = None
    variant: str | None = None
    created: str | None = None
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    diff_ids: tuple[str, ...] = ()

    @property
    def platform(self) -> Platform | None:
        if not self.os or not self.architecture:
            return None
        return Platform(self.os, self.architecture, self.variant)


def parse_image_config(data: bytes, what: str) -> ImageConfig:
    """Parse the config blob of image `what` (named in messages)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"the image config of {what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"the image config of {what} is not a JSON object")
    run = document.get("config")
    run = {} if run is None else run
    if not isinstance(run, dict):
        raise ManifestError(f"the image config of {what}: 'config' is not an object")
    rootfs = document.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    context = f"the image config of {what}"
    return ImageConfig(
        os=_optional_str(document, "os", context),
        architecture=_optional_str(document, "architecture", context),
        variant=_optional_str(document, "variant", context) or None,
        created=_optional_str(document, "created", context),
        env=_strings(run.get("Env"), "Env", context) or (),
        entrypoint=_strings(run.get("Entrypoint"), "Entrypoint", context),
        cmd=_strings(run.get("Cmd"), "Cmd", context),
        working_dir=_optional_str(run, "WorkingDir", context) or None,
        user=_optional_str(run, "User", context) or None,
        labels=MappingProxyType(_labels(run.get("Labels"), context)),
        diff_ids=_strings(diff_ids, "rootfs.diff_ids", context) or (),
    )


def _optional_str(document: Mapping[str, Any], key: str, context: str) -> str | None:
    value = document.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ManifestError(f"{context}: {key!r} must be a string, not {type(value).__name__}")


def _strings(value: object, key: str, context: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ManifestError(f"{context}: {key!r} must be a list of strings")


def _labels(value: object, context: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return dict(value)
    raise ManifestError(f"{context}: 'Labels' must map strings to strings")
