"""The image manager's record lifecycle on both store backends, with a controlled clock.

No HTTP and no registry: jobs are claimed and completed through the same store functions
and `Lifecycle` the workers use, so each transition of the original's state machine
(gateway contract §2.2) is checked at the exact moment it should happen.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.config import gateway_config_from_data
from shifter.gateway.credentials import CredentialVault
from shifter.gateway.failures import BadRequest, Forbidden, NotFound
from shifter.gateway.lifecycle import Deferred, Lifecycle, Outcome
from shifter.gateway.manager import ImageManager
from shifter.gateway.readycache import ReadyCache
from shifter.gateway.records import Requester, Status
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store import MetadataStore
from shifter.gateway.worker_jobs import JobRunner

SYSTEM = "sys"
ALICE = Requester(uid=1001, gid=1001, user="alice", groups=frozenset({1001, 500}))
BOB = Requester(uid=1002, gid=1002, user="bob", groups=frozenset({1002}))
CAROL = Requester(uid=1003, gid=1003, user="carol", groups=frozenset({1003, 500}))
ADMIN = Requester(uid=0, gid=0, user="root", groups=frozenset({0}))
IMAGE = "a" * 64
OTHER_IMAGE = "b" * 64
TIMEOUT = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Gateway:
    manager: ImageManager
    lifecycle: Lifecycle
    store: MetadataStore
    clock: Clock

    def finish(self, record_pk: int, image_id: str = IMAGE, *, private: bool = False,
               users: tuple[int, ...] = (), groups: tuple[int, ...] = (),
               who: Requester = ALICE) -> None:
        """Claim the record's job as a worker would and complete it."""
        job = self.claim(record_pk)
        self.lifecycle.complete(job, Outcome(image_id=image_id, private=private,
                                             user_acl=users, group_acl=groups, requester=who,
                                             env=("A=1",)))

    def claim(self, record_pk: int) -> jobs.Job:
        job = self.store.write(lambda conn: jobs.claim_next(conn, "worker", lease_s=60,
                                                             now=self.clock()))
        assert job is not None and job.image_pk == record_pk
        return job


@pytest.fixture
def gateway(store_url: str, tmp_path: Path) -> Iterator[Gateway]:
    config = gateway_config_from_data({
        "MetadataStore": store_url,
        "ImageExpirationTimeout": "0:01:00:00",
        "PullUpdateTimeout": int(TIMEOUT),
        "Metrics": True,
        "ImportUsers": ["alice"],
        "Platforms": {SYSTEM: {"accesstype": "local", "admins": ["root"],
                               "local": {"imageDir": str(tmp_path)}}},
    })
    store = MetadataStore.open(store_url)
    clock = Clock()
    settings = ServiceSettings(failure_hold_s=5.0)
    manager = ImageManager(config, store, instance_id="gw", settings=settings,
                           vault=CredentialVault(), clock=clock)
    try:
        yield Gateway(manager, Lifecycle(config, store, instance_id="gw", clock=clock), store,
                      clock)
    finally:
        store.close()


def pull(gateway: Gateway, tag: str = "ubuntu:22.04", who: Requester = ALICE,
         **options: Any) -> tuple[Any, Status | None]:
    return gateway.manager.pull(SYSTEM, "docker", tag, who, **options)


def job_count(gateway: Gateway) -> int:
    with gateway.store.reading() as conn:
        return len(jobs.job_rows(conn))


def test_a_new_pull_answers_init_and_queues_one_job(gateway: Gateway) -> None:
    record, shown = pull(gateway)
    assert (shown, record.status, record.tags, record.image_id) == (
        Status.INIT, Status.PENDING, (), None)
    again, shown_again = pull(gateway, who=BOB, user_acl=(5,))
    assert (again.pk, shown_again, again.status) == (record.pk, None, Status.PENDING)
    assert job_count(gateway) == 1


def test_tags_are_normalised(gateway: Gateway) -> None:
    record, _ = pull(gateway, "ubuntu")
    assert record.pulltag == "ubuntu:latest"
    same, shown = pull(gateway, "ubuntu:latest")
    assert (same.pk, shown) == (record.pk, None)


