"""The test services behave as configured: each registry variant, the token issuer, munged.

Every check goes over the wire (httpx, the munge CLIs) against the real processes the
fixtures start, so a fixture that silently lost its auth or TLS settings fails here first.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from shifter.errors import ToolError
from shifter.proc import run
from tests.services.leftovers import process_running, processes_mentioning
from tests.services.munged import (
    EMUNGE_CRED_INVALID,
    EMUNGE_CRED_REPLAYED,
    MungeDaemon,
    running_munged,
)
from tests.services.registries import KINDS, Kind, RegistryEndpoint, running_registry
from tests.services.registry_http import (
    bearer,
    challenge,
    digest_of,
    get_manifest,
    get_token,
    image_manifest,
    push_blob,
    push_manifest,
    start_upload,
    token_for,
)
from tests.services.tls import make_signing_key
from tests.services.token_issuer import TokenIssuer

NOBODY_UID = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def _pull_push(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _push_image(endpoint: RegistryEndpoint, repo: str, tag: str = "v1") -> tuple[bytes, bytes]:
    """Push a one-layer image as `pusher`; returns (config, layer) for later pulls."""
    token = token_for(endpoint, [_pull_push(repo)], "pusher")
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(64)
    with endpoint.client() as client:
        for blob in (config, layer):
            assert push_blob(client, repo, blob, bearer(token)).status_code == 201
        manifest = image_manifest(config, [layer])
        assert push_manifest(client, repo, tag, manifest, bearer(token)).status_code == 201
    return config, layer


# -- anonymous ---------------------------------------------------------------------------


def test_anon_registry_answers_v2_without_credentials(registry_anon: RegistryEndpoint) -> None:
    response = httpx.get(f"{registry_anon.url}/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert registry_anon.url == f"http://{registry_anon.netloc}"
    assert registry_anon.ca_file is None


def test_anon_registry_accepts_a_push(registry_anon: RegistryEndpoint, repo_name: str) -> None:
    data = os.urandom(100)
    with registry_anon.client() as client:
        assert push_blob(client, repo_name, data).status_code == 201
        pulled = client.get(f"/v2/{repo_name}/blobs/{digest_of(data)}")
    assert pulled.status_code == 200
    assert pulled.content == data


# -- TLS -------------------------------------------------------------------------------------


def test_tls_registry_is_verified_with_its_ca(registry_tls: RegistryEndpoint) -> None:
    assert registry_tls.url.startswith("https://127.0.0.1:")
    assert registry_tls.ca_file is not None
    context = ssl.create_default_context(cafile=str(registry_tls.ca_file))
    assert httpx.get(f"{registry_tls.url}/v2/", verify=context).status_code == 200
    # The cert names localhost too, so either host name verifies.
    by_name = f"https://localhost:{registry_tls.server.port}/v2/"
    assert httpx.get(by_name, verify=context).status_code == 200


def test_tls_registry_is_rejected_without_its_ca(registry_tls: RegistryEndpoint) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{registry_tls.url}/v2/")


def test_tls_registry_refuses_plain_http(registry_tls: RegistryEndpoint) -> None:
    assert httpx.get(f"http://{registry_tls.netloc}/v2/").status_code == 400


# -- htpasswd (Basic) ------------------------------------------------------------------------


def test_basic_registry_challenges_without_credentials(registry_basic: RegistryEndpoint) -> None:
    response = httpx.get(f"{registry_basic.url}/v2/")
    assert response.status_code == 401
    scheme, params = challenge(response)
    assert scheme == "Basic"
    assert params["realm"]


@pytest.mark.parametrize("user", ["pusher", "puller"])
def test_basic_registry_accepts_its_users(registry_basic: RegistryEndpoint, user: str) -> None:
    auth = (user, registry_basic.credentials[user])
    assert httpx.get(f"{registry_basic.url}/v2/", auth=auth).status_code == 200


@pytest.mark.parametrize(
    "auth", [("pusher", "wrong-password"), ("nobody-here", "pusher-secret")]
)
def test_basic_registry_refuses_bad_credentials(
    registry_basic: RegistryEndpoint, auth: tuple[str, str]
) -> None:
    assert httpx.get(f"{registry_basic.url}/v2/", auth=auth).status_code == 401


def test_basic_registry_lets_any_user_push(
    registry_basic: RegistryEndpoint, repo_name: str
) -> None:
    """htpasswd authenticates but does not authorize: puller may push too (documented here)."""
    with registry_basic.client(auth=("puller", registry_basic.credentials["puller"])) as client:
        assert push_blob(client, repo_name, b"basic").status_code == 201


# -- bearer token ----------------------------------------------------------------------------


def test_token_registry_challenges_with_the_issuer_realm(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str
) -> None:
    response = httpx.get(f"{registry_token.url}/v2/")
    assert response.status_code == 401
    assert challenge(response) == (
        "Bearer", {"realm": token_issuer.realm, "service": token_issuer.service}
    )
    with registry_token.client() as client:
        pull = get_manifest(client, repo_name, "v1")
        push = start_upload(client, repo_name)
    assert challenge(pull)[1]["scope"] == f"repository:{repo_name}:pull"
    # The registry lists the two actions in either order from one request to the next.
    resource, _, actions = challenge(push)[1]["scope"].rpartition(":")
    assert (resource, set(actions.split(","))) == (f"repository:{repo_name}", {"pull", "push"})


def test_token_pusher_pushes_and_puller_pulls(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str
) -> None:
    config, layer = _push_image(registry_token, repo_name)
    token = token_for(registry_token, [f"repository:{repo_name}:pull"], "puller")
    with registry_token.client() as client:
        manifest = get_manifest(client, repo_name, "v1", bearer(token))
        blob = client.get(f"/v2/{repo_name}/blobs/{digest_of(layer)}", headers=bearer(token))
    assert manifest.status_code == 200
    assert manifest.json()["config"]["digest"] == digest_of(config)
    assert blob.status_code == 200
    assert blob.content == layer


@pytest.mark.parametrize("user", ["puller", None], ids=["puller", "anonymous"])
def test_token_pull_only_callers_cannot_push(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str,
    user: str | None,
) -> None:
    token = token_for(registry_token, [_pull_push(repo_name)], user)
    with registry_token.client() as client:
        response = start_upload(client, repo_name, bearer(token))
    assert response.status_code == 401
    assert challenge(response)[1]["error"] == "insufficient_scope"
    assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_token_anonymous_pulls_public_but_not_private(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer,
    make_repo_name: Callable[..., str],
) -> None:
    public, private = make_repo_name(), make_repo_name(prefix="private")
    for repo in (public, private):
        _push_image(registry_token, repo)
    with registry_token.client() as client:
        for repo, user, status in [
            (public, None, 200), (private, None, 401), (private, "alice", 200),
            (private, "puller", 200),
        ]:
            token = token_for(registry_token, [f"repository:{repo}:pull"], user)
            response = get_manifest(client, repo, "v1", bearer(token))
            assert response.status_code == status, (repo, user)
        refused = get_manifest(client, private, "v1", bearer(token_for(
            registry_token, [f"repository:{private}:pull"])))
    assert challenge(refused)[1]["error"] == "insufficient_scope"


def test_token_for_another_repository_is_insufficient(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer,
    make_repo_name: Callable[..., str],
) -> None:
    mine, other = make_repo_name(), make_repo_name()
    token = token_for(registry_token, [_pull_push(other)], "pusher")
    with registry_token.client() as client:
        response = start_upload(client, mine, bearer(token))
    assert response.status_code == 401
    assert challenge(response)[1]["error"] == "insufficient_scope"


def test_token_pusher_may_list_the_catalog(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str
) -> None:
    _push_image(registry_token, repo_name)
    with registry_token.client() as client:
        for user, status in [("pusher", 200), ("puller", 401)]:
            token = token_for(registry_token, ["registry:catalog:*"], user)
            # The catalog is sorted and paged: start just before our name so it is on page 1.
            page = {"n": "100", "last": repo_name[:-1]}
            response = client.get("/v2/_catalog", params=page, headers=bearer(token))
            assert response.status_code == status, user
            if status == 200:
                assert repo_name in response.json()["repositories"]


def test_token_expired_is_invalid(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str
) -> None:
    with token_issuer.configured(expired=True):
        token = token_for(registry_token, [_pull_push(repo_name)], "pusher")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] < time.time() - 60  # past the registry's clock leeway
    with registry_token.client() as client:
        response = start_upload(client, repo_name, bearer(token))
    assert response.status_code == 401
    assert challenge(response)[1]["error"] == "invalid_token"


def test_token_signed_by_an_untrusted_key_is_invalid(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, tmp_path: Path, repo_name: str
) -> None:
    genuine = token_for(registry_token, [_pull_push(repo_name)], "pusher")
    claims = jwt.decode(genuine, options={"verify_signature": False})
    stranger = make_signing_key(tmp_path, "stranger")
    forged = jwt.encode(
        claims, stranger.private_pem(), algorithm="RS256", headers={"kid": stranger.kid}
    )
    with registry_token.client() as client:
        assert start_upload(client, repo_name, bearer(genuine)).status_code == 202
        response = start_upload(client, repo_name, bearer(forged))
    assert response.status_code == 401
    assert challenge(response)[1]["error"] == "invalid_token"


def test_issuer_signs_what_it_grants(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer
) -> None:
    before = token_issuer.tokens_issued
    # One repeated parameter, one value holding two space-separated scopes.
    scopes = ["repository:a/b:pull,push", "repository:private/c:pull registry:catalog:*"]
    response = get_token(registry_token, scopes, "puller")
    assert response.status_code == 200
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    header = jwt.get_unverified_header(body["token"])
    assert header["kid"] == token_issuer.signer.kid
    public_key = token_issuer.signer.private_key.public_key()
    claims = jwt.decode(
        body["token"], public_key, algorithms=["RS256"], audience=token_issuer.service,
        issuer=token_issuer.issuer,
    )
    assert claims["sub"] == "puller"
    assert claims["access"] == [
        {"type": "repository", "name": "a/b", "actions": ["pull"]},
        {"type": "repository", "name": "private/c", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": []},
    ]
    assert token_issuer.tokens_issued == before + 1


def test_issuer_lifetime_switch(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer
) -> None:
    with token_issuer.configured(lifetime_s=5):
        response = get_token(registry_token, [], "pusher")
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert response.json()["expires_in"] == 5
    assert claims["exp"] - claims["iat"] == 5


@pytest.mark.parametrize(
    "auth", [("pusher", "wrong-password"), ("nobody-here", "x")], ids=["password", "user"]
)
def test_issuer_refuses_bad_credentials(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, auth: tuple[str, str]
) -> None:
    before = token_issuer.tokens_issued
    response = httpx.get(token_issuer.realm, params={"service": token_issuer.service}, auth=auth)
    assert response.status_code == 401
    assert challenge(response)[0] == "Basic"
    assert token_issuer.tokens_issued == before


@pytest.mark.parametrize("status", [500, 401])
def test_issuer_fault_switch(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, status: int
) -> None:
    before = token_issuer.tokens_issued
    with token_issuer.configured(fault_status=status):
        assert get_token(registry_token, [], "pusher").status_code == status
    assert get_token(registry_token, [], "pusher").status_code == 200
    assert token_issuer.tokens_issued == before + 1


# -- munged ----------------------------------------------------------------------------------


def test_munge_round_trip(munged: MungeDaemon) -> None:
    payload = b"image=ubuntu:22.04\x00\n\xff"
    assert munged.decode(munged.encode(payload)) == (payload, os.getuid(), os.getgid())


def test_munge_refuses_a_replayed_credential(munged: MungeDaemon) -> None:
    credential = munged.encode(b"once")
    assert munged.decode(credential).payload == b"once"
    with pytest.raises(ToolError) as refused:
        munged.decode(credential)
    assert refused.value.returncode == EMUNGE_CRED_REPLAYED


def test_munge_refuses_a_credential_from_another_key(munged: MungeDaemon) -> None:
    credential = munged.encode(b"elsewhere")
    with running_munged() as other, pytest.raises(ToolError) as refused:
        other.decode(credential)
    assert refused.value.returncode == EMUNGE_CRED_INVALID
    assert munged.decode(credential).payload == b"elsewhere"


@needs_root
def test_munge_socket_reachable_by_nobody(munged: MungeDaemon) -> None:
    minted = run(["runuser", "-u", "nobody", "--", "munge", "-S", str(munged.socket), "-n"])
    assert munged.decode(minted.stdout.decode().strip()).uid == NOBODY_UID


@needs_root
def test_munge_encode_as_another_uid(munged: MungeDaemon) -> None:
    assert munged.decode(munged.encode(b"x", uid=4242))[1:] == (4242, 4242)


# -- lifecycle -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stopped_registry_leaves_nothing(kind: Kind) -> None:
    with running_registry(kind) as endpoint:
        pid, workdir = endpoint.pid, endpoint.workdir
        issuer_port = endpoint.issuer.port if endpoint.issuer else None
        assert process_running(pid)
        assert pid in processes_mentioning(str(workdir))
    assert not process_running(pid)
    assert processes_mentioning(str(workdir)) == []
    assert not workdir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{endpoint.url}/v2/", verify=False)
    if issuer_port is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", issuer_port), timeout=2).close()


def test_stopped_munged_leaves_nothing() -> None:
    with running_munged() as daemon:
        pid, directory = daemon.pid, daemon.directory
        assert process_running(pid)
        assert daemon.decode(daemon.encode(b"alive")).payload == b"alive"
    assert not process_running(pid)
    assert processes_mentioning(str(directory)) == []
    assert not directory.exists()


def test_service_tests_carry_the_service_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("service") is not None
    assert request.node.get_closest_marker("unit") is None
