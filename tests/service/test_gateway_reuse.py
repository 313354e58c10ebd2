"""Re-pulls of an image the platform already holds READY are not converted again.

A pull after PullUpdateTimeout, or of the same image under another tag, resolves the same
platform manifest and so the same image id: the worker then leaves the published image file
as it is (same inode, same mtime) and publishes only `.meta`. The gateway reaches the
registry through a recording proxy and the layer cache is emptied before the re-pull, so
the only blob a re-pull may fetch is the config. A changed image, a file deleted by hand,
and a pull that changes a private image's ACLs are converted as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.authn import requester_for
from shifter.gateway.config import gateway_config_from_data
from shifter.gateway.credentials import CredentialVault
from shifter.gateway.imports import permitted
from shifter.gateway.lifecycle import Deferred, Lifecycle, Outcome
from shifter.gateway.manager import ImageManager
from shifter.gateway.records import Requester, Status
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store import MetadataStore
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_shifterimg_e2e import push_private
from tests.service.test_transfer_support import shared_dir
from tests.services.faultproxy import BLOBS, FaultProxy
from tests.services.gateway_fixtures import (
    PRIVATE,
    SYSTEM,
    USER_A,
    USER_B,
    USER_C,
    Caller,
    GatewayEnv,
    make_env,
    running_app,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint
from tests.services.sshd_fixtures import SshServer

UNCHANGED = "(unchanged, not converted again)"  # the worker's log line for a reuse
SUFFIXES = ("json", "meta", "squashfs")


@pytest.fixture
def proxy(registry_anon: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anon.url) as running:
        yield running


@pytest.fixture
def env(tmp_path: Path, munged: Any, proxy: FaultProxy) -> GatewayEnv:
    """A gateway whose default registry is the recording proxy; every pull re-pulls
    (PullUpdateTimeout 0), so tests wait with lookups and POST once per pull."""
    gateway = make_env(tmp_path, munged, proxy, f"sqlite:///{tmp_path}/gateway.sqlite")
    gateway.data["PullUpdateTimeout"] = 0
    return gateway


def push_twice(registry: RegistryEndpoint, repository: str, name: str = "busybox") -> None:
    """One image (one manifest, one id) under the tags v1 and v2."""
    built = catalog.build(name)
    for tag in ("v1", "v2"):
        push_image(built, registry.url, repository, tag)


@contextlib.contextmanager
def serving(env: GatewayEnv, caplog: pytest.LogCaptureFixture, **changes: Any) -> Iterator[Any]:
    """The app in process, with the worker's log lines (READY, unchanged) in caplog."""
    with caplog.at_level(logging.INFO, logger="shifter.gateway.worker_jobs"), \
            running_app(env.config(**changes)) as client:
        yield client