@pytest.mark.parametrize(
    ("system", "itype", "tag", "message"),
    [
        ("nope", "docker", "a:1", "system 'nope' is not one of the configured Platforms"),
        (SYSTEM, "custom", "a:1", "image type 'custom' cannot be used here"),
        (SYSTEM, "docker", "UPPER/case:1", "invalid image reference 'UPPER/case:1'"),
    ],
)
def test_bad_names_are_bad_requests(gateway: Gateway, system: str, itype: str, tag: str,
                                    message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        gateway.manager.pull(system, itype, tag, ALICE)
    assert str(caught.value).startswith(message)


def test_completion_makes_the_record_ready_and_tagged(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    found = gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", BOB)
    assert (found.status, found.image_id, found.tags, found.env) == (
        Status.READY, IMAGE, ("ubuntu:22.04",), ("A=1",))
    assert found.last_pull == gateway.clock.now


def test_a_ready_image_is_answered_at_once_until_the_pull_update_timeout(
    gateway: Gateway,
) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    gateway.clock.advance(TIMEOUT - 1)
    ready, shown = pull(gateway)
    assert (ready.status, shown, job_count(gateway)) == (Status.READY, None, 1)
    gateway.clock.advance(2)
    fresh, shown = pull(gateway)
    assert (shown, fresh.status, job_count(gateway)) == (Status.INIT, Status.PENDING, 2)
    # The READY image stays usable while it is pulled again.
    assert gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE).image_id == IMAGE


def test_new_acls_start_a_pull_only_after_the_recent_window(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    within, shown = pull(gateway, user_acl=(7,))
    assert (within.status, shown) == (Status.READY, None)
    gateway.clock.advance(11)
    changed, shown = pull(gateway, user_acl=(7,))
    assert (shown, changed.user_acl) == (Status.INIT, (7, ALICE.uid))
    gateway.finish(changed.pk)
    gateway.clock.advance(11)
    same_set, shown = pull(gateway, user_acl=(ALICE.uid, 7))
    # A public pull dropped the ACLs, so the request differs again and re-pulls.
    assert shown is Status.INIT and same_set.status is Status.PENDING


def test_a_failure_is_held_then_retried(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    job = gateway.claim(record.pk)
    assert gateway.lifecycle.fail(job, "image not found: registry/x:1")
    failed, shown = pull(gateway)
    assert (failed.status, failed.status_message, shown) == (
        Status.FAILURE, "image not found: registry/x:1", None)
    assert gateway.manager.queue(SYSTEM) == [{"status": "FAILURE", "image": "ubuntu:22.04"}]
    gateway.clock.advance(6)
    retried, shown = pull(gateway)
    assert (shown, retried.status, job_count(gateway)) == (Status.INIT, Status.PENDING, 2)
    assert retried.pk != record.pk


def test_a_lost_claim_cannot_fail_or_complete(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    job = gateway.claim(record.pk)
    gateway.clock.advance(61)
    taken = gateway.store.write(lambda conn: jobs.claim_next(conn, "other", lease_s=60,
                                                              now=gateway.clock()))
    assert taken is not None
    assert not gateway.lifecycle.fail(job, "late")
    with gateway.store.reading() as conn:
        (row,) = jobs.job_rows(conn)
    assert (row["state"], row["attempts"]) == ("running", 2)


def test_two_tags_of_one_image_share_its_record(gateway: Gateway) -> None:
    first, _ = pull(gateway, "ubuntu:22.04")
    gateway.finish(first.pk)
    second, _ = pull(gateway, "ubuntu:jammy")
    gateway.finish(second.pk)
    (only,) = gateway.manager.list(SYSTEM, ALICE)
    assert (only.pk, only.tags) == (first.pk, ("ubuntu:22.04", "ubuntu:jammy"))


def test_a_moved_tag_leaves_the_old_image_untagged(gateway: Gateway) -> None:
    first, _ = pull(gateway)
    gateway.finish(first.pk)
    gateway.clock.advance(TIMEOUT + 1)
    again, _ = pull(gateway)
    gateway.finish(again.pk, OTHER_IMAGE)
    by_id = {record.image_id: record.tags for record in gateway.manager.list(SYSTEM, ALICE)}
    assert by_id == {IMAGE: (), OTHER_IMAGE: ("ubuntu:22.04",)}


def test_a_private_image_does_not_exist_for_others(gateway: Gateway) -> None:
    record, _ = pull(gateway, "private/app:1", user_acl=(ALICE.uid,), group_acl=(500,))
    gateway.finish(record.pk, private=True, users=record.user_acl, groups=record.group_acl)
    assert gateway.manager.lookup(SYSTEM, "docker", "private/app:1", ALICE).image_id == IMAGE
    assert gateway.manager.lookup(SYSTEM, "docker", "private/app:1", CAROL).image_id == IMAGE
    with pytest.raises(NotFound) as missing_private:
        gateway.manager.lookup(SYSTEM, "docker", "private/app:1", BOB)
    with pytest.raises(NotFound) as missing_tag:
        gateway.manager.lookup(SYSTEM, "docker", "never/pulled:1", BOB)
    assert str(missing_private.value) == str(missing_tag.value) == "image not found"
    assert gateway.manager.list(SYSTEM, BOB) == []
    # Bob's pull is his own: it neither shows nor reuses Alice's record.
    bobs, shown = pull(gateway, "private/app:1", who=BOB)
    assert (shown, bobs.status) == (Status.INIT, Status.PENDING)
    assert bobs.pk != record.pk


def test_a_stranger_pulling_a_private_image_is_added_not_substituted(gateway: Gateway) -> None:
    record, _ = pull(gateway, "private/app:1", user_acl=(ALICE.uid,))
    gateway.finish(record.pk, private=True, users=(ALICE.uid,))
    gateway.clock.advance(TIMEOUT + 1)
    again, _ = pull(gateway, "private/app:1", who=BOB, user_acl=(BOB.uid,))
    gateway.finish(again.pk, private=True, users=(BOB.uid,), who=BOB)
    for who in (ALICE, BOB):
        found = gateway.manager.lookup(SYSTEM, "docker", "private/app:1", who)
        assert found.user_acl == (ALICE.uid, BOB.uid)
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "private/app:1", CAROL)


def test_concurrent_pulls_of_one_tag_share_one_job(gateway: Gateway) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def one(who: Requester) -> None:
        try:
            results.append(pull(gateway, "racy/app:1", who=who)[0].pk)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(who,)) for who in (ALICE, BOB, CAROL) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert job_count(gateway) == 1


def test_expire_is_for_admins_and_removes_the_image(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    with pytest.raises(Forbidden) as refused:
        gateway.manager.expire(SYSTEM, "docker", "ubuntu:22.04", ALICE)
    assert str(refused.value) == "alice(1001) may not expire images on sys"
    assert gateway.manager.expire(SYSTEM, "docker", "ubuntu:22.04", ADMIN) is True
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE)
    assert gateway.manager.queue(SYSTEM) == [{"status": "EXPIRING", "image": "ubuntu:22.04"}]
    job = gateway.claim(record.pk)
    assert job.kind == "expire" and job.params["image_id"] == IMAGE
    assert gateway.lifecycle.expired(job)
    assert gateway.manager.queue(SYSTEM) == []
    assert gateway.manager.expire(SYSTEM, "docker", "ubuntu:22.04", ADMIN) is None


def test_autoexpire_removes_images_unused_for_the_expiration_timeout(gateway: Gateway) -> None:
    used, _ = pull(gateway, "used:1")
    gateway.finish(used.pk)
    idle, _ = pull(gateway, "idle:1")
    gateway.finish(idle.pk, OTHER_IMAGE)
    failed, _ = pull(gateway, "broken:1")
    assert gateway.lifecycle.fail(gateway.claim(failed.pk), "no such image")
    gateway.clock.advance(3000)
    gateway.manager.lookup(SYSTEM, "docker", "used:1", ALICE)  # a use resets its expiration
    gateway.clock.advance(1000)
    with pytest.raises(Forbidden):
        gateway.manager.autoexpire(SYSTEM, BOB)
    assert gateway.manager.autoexpire(SYSTEM, ADMIN) == [OTHER_IMAGE]
    assert gateway.manager.lookup(SYSTEM, "docker", "used:1", ALICE).image_id == IMAGE
    assert gateway.manager.queue(SYSTEM) == [{"status": "EXPIRING", "image": "idle:1"}]


def test_lookups_are_counted_in_the_metrics(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    for _ in range(3):
        gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", BOB)
    rows = gateway.manager.metrics(SYSTEM, ADMIN, 2)
    assert [(row["user"], row["uid"], row["tag"], row["id"]) for row in rows] == [
        ("bob", BOB.uid, "ubuntu:22.04", IMAGE)] * 2
    with pytest.raises(Forbidden):
        gateway.manager.metrics(SYSTEM, BOB, 2)
    with pytest.raises(BadRequest):
        gateway.manager.metrics(SYSTEM, ADMIN, 0)


def stored_expiration(gateway: Gateway, record_pk: int) -> float | None:
    with gateway.store.reading() as conn:
        found = images.record(conn, record_pk)
    assert found is not None
    return found.expiration


def test_a_lookup_pushes_the_expiration_back_to_the_minute(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    timeout = 3600.0  # ImageExpirationTimeout
    gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE)
    assert stored_expiration(gateway, record.pk) == gateway.clock() + timeout
    written = gateway.clock() + timeout
    gateway.clock.advance(59)  # less than a minute behind: a read, nothing written
    gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE)
    assert stored_expiration(gateway, record.pk) == written
    gateway.clock.advance(2)
    gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE)
    assert stored_expiration(gateway, record.pk) == gateway.clock() + timeout
    # A caller who may not read the image does not count as a use.
    private, _ = pull(gateway, "private:1", user_acl=(ALICE.uid,))
    gateway.finish(private.pk, OTHER_IMAGE, private=True, users=(ALICE.uid,))
    before = stored_expiration(gateway, private.pk)
    gateway.clock.advance(600)
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "private:1", BOB)
    assert stored_expiration(gateway, private.pk) == before


