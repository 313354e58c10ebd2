"""The gateway's REST API in process (TestClient), with a real munged and a real registry.

Every endpoint, the pull lifecycle as clients see it (INIT, then re-POSTs of the same pull
return the same record until READY), failures with the registry's reason, admin-only
endpoints, and the error bodies with their statuses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.services.gateway_fixtures import (
    ADMIN,
    SYSTEM,
    USER_A,
    USER_B,
    Caller,
    GatewayEnv,
    running_app,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

IN_PROGRESS = {"INIT", "PENDING", "PULLING", "EXAMINATION", "CONVERSION", "TRANSFER"}
RECORD_FIELDS = {
    "id", "system", "itype", "tag", "status", "userACL", "groupACL", "ENV", "ENTRY",
    "WORKDIR", "LABELS", "last_pull", "status_message",
}


@pytest.fixture
def client(gateway_env: GatewayEnv) -> Iterator[Any]:
    with running_app(gateway_env.config()) as running:
        yield running


def pushed(registry: RegistryEndpoint, repository: str, name: str = "busybox") -> str:
    push_image(catalog.build(name), registry.url, repository, "v1")
    return f"{repository}:v1"


def pull_until_done(client: Any, caller: Caller, tag: str, user: str = USER_A,
                    body: dict[str, str] | None = None) -> dict[str, Any]:
    """Re-POST like shifterimg does until the status leaves the in-progress set."""

    def poll() -> dict[str, Any] | None:
        reply = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/", headers=caller.headers(user),
                            json=body)
        assert reply.status_code == 200, reply.text
        record: dict[str, Any] = reply.json()
        return None if record["status"] in IN_PROGRESS else record

    return wait_for(poll, what=f"the pull of {tag}")


def test_index_needs_no_credential(client: Any) -> None:
    reply = client.get("/")
    assert reply.status_code == 200
    assert reply.text == "{lookup,pull,expire,list}"


def test_pull_lifecycle_then_lookup_and_list(
    client: Any, caller: Caller, gateway_env: GatewayEnv, registry_anon: RegistryEndpoint,
    repo_name: str,
) -> None:
    tag = pushed(registry_anon, repo_name)
    first = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/", headers=caller.headers(USER_A))
    assert first.status_code == 200
    record = first.json()
    assert set(record) == RECORD_FIELDS
    assert (record["status"], record["id"], record["tag"], record["last_pull"]) == (
        "INIT", "MISSING", [], "MISSING"
    )
    done = pull_until_done(client, caller, tag)
    assert done["status"] == "READY"
    assert done["tag"] == [tag]
    assert isinstance(done["last_pull"], float)
    assert len(done["id"]) == 64 and ":" not in done["id"]
    assert done["ENV"] == [catalog.DEFAULT_PATH, "SHIFTER_TEST_IMAGE=busybox"]
    assert done["ENTRY"] == ["/bin/echo", "shifter-test-entrypoint"]
    assert done["WORKDIR"] == "/home/shifter"
    assert done["LABELS"]["io.shifter.test"] == "yes"
    assert sorted(gateway_env.image_files()) == sorted(
        f"{done['id']}.{suffix}" for suffix in ("json", "meta", "squashfs")
    )
    assert read_meta(str(gateway_env.image_dir / f"{done['id']}.meta")).format == "squashfs"

    found = client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers(USER_B))
    assert found.status_code == 200
    assert found.json()["id"] == done["id"]
    listed = client.get(f"/api/list/{SYSTEM}/", headers=caller.headers(USER_B)).json()["list"]
    assert [entry["id"] for entry in listed] == [done["id"]]


def error_of(reply: Any, status: int) -> str:
    """The error text of a refused request, checking the original's body shape."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"status", "error", "message"}
    assert body["status"] == status
    assert body["message"].endswith(str(reply.url))
    return str(body["error"])


def test_requests_without_a_credential_are_refused(client: Any) -> None:
    reply = client.get(f"/api/list/{SYSTEM}/")
    assert error_of(reply, 401).startswith("missing authentication header")
    assert reply.json()["message"].startswith("Unauthorized: ")


def test_forged_and_foreign_credentials_are_refused(client: Any, caller: Caller) -> None:
    good = caller.headers(USER_A)["authentication"]
    forged = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    reply = client.get(f"/api/list/{SYSTEM}/", headers={"authentication": forged})
    assert error_of(reply, 401).startswith("invalid credential")
    from tests.services.munged import running_munged

    with running_munged() as other_key:  # same protocol, another site's key
        foreign = other_key.encode(b"")
    reply = client.get(f"/api/list/{SYSTEM}/", headers={"authentication": foreign})
    assert error_of(reply, 401).startswith("invalid credential")


def test_a_replayed_credential_is_refused(client: Any, caller: Caller) -> None:
    headers = caller.headers(USER_A)
    assert client.get(f"/api/list/{SYSTEM}/", headers=headers).status_code == 200
    reply = client.get(f"/api/list/{SYSTEM}/", headers=headers)
    assert error_of(reply, 401).startswith("replayed credential")


