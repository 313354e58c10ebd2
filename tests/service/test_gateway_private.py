"""Private images (gateway contract §3): pulled with registry credentials and ACLs.

The htpasswd registry sits behind an HTTPS relay with a throw-away CA (credentials never
travel over plain http), configured as location `secure`. An image whose pull needed
credentials is visible only to the users and groups of its ACL; to anyone else it does not
exist: lookup answers exactly what it answers for a missing image, list leaves it out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from shifter.gateway.authn import requester_for
from shifter.gateway.imports import permitted
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_gateway_api import error_of, pull_until_done
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    USER_B,
    USER_C,
    Caller,
    GatewayEnv,
    TlsRelay,
    running_app,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

PULLER = "puller:puller-secret"


@pytest.fixture
def relay(registry_basic: RegistryEndpoint) -> Iterator[TlsRelay]:
    host, port = registry_basic.netloc.split(":")
    with TlsRelay((host, int(port))) as running:
        yield running


@pytest.fixture
def client(gateway_env: GatewayEnv, relay: TlsRelay) -> Iterator[Any]:
    gateway_env.add_location("secure", relay.url, str(relay.ca_file))
    with running_app(gateway_env.config()) as running:
        yield running


@pytest.fixture
def private_tag(registry_basic: RegistryEndpoint, repo_name: str) -> str:
    credentials = ("pusher", registry_basic.credentials["pusher"])
    push_image(catalog.build("busybox"), registry_basic.url, repo_name, "v1",
               credentials=credentials)
    return f"secure/{repo_name}:v1"


def _acl_entries_of(path: Any) -> list[tuple[int, int, int]]:
    import struct

    raw = os.getxattr(path, "system.posix_acl_access")
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def pull_private(client: Any, caller: Caller, tag: str, user: str, body: dict[str, str] | None,
                 locations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pull as shifterimg sends it after `shifterimg login secure` (or other logins)."""

    def poll() -> dict[str, Any] | None:
        headers = caller.with_credentials(user, locations or {"secure": PULLER})
        record: dict[str, Any] = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/",
                                             headers=headers, json=body).json()
        return record if record["status"] not in ("INIT", "PENDING", "PULLING",
                                                   "CONVERSION", "TRANSFER") else None

    return wait_for(poll, what=f"the pull of {tag}")


def lookup(client: Any, caller: Caller, tag: str, user: str) -> Any:
    return client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers(user))


def test_a_private_image_exists_only_for_its_acl(
    client: Any, caller: Caller, gateway_env: GatewayEnv, private_tag: str
) -> None:
    done = pull_private(client, caller, private_tag, USER_A,
                        {"allowed_uids": str(uid_of(USER_C))})
    assert done["status"] == "READY", done["status_message"]
    allowed = sorted([uid_of(USER_A), uid_of(USER_C)])
    assert done["userACL"] == allowed
    meta = read_meta(str(gateway_env.image_dir / f"{done['id']}.meta"))
    assert list(meta.user_acl) == allowed
    image = gateway_env.image_dir / f"{done['id']}.squashfs"
    assert stat.S_IMODE(image.stat().st_mode) & 0o007 == 0  # others: nothing
    # The file's POSIX ACL admits exactly the users the record admits.
    for user, readable in ((USER_A, True), (USER_C, True), (USER_B, False)):
        assert permitted(requester_for(uid_of(user), uid_of(user)), image.stat(),
                         _acl_entries_of(image), 4) is readable
    for user in (USER_A, USER_C):
        assert lookup(client, caller, private_tag, user).json()["id"] == done["id"]

    hidden = lookup(client, caller, private_tag, USER_B)
    missing = lookup(client, caller, private_tag.replace(":v1", ":nope"), USER_B)
    assert error_of(hidden, 404) == error_of(missing, 404) == "image not found"
    listed = client.get(f"/api/list/{SYSTEM}/", headers=caller.headers(USER_B)).json()
    assert listed == {"list": []}
    mine = client.get(f"/api/list/{SYSTEM}/", headers=caller.headers(USER_A)).json()["list"]
    assert [entry["id"] for entry in mine] == [done["id"]]


