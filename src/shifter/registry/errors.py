"""What can go wrong talking to a registry, as errors a user can act on.

Every message names the image or registry it is about, so a gateway log line or a CLI error
stands on its own. `str()` is one sentence; the hint says what to do.
"""

from __future__ import annotations

from shifter.errors import PermissionDeniedError, ShifterError


class RegistryError(ShifterError):
    """The registry could not be reached or answered something we cannot use."""


class ImageNotFoundError(RegistryError):
    """The registry has no such repository, tag or digest."""


class AccessDeniedError(RegistryError, PermissionDeniedError):
    """The registry refused us (401/403) even after authenticating."""


class ManifestError(RegistryError):
    """A manifest, index or image config we cannot use (unknown type, schema 1, malformed)."""


class PlatformNotFoundError(ManifestError):
    """A multi-platform image has no manifest for the platform we want."""


class DigestMismatchError(RegistryError):
    """Content whose sha256 (or size) is not what its digest promised."""


class InsecureTransportError(RegistryError):
    """We were about to send credentials over plain http without being told that is fine."""


class BlobCacheError(ShifterError):
    """The layer cache directory cannot be used (missing, unwritable or full)."""