def test_usage_rows_are_written_in_batches_by_a_thread(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    usage = gateway.manager.usage
    usage.start()
    try:
        for _ in range(3):
            gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", BOB)
        deadline = time.monotonic() + 10
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(rows) < 3:
            time.sleep(0.1)
            with gateway.store.reading() as conn:  # not through metrics(), which flushes
                rows = images.recent_metrics(conn, SYSTEM, 10)
    finally:
        usage.stop()
    assert [(row["user"], row["tag"]) for row in rows] == [("bob", "ubuntu:22.04")] * 3


def test_a_job_interrupted_too_often_fails_for_good(gateway: Gateway) -> None:
    record, _ = pull(gateway)
    runner = JobRunner(gateway.manager.config, gateway.lifecycle, CredentialVault(),
                       settings=ServiceSettings(max_attempts=2))
    for _ in range(3):  # each claimer "dies": its lease runs out
        job = gateway.claim(record.pk)
        gateway.clock.advance(61)
    runner.run(job, threading.Event())
    failed, _ = pull(gateway)
    assert (failed.status, failed.status_message) == (
        Status.FAILURE,
        "the job was interrupted 2 times (its gateway stopped each time); pull it again")


def expire_from_another_process(gateway: Gateway, store_url: str, tag: str) -> bool | None:
    """An admin's expire of `tag` sent to another gateway process on the same store."""
    other_store = MetadataStore.open(store_url)
    try:
        other = ImageManager(gateway.manager.config, other_store, instance_id="gw2",
                             settings=ServiceSettings(), vault=CredentialVault(),
                             clock=gateway.clock)
        return other.expire(SYSTEM, "docker", tag, ADMIN)
    finally:
        other_store.close()


def test_lookups_answer_from_the_cache_and_see_this_process_s_changes_at_once(
    gateway: Gateway, store_url: str, tmp_path: Path
) -> None:
    """A lookup may answer from a READY record read within lookup_cache_s; a change this
    process writes is seen by the next lookup, one another process writes within the TTL."""
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    fresh, _ = pull(gateway, "alpine:3")
    gateway.finish(fresh.pk, OTHER_IMAGE)
    ticks = Clock()
    gateway.manager.ready_cache = ReadyCache(2.0, clock=ticks)
    assert gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE).image_id == IMAGE

    assert expire_from_another_process(gateway, store_url, "ubuntu:22.04") is True
    # Within the TTL this process still has the record it read...
    assert gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", BOB).image_id == IMAGE
    ticks.advance(2.0)
    # ...and after it, it reads the store again: the image is on its way out.
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE)

    # A change written by this process: seen at once, whatever the TTL.
    assert gateway.manager.lookup(SYSTEM, "docker", "alpine:3", ALICE).image_id == OTHER_IMAGE
    assert gateway.manager.expire(SYSTEM, "docker", "alpine:3", ADMIN) is True
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "alpine:3", ALICE)


