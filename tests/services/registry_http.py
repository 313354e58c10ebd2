"""Raw distribution-API calls for tests that check what a registry variant allows.

Deliberately thin and independent of `shifter.registry`: these prove the fixtures behave,
so they must not share the product client's bugs. Callers assert on every status.
"""

from __future__ import annotations

import hashlib
import json
import re

import httpx

from tests.services.registries import RegistryEndpoint

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def challenge(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """Scheme and parameters of a `WWW-Authenticate` header (test-grade parsing)."""
    header = response.headers.get("www-authenticate", "")
    scheme, _, params = header.partition(" ")
    return scheme, dict(_AUTH_PARAM.findall(params))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_token(
    endpoint: RegistryEndpoint, scopes: list[str], user: str | None = None
) -> httpx.Response:
    """Ask the endpoint's token issuer over HTTP, as a client would; one `scope` per item."""
    assert endpoint.issuer is not None, "only the token variant has an issuer"
    auth = (user, endpoint.credentials[user]) if user else None
    params = [("service", endpoint.issuer.service), *(("scope", s) for s in scopes)]
    if user:
        params.append(("account", user))
    return httpx.get(endpoint.issuer.realm, params=params, auth=auth, timeout=10)


def token_for(endpoint: RegistryEndpoint, scopes: list[str], user: str | None = None) -> str:
    response = get_token(endpoint, scopes, user)
    response.raise_for_status()
    return str(response.json()["token"])


def start_upload(
    client: httpx.Client, repo: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(f"/v2/{repo}/blobs/uploads/", headers=headers)


def finish_upload(
    client: httpx.Client, started: httpx.Response, data: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """PUT the whole blob to the upload session's Location (monolithic upload)."""
    location = started.headers["location"]
    separator = "&" if "?" in location else "?"
    return client.put(
        f"{location}{separator}digest={digest_of(data)}",
        content=data,
        headers={**(headers or {}), "Content-Type": "application/octet-stream"},
    )


def push_blob(
    client: httpx.Client, repo: str, data: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST then PUT; the PUT's response (201 on success), or the POST's if that failed."""
    started = start_upload(client, repo, headers)
    if started.status_code != 202:
        return started
    return finish_upload(client, started, data, headers)


def image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    """An OCI image manifest referring to these (already pushed) blobs."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": digest_of(layer), "size": len(layer)}
                for layer in layers
            ],
        }
    ).encode()


def push_manifest(
    client: httpx.Client, repo: str, tag: str, manifest: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=manifest,
        headers={**(headers or {}), "Content-Type": OCI_MANIFEST},
    )


def get_manifest(
    client: httpx.Client, repo: str, tag: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.get(
        f"/v2/{repo}/manifests/{tag}", headers={**(headers or {}), "Accept": OCI_MANIFEST}
    )