def test_an_expired_credential_is_refused(client: Any, caller: Caller) -> None:
    minted = iter([caller.munged.encode(b"", ttl=1) for _ in range(200)])

    def expired() -> str | None:
        reply = client.get(f"/api/list/{SYSTEM}/", headers={"authentication": next(minted)})
        return error_of(reply, 401) if reply.status_code == 401 else None

    assert wait_for(expired, timeout=20, what="the credential to expire").startswith(
        "expired credential")


def test_names_are_checked(client: Any, caller: Caller) -> None:
    reply = client.get("/api/lookup/nosuchsystem/docker/a:1/", headers=caller.headers())
    assert error_of(reply, 400) == (
        "system 'nosuchsystem' is not one of the configured Platforms (hint: configured "
        f"systems: {SYSTEM}; the name must match 'system' in udiRoot.conf)")
    reply = client.get(f"/api/lookup/{SYSTEM}/docker/Bad..Name/", headers=caller.headers())
    assert error_of(reply, 400).startswith("invalid image reference")
    reply = client.post(f"/api/pull/{SYSTEM}/id/{'a' * 64}/", headers=caller.headers())
    assert error_of(reply, 400).startswith("image type 'id' cannot be used here")
    reply = client.get("/api/nothing/here/", headers=caller.headers())
    assert error_of(reply, 404) == "not found"


def test_lookup_of_a_missing_image_is_404(client: Any, caller: Caller) -> None:
    reply = client.get(f"/api/lookup/{SYSTEM}/docker/never/pulled:1/", headers=caller.headers())
    assert error_of(reply, 404) == "image not found"
    assert reply.json()["message"].startswith("Not Found: ")


def test_a_failed_pull_reports_the_registry_and_a_later_pull_retries(
    client: Any, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    tag = f"{repo_name}:v1"
    failed = pull_until_done(client, caller, tag)
    assert failed["status"] == "FAILURE"
    assert failed["status_message"] == (
        f"image not found: {registry_anon.netloc}/{repo_name}:v1")
    queue = client.get(f"/api/queue/{SYSTEM}/").json()["list"]
    assert {"status": "FAILURE", "image": tag} in queue
    pushed(registry_anon, repo_name)

    def retried() -> dict[str, Any] | None:
        reply = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/", headers=caller.headers(USER_A))
        return reply.json() if reply.json()["status"] != "FAILURE" else None

    assert wait_for(retried, what="the failure hold to pass")["status"] == "INIT"
    assert pull_until_done(client, caller, tag)["status"] == "READY"


def test_pull_acls_must_be_numbers(client: Any, caller: Caller, repo_name: str) -> None:
    reply = client.post(f"/api/pull/{SYSTEM}/docker/{repo_name}:v1/",
                        headers=caller.headers(USER_A), json={"allowed_uids": "12,abc"})
    assert error_of(reply, 400) == "allowed_uids: 'abc' is not a numeric id"


def test_acls_of_a_public_image_are_dropped(
    client: Any, caller: Caller, gateway_env: GatewayEnv, registry_anon: RegistryEndpoint,
    repo_name: str,
) -> None:
    """Contract §3.1: an image anyone may pull from its registry is public."""
    tag = pushed(registry_anon, repo_name)
    body = {"allowed_uids": "4242", "allowed_gids": "4243"}
    first = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/", headers=caller.headers(USER_A),
                        json=body).json()
    assert (first["userACL"], first["groupACL"]) == (
        sorted([4242, uid_of(USER_A)]), sorted([4243, uid_of(USER_A)]))
    done = pull_until_done(client, caller, tag, body=body)
    assert (done["status"], done["userACL"], done["groupACL"]) == ("READY", [], [])
    meta = read_meta(str(gateway_env.image_dir / f"{done['id']}.meta"))
    assert (meta.user_acl, meta.group_acl) == ((), ())


def test_expire_removes_the_record_and_the_files(
    client: Any, caller: Caller, gateway_env: GatewayEnv, registry_anon: RegistryEndpoint,
    repo_name: str,
) -> None:
    tag = pushed(registry_anon, repo_name)
    image_id = pull_until_done(client, caller, tag)["id"]
    url = f"/api/expire/{SYSTEM}/docker/{tag}/"
    assert error_of(client.get(url, headers=caller.headers(USER_A)), 403) == (
        f"{USER_A}({uid_of(USER_A)}) may not expire images on {SYSTEM} "
        f"(hint: only the admins of {SYSTEM} in imagemanager.json may)")
    assert client.get(url, headers=caller.headers(ADMIN)).json() == {"status": True}
    wait_for(lambda: gateway_env.image_files() == [], what="the files to go")
    assert not any(image_id in name for name in gateway_env.image_files())
    lookup = client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers())
    assert lookup.status_code == 404
    wait_for(lambda: client.get(f"/api/queue/{SYSTEM}/").json() == {"list": []},
             what="the expiry job to finish")
    assert client.get(url, headers=caller.headers(ADMIN)).json() == {"status": None}