def start_pull(client: Any, caller: Caller, tag: str, user: str = USER_A,
               body: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> None:
    reply = client.post(f"/api/pull/{SYSTEM}/docker/{tag}/",
                        headers=headers or caller.headers(user), json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "INIT", reply.json()


def ready(client: Any, caller: Caller, tag: str, *, after: float = 0.0,
          user: str = USER_A) -> dict[str, Any]:
    """The READY record of `tag` once a pull finished after `after` (its last_pull)."""

    def check() -> dict[str, Any] | None:
        queue = client.get(f"/api/queue/{SYSTEM}/").json()["list"]
        if {"status": "FAILURE", "image": tag} in queue:
            pytest.fail(f"the pull of {tag} failed")
        reply = client.get(f"/api/lookup/{SYSTEM}/docker/{tag}/", headers=caller.headers(user))
        record: dict[str, Any] = reply.json()
        return record if reply.status_code == 200 and record["last_pull"] > after else None

    return wait_for(check, what=f"the pull of {tag}")


def pull(client: Any, caller: Caller, tag: str, *, after: float = 0.0) -> dict[str, Any]:
    start_pull(client, caller, tag)
    return ready(client, caller, tag, after=after)


def identity(path: Path) -> tuple[int, int]:
    """What a rewrite would change: a publish renames a new file over the old one."""
    status = path.stat()
    return status.st_ino, status.st_mtime_ns


def empty_layer_cache(env: GatewayEnv) -> None:
    for blob in (env.root / "cache" / "sha256").iterdir():
        blob.unlink()


def blob_paths(proxy: FaultProxy, since: int) -> list[str]:
    """The blobs requested after the first `since` requests."""
    return [r.path for r in proxy.requests[since:] if re.search(BLOBS, r.path)]


def check_clean(env: GatewayEnv, *image_ids: str) -> None:
    assert env.image_files() == sorted(f"{i}.{s}" for i in image_ids for s in SUFFIXES)
    assert [p.name for p in env.image_dir.iterdir() if p.name.startswith(".")] == []
    assert list(env.expand_dir.iterdir()) == []


def readers(image: Path) -> list[str]:
    """Which test users the file's mode and POSIX ACL let read it (the tmp dir above it
    is root's, so this asks the kernel's rule rather than trying as each user)."""
    raw = os.getxattr(image, "system.posix_acl_access")
    entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]
    assert stat.S_IMODE(image.stat().st_mode) & 0o007 == 0
    return [user for user in (USER_A, USER_B, USER_C)
            if permitted(requester_for(uid_of(user), uid_of(user)), image.stat(), entries, 4)]


@pytest.mark.parametrize("trigger", ["same tag after PullUpdateTimeout", "another tag"])
def test_an_unchanged_image_is_not_converted_again(
    trigger: str, env: GatewayEnv, proxy: FaultProxy, registry_anon: RegistryEndpoint,
    caller: Caller, repo_name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    push_twice(registry_anon, repo_name)
    again = f"{repo_name}:v1" if trigger.startswith("same") else f"{repo_name}:v2"
    with serving(env, caplog) as client:
        first = pull(client, caller, f"{repo_name}:v1")
        image_id = first["id"]
        image, sidecar = (env.image_dir / f"{image_id}.{s}" for s in ("squashfs", "json"))
        before = identity(image)
        config = json.loads(sidecar.read_text())["config_digest"]
        assert UNCHANGED not in caplog.text
        empty_layer_cache(env)
        requests = len(proxy.requests)

        second = pull(client, caller, again, after=first["last_pull"])

    assert second["id"] == image_id
    assert identity(image) == before, "converted again"
    assert UNCHANGED in caplog.text
    # Only the config (for ENV, ENTRY, WORKDIR, labels): no layer was fetched.
    assert [path.rsplit("/", 1)[1] for path in blob_paths(proxy, requests)] == [config]
    # The sidecar describes the latest pull: its source, not the first one's.
    document = json.loads(sidecar.read_text())
    assert (document["source"]["reference"], document["conversion"]["skipped"]) == (
        again, None)
    assert sorted(second["tag"]) == sorted({f"{repo_name}:v1", again})
    assert (second["ENV"], second["ENTRY"]) == (first["ENV"], first["ENTRY"])
    meta = read_meta(str(env.image_dir / f"{image_id}.meta"))
    assert (meta.format, meta.user_acl, meta.group_acl) == ("squashfs", (), ())
    check_clean(env, image_id)


def test_a_changed_image_is_converted_and_replaces_the_old(
    env: GatewayEnv, proxy: FaultProxy, registry_anon: RegistryEndpoint, caller: Caller,
    repo_name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tag = f"{repo_name}:v1"
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    with serving(env, caplog) as client:
        first = pull(client, caller, tag)
        push_image(catalog.build("layered"), registry_anon.url, repo_name, "v1")
        empty_layer_cache(env)
        requests = len(proxy.requests)
        second = pull(client, caller, tag, after=first["last_pull"])
    assert second["id"] != first["id"]
    assert second["tag"] == [tag]
    assert UNCHANGED not in caplog.text
    new_image = env.image_dir / f"{second['id']}.squashfs"
    with open(new_image, "rb") as image:
        assert image.read(4) == b"hsqs"
    layers = json.loads((env.image_dir / f"{second['id']}.json").read_text())["layers"]
    fetched = blob_paths(proxy, requests)
    assert all(any(path.endswith(layer["digest"]) for path in fetched) for layer in layers)
    # The old image keeps its files (it is untagged; autoexpire removes it in time).
    check_clean(env, first["id"], second["id"])


def test_an_image_file_deleted_by_hand_is_converted_again(
    env: GatewayEnv, registry_anon: RegistryEndpoint, caller: Caller, repo_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tag = f"{repo_name}:v1"
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    with serving(env, caplog) as client:
        first = pull(client, caller, tag)
        image = env.image_dir / f"{first['id']}.squashfs"
        image.unlink()
        second = pull(client, caller, tag, after=first["last_pull"])
    assert second["id"] == first["id"]
    assert UNCHANGED not in caplog.text
    assert "its file is missing; converting it again" in caplog.text
    with open(image, "rb") as converted:
        assert converted.read(4) == b"hsqs"
    check_clean(env, first["id"])


def test_a_deleted_sidecar_is_published_again_without_converting(
    env: GatewayEnv, registry_anon: RegistryEndpoint, caller: Caller, repo_name: str,
) -> None:
    push_twice(registry_anon, repo_name)
    with running_app(env.config()) as client:
        first = pull(client, caller, f"{repo_name}:v1")
        image = env.image_dir / f"{first['id']}.squashfs"
        before = identity(image)
        sidecar = env.image_dir / f"{first['id']}.json"
        sidecar.unlink()
        pull(client, caller, f"{repo_name}:v2", after=first["last_pull"])
    assert identity(image) == before
    document = json.loads(sidecar.read_text())
    assert (document["id"], document["conversion"]["skipped"]) == (first["id"], None)
    check_clean(env, first["id"])


def test_a_private_image_keeps_its_file_when_its_acl_changes(
    gateway_env: GatewayEnv, private_registry: RegistryEndpoint, caller: Caller,
    repo_name: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A re-pull with other ACLs converts nothing: the image file (same inode) gets the new
    POSIX ACL in place, and `.meta` the new USERACL."""
    tag = push_private(private_registry, repo_name)
    logins = {PRIVATE: f"puller:{private_registry.credentials['puller']}"}

    def private_pull(client: Any, allowed: str, after: float) -> dict[str, Any]:
        start_pull(client, caller, tag, body={"allowed_uids": str(uid_of(allowed))},
                   headers=caller.with_credentials(USER_A, logins))
        return ready(client, caller, tag, after=after)

    with serving(gateway_env, caplog, PullUpdateTimeout=0) as client:
        first = private_pull(client, USER_C, 0.0)
        image = gateway_env.image_dir / f"{first['id']}.squashfs"
        before = identity(image)
        same = private_pull(client, USER_C, first["last_pull"])
        assert identity(image) == before
        assert caplog.text.count("(unchanged, not converted again)") == 1
        assert readers(image) == [USER_A, USER_C]

        changed = private_pull(client, USER_B, same["last_pull"])
    assert changed["id"] == first["id"]
    assert changed["userACL"] == sorted([uid_of(USER_A), uid_of(USER_B)])
    assert identity(image)[0] == before[0]
    assert caplog.text.count("(unchanged, not converted again)") == 2
    assert readers(image) == [USER_A, USER_B]
    meta = gateway_env.image_dir / f"{first['id']}.meta"
    assert list(read_meta(str(meta)).user_acl) == changed["userACL"]
    assert readers(meta) == [USER_A, USER_B]


def test_a_remote_platform_keeps_its_image_file(
    env: GatewayEnv, sshd: SshServer, registry_anon: RegistryEndpoint, caller: Caller,
    repo_name: str,
) -> None:
    """The READY record says the files were published there; `test -f` over ssh checks
    the image file is still there, and only `.meta` is copied with scp."""
    built = catalog.build("busybox")
    for version in ("v1", "v2", "v3"):
        push_image(built, registry_anon.url, repo_name, version)
    account = pwd.getpwnam(sshd.user)
    with shared_dir("shifter-gateway-reuse-") as top:
        remote = top / "images"
        remote.mkdir(mode=0o755)
        os.chown(remote, account.pw_uid, account.pw_gid)
        local = env.data["Platforms"][SYSTEM]
        env.data["Platforms"][SYSTEM] = {
            **sshd.platform_data(remote),
            "mungeSocketPath": local["mungeSocketPath"], "admins": local["admins"],
        }
        with running_app(env.config()) as client:
            first = pull(client, caller, f"{repo_name}:v1")
            image = remote / f"{first['id']}.squashfs"
            meta = remote / f"{first['id']}.meta"
            before, meta_before = identity(image), identity(meta)
            second = pull(client, caller, f"{repo_name}:v2", after=first["last_pull"])
            assert second["id"] == first["id"]
            assert identity(image) == before
            assert identity(meta) != meta_before  # published again, over ssh
            image.unlink()  # by hand, on the remote system
            third = pull(client, caller, f"{repo_name}:v3", after=second["last_pull"])
        assert third["id"] == first["id"]
        with open(image, "rb") as converted:
            assert converted.read(4) == b"hsqs"
        assert image.stat().st_uid == account.pw_uid
        assert sorted(p.name for p in remote.iterdir()) == [
            f"{first['id']}.{suffix}" for suffix in SUFFIXES]


# -- completing a reuse: the READY record must still vouch for the files ------------------

ALICE = Requester(uid=1001, gid=1001, user="alice", groups=frozenset({1001}))
ADMIN = Requester(uid=0, gid=0, user="root", groups=frozenset({0}))
IMAGE = "c" * 64


class Records:
    """A manager and the worker side on one SQLite store, without workers or registry."""

    def __init__(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path}/gateway.sqlite"
        self.config = gateway_config_from_data({
            "MetadataStore": url,
            "Platforms": {SYSTEM: {"accesstype": "local", "admins": ["root"],
                                   "local": {"imageDir": str(tmp_path)}}},
        })
        self.store = MetadataStore.open(url)
        self.manager = ImageManager(self.config, self.store, instance_id="gw",
                                    settings=ServiceSettings(), vault=CredentialVault())
        self.lifecycle = Lifecycle(self.config, self.store, instance_id="gw")

    def pull(self, tag: str, users: tuple[int, ...] = ()) -> jobs.Job:
        """Accept a pull of `tag` and claim its job as a worker would."""
        record, _ = self.manager.pull(SYSTEM, "docker", tag, ALICE, user_acl=users)
        return self.claim(record.pk)

    def claim(self, image_pk: int) -> jobs.Job:
        job = self.store.write(lambda conn: jobs.claim_next(conn, "gw", lease_s=60,
                                                             now=time.time()))
        assert job is not None and job.image_pk == image_pk
        return job

    def complete(self, job: jobs.Job, *, reused: bool, users: tuple[int, ...] = ()) -> Any:
        return self.lifecycle.complete(job, Outcome(
            image_id=IMAGE, private=bool(users), user_acl=users, group_acl=(),
            reused=reused))

    def lookup(self, tag: str) -> Any:
        return self.manager.lookup(SYSTEM, "docker", tag, ALICE)


@pytest.fixture
def records(tmp_path: Path) -> Iterator[Records]:
    opened = Records(tmp_path)
    try:
        yield opened
    finally:
        opened.store.close()


def test_a_reuse_folds_into_the_ready_record(records: Records) -> None:
    records.complete(records.pull("a:1"), reused=False)
    done = records.complete(records.pull("a:2"), reused=True).record
    assert (done.status, done.tags) == (Status.READY, ("a:1", "a:2"))
    assert records.lookup("a:2").pk == records.lookup("a:1").pk


def test_a_reuse_whose_image_was_expired_meanwhile_is_deferred(records: Records) -> None:
    records.complete(records.pull("a:1"), reused=False)
    job = records.pull("a:2")  # the worker decided to reuse the image's files...
    ready = records.lookup("a:1")
    assert records.manager.expire(SYSTEM, "docker", "a:1", ADMIN)
    expiry = records.claim(ready.pk)  # ...and the expiry removed them meanwhile
    assert records.lifecycle.expired(expiry)
    with pytest.raises(Deferred):
        records.complete(job, reused=True)  # not READY without its image file
    assert records.lifecycle.record(job).status is Status.PENDING  # rolled back, retried
    records.complete(job, reused=False)  # the retry converts it
    assert records.lookup("a:2").image_id == IMAGE


def test_a_reuse_with_other_acls_keeps_each_tags_own(records: Records) -> None:
    records.complete(records.pull("p:1", (ALICE.uid,)), reused=False, users=(ALICE.uid,))
    done = records.complete(records.pull("p:2", (ALICE.uid, 7)), reused=True,
                            users=(ALICE.uid, 7)).record
    assert (done.user_acl, done.tags) == ((7, ALICE.uid), ("p:1", "p:2"))
    assert records.lookup("p:1").user_acl == (ALICE.uid,)
    with records.store.reading() as conn:
        (files,) = images.ready_with_id(conn, SYSTEM, IMAGE)
    assert (files.private, files.user_acl) == (True, (7, ALICE.uid))  # the union
