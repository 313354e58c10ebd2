"""The metadata store on both backends (SQLite file, real PostgreSQL): schema, records,
tags, and the job claims and leases that let several gateways share the work."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.records import PUBLIC_TAG, Status
from shifter.gateway.store import MetadataStore, StoreError
from shifter.gateway.store_schema import SCHEMA_VERSION, SchemaError, schema_version

LEASE = 10.0


def new_job(store: MetadataStore, *, accepted_by: str = "gw-a", needs_credentials: bool = False,
            now: float = 100.0) -> int:
    return store.write(lambda conn: jobs.add_job(
        conn, kind="pull", system="sys", image_pk=None, params={"tag": "x:1"},
        accepted_by=accepted_by, now=now, needs_credentials=needs_credentials))


def claim(store: MetadataStore, instance: str, now: float = 100.0) -> jobs.Job | None:
    return store.write(lambda conn: jobs.claim_next(conn, instance, lease_s=LEASE, now=now))


def alive(store: MetadataStore, instance: str, now: float) -> None:
    store.write(lambda conn: jobs.heartbeat(conn, instance, host="h", pid=1, now=now))


def test_schema_is_created_once_and_versioned(store_url: str, store: MetadataStore) -> None:
    again = MetadataStore.open(store_url)  # a second gateway starting on the same database
    again.close()
    with store.reading() as conn:
        assert conn.execute(select(schema_version.c.version)).scalars().all() == [SCHEMA_VERSION]


def test_a_newer_schema_is_refused(store_url: str, store: MetadataStore) -> None:
    store.write(lambda conn: conn.execute(schema_version.update().values(version=99)))
    with pytest.raises(SchemaError) as caught:
        MetadataStore.open(store_url)
    assert str(caught.value) == (
        f"the metadata store is at schema version 99, newer than this gateway's {SCHEMA_VERSION}"
    )


def test_one_active_record_per_tag(store: MetadataStore) -> None:
    """Two gateways accepting the same pull at once: the second insert loses."""

    def insert(conn: object) -> int:
        return images.insert_record(
            conn, system="sys", itype="docker", pulltag="a:1",  # type: ignore[arg-type]
            active_key=images.active_key("sys", "docker", "a:1"), status=Status.PENDING,
            created=1.0)

    store.write(insert)
    with pytest.raises(StoreError):
        store.write(insert, attempts=1)
    with store.reading() as conn:
        assert images.active(conn, "sys", "docker", "a:1") is not None


def test_a_tag_points_at_one_image(store: MetadataStore) -> None:
    def ready(conn: object, tag: str) -> int:
        return images.insert_record(conn, system="sys", itype="docker",  # type: ignore[arg-type]
                                    pulltag=tag, status=Status.READY, image_id=tag[0] * 64,
                                    created=1.0)

    first = store.write(lambda conn: ready(conn, "a:1"))
    second = store.write(lambda conn: ready(conn, "b:1"))
    store.write(lambda conn: images.point_tag(conn, "sys", "docker", "t:1", first, PUBLIC_TAG))
    store.write(lambda conn: images.point_tag(conn, "sys", "docker", "t:1", second, PUBLIC_TAG))
    with store.reading() as conn:
        found = images.ready_by_tag(conn, "sys", "docker", "t:1")
        assert found is not None and found.pk == second
        assert images.record(conn, first).tags == ()  # type: ignore[union-attr]
        assert images.ready_by_tag(conn, "sys", "custom", "t:1") is None


def test_record_round_trip(store: MetadataStore) -> None:
    pk = store.write(lambda conn: images.insert_record(
        conn, system="sys", itype="docker", pulltag="a:1", status=Status.READY,
        image_id="f" * 64, user_acl=(3, 1), group_acl=(7,), private=True,
        env=["A=1", "B=x:y"], entry=["/bin/sh", "-c"], workdir="/w",
        labels={"k": "v"}, last_pull=12.5, created=1.0))
    with store.reading() as conn:
        record = images.record(conn, pk)
    assert record is not None
    assert (record.user_acl, record.group_acl, record.private) == ((3, 1), (7,), True)
    assert (record.env, record.entry, record.workdir) == (("A=1", "B=x:y"), ["/bin/sh", "-c"],
                                                          "/w")
    assert (record.labels, record.last_pull, record.status) == ({"k": "v"}, 12.5, Status.READY)


def test_a_job_is_claimed_by_one_worker(store: MetadataStore) -> None:
    pk = new_job(store)
    first = claim(store, "gw-a")
    assert first is not None and first.pk == pk and first.attempts == 1
    assert claim(store, "gw-b") is None


def test_racing_workers_claim_each_job_once(store: MetadataStore) -> None:
    """Eight threads (think eight gateways) drain twenty jobs: every job once."""
    created = {new_job(store) for _ in range(20)}
    claimed: list[int] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        while (job := claim(store, name)) is not None:
            with lock:
                claimed.append(job.pk)

    threads = [threading.Thread(target=drain, args=(f"gw-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(created)


def test_an_expired_lease_is_taken_over_and_the_old_claim_is_void(store: MetadataStore) -> None:
    pk = new_job(store)
    old = claim(store, "gw-a", now=100.0)
    assert old is not None and old.claim is not None
    assert claim(store, "gw-b", now=100.0 + LEASE - 1) is None  # still leased
    new = claim(store, "gw-b", now=100.0 + LEASE + 1)
    assert new is not None and new.pk == pk and new.attempts == 2
    assert new.claim != old.claim
    # The first worker wakes up: it can neither renew nor finish.
    assert not store.write(lambda conn: jobs.renew(conn, pk, old.claim, lease_s=LEASE, now=120))
    assert not store.write(lambda conn: jobs.finish(conn, pk, old.claim, instance="gw-a",
                                                    outcome="ready", now=120))
    assert store.write(lambda conn: jobs.finish(conn, pk, new.claim, instance="gw-b",
                                                outcome="ready", now=121))
    assert not store.write(lambda conn: jobs.finish(conn, pk, new.claim, instance="gw-b",
                                                    outcome="ready", now=122))
    with store.reading() as conn:
        (row,) = jobs.job_rows(conn)
    assert (row["state"], row["finished_by"], row["attempts"]) == ("done", "gw-b", 2)


def test_renewal_keeps_the_lease(store: MetadataStore) -> None:
    new_job(store)
    held = claim(store, "gw-a", now=100.0)
    assert held is not None and held.claim is not None
    assert store.write(lambda conn: jobs.renew(conn, held.pk, held.claim, lease_s=LEASE,
                                               now=100.0 + LEASE - 1))
    assert claim(store, "gw-b", now=100.0 + LEASE + 1) is None


def test_released_jobs_wait_for_their_time(store: MetadataStore) -> None:
    new_job(store)
    held = claim(store, "gw-a")
    assert held is not None and held.claim is not None
    assert store.write(lambda conn: jobs.release(conn, held.pk, held.claim, not_before=150.0))
    assert claim(store, "gw-b", now=149.0) is None
    again = claim(store, "gw-b", now=151.0)
    assert again is not None and again.pk == held.pk


def test_a_released_job_keeps_its_attempts(store: MetadataStore) -> None:
    """Deferring a job (its image is being expired) or returning it at a clean shutdown is
    not an interruption: however often it happens, the job never reaches max_attempts."""
    new_job(store)
    for _ in range(5):
        held = claim(store, "gw-a")
        assert held is not None and held.claim is not None and held.attempts == 1
        assert store.write(lambda conn, held=held: jobs.release(
            conn, held.pk, held.claim, not_before=0.0))
    # A claim whose gateway died (its lease ran out) still counts.
    first = claim(store, "gw-a")
    taken = claim(store, "gw-b", now=100.0 + LEASE + 1)
    assert first is not None and taken is not None and taken.attempts == 2


def test_credential_jobs_stay_with_the_live_process_that_accepted_them(
    store: MetadataStore,
) -> None:
    alive(store, "gw-a", now=100.0)
    alive(store, "gw-b", now=100.0)
    new_job(store, accepted_by="gw-a", needs_credentials=True)
    assert claim(store, "gw-b", now=101.0) is None
    # gw-a stops renewing its instance row. For a lease more, a client re-POSTing may hand
    # the credentials to another process (adopt); after that anyone may run (and fail) it.
    assert claim(store, "gw-b", now=100.0 + LEASE + 1) is None
    taken = claim(store, "gw-b", now=100.0 + 2 * LEASE + 1)
    assert taken is not None and taken.accepted_by == "gw-a"


def test_a_stale_acceptor_lets_another_process_adopt_the_job(store: MetadataStore) -> None:
    alive(store, "gw-a", now=100.0)
    alive(store, "gw-b", now=100.0)
    pk = new_job(store, accepted_by="gw-a", needs_credentials=True)
    assert not store.write(lambda conn: jobs.adopt(conn, pk, "gw-b", lease_s=LEASE, now=101.0))
    alive(store, "gw-b", now=100.0 + LEASE + 1)
    assert store.write(lambda conn: jobs.adopt(conn, pk, "gw-b", lease_s=LEASE,
                                               now=100.0 + LEASE + 1))
    taken = claim(store, "gw-b", now=100.0 + LEASE + 2)
    assert taken is not None and taken.accepted_by == "gw-b"


def test_requeue_of_expired_leases(store: MetadataStore) -> None:
    new_job(store)
    held = claim(store, "gw-a", now=100.0)
    assert held is not None
    assert store.write(lambda conn: jobs.requeue_expired(conn, now=100.0 + LEASE + 1)) == 1
    with store.reading() as conn:
        (row,) = jobs.job_rows(conn)
    assert (row["state"], row["claim"]) == ("queued", None)


def test_metrics_rows_come_back_newest_last(store: MetadataStore) -> None:
    for n in range(30):
        store.write(lambda conn, n=n: images.add_metric(
            conn, user="u", uid=1, system="sys", type="docker", tag="a:1", image_id="i",
            time=float(n)))
    with store.reading() as conn:
        rows = images.recent_metrics(conn, "sys", 20)
    assert len(rows) == 20
    assert [row["time"] for row in rows] == [float(n) for n in range(10, 30)]


def test_a_version_1_store_gives_each_tag_its_images_access_and_custom_owners(
    store_url: str,
) -> None:
    """Version 1 kept access on the image: after the upgrade every tag has what its image
    had, a custom tag's owner is its first importer in the job history, and a custom tag
    with no import left in the history has no owner (only admins may change it)."""
    import json

    from sqlalchemy import create_engine, text

    url = store_url
    MetadataStore.open(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        for table, column in (("tags", "private"), ("tags", "user_acl"), ("tags", "group_acl"),
                              ("tags", "owner"), ("images", "owner")):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_version SET version = 1"))
        for pk, itype, acl in ((1, "docker", "[1001]"), (2, "custom", "[]"),
                               (3, "custom", "[]")):
            conn.execute(text(
                "INSERT INTO images (pk, system, itype, pulltag, status, image_id, user_acl, "
                "group_acl, private, created) VALUES (:pk, 'sys', :itype, :tag, 'READY', :id, "
                ":acl, '[7]', :private, 1.0)"),
                {"pk": pk, "itype": itype, "tag": f"t{pk}:1", "id": str(pk) * 64, "acl": acl,
                 "private": itype == "docker"})
            conn.execute(text("INSERT INTO tags (system, itype, tag, image_pk) "
                              "VALUES ('sys', :itype, :tag, :pk)"),
                         {"pk": pk, "itype": itype, "tag": f"t{pk}:1"})
        for uid in (1002, 1003):  # two imports of t2:1: the first importer owns it
            conn.execute(text(
                "INSERT INTO jobs (kind, system, params, state, needs_credentials, "
                "accepted_by, not_before, attempts, created, outcome) VALUES ('import', 'sys', "
                ":params, 'done', :no, 'gw', 0, 1, 1.0, :outcome)"),
                {"params": json.dumps({"tag": "t2:1", "requester": {"uid": uid, "gid": uid}}),
                 "outcome": f"ready: {'2' * 64}", "no": False})
    engine.dispose()

    store = MetadataStore.open(url)
    try:
        with store.reading() as conn:
            docker = images.ready_by_tag(conn, "sys", "docker", "t1:1")
            owned = images.tag_target(conn, "sys", "custom", "t2:1")
            unowned = images.tag_target(conn, "sys", "custom", "t3:1")
            version = conn.execute(text("SELECT version FROM schema_version")).scalar()
    finally:
        store.close()
    assert docker is not None
    assert (docker.private, docker.user_acl, docker.group_acl) == (True, (1001,), (7,))
    assert owned is not None and owned[1].owner == 1002
    assert unowned is not None and unowned[1].owner is None
    assert version == 2