def test_metrics_for_admins(
    client: Any, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    tag = pushed(registry_anon, repo_name)
    image_id = pull_until_done(client, caller, tag)["id"]
    for user in (USER_A, USER_B, USER_A):
        client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers(user))
    rows = client.get(f"/api/metrics/{SYSTEM}/?limit=2", headers=caller.headers(ADMIN)).json()
    assert [(row["user"], row["id"], row["tag"], row["type"]) for row in rows] == [
        (USER_B, image_id, tag, "docker"), (USER_A, image_id, tag, "docker")]
    assert rows[0]["time"] <= rows[1]["time"]
    reply = client.get(f"/api/metrics/{SYSTEM}/", headers=caller.headers(USER_A))
    assert reply.status_code == 403
    reply = client.get(f"/api/metrics/{SYSTEM}/?limit=x", headers=caller.headers(ADMIN))
    assert error_of(reply, 400).startswith("invalid request: query.limit")


def test_prometheus_metrics(client: Any, caller: Caller) -> None:
    client.get(f"/api/list/{SYSTEM}/", headers=caller.headers())
    client.get(f"/api/list/{SYSTEM}/")
    text = client.get("/metrics").text
    assert 'shifter_imagegw_requests_total{method="GET",route="/api/list/{system}/",' \
        'status="200"} 1.0' in text
    assert 'shifter_imagegw_auth_failures_total{reason="missing authentication header"} 1.0' \
        in text
    assert "shifter_imagegw_jobs{" in text or "# TYPE shifter_imagegw_jobs gauge" in text


def test_lookups_and_pulls_are_counted_and_logged_like_other_routes(
    client: Any, caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    """Lookup and pull skip FastAPI (gateway/hotpath.py) but not the request guard: they get
    a request id, an access log line and the route's metrics like every other request."""
    with caplog.at_level("INFO", logger="shifter.gateway.access"):
        found = client.get(f"/api/lookup/{SYSTEM}/docker/never/pulled:1/",
                           headers=caller.headers(USER_A))
        client.post(f"/api/pull/{SYSTEM}/docker/never/pulled:1/", content=b"{not json")
    assert error_of(found, 404) == "image not found"
    assert len(found.headers["x-request-id"]) == 12
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"path=/api/lookup/{SYSTEM}/docker/never/pulled:1/ status=404 user="
               f"{USER_A}(" in line and "image=docker:never/pulled:1" in line for line in lines)
    assert any(f"path=/api/pull/{SYSTEM}/docker/never/pulled:1/ status=401 user=-" in line
               for line in lines)
    text = client.get("/metrics").text
    assert 'shifter_imagegw_requests_total{method="GET",route="/api/lookup/{system}/' \
        '{imgtype}/{tag:path}/",status="404"} 1.0' in text
    assert 'shifter_imagegw_requests_total{method="POST",route="/api/pull/{system}/' \
        '{imgtype}/{tag:path}/",status="401"} 1.0' in text


def test_a_large_body_is_refused(client: Any, caller: Caller, repo_name: str) -> None:
    reply = client.post(f"/api/pull/{SYSTEM}/docker/{repo_name}:v1/",
                        headers=caller.headers(USER_A), content=b" " * (65 * 1024))
    assert error_of(reply, 413) == "the request body is larger than 65536 bytes"


def test_autoexpire_removes_images_nobody_used_lately(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    tag = pushed(registry_anon, repo_name)
    with running_app(gateway_env.config(ImageExpirationTimeout="0:00:00:01")) as client:
        image_id = pull_until_done(client, caller, tag)["id"]
        assert client.get(f"/api/autoexpire/{SYSTEM}/",
                          headers=caller.headers(USER_A)).status_code == 403

        def expired() -> list[str] | None:
            reply = client.get(f"/api/autoexpire/{SYSTEM}/", headers=caller.headers(ADMIN))
            ids: list[str] = reply.json()["status"]
            return ids or None

        assert wait_for(expired, what="the image to expire") == [image_id]
        wait_for(lambda: gateway_env.image_files() == [], what="the files to go")
        reply = client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers())
        assert reply.status_code == 404


def test_the_api_documentation_is_open(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/pull/{system}/{imgtype}/{tag}/" in paths


def test_job_directories_no_claim_owns_are_reaped_at_start(gateway_env: GatewayEnv) -> None:
    stray = gateway_env.expand_dir / f".shifter-job-99-{'0' * 32}"
    stray.mkdir()
    (stray / "half-written.squashfs").write_bytes(b"x")
    unrelated = gateway_env.expand_dir / "not-ours"
    unrelated.mkdir()
    with running_app(gateway_env.config()):
        assert not stray.exists()
        assert unrelated.exists()
