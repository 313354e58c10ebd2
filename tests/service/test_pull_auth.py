"""Authentication during a pull: tokens that expire mid-pull, and redirects to other hosts.

The token registry's issuer (tests/services/token_issuer.py) is switched per test; a
forwarding proxy in front of the registry delays requests, swaps in an expired token, or
redirects blob downloads to a second proxy that plays the object store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shifter.engine.pull import PulledImage, pull_and_convert
from shifter.registry.auth import RegistryAuthError
from tests.service.test_pull_support import options, push
from tests.services.faultproxy import BLOBS, Fault, FaultProxy
from tests.services.registries import RegistryEndpoint
from tests.services.token_issuer import TokenIssuer


@pytest.fixture
def token_proxy(registry_token: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_token.url) as running:
        yield running


def pull_via(
    proxy: FaultProxy, repository: str, tmp_path: Path, **overrides: object
) -> PulledImage:
    reference = f"{proxy.netloc}/{repository}:v1"
    settings = options(tmp_path / "cache", **overrides)
    return pull_and_convert(reference, tmp_path, options=settings)


def test_token_expiring_during_the_pull_is_renewed(
    registry_token: RegistryEndpoint,
    token_issuer: TokenIssuer,
    token_proxy: FaultProxy,
    repo_name: str,
    tmp_path: Path,
) -> None:
    """Tokens live 6 s, which the client renews 5 s early: every blob request, delayed
    1.2 s by the proxy, finds the previous token expired and gets a new one."""
    push(registry_token, "busybox", repo_name, user="pusher")
    token_proxy.add(Fault("delay", path=BLOBS, delay_s=1.2, times=None))
    with token_issuer.configured(lifetime_s=6):
        before = token_issuer.tokens_issued
        pulled = pull_via(token_proxy, repo_name, tmp_path)
        issued = token_issuer.tokens_issued - before
    assert pulled.meta_path.is_file()
    assert issued >= 2, f"only {issued} token(s) for a pull spanning several lifetimes"


def test_token_the_registry_rejects_mid_pull_is_replaced(
    registry_token: RegistryEndpoint,
    token_issuer: TokenIssuer,
    token_proxy: FaultProxy,
    repo_name: str,
    tmp_path: Path,
) -> None:
    """The registry itself refuses the token (expired, as a revoked or clock-skewed token
    would be) after the manifest was fetched: the client fetches a new one and goes on."""
    push(registry_token, "busybox", repo_name, user="pusher")
    with token_issuer.configured(expired=True):
        scope = f"repository:{repo_name}:pull"
        answer = httpx.get(
            token_issuer.realm, params={"service": token_issuer.service, "scope": scope}
        )
        expired = answer.json()["token"]
    first: list[str] = []

    def expire_first_token(method: str, path: str, headers: dict[str, str]) -> None:
        authorization = headers.get("authorization")
        if authorization and not first:
            first.append(authorization)
        if "/blobs/" in path and first and authorization == first[0]:
            headers["authorization"] = f"Bearer {expired}"

    token_proxy.request_hook = expire_first_token
    before = token_issuer.tokens_issued
    pulled = pull_via(token_proxy, repo_name, tmp_path)
    assert pulled.meta_path.is_file()
    rejected = [r for r in token_proxy.requests if "/blobs/" in r.path and r.status == 401]
    assert len(rejected) >= 1, "the registry never saw the expired token"
    assert token_issuer.tokens_issued - before >= 2


def test_failing_token_server_is_a_clear_error(
    registry_token: RegistryEndpoint, token_issuer: TokenIssuer, repo_name: str, tmp_path: Path
) -> None:
    push(registry_token, "busybox", repo_name, user="pusher")
    reference = f"{registry_token.netloc}/{repo_name}:v1"
    with (
        token_issuer.configured(fault_status=500),
        pytest.raises(
            RegistryAuthError, match=r"token server .* refused anonymous access \(HTTP 500\)"
        ),
    ):
        pull_and_convert(reference, tmp_path, options=options(tmp_path / "cache"))


def test_redirect_to_another_host_does_not_carry_the_registry_credentials(
    registry_token: RegistryEndpoint,
    registry_anon: RegistryEndpoint,
    token_proxy: FaultProxy,
    repo_name: str,
    tmp_path: Path,
) -> None:
    """Blobs redirected to "object storage" (a second proxy, another origin, serving the
    same repository from the anonymous registry): it must never see an Authorization."""
    push(registry_token, "busybox", repo_name, user="pusher")
    push(registry_anon, "busybox", repo_name)
    with FaultProxy(registry_anon.url) as storage:
        token_proxy.add(Fault("redirect", path=BLOBS, target=storage.url, times=None))
        creds = ("puller", registry_token.credentials["puller"])
        pulled = pull_via(token_proxy, repo_name, tmp_path, credentials=creds)
        at_storage = storage.requests
    assert pulled.meta_path.is_file()
    assert len(at_storage) >= 2, "config and layer were fetched from the other host"
    assert all(not r.authorized for r in at_storage)
    at_registry = [r for r in token_proxy.requests if "/blobs/" in r.path]
    assert at_registry and all(r.authorized for r in at_registry)
    assert all(r.status == 307 for r in at_registry)
