"""The registry client: manifests and blobs over the distribution HTTP API, with httpx.

What it promises:

- TLS is verified against the system CA store, plus the Location's CA file if it has one.
  Plain http is used only when the URL says so, and credentials never travel over plain
  http unless the caller said `insecure` (a request hook enforces it for every request,
  token requests to the auth realm included).
- Authentication is `RegistryAuth` (Basic, or bearer tokens fetched and refreshed).
- Redirects are followed by hand: blobs often live on another host (object storage), which
  must never see the registry's Authorization header.
- 5xx, 429 and dropped connections are retried with exponential backoff, bounded by a
  count and a time budget that restart whenever data arrives.
- A blob download resumes where it stopped (`Range`, checked against `Content-Range`, a
  plain 200 restarts), streams to a file, and is verified against its sha256 and size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

import httpx

from shifter import __version__
from shifter.errors import ShifterError
from shifter.registry.auth import RegistryAuth
from shifter.registry.blobdownload import BlobDownload
from shifter.registry.errors import (
    AccessDeniedError,
    DigestMismatchError,
    ImageNotFoundError,
    InsecureTransportError,
    RegistryError,
)
from shifter.registry.manifest import ACCEPT, Descriptor
from shifter.registry.proxies import ProxyRouter
from shifter.registry.retry import (
    RETRY_STATUSES,
    Retrier,
    RetryPolicy,
    retry_after,
    transport_reason,
)
from shifter.registry.truststore import default_context

log = logging.getLogger(__name__)

MANIFEST_MAX_BYTES = 4 << 20  # the distribution spec's recommended limit
MAX_REDIRECTS = 5
DIGEST_HEADER = "docker-content-digest"


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest or index as served: its bytes, Content-Type and sha256 digest."""

    data: bytes
    media_type: str
    digest: str


