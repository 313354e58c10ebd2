"""Several gateway processes on one metadata store, and gateways that die mid-pull.

Each test runs on SQLite (processes on one host sharing the file) and on PostgreSQL. A
fault-injecting proxy holds the first blob request of a pull, so the pull is reliably in
flight when the gateway doing it is killed with SIGKILL; leases are 2 s, so another
gateway (or the restarted one) takes the job over within seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.records import Status
from shifter.gateway.store import MetadataStore
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_gateway_private import PULLER
from tests.services.faultproxy import BLOBS, Fault, FaultProxy
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    Caller,
    GatewayEnv,
    GatewayServer,
    TlsRelay,
    make_env,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

DONE = ("READY", "FAILURE")
HOLD_S = 600.0  # the held request is never answered: its gateway is killed first


@pytest.fixture
def proxy(registry_anon: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anon.url) as running:
        yield running


def pull(server: GatewayServer, caller: Caller, tag: str,
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    reply = httpx.post(f"{server.url}/api/pull/{SYSTEM}/docker/{tag}/",
                       headers=headers or caller.headers(USER_A), timeout=30)
    assert reply.status_code == 200, reply.text
    record: dict[str, Any] = reply.json()
    return record


def pull_until_done(server: GatewayServer, caller: Caller, tag: str,
                    headers: Callable[[], dict[str, str]] | None = None) -> dict[str, Any]:
    def poll() -> dict[str, Any] | None:
        record = pull(server, caller, tag, headers() if headers else None)
        return record if record["status"] in DONE else None

    return wait_for(poll, what=f"the pull of {tag} on {server.url}")


def queue_shows(server: GatewayServer, status: str) -> bool:
    listed = httpx.get(f"{server.url}/api/queue/{SYSTEM}/", timeout=30).json()["list"]
    return any(entry["status"] == status for entry in listed)


def failures(store: MetadataStore) -> list[Any]:
    with store.reading() as conn:
        return images.with_status(conn, SYSTEM, [Status.FAILURE])


def pull_jobs(store: MetadataStore) -> list[dict[str, Any]]:
    with store.reading() as conn:
        return [row for row in jobs.job_rows(conn) if row["kind"] == "pull"]


def ready_records(store: MetadataStore) -> list[Any]:
    with store.reading() as conn:
        return images.with_status(conn, SYSTEM, [Status.READY])


def check_clean(env: GatewayEnv, image_id: str) -> None:
    assert env.image_files() == [f"{image_id}.{suffix}" for suffix in ("json", "meta",
                                                                      "squashfs")]
    assert [p.name for p in env.image_dir.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in env.expand_dir.iterdir()] == []


def test_a_pull_survives_its_gateway_being_killed(
    tmp_path: Path, munged: Any, store_url: str, store: MetadataStore, proxy: FaultProxy,
    registry_anon: RegistryEndpoint, gateway_servers: Callable[..., GatewayServer],
    caller: Caller, repo_name: str,
) -> None:
    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    tag = f"{repo_name}:v1"
    hold = proxy.add(Fault("delay", path=BLOBS, delay_s=HOLD_S, times=1))
    env = make_env(tmp_path, munged, proxy, store_url)
    first = gateway_servers(env.write())
    assert pull(first, caller, tag)["status"] == "INIT"
    wait_for(lambda: hold.fired == 1 and queue_shows(first, "PULLING"),
             what="the pull to be downloading")
    first.kill()
    (claimed,) = pull_jobs(store)
    assert (claimed["state"], claimed["attempts"]) == ("running", 1)

    restarted = gateway_servers(env.write())
    done = pull_until_done(restarted, caller, tag)
    assert done["status"] == "READY", done["status_message"]
    (job,) = pull_jobs(store)
    assert (job["state"], job["attempts"]) == ("done", 2)
    assert job["finished_by"].split(":")[1] == str(restarted.pid)
    assert [record.image_id for record in ready_records(store)] == [done["id"]]
    check_clean(env, done["id"])


def test_two_gateways_share_the_work_and_do_each_pull_once(
    tmp_path: Path, munged: Any, store_url: str, store: MetadataStore,
    registry_anon: RegistryEndpoint, gateway_servers: Callable[..., GatewayServer],
    caller: Caller, make_repo_name: Callable[..., str],
) -> None:
    env = make_env(tmp_path, munged, registry_anon, store_url)
    gateways = [gateway_servers(env.write()), gateway_servers(env.write())]
    tags = []
    for name in ("busybox", "layered"):
        repository = make_repo_name()
        push_image(catalog.build(name), registry_anon.url, repository, "v1")
        tags.append(f"{repository}:v1")
    errors: list[BaseException] = []

    def hammer(server: GatewayServer, tag: str) -> None:
        try:
            for _ in range(3):
                pull(server, caller, tag)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(server, tag))
               for tag in tags for server in gateways]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    done = {tag: pull_until_done(gateways[0], caller, tag) for tag in tags}
    assert {record["status"] for record in done.values()} == {"READY"}
    rows = pull_jobs(store)
    assert sorted((row["state"], row["attempts"]) for row in rows) == [("done", 1)] * len(tags)

    def logs() -> str:
        return "\n".join(server.log_path.read_text() for server in gateways)

    # A worker logs READY just after recording it: wait for every line, then count them.
    wait_for(lambda: all(f"pull of docker:{tag} on {SYSTEM} is READY" in logs() for tag in tags),
             what="the workers' log lines")
    for tag in tags:
        assert logs().count(f"pull of docker:{tag} on {SYSTEM} is READY") == 1
    assert sorted(record.tags[0] for record in ready_records(store)) == sorted(tags)


@pytest.fixture
def secure_relay(registry_basic: RegistryEndpoint) -> Iterator[tuple[TlsRelay, FaultProxy]]:
    with FaultProxy(registry_basic.url) as held:
        host, port = held.netloc.split(":")
        with TlsRelay((host, int(port))) as relay:
            yield relay, held


ADOPTION_LEASE = {"SHIFTER_IMAGEGW_LEASE_S": "8"}


@dataclass
class KilledPull:
    """A private pull whose gateway was killed mid-download, and the gateway left."""

    tag: str
    survivor: GatewayServer
    login: Callable[[], dict[str, str]]


@pytest.fixture
def killed_private_pull(
    tmp_path: Path, munged: Any, store_url: str, registry_anon: RegistryEndpoint,
    registry_basic: RegistryEndpoint, secure_relay: tuple[TlsRelay, FaultProxy],
    gateway_servers: Callable[..., GatewayServer], caller: Caller, repo_name: str,
) -> KilledPull:
    relay, held = secure_relay
    push_image(catalog.build("busybox"), registry_basic.url, repo_name, "v1",
               credentials=("pusher", registry_basic.credentials["pusher"]))
    hold = held.add(Fault("delay", path=BLOBS, delay_s=HOLD_S, times=1))
    env = make_env(tmp_path, munged, registry_anon, store_url)
    env.add_location("secure", relay.url, str(relay.ca_file))
    tag = f"secure/{repo_name}:v1"

    def login() -> dict[str, str]:  # what shifterimg sends after `shifterimg login secure`
        return caller.with_credentials(USER_A, {"secure": PULLER})

    # The survivor adopts the job only between one and two leases after the last heartbeat,
    # so the lease must outlast a gateway's start-up on a loaded 2-core machine.
    first = gateway_servers(env.write(), **ADOPTION_LEASE)
    assert pull(first, caller, tag, login())["status"] == "INIT"
    wait_for(lambda: hold.fired == 1, what="the pull to be downloading")
    first.kill()
    return KilledPull(tag, gateway_servers(env.write(), **ADOPTION_LEASE), login)


def test_a_private_pull_taken_over_uses_credentials_the_client_sends_again(
    killed_private_pull: KilledPull, store: MetadataStore, caller: Caller
) -> None:
    survivor = killed_private_pull.survivor
    done = pull_until_done(survivor, caller, killed_private_pull.tag, killed_private_pull.login)
    assert done["status"] == "READY", done["status_message"]
    (job,) = pull_jobs(store)
    assert job["finished_by"].split(":")[1] == str(survivor.pid)


def test_a_private_pull_taken_over_without_credentials_fails_clearly(
    killed_private_pull: KilledPull, store: MetadataStore
) -> None:
    second = killed_private_pull.survivor
    # Nobody re-sends the credentials (the client went away): only the records are watched
    # (the unauthenticated queue does not show pulls made with credentials).
    wait_for(lambda: failures(store), what="the takeover to give up")
    assert not queue_shows(second, "FAILURE")
    (record,) = failures(store)
    assert record.status_message == (
        "the gateway process that accepted this pull stopped before finishing it, and "
        "registry credentials are never stored; pull the image again")
