"""The worker's side of the record lifecycle: progress, READY, FAILURE, expiry.

Every change here happens only while the job's claim is still held (`store_jobs`), in the
same transaction as the check, so a worker that lost its lease changes nothing and a job
is completed once. Completing a pull follows the original (contract §2.2, "Completion"):
a pull of an image already READY on the system under another tag is folded into that
record (the pull record deleted); otherwise the pull record itself becomes READY. The tag
then points at that image only, with the access its own pull asked for.

Access belongs to tags (records.py); the files of an image have the union of its tags'
access. Every change of that union happens under the image's lock, in the transaction that
records it: `complete` widens the files before the tag is committed, `settle` narrows them
after (docs/gateway.md, "Who may use an image").

A pull whose image is already READY on the system in the same format is not converted
again (`keeps_files`): the worker publishes only its `.meta` and sidecar, and `complete`
checks in its transaction that the READY record still vouches for the files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.access import ImageAccess, union_access
from shifter.gateway.config import GatewayConfig
from shifter.gateway.image_files import ImageFiles
from shifter.gateway.records import ImageRecord, Requester, Status, TagAccess, tag_view
from shifter.gateway.store import MetadataStore
from shifter.gateway.store_jobs import Job

# A failed `access` job (an ssh hiccup to a remote platform) leaves the files wider than
# the tags need: it is queued again, ACCESS_RETRY_S, then twice and four times that later.
ACCESS_RETRIES = 3
ACCESS_RETRY_S = 30.0

log = logging.getLogger(__name__)

FilesFor = Callable[[ImageRecord], ImageFiles]


class ClaimLost(Exception):
    """This worker no longer holds the job: another gateway took it over."""


class Deferred(Exception):
    """The job must wait (an expiry of the same image is removing its files)."""


@dataclass(frozen=True)
class Outcome:
    """What a finished pull or import produced, for its READY record.

    `private`, `user_acl` and `group_acl` are what the pull asked for (private only when
    its registry needed credentials and it gave ACLs); the tag's access follows from them
    (`tag_access_after`)."""

    image_id: str
    private: bool
    user_acl: tuple[int, ...]
    group_acl: tuple[int, ...]
    requester: Requester | None = None
    env: tuple[str, ...] | None = None
    entry: Any = None
    workdir: str | None = None
    labels: Mapping[str, str] | None = field(default=None, hash=False)
    # No image file was published: the READY record of this image vouches for the one in
    # imageDir (`keeps_files`), which `complete` checks again.
    reused: bool = False
    # The access the worker gave the image file it published.
    published: ImageAccess | None = None
    # The image's finished expiries when publishing began (`check_not_expiring`); None:
    # not checked.
    expiries_seen: frozenset[int] | None = None


@dataclass(frozen=True)
class Completed:
    """A completed pull: the READY record as its tag shows it, the images whose access
    must be settled now that the tag points where it does (`Lifecycle.settle`), and an
    image file of another format the record no longer uses."""

    record: ImageRecord
    to_settle: tuple[str, ...]
    stale_file: str | None = None


class Lifecycle:
    """Record transitions for jobs claimed by this gateway process."""

    def __init__(
        self,
        config: GatewayConfig,
        store: MetadataStore,
        *,
        instance_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.instance_id = instance_id
        self.clock = clock

    def _held(self, conn: Connection, job: Job) -> None:
        assert job.claim is not None
        if not jobs.still_held(conn, job.pk, job.claim):
            raise ClaimLost(f"job {job.pk} was taken over")

    def progress(self, job: Job, status: Status, message: str) -> None:
        """Show what the job is doing; ClaimLost if it is no longer ours."""

        def change(conn: Connection) -> None:
            self._held(conn, job)
            if job.image_pk is not None:
                images.update_record(conn, job.image_pk, status=status, status_message=message,
                                     last_heartbeat=self.clock())

        self.store.write(change)

    def record(self, job: Job) -> ImageRecord | None:
        if job.image_pk is None:
            return None
        with self.store.reading() as conn:
            return images.record(conn, job.image_pk)

    def fail(self, job: Job, message: str) -> bool:
        """FAILURE with the reason as status_message; False if the claim was lost."""

        def change(conn: Connection) -> bool:
            assert job.claim is not None
            now = self.clock()
            if not jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome=f"failed: {message}", now=now):
                return False
            # An access job works on a READY image, which stays READY; its files keep the
            # wider access until a retry (or the image's next change) settles them.
            if job.kind == "access":
                self._retry_access(conn, job, now)
            elif job.image_pk is not None:
                images.update_record(conn, job.image_pk, status=Status.FAILURE,
                                     status_message=message, last_heartbeat=now)
            return True

        return self.store.write(change)

    def _retry_access(self, conn: Connection, job: Job, now: float) -> None:
        retry = int(job.params.get("retry", 0)) + 1
        if retry > ACCESS_RETRIES:
            log.error("image %s on %s: its files keep a wider access than its tags need "
                      "after %d failed attempts to narrow them; the image's next change "
                      "settles them", job.params.get("image_id"), job.system, retry)
            return
        jobs.add_job(conn, kind="access", system=job.system, image_pk=job.image_pk,
                     params={**job.params, "retry": retry}, accepted_by=self.instance_id,
                     now=now, not_before=now + ACCESS_RETRY_S * 2 ** (retry - 1))

    def discard(self, job: Job, why: str) -> bool:
        """Finish a job whose record is gone (replaced or cleaned up meanwhile)."""
        return self.finish(job, f"discarded: {why}")

    def release(self, job: Job, delay_s: float) -> bool:
        def change(conn: Connection) -> bool:
            assert job.claim is not None
            return jobs.release(conn, job.pk, job.claim, not_before=self.clock() + delay_s)

        return self.store.write(change)

    def check_not_expiring(self, job: Job, system: str, image_id: str) -> frozenset[int]:
        """Deferred while an expiry of this image is removing its files, so a new copy is
        not published just before the expiry deletes it. Returns the expiries of the image
        already finished, for `Outcome.expiries_seen`."""
        with self.store.reading() as conn:
            return _expiries(conn, system, image_id, besides=job.image_pk)

    def complete(
        self, job: Job, outcome: Outcome, files: ImageFiles | None = None
    ) -> Completed:
        """READY: fold into an existing record of the same image or promote the pull record,
        and point the tag at it with the access its pull asked for (`tag_access_after`).

        Under the image's lock, the files are first given the union of the access they had
        and the tag's (`files`; None: records only, for tests of the record logic), so
        nobody loses access here; narrowing, if the tag's access shrank or the tag left
        another image, is `settle`'s, after this commits. ClaimLost if the job is no longer
        ours; Deferred if the image is being expired."""

        def change(conn: Connection) -> Completed:
            assert job.claim is not None and job.image_pk is not None
            now = self.clock()
            pulled = images.record(conn, job.image_pk)
            if pulled is None:
                raise ClaimLost(f"the record of job {job.pk} is gone")
            images.lock_image(conn, job.system, outcome.image_id)
            finished = _expiries(conn, job.system, outcome.image_id)
            if outcome.expiries_seen is not None and not finished <= outcome.expiries_seen:
                # An expiry queued after the check before publishing, and finished since:
                # it may have removed the files just published. The retry publishes again.
                raise Deferred(f"image {outcome.image_id} was expired while it was published")
            if not jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome=f"ready: {outcome.image_id}", now=now):
                raise ClaimLost(f"job {job.pk} was taken over")
            existing = images.ready_by_image_id(conn, job.system, pulled.itype,
                                                outcome.image_id, exclude=pulled.pk)
            image_format = pulled.format or self.config.default_image_format
            if outcome.reused and not keeps_files(existing, image_format):
                # Expired, or converted to another format, since the worker decided: the
                # image file may be gone. The retry decides again.
                raise Deferred(f"image {outcome.image_id} changed while it was re-pulled")
            pointed = images.tag_target(conn, job.system, pulled.itype, pulled.pulltag)
            owner = pulled.owner if pulled.itype == "custom" else None
            access = tag_access_after(pointed[1] if pointed else None, outcome, owner)
            applied = image_access(access)
            if existing is not None:
                applied = record_access(existing).widened(applied)
            before = outcome.published
            if outcome.reused and existing is not None:
                before = record_access(existing)
            if files is not None:
                files.change_access(before, applied)
            values = {"last_pull": now, "last_heartbeat": now, "expiration": expiration(
                self.config, now), "private": applied.private, "user_acl": applied.user_ids,
                "group_acl": applied.group_ids, "format": image_format}
            stale = None
            if existing is not None:
                if existing.format and existing.format != image_format:
                    stale = f"{outcome.image_id}.{existing.format}"
                images.update_record(conn, existing.pk, **values)
                images.delete_records(conn, [pulled.pk])
                target = existing.pk
            else:
                images.update_record(
                    conn, pulled.pk, status=Status.READY, active_key=None,
                    image_id=outcome.image_id, env=_list(outcome.env), entry=outcome.entry,
                    workdir=outcome.workdir or None,
                    labels=dict(outcome.labels) if outcome.labels is not None else None,
                    **values,
                )
                target = pulled.pk
            settle = [outcome.image_id]
            if pointed is not None and pointed[0] != target:
                left = images.record(conn, pointed[0])
                if left is not None and left.image_id and left.image_id != outcome.image_id:
                    settle.append(left.image_id)
            images.point_tag(conn, job.system, pulled.itype, pulled.pulltag, target, access)
            done = images.record(conn, target)
            assert done is not None
            return Completed(tag_view(done, pulled.pulltag), tuple(settle), stale)

        return self.store.write(change)

    def settle(self, system: str, image_id: str, files_for: FilesFor) -> bool:
        """Give the files of an image the union of its tags' access (public if any tag is),
        narrowing what `complete` widened or what an expired tag no longer needs. A record
        with no tags left keeps the access it has. True if anything changed."""

        def change(conn: Connection) -> bool:
            images.lock_image(conn, system, image_id)
            changed = False
            for record in images.ready_with_id(conn, system, image_id):
                wanted = union_access(image_access(access) for _, access in record.tag_access)
                applied = record_access(record)
                if wanted is None or wanted == applied:
                    continue
                files_for(record).change_access(applied, wanted)
                images.update_record(conn, record.pk, private=wanted.private,
                                     user_acl=wanted.user_ids, group_acl=wanted.group_ids)
                changed = True
            return changed

        return self.store.write(change)

    def finish(self, job: Job, outcome: str) -> bool:
        """Mark a job done that leaves its record as it is; False if the claim was lost."""

        def change(conn: Connection) -> bool:
            assert job.claim is not None
            return jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome=outcome, now=self.clock())

        return self.store.write(change)

    def expired(self, job: Job) -> bool:
        """The files are gone: the record goes too (EXPIRED records were never visible)."""

        def change(conn: Connection) -> bool:
            assert job.claim is not None
            if not jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome="expired", now=self.clock()):
                return False
            if job.image_pk is not None:
                images.delete_records(conn, [job.image_pk])
            return True

        return self.store.write(change)

    def ready_image(self, job: Job, image_id: str, itype: str) -> ImageRecord | None:
        """Another READY record of the system with this image (it shares the files)."""
        with self.store.reading() as conn:
            return images.ready_by_image_id(conn, job.system, itype, image_id,
                                            exclude=job.image_pk)


def _expiries(
    conn: Connection, system: str, image_id: str, *, besides: int | None = None
) -> frozenset[int]:
    """The finished expiries of an image; Deferred while a record of it other than
    `besides` is being expired (its files are being removed)."""
    for record in images.with_status(conn, system, [Status.EXPIRING]):
        if record.image_id == image_id and record.pk != besides:
            raise Deferred(f"image {image_id} is being expired")
    return jobs.finished_expiries(conn, system, image_id)


def record_access(record: ImageRecord) -> ImageAccess:
    """Who may read a READY record's files in imageDir (the union of its tags')."""
    return ImageAccess(bool(record.private), record.user_acl, record.group_acl)


def image_access(access: TagAccess) -> ImageAccess:
    """The file access one tag needs: public unless its ACL restricts it."""
    return ImageAccess(access.restricted, access.user_acl, access.group_acl)


def keeps_files(existing: ImageRecord | None, image_format: str) -> bool:
    """Whether a pull of the image of READY record `existing` may keep the image file
    already published for it instead of converting: the record being READY means its file
    was published (on a remote platform too); this pull needs the same format. Its access
    is changed in place (`ImageFiles`)."""
    return (
        existing is not None
        and existing.status is Status.READY
        and existing.format == image_format
    )


def expiration(config: GatewayConfig, now: float) -> float:
    return now + config.image_expiration_timeout.total_seconds()


def _list(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


def tag_access_after(
    current: TagAccess | None, outcome: Outcome, owner: int | None
) -> TagAccess:
    """A tag's access once its pull is READY.

    A public pull makes the tag public: anyone may fetch it from the registry anyway. A
    private pull by someone the tag's ACL admits sets the ACL (how owners change it,
    contract §3.3); by someone it does not admit, who just proved registry access with
    their own credentials, it adds their list, so nobody can revoke another's access. A
    custom tag keeps its first importer as owner.
    """
    if current is not None and current.owner is not None:
        owner = current.owner
    elif current is not None:
        owner = None  # from before owners were recorded: stays the admins'
    if not outcome.private:
        return TagAccess(owner=owner)
    users, groups = outcome.user_acl, outcome.group_acl
    requester = outcome.requester
    if (current is not None and current.restricted and requester is not None
            and not current.readable_by(requester)):
        users = (*users, *current.user_acl)
        groups = (*groups, *current.group_acl)
    return TagAccess(True, tuple(sorted(set(users))), tuple(sorted(set(groups))), owner)