def test_a_group_acl_admits_members(
    client: Any, caller: Caller, private_tag: str
) -> None:
    group = os.getgrouplist(USER_A, uid_of(USER_A))
    shared = next(gid for gid in group if gid != uid_of(USER_A))  # shiftertestgrp
    done = pull_private(client, caller, private_tag, USER_A, {"allowed_gids": str(shared)})
    assert done["status"] == "READY", done["status_message"]
    assert lookup(client, caller, private_tag, USER_A).status_code == 200
    assert lookup(client, caller, private_tag, USER_B).status_code == 404


def test_a_stranger_without_credentials_cannot_get_at_it(
    client: Any, caller: Caller, private_tag: str, relay: TlsRelay
) -> None:
    done = pull_private(client, caller, private_tag, USER_A, {"allowed_uids": "0"})
    assert done["status"] == "READY"
    # User B has no credentials: B's own pull is refused by the registry; A keeps the image.
    failed = pull_until_done(client, caller, private_tag, USER_B)
    assert failed["status"] == "FAILURE"
    repository = private_tag.split("/", 1)[1]
    assert failed["status_message"] == (
        f"access denied: 127.0.0.1:{relay.port}/{repository}: UNAUTHORIZED: authentication "
        "required")
    assert failed["userACL"] == []
    assert lookup(client, caller, private_tag, USER_A).status_code == 200
    assert lookup(client, caller, private_tag, USER_B).status_code == 404


def test_a_stranger_with_credentials_is_added_to_the_acl(
    client: Any, caller: Caller, gateway_env: GatewayEnv, private_tag: str
) -> None:
    first = pull_private(client, caller, private_tag, USER_A, {"allowed_uids": "0"})
    assert first["status"] == "READY"
    second = pull_private(client, caller, private_tag, USER_B, {"allowed_uids": "0"})
    assert second["status"] == "READY", second["status_message"]
    assert second["id"] == first["id"]
    both = sorted([0, uid_of(USER_A), uid_of(USER_B)])
    for user in (USER_A, USER_B):
        found = lookup(client, caller, private_tag, user).json()
        assert found["userACL"] == both
    meta = read_meta(str(gateway_env.image_dir / f"{first['id']}.meta"))
    assert list(meta.user_acl) == both


def test_default_credentials_are_only_for_the_default_location(
    client: Any, caller: Caller, private_tag: str
) -> None:
    """Seed: "default" is the credential of the gateway's default location, not of every
    registry (the original sent it everywhere)."""
    done = pull_private(client, caller, private_tag, USER_A, None, {"default": PULLER})
    assert done["status"] == "FAILURE"
    assert "UNAUTHORIZED: authentication required" in done["status_message"]


def test_credentials_do_not_make_a_public_image_private(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    host, port = registry_anon.netloc.split(":")
    with TlsRelay((host, int(port))) as public:
        gateway_env.add_location("public", public.url, str(public.ca_file))
        with running_app(gateway_env.config()) as client:
            tag = f"public/{repo_name}:v1"
            done = pull_private(client, caller, tag, USER_A,
                                {"allowed_uids": str(uid_of(USER_A))}, {"public": PULLER})
            assert (done["status"], done["userACL"]) == ("READY", [])
            assert lookup(client, caller, tag, USER_B).status_code == 200


def test_a_login_is_never_sent_over_plain_http(
    client: Any, caller: Caller, gateway_env: GatewayEnv, registry_anon: RegistryEndpoint,
    repo_name: str,
) -> None:
    """The default location here is the plain-http registry: a pull that carries a login
    for it is refused with the reason, and goes ahead without the login."""
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    url = f"/api/pull/{SYSTEM}/docker/{repo_name}:v1/"
    refused = client.post(url, headers=caller.with_credentials(USER_A, {"default": PULLER}),
                          json={"allowed_uids": str(uid_of(USER_A))})
    location = gateway_env.data["DefaultImageLocation"]
    assert error_of(refused, 400) == (
        f"cannot pull {repo_name}:v1 with your registry login: {location} is served over "
        "plain http, and this gateway never sends credentials in clear text (hint: pull it "
        f"without a login for {location} (shifterimg logout), or ask the gateway's admins "
        "to serve it over https)")
    done = pull_until_done(client, caller, f"{repo_name}:v1", USER_A)
    assert done["status"] == "READY"
