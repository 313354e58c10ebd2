"""Pushing built images through the registry HTTP API (distribution spec, push section).

Blobs go up as a monolithic upload (POST to open a session, PUT `?digest=` with the bytes),
skipped when a HEAD shows the registry has them already. Manifests are PUT with their media
type as Content-Type, and the digest the registry answers is checked against our own.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from types import TracebackType

import httpx

from shifter.errors import ParseError, PermissionDeniedError, ShifterError
from shifter.ocibuild.image import Blob, BuiltImage
from shifter.registry.auth import HEADER, RegistryAuth, parse_challenges

DEFAULT_TIMEOUT_S = 60.0
DIGEST_HEADER = "Docker-Content-Digest"


class PushError(ShifterError):
    """The registry would not store a blob or manifest we sent."""


def tls_verification(ca_file: Path | str | None) -> ssl.SSLContext | bool:
    """What httpx's `verify` should be: the system store, or one trusting `ca_file` only."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise PushError(
            f"cannot load the CA certificate {ca_file}: {exc}",
            hint="pass the PEM file of the CA that signed the registry's certificate",
        ) from exc


def _registry_message(response: httpx.Response) -> str:
    """What the registry said: its `errors` array as `CODE: message; ...`, else the
    challenge's `error` (a HEAD answer has no body), else the status phrase."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError):
        text = response.text.strip()[:200]
    if text:
        return text
    for value in response.headers.get_list(HEADER):
        try:
            errors = [c.get("error") for c in parse_challenges(value) if c.get("error")]
        except ParseError:
            continue
        if errors:
            return f"{errors[0]} ({response.reason_phrase})"
    return response.reason_phrase


class RegistryPusher:
    """One registry endpoint with its credentials; pushes blobs and manifests to it."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        credentials: tuple[str, str] | None = None,
        ca_file: Path | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.user = credentials[0] if credentials else None
        self.client = httpx.Client(
            auth=RegistryAuth(credentials),
            verify=tls_verification(ca_file),
            timeout=timeout,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RegistryPusher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(
        self, method: str, url: str | httpx.URL, action: str, **kwargs: object
    ) -> httpx.Response:
        try:
            return self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.ConnectError as exc:
            certificate = "CERTIFICATE_VERIFY_FAILED" in str(exc)
            raise PushError(
                f"cannot {action}: {self.endpoint_url} is unreachable ({exc})",
                hint="pass the registry's CA file (ca_file)"
                if certificate
                else "check that the registry is running and the URL is right",
            ) from exc
        except httpx.HTTPError as exc:
            raise PushError(f"cannot {action} at {self.endpoint_url}: {exc}") from exc

    def _check(self, response: httpx.Response, action: str, expected: tuple[int, ...]) -> None:
        if response.status_code in expected:
            return
        message = f"{self.endpoint_url} refused to {action}: {_registry_message(response)}"
        if response.status_code in (401, 403):
            hint = (
                "this registry needs credentials: pass a user name and password"
                if self.user is None
                else f"check the password of {self.user!r} and that it may push to this repository"
            )
            raise PermissionDeniedError(message, hint=hint)
        raise PushError(f"{message} (HTTP {response.status_code})")

    def has_blob(self, repository: str, digest: str) -> bool:
        url = f"{self.endpoint_url}/v2/{repository}/blobs/{digest}"
        response = self._send("HEAD", url, f"check blob {digest}")
        if response.status_code == 404:
            return False
        self._check(response, f"check blob {digest} in {repository}", (200,))
        return True

    def push_blob(self, repository: str, blob: Blob) -> bool:
        """Upload `blob` unless the repository has it; True when it was uploaded."""
        if self.has_blob(repository, blob.digest):
            return False
        action = f"start an upload to {repository}"
        started = self._send("POST", f"{self.endpoint_url}/v2/{repository}/blobs/uploads/", action)
        self._check(started, action, (202,))
        location = started.headers.get("location")
        if not location:
            raise PushError(f"{self.endpoint_url} opened an upload without a Location header")
        # Location may be relative or absolute and may carry its own query (upload state).
        target = started.url.join(location).copy_merge_params({"digest": blob.digest})
        action = f"store blob {blob.digest} in {repository}"
        stored = self._send(
            "PUT",
            target,
            action,
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(stored, action, (201,))
        answered = stored.headers.get(DIGEST_HEADER)
        if answered is not None and answered != blob.digest:
            raise PushError(f"{self.endpoint_url} stored blob {blob.digest} as {answered}")
        return True

    def push_manifest(self, repository: str, reference: str, manifest: Blob) -> str:
        """PUT a manifest or index under a tag or its digest; return the checked digest."""
        action = f"store manifest {repository}:{reference}"
        response = self._send(
            "PUT",
            f"{self.endpoint_url}/v2/{repository}/manifests/{reference}",
            action,
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        self._check(response, action, (201,))
        answered = response.headers.get(DIGEST_HEADER)
        if answered != manifest.digest:
            raise PushError(
                f"{self.endpoint_url} answered digest {answered} for {repository}:{reference}, "
                f"expected {manifest.digest}",
                hint="the registry altered the manifest; it may not support this media type",
            )
        return manifest.digest

    def push(self, built: BuiltImage, repository: str, tag: str) -> str:
        """Blobs, then the platform manifests by digest, then the top by tag: an index is
        only accepted once what it points at exists."""
        for blob in built.blobs:
            self.push_blob(repository, blob)
        for manifest in built.manifests:
            self.push_manifest(repository, manifest.digest, manifest)
        return self.push_manifest(repository, tag, built.top)


def push_image(
    built: BuiltImage,
    endpoint_url: str,
    repository: str,
    tag: str,
    *,
    credentials: tuple[str, str] | None = None,
    ca_file: Path | str | None = None,
) -> str:
    """Push `built` as `repository:tag` to the registry at `endpoint_url`; return its digest."""
    with RegistryPusher(endpoint_url, credentials=credentials, ca_file=ca_file) as pusher:
        return pusher.push(built, repository, tag)
