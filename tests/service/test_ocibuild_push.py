"""Catalog images pushed to real registries, then pulled back by digest through the API.

Every catalog image goes to the anonymous registry; a few go to the TLS, htpasswd and token
registries too. The pull side is checked byte for byte: the manifest (or index and its
manifests) by digest with the Accept headers a client sends, then every blob, each against
the sha256 and size its descriptor names. `RegistryAuth` is exercised against the real token
server: token reuse, expiry, tokens the registry rejects, and no retry loop.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from collections.abc import Callable

import httpx
import pytest
import zstandard

from shifter.errors import PermissionDeniedError
from shifter.ocibuild import catalog
from shifter.ocibuild.image import BuiltImage, Flavor
from shifter.ocibuild.push import PushError, RegistryPusher, push_image
from shifter.registry.auth import RegistryAuth, RegistryAuthError, parse_challenges
from tests.services.registries import RegistryEndpoint
from tests.services.token_issuer import TokenIssuer

ACCEPT = ", ".join(
    [
        Flavor.OCI.manifest_type,
        Flavor.OCI.index_type,
        Flavor.DOCKER.manifest_type,
        Flavor.DOCKER.index_type,
    ]
)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_for(
    endpoint: RegistryEndpoint,
    user: str | None = None,
    *,
    clock: Callable[[], float] | None = None,
) -> httpx.Client:
    credentials = (user, endpoint.credentials[user]) if user else None
    auth = RegistryAuth(credentials) if clock is None else RegistryAuth(credentials, clock=clock)
    return httpx.Client(base_url=endpoint.url, verify=endpoint.ssl_context(), auth=auth)


def get_verified(client: httpx.Client, path: str, digest: str, size: int | None = None) -> bytes:
    response = client.get(path, headers={"Accept": ACCEPT})
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
    assert sha256(response.content) == digest
    if size is not None:
        assert len(response.content) == size
    return response.content


def layer_tar(data: bytes, media_type: str) -> bytes:
    if media_type.endswith("gzip"):
        return gzip.decompress(data)
    if media_type.endswith("zstd"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def pull_by_digest(client: httpx.Client, repository: str, built: BuiltImage, digest: str) -> None:
    """Fetch everything `digest` refers to and check each piece against its descriptor."""
    top = client.get(f"/v2/{repository}/manifests/{digest}", headers={"Accept": ACCEPT})
    assert top.status_code == 200, top.text
    assert top.headers["content-type"] == built.top.media_type
    assert top.headers["docker-content-digest"] == digest == sha256(top.content)
    document = json.loads(top.content)
    if built.is_index:
        assert document["mediaType"] == built.flavor.index_type
        manifests = []
        for descriptor in document["manifests"]:
            assert descriptor["mediaType"] == built.flavor.manifest_type
            path = f"/v2/{repository}/manifests/{descriptor['digest']}"
            data = get_verified(client, path, descriptor["digest"], descriptor["size"])
            manifests.append(json.loads(data))
        assert len(manifests) == 2
    else:
        manifests = [document]
    for manifest in manifests:
        config = manifest["config"]
        path = f"/v2/{repository}/blobs/{config['digest']}"
        diff_ids = json.loads(get_verified(client, path, config["digest"], config["size"]))
        tars = []
        for layer in manifest["layers"]:
            path = f"/v2/{repository}/blobs/{layer['digest']}"
            blob = get_verified(client, path, layer["digest"], layer["size"])
            tars.append(layer_tar(blob, layer["mediaType"]))
        assert diff_ids["rootfs"]["diff_ids"] == [sha256(tar) for tar in tars]


def tag_digest(client: httpx.Client, repository: str, tag: str) -> str:
    response = client.head(f"/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT})
    assert response.status_code == 200
    return response.headers["docker-content-digest"]


# -- every image, anonymous registry -------------------------------------------------------


@pytest.mark.parametrize("name", catalog.names())
def test_catalog_image_round_trips_through_the_anonymous_registry(
    name: str, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    built = catalog.build(name)
    digest = push_image(built, registry_anon.url, repo_name, "v1")
    assert digest == built.digest
    with client_for(registry_anon) as client:
        pull_by_digest(client, repo_name, built, digest)
        assert tag_digest(client, repo_name, "v1") == digest


def test_pushing_again_uploads_nothing(registry_anon: RegistryEndpoint, repo_name: str) -> None:
    built = catalog.build("layered")
    with RegistryPusher(registry_anon.url) as pusher:
        assert [pusher.push_blob(repo_name, blob) for blob in built.blobs] == [True] * len(
            built.blobs
        )
        assert [pusher.push_blob(repo_name, blob) for blob in built.blobs] == [False] * len(
            built.blobs
        )
        assert pusher.push(built, repo_name, "v2") == built.digest


def test_an_unreachable_registry_is_a_push_error(registry_anon: RegistryEndpoint) -> None:
    closed_port = "http://127.0.0.1:1"
    with pytest.raises(PushError, match="unreachable") as caught:
        push_image(catalog.build("compression-none"), closed_port, "test/x", "v1")
    assert caught.value.hint == "check that the registry is running and the URL is right"


# -- TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["busybox", "multiarch", "compression-zstd"])
def test_push_to_the_tls_registry_trusting_its_ca(
    name: str, registry_tls: RegistryEndpoint, repo_name: str
) -> None:
    built = catalog.build(name)
    digest = push_image(built, registry_tls.url, repo_name, "v1", ca_file=registry_tls.ca_file)
    with client_for(registry_tls) as client:
        pull_by_digest(client, repo_name, built, digest)


def test_the_tls_registry_is_refused_without_its_ca(
    registry_tls: RegistryEndpoint, repo_name: str
) -> None:
    with pytest.raises(PushError, match="unreachable") as caught:
        push_image(catalog.build("busybox"), registry_tls.url, repo_name, "v1")
    assert caught.value.hint == "pass the registry's CA file (ca_file)"


# -- htpasswd (Basic) ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["layered", "busybox-docker"])
def test_push_to_the_basic_registry_as_pusher(
    name: str, registry_basic: RegistryEndpoint, repo_name: str
) -> None:
    built = catalog.build(name)
    credentials = ("pusher", registry_basic.credentials["pusher"])
    digest = push_image(built, registry_basic.url, repo_name, "v1", credentials=credentials)
    with client_for(registry_basic, "puller") as client:
        pull_by_digest(client, repo_name, built, digest)
        again = client.get(f"/v2/{repo_name}/manifests/{digest}", headers={"Accept": ACCEPT})
        assert again.status_code == 200
        assert again.history == []  # Basic credentials sent up front once the route is known
    with client_for(registry_basic) as anonymous:
        assert anonymous.get(f"/v2/{repo_name}/manifests/{digest}").status_code == 401


def test_the_basic_registry_refuses_a_wrong_password(
    registry_basic: RegistryEndpoint, repo_name: str
) -> None:
    with pytest.raises(PermissionDeniedError, match="refused to check blob") as caught:
        push_image(
            catalog.build("busybox"),
            registry_basic.url,
            repo_name,
            "v1",
            credentials=("pusher", "wrong-password"),
        )
    assert (
        caught.value.hint
        == "check the password of 'pusher' and that it may push to this repository"
    )
    auth = RegistryAuth(("pusher", "wrong-password"))
    with httpx.Client(base_url=registry_basic.url, auth=auth) as client:
        response = client.get("/v2/")
    assert response.status_code == 401
    assert len(response.history) == 1  # one try with the credentials, then the caller decides


# -- bearer tokens -------------------------------------------------------------------------


def pusher_credentials(endpoint: RegistryEndpoint) -> tuple[str, str]:
    return "pusher", endpoint.credentials["pusher"]


@pytest.mark.parametrize("name", ["busybox", "multiarch-docker", "layered"])
def test_push_to_the_token_registry_as_pusher_and_pull_as_puller(
    name: str, registry_token: RegistryEndpoint, repo_name: str
) -> None:
    built = catalog.build(name)
    credentials = pusher_credentials(registry_token)
    digest = push_image(built, registry_token.url, repo_name, "v1", credentials=credentials)
    with client_for(registry_token, "puller") as client:
        pull_by_digest(client, repo_name, built, digest)
    with client_for(registry_token) as anonymous:  # public repositories are pullable by all
        pull_by_digest(anonymous, repo_name, built, digest)


def test_puller_cannot_push_to_the_token_registry(
    registry_token: RegistryEndpoint, repo_name: str, token_issuer: TokenIssuer
) -> None:
    built = catalog.build("compression-none")
    before = token_issuer.tokens_issued
    puller = ("puller", registry_token.credentials["puller"])
    with pytest.raises(PermissionDeniedError, match="start an upload") as caught:
        push_image(built, registry_token.url, repo_name, "v1", credentials=puller)
    assert "UNAUTHORIZED" in str(caught.value)
    assert "'puller'" in (caught.value.hint or "")
    # One pull token for the HEAD, one (refused) for the upload: no retry loop.
    assert token_issuer.tokens_issued - before == 2
    with client_for(registry_token, "pusher") as pusher:
        for blob in built.blobs:
            assert pusher.head(f"/v2/{repo_name}/blobs/{blob.digest}").status_code == 404


def test_tokens_are_reused_for_the_same_scope(
    registry_token: RegistryEndpoint, repo_name: str, token_issuer: TokenIssuer
) -> None:
    credentials = pusher_credentials(registry_token)
    with RegistryPusher(registry_token.url, credentials=credentials) as pusher:
        before = token_issuer.tokens_issued
        pusher.push(catalog.build("busybox"), repo_name, "v1")
        # One token for pull (HEAD), one for pull+push (uploads, manifests); then reused.
        assert token_issuer.tokens_issued - before == 2
        pusher.push(catalog.build("compression-gzip"), repo_name, "v2")
        assert token_issuer.tokens_issued - before == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_expired_token_is_fetched_again(
    registry_token: RegistryEndpoint, repo_name: str, token_issuer: TokenIssuer
) -> None:
    built = catalog.build("busybox")
    push_image(
        built, registry_token.url, repo_name, "v1", credentials=pusher_credentials(registry_token)
    )
    clock = FakeClock()
    path = f"/v2/{repo_name}/manifests/v1"
    with client_for(registry_token, "puller", clock=clock) as client:
        before = token_issuer.tokens_issued
        assert client.get(path, headers={"Accept": ACCEPT}).status_code == 200
        assert token_issuer.tokens_issued - before == 1
        cached = client.get(path, headers={"Accept": ACCEPT})
        assert (cached.status_code, cached.history) == (200, [])
        assert token_issuer.tokens_issued - before == 1
        clock.now += token_issuer.settings.lifetime_s  # past expires_in, by our clock
        renewed = client.get(path, headers={"Accept": ACCEPT})
        assert renewed.status_code == 200
        assert token_issuer.tokens_issued - before == 2
        assert [r.status_code for r in renewed.history] == [401, 200]  # challenge, token


def test_a_token_the_registry_calls_invalid_is_replaced(
    registry_token: RegistryEndpoint, repo_name: str, token_issuer: TokenIssuer
) -> None:
    built = catalog.build("busybox")
    push_image(
        built, registry_token.url, repo_name, "v1", credentials=pusher_credentials(registry_token)
    )
    path = f"/v2/{repo_name}/manifests/{built.digest}"
    with client_for(registry_token, "puller") as client:
        with token_issuer.configured(expired=True):  # tokens we believe, the registry refuses
            before = token_issuer.tokens_issued
            refused = client.get(path, headers={"Accept": ACCEPT})
            assert refused.status_code == 401
            (challenge,) = parse_challenges(refused.headers["www-authenticate"])
            assert challenge.get("error") == "invalid_token"
            assert token_issuer.tokens_issued - before == 1  # a fresh token failed: stop
        recovered = client.get(path, headers={"Accept": ACCEPT})
        assert recovered.status_code == 200
        forged = client.get(path, headers={"Accept": ACCEPT, "Authorization": "Bearer not-a-token"})
        assert forged.status_code == 200
        (challenge,) = parse_challenges(forged.history[0].headers["www-authenticate"])
        assert challenge.get("error") == "invalid_token"


@pytest.mark.parametrize(("status", "hint"), [(500, "try again later"), (401, "password")])
def test_a_failing_token_server_is_a_registry_auth_error(
    status: int,
    hint: str,
    registry_token: RegistryEndpoint,
    repo_name: str,
    token_issuer: TokenIssuer,
) -> None:
    with token_issuer.configured(fault_status=status), pytest.raises(RegistryAuthError) as caught:
        push_image(
            catalog.build("busybox"),
            registry_token.url,
            repo_name,
            "v1",
            credentials=pusher_credentials(registry_token),
        )
    assert f"(HTTP {status})" in str(caught.value)
    assert "user 'pusher'" in str(caught.value)
    assert hint in (caught.value.hint or "")


def test_the_same_auth_works_with_an_async_client(
    registry_token: RegistryEndpoint, repo_name: str, token_issuer: TokenIssuer
) -> None:
    built = catalog.build("busybox")
    credentials = pusher_credentials(registry_token)
    push_image(built, registry_token.url, repo_name, "v1", credentials=credentials)
    auth = RegistryAuth(("puller", registry_token.credentials["puller"]))
    path = f"/v2/{repo_name}/manifests/{built.digest}"

    async def fetch_twice() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=registry_token.url, auth=auth) as client:
            return [await client.get(path, headers={"Accept": ACCEPT}) for _ in range(2)]

    before = token_issuer.tokens_issued
    first, second = asyncio.run(fetch_twice())
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.content == second.content == built.top.data
    assert [r.status_code for r in first.history] == [401, 200]
    assert second.history == []
    assert token_issuer.tokens_issued - before == 1
