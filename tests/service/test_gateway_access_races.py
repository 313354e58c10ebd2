"""Changes of an image's file access when pulls and expiries of its tags overlap, on both
store backends, with real files in an image directory and the workers' own `Lifecycle`.

- Two pulls of one image with different ACLs that publish in one order and complete in
  the other leave the files readable by both ACLs, each tag keeping its own.
- Two gateways completing pulls of one image at once change its files one after the other
  (the image's lock), never interleaved, and end with the union.
- A pull converted to another format takes over the record and names the stale file.
- Expiring one of two tags narrows the files to the other tag's access, after the tag is
  gone; the image stays.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.access import ImageAccess
from shifter.gateway.image_files import ImageFiles
from shifter.gateway.lifecycle import Lifecycle, Outcome
from shifter.gateway.records import Requester, Status
from shifter.gateway.store import MetadataStore
from shifter.gateway.transfer_local import LocalTransfer
from shifter.image.meta import format_meta, read_meta
from tests.service.test_gateway_manager import (  # noqa: F401 - the gateway fixture
    ADMIN,
    ALICE,
    BOB,
    IMAGE,
    SYSTEM,
    Gateway,
    gateway,
    pull,
)

ACL_USER = 0x02


class RecordingTransfer(LocalTransfer):
    """A real LocalTransfer that logs each access change and takes a moment over it, so
    two gateways changing one image would interleave if nothing serialised them."""

    def __init__(self, image_dir: Path, log: list[str], pause_s: float = 0.0) -> None:
        super().__init__(image_dir, label="test imageDir")
        self.log = log
        self.pause_s = pause_s

    def set_access(self, names: Sequence[str], *, access: ImageAccess) -> None:
        self.log.append(f"start {access.user_ids}")
        time.sleep(self.pause_s)
        super().set_access(names, access=access)
        self.log.append(f"end {access.user_ids}")


def _image_users(path: Path) -> set[int]:
    import os

    raw = os.getxattr(path, "system.posix_acl_access")
    entries = [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]
    return {ident for tag, _, ident in entries if tag == ACL_USER}


def _work_files(work: Path, access: ImageAccess) -> tuple[Path, str]:
    """An image file and its `.meta` text as a worker produced them."""
    work.mkdir(parents=True, exist_ok=True)
    image = work / f"{IMAGE}.squashfs"
    image.write_bytes(b"hsqs" + bytes(4092))
    text, _ = format_meta("squashfs", env=("A=1",), user_acl=access.user_ids)
    return image, text


def _complete(lifecycle: Lifecycle, job: jobs.Job, who: Requester, access: ImageAccess,
              transfer: LocalTransfer, meta: str, scratch: Path) -> None:
    files = ImageFiles(transfer, IMAGE, "squashfs", scratch=scratch, meta_text=meta)
    done = lifecycle.complete(job, Outcome(
        image_id=IMAGE, private=True, user_acl=access.user_ids, group_acl=(), requester=who,
        published=access), files)
    for image_id in done.to_settle:
        lifecycle.settle(SYSTEM, image_id, lambda record: ImageFiles(
            transfer, IMAGE, "squashfs", scratch=scratch))


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "images"
    directory.mkdir()
    return directory


def test_pulls_with_other_acls_completing_in_the_other_order_admit_both(
    gateway: Gateway, image_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    alice, bob = ImageAccess(True, (ALICE.uid,)), ImageAccess(True, (BOB.uid,))
    first, _ = pull(gateway, "p:1", ALICE, user_acl=(ALICE.uid,))
    second, _ = pull(gateway, "p:2", BOB, user_acl=(BOB.uid,))
    first_job, second_job = gateway.claim(first.pk), gateway.claim(second.pk)
    transfer = LocalTransfer(image_dir, label="test imageDir")
    # Both converted the image; the first publishes, then the second replaces its file...
    image, meta = _work_files(tmp_path / "work", alice)
    transfer.publish([image], access=alice)
    transfer.publish([image], access=bob)
    # ...and they complete in the other order.
    _complete(gateway.lifecycle, second_job, BOB, bob, transfer, meta, tmp_path / "scratch")
    _complete(gateway.lifecycle, first_job, ALICE, alice, transfer, meta, tmp_path / "scratch")

    published = image_dir / f"{IMAGE}.squashfs"
    assert _image_users(published) == {ALICE.uid, BOB.uid}
    assert read_meta(str(image_dir / f"{IMAGE}.meta")).user_acl == (ALICE.uid, BOB.uid)
    assert gateway.manager.lookup(SYSTEM, "docker", "p:1", ALICE).user_acl == (ALICE.uid,)
    assert gateway.manager.lookup(SYSTEM, "docker", "p:2", BOB).user_acl == (BOB.uid,)
    with pytest.raises(Exception, match="image not found"):
        gateway.manager.lookup(SYSTEM, "docker", "p:1", BOB)


def test_two_gateways_change_one_image_one_after_the_other(
    gateway: Gateway, image_dir: Path, tmp_path: Path, store_url: str  # noqa: F811
) -> None:
    alice, bob = ImageAccess(True, (ALICE.uid,)), ImageAccess(True, (BOB.uid,))
    first, _ = pull(gateway, "p:1", ALICE, user_acl=(ALICE.uid,))
    second, _ = pull(gateway, "p:2", BOB, user_acl=(BOB.uid,))
    first_job, second_job = gateway.claim(first.pk), gateway.claim(second.pk)
    image, meta = _work_files(tmp_path / "work", alice)
    LocalTransfer(image_dir, label="test imageDir").publish([image], access=alice)
    log: list[str] = []
    other_store = MetadataStore.open(store_url)  # the second gateway's own connections
    try:
        other = Lifecycle(gateway.lifecycle.config, other_store, instance_id="gw2",
                          clock=gateway.clock)
        errors: list[BaseException] = []

        def run(lifecycle: Lifecycle, job: jobs.Job, who: Requester,
                access: ImageAccess) -> None:
            try:
                _complete(lifecycle, job, who, access,
                          RecordingTransfer(image_dir, log, pause_s=0.3), meta,
                          tmp_path / f"scratch-{who.uid}")
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=run, args=(gateway.lifecycle, first_job, ALICE,
                                                      alice)),
                   threading.Thread(target=run, args=(other, second_job, BOB, bob))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other_store.close()
    assert errors == []
    assert [entry.split()[0] for entry in log] == ["start", "end"] * (len(log) // 2)
    assert _image_users(image_dir / f"{IMAGE}.squashfs") == {ALICE.uid, BOB.uid}
    assert read_meta(str(image_dir / f"{IMAGE}.meta")).user_acl == (ALICE.uid, BOB.uid)


def test_a_pull_in_another_format_takes_over_the_record(gateway: Gateway) -> None:  # noqa: F811
    record, _ = pull(gateway, "ubuntu:22.04")
    gateway.finish(record.pk)
    gateway.clock.advance(10_000)
    again, _ = pull(gateway, "ubuntu:jammy")
    gateway.store.write(lambda conn: images.update_record(conn, again.pk, format="ext4"))
    done = gateway.lifecycle.complete(gateway.claim(again.pk), Outcome(
        image_id=IMAGE, private=False, user_acl=(), group_acl=(), requester=ALICE))
    assert (done.record.format, done.stale_file) == ("ext4", f"{IMAGE}.squashfs")
    assert done.record.tags == ("ubuntu:22.04", "ubuntu:jammy")
    assert gateway.manager.lookup(SYSTEM, "docker", "ubuntu:22.04", ALICE).format == "ext4"


def test_expiring_one_of_two_tags_narrows_the_files_after_the_tag_is_gone(
    gateway: Gateway, image_dir: Path, tmp_path: Path  # noqa: F811
) -> None:
    alice = ImageAccess(True, (ALICE.uid,))
    transfer = LocalTransfer(image_dir, label="test imageDir")
    image, meta = _work_files(tmp_path / "work", alice)
    transfer.publish([image], access=alice)
    private, _ = pull(gateway, "p:1", ALICE, user_acl=(ALICE.uid,))
    _complete(gateway.lifecycle, gateway.claim(private.pk), ALICE, alice, transfer, meta,
              tmp_path / "scratch")
    public, _ = pull(gateway, "p:public")
    files = ImageFiles(transfer, IMAGE, "squashfs", scratch=tmp_path / "scratch",
                       meta_text=meta)
    gateway.lifecycle.complete(gateway.claim(public.pk), dataclasses.replace(Outcome(
        image_id=IMAGE, private=False, user_acl=(), group_acl=(), requester=BOB),
        reused=True), files)
    published = image_dir / f"{IMAGE}.squashfs"
    assert published.stat().st_mode & 0o004  # public: a public tag points at it

    assert gateway.manager.expire(SYSTEM, "docker", "p:public", ADMIN) is True
    with pytest.raises(Exception, match="image not found"):
        gateway.manager.lookup(SYSTEM, "docker", "p:public", BOB)
    assert published.stat().st_mode & 0o004  # narrowed after, by the access job
    with gateway.store.reading() as conn:
        (ready,) = images.with_status(conn, SYSTEM, [Status.READY])
    job = gateway.claim(ready.pk)
    assert (job.kind, job.params["image_id"]) == ("access", IMAGE)
    assert gateway.lifecycle.settle(SYSTEM, IMAGE, lambda record: ImageFiles(
        transfer, IMAGE, "squashfs", scratch=tmp_path / "scratch"))
    assert gateway.lifecycle.finish(job, "settled")
    assert published.stat().st_mode & 0o007 == 0
    assert _image_users(published) == {ALICE.uid}
    assert read_meta(str(image_dir / f"{IMAGE}.meta")).user_acl == (ALICE.uid,)
    assert gateway.manager.lookup(SYSTEM, "docker", "p:1", ALICE).image_id == IMAGE


def test_a_failed_access_job_is_tried_again_later_then_given_up(gateway: Gateway) -> None:  # noqa: F811
    for tag, requester in (("p:1", ALICE), ("p:public", BOB)):
        record, _ = pull(gateway, tag, requester)
        gateway.lifecycle.complete(gateway.claim(record.pk), Outcome(
            image_id=IMAGE, private=False, user_acl=(), group_acl=(), requester=requester))
    assert gateway.manager.expire(SYSTEM, "docker", "p:public", ADMIN) is True
    with gateway.store.reading() as conn:
        (ready,) = images.with_status(conn, SYSTEM, [Status.READY])
    ready_pk = ready.pk
    retries = []
    for attempt in range(4):
        job = gateway.claim(ready_pk)
        assert (job.kind, job.params.get("retry", 0)) == ("access", attempt)
        assert gateway.lifecycle.fail(job, "ssh: connect to host: Connection refused")
        retries.append(job.params.get("retry", 0))
        # The retry waits: 30 s, then 60 and 120.
        nothing = gateway.store.write(lambda conn: jobs.claim_next(
            conn, "worker", lease_s=60, now=gateway.clock()))
        assert nothing is None
        gateway.clock.advance(30 * 2**attempt)
    assert retries == [0, 1, 2, 3]
    gateway.clock.advance(10_000)
    given_up = gateway.store.write(lambda conn: jobs.claim_next(
        conn, "worker", lease_s=60, now=gateway.clock()))
    assert given_up is None
    assert gateway.manager.lookup(SYSTEM, "docker", "p:1", ALICE).image_id == IMAGE