def test_the_cache_still_checks_who_may_read(gateway: Gateway) -> None:
    record, _ = pull(gateway, "private:1", user_acl=(ALICE.uid,))
    gateway.finish(record.pk, private=True, users=(ALICE.uid,))
    assert gateway.manager.lookup(SYSTEM, "docker", "private:1", ALICE).image_id == IMAGE
    with pytest.raises(NotFound):
        gateway.manager.lookup(SYSTEM, "docker", "private:1", BOB)


def test_a_pull_whose_image_was_expired_while_it_was_published_is_published_again(
    gateway: Gateway,
) -> None:
    """An expiry queued after the pull's last check and finished before its completion may
    have removed the files the pull just published (they have the same names): the pull
    must not become READY on them, but retry (and publish again)."""
    first, _ = pull(gateway, "ubuntu:22.04")
    gateway.finish(first.pk)
    second, _ = pull(gateway, "ubuntu:jammy")  # the same image under another tag
    job = gateway.claim(second.pk)
    seen = gateway.lifecycle.check_not_expiring(job, SYSTEM, IMAGE)
    # ...the worker publishes; meanwhile the image is expired, and the expiry runs to its end
    assert gateway.manager.expire(SYSTEM, "docker", "ubuntu:22.04", ADMIN) is True
    assert gateway.lifecycle.expired(gateway.claim(first.pk))

    outcome = Outcome(image_id=IMAGE, private=False, user_acl=(), group_acl=())
    with pytest.raises(Deferred):
        gateway.lifecycle.complete(job, dataclasses.replace(outcome, expiries_seen=seen))
    assert gateway.lifecycle.release(job, 0.0)
    retry = gateway.claim(second.pk)
    seen_again = gateway.lifecycle.check_not_expiring(retry, SYSTEM, IMAGE)
    done = gateway.lifecycle.complete(retry, dataclasses.replace(outcome,
                                                                 expiries_seen=seen_again))
    assert (done.record.status, done.record.image_id, done.record.tags) == (
        Status.READY, IMAGE, ("ubuntu:jammy",))


def test_re_pulls_of_a_ready_image_answer_from_the_cache_like_lookups(
    gateway: Gateway, store_url: str
) -> None:
    record, _ = pull(gateway)
    gateway.finish(record.pk)
    ticks = Clock()
    gateway.manager.settled_cache = ReadyCache(2.0, clock=ticks)
    again, shown = pull(gateway, who=BOB)
    assert (again.status, again.image_id, shown) == (Status.READY, IMAGE, None)

    assert expire_from_another_process(gateway, store_url, "ubuntu:22.04") is True
    cached, shown = pull(gateway)
    assert (cached.status, shown) == (Status.READY, None)  # within the TTL
    ticks.advance(2.0)
    fresh, shown = pull(gateway)
    assert (fresh.status, shown) == (Status.PENDING, Status.INIT)
    # This process's own change (the new pull) is seen at once.
    polled, shown = pull(gateway)
    assert (polled.pk, polled.status, shown) == (fresh.pk, Status.PENDING, None)