def tls_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """Verification against the system CA store, plus `ca_file` (a Location's sslcacert)
    when given: added to the store as Docker does, not instead of it, so a blob redirected
    to object storage with a public certificate still verifies."""
    context = default_context()
    if ca_file is None:
        return context
    try:
        context.load_verify_locations(cafile=os.fspath(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise RegistryError(
            f"cannot load the CA certificate file {ca_file}: {exc}",
            hint="give the PEM file of the CA that signed the registry's certificate",
        ) from exc
    return context


def _registry_message(response: httpx.Response) -> str:
    """The `errors` array a registry sends with a failure, as `CODE: message; ...`."""
    try:
        response.read()
        errors = response.json().get("errors") or []
        text = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
    except (ValueError, AttributeError, httpx.HTTPError):
        text = ""
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _certificate_problem(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


class RegistryClient:
    """One registry endpoint (`base_url`, e.g. https://registry.example.org:5000)."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: tuple[str, str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/"))
        if self.base_url.scheme not in ("http", "https") or not self.base_url.host:
            raise RegistryError(
                f"invalid registry URL {base_url!r}", hint="write https://HOST[:PORT]"
            )
        self.name = self.base_url.netloc.decode("ascii")
        self.retry = retry or RetryPolicy()
        self._credentials = credentials
        self._insecure = insecure
        if credentials is not None and self.base_url.scheme == "http" and not insecure:
            raise self._plain_http_error(self.base_url)
        self._client = httpx.Client(
            auth=RegistryAuth(credentials),
            transport=ProxyRouter(
                verify=tls_context(ca_file),
                environ=os.environ if environ is None else environ,
            ),
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": f"shifter/{__version__}"},
            event_hooks={"request": [self._refuse_plain_http_credentials]},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _plain_http_error(self, url: httpx.URL) -> InsecureTransportError:
        return InsecureTransportError(
            f"refusing to send registry credentials over plain http to {url.host}",
            hint="use an https URL, or pass --insecure if this network is trusted",
        )

    def _refuse_plain_http_credentials(self, request: httpx.Request) -> None:
        if (
            self._credentials is not None
            and not self._insecure
            and request.url.scheme == "http"
            and "authorization" in request.headers
        ):
            raise self._plain_http_error(request.url)

    # -- one request, with redirects and retries -------------------------------------------

    def _open(
        self, path: str, headers: dict[str, str], *, authenticate: bool = True
    ) -> httpx.Response:
        """Send one GET (following redirects by hand) and return the streaming response."""
        url = self.base_url.join(path)
        origin = url
        for _ in range(MAX_REDIRECTS + 1):
            request = self._client.build_request("GET", url, headers=headers)
            # Another host (object storage behind a redirect) never gets our credentials.
            auth = httpx.USE_CLIENT_DEFAULT if authenticate and _same_origin(url, origin) else None
            response = self._client.send(request, stream=True, auth=auth)  # type: ignore[arg-type]
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                return response
            response.close()
            url = url.join(location)
            log.debug("redirected to %s://%s%s", url.scheme, url.host, url.path)
        raise RegistryError(f"{self.name}: more than {MAX_REDIRECTS} redirects for {path}")

    def get(
        self,
        path: str,
        headers: dict[str, str],
        retrier: Retrier,
        *,
        authenticate: bool = True,
    ) -> httpx.Response:
        """A GET retried on transport errors and retryable statuses; the caller closes it."""
        while True:
            try:
                response = self._open(path, headers, authenticate=authenticate)
            except httpx.TransportError as exc:
                self._transport_failed(exc, retrier)
                continue
            if response.status_code in RETRY_STATUSES:
                reason = f"HTTP {response.status_code} {_registry_message(response)}"
                response.close()
                retrier.failed(reason, retry_after(response))
                continue
            return response

    def _transport_failed(self, exc: httpx.TransportError, retrier: Retrier) -> None:
        if _certificate_problem(exc):
            raise RegistryError(
                f"cannot verify the TLS certificate of {self.name}: {exc}",
                hint="give the registry's CA file (--ca, or sslcacert in its Location)",
            ) from exc
        if isinstance(exc, httpx.UnsupportedProtocol):
            raise RegistryError(f"cannot reach {self.name}: {exc}") from exc
        retrier.failed(f"cannot reach {self.name}: {transport_reason(exc)}")

    def refused(self, response: httpx.Response, what: str) -> ShifterError:
        status = response.status_code
        message = _registry_message(response)
        if status in (401, 403):
            return AccessDeniedError(
                f"access denied: {what}: {message}",
                hint="check the image name and that your registry credentials may pull it",
            )
        return RegistryError(f"{self.name} answered HTTP {status} for {what}: {message}")

    # -- the API ---------------------------------------------------------------------------

    def ping(self) -> None:
        """`GET /v2/`: is this a registry we can reach (TLS included)? 200 and 401 both say
        yes; authentication happens on the first real request, with its scope."""
        retrier = Retrier(self.retry, f"contacting {self.name}")
        with contextlib.closing(self.get("/v2/", {}, retrier, authenticate=False)) as r:
            if r.status_code not in (200, 401):
                raise RegistryError(
                    f"{self.name} does not serve the registry API (GET /v2/ answered "
                    f"HTTP {r.status_code})",
                    hint="check the registry URL (the Location's url in imagemanager.json)",
                )

    def get_manifest(self, repository: str, reference: str, what: str) -> FetchedManifest:
        """A manifest or index by tag or digest; verified when the digest is known."""
        retrier = Retrier(self.retry, f"fetching the manifest of {what}")
        path = f"/v2/{repository}/manifests/{reference}"
        with contextlib.closing(self.get(path, {"Accept": ACCEPT}, retrier)) as response:
            if response.status_code == 404:
                raise ImageNotFoundError(
                    f"image not found: {what}",
                    hint="check the repository name and tag (`skopeo list-tags` lists tags)",
                )
            if response.status_code != 200:
                raise self.refused(response, what)
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MANIFEST_MAX_BYTES:
                    raise RegistryError(f"the manifest of {what} is larger than 4 MiB")
            media_type = response.headers.get("content-type", "")
            served = response.headers.get(DIGEST_HEADER)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = reference if reference.startswith("sha256:") else served
        if expected is not None and expected.startswith("sha256:") and expected != digest:
            raise DigestMismatchError(
                f"the manifest of {what} does not match its digest: expected {expected}, "
                f"got {digest}",
                hint="something between us and the registry altered it; try again",
            )
        return FetchedManifest(bytes(data), media_type, digest)

    def download_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        partial: BinaryIO,
        what: str,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Complete `partial` (opened read-write; its bytes so far are kept) with the blob,
        then check its size and sha256. The caller discards the file on DigestMismatchError.
        """
        BlobDownload(self, repository, descriptor, partial, what, progress).run()
