"""The worker's side of the record lifecycle: progress, READY, FAILURE, expiry.

Every change here happens only while the job's claim is still held (`store_jobs`), in the
same transaction as the check, so a worker that lost its lease changes nothing and a job
is completed once. Completing a pull follows the original (contract §2.2, "Completion"):
a pull of an image already READY on the system under another tag or ACL is folded into
that record (its tags and ACLs updated, the pull record deleted); otherwise the pull record
itself becomes READY. The tag then points at that image only.

A pull whose image is already READY on the system in the same format and with the same
access is not converted again (`keeps_files`): the worker publishes only its `.meta`, and
`complete` checks in its transaction that the READY record still vouches for the files.
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
from shifter.gateway.access import ImageAccess
from shifter.gateway.config import GatewayConfig
from shifter.gateway.records import ImageRecord, Requester, Status
from shifter.gateway.store import MetadataStore
from shifter.gateway.store_jobs import Job

log = logging.getLogger(__name__)


class ClaimLost(Exception):
    """This worker no longer holds the job: another gateway took it over."""


class Deferred(Exception):
    """The job must wait (an expiry of the same image is removing its files)."""


@dataclass(frozen=True)
class Outcome:
    """What a finished pull or import produced, for its READY record."""

    image_id: str
    private: bool
    user_acl: tuple[int, ...]
    group_acl: tuple[int, ...]
    env: tuple[str, ...] | None = None
    entry: Any = None
    workdir: str | None = None
    labels: Mapping[str, str] | None = field(default=None, hash=False)
    # No image file was published: the READY record of this image vouches for the one in
    # imageDir (`keeps_files`), which `complete` checks again.
    reused: bool = False
    # The image's finished expiries when publishing began (`check_not_expiring`); None:
    # not checked.
    expiries_seen: frozenset[int] | None = None

    @property
    def access(self) -> ImageAccess:
        return ImageAccess(self.private, self.user_acl, self.group_acl)


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
            if job.image_pk is not None:
                images.update_record(conn, job.image_pk, status=Status.FAILURE,
                                     status_message=message, last_heartbeat=now)
            return True

        return self.store.write(change)

    def discard(self, job: Job, why: str) -> bool:
        """Finish a job whose record is gone (replaced or cleaned up meanwhile)."""

        def change(conn: Connection) -> bool:
            assert job.claim is not None
            return jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome=f"discarded: {why}", now=self.clock())

        return self.store.write(change)

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

    def complete(self, job: Job, outcome: Outcome) -> ImageRecord:
        """READY: fold into an existing record of the same image or promote the pull record.
        The outcome's ACLs are final (`final_acls`, applied to the published files too).
        ClaimLost if the job is no longer ours; Deferred if the image is being expired."""

        def change(conn: Connection) -> ImageRecord:
            assert job.claim is not None and job.image_pk is not None
            now = self.clock()
            pulled = images.record(conn, job.image_pk)
            if pulled is None:
                raise ClaimLost(f"the record of job {job.pk} is gone")
            finished = _expiries(conn, job.system, outcome.image_id)
            if outcome.expiries_seen is not None and not finished <= outcome.expiries_seen:
                # An expiry queued after the check before publishing, and finished since:
                # it may have removed the files just published. The retry publishes again.
                raise Deferred(f"image {outcome.image_id} was expired while it was published")
            if not jobs.finish(conn, job.pk, job.claim, instance=self.instance_id,
                               outcome=f"ready: {outcome.image_id}", now=now):
                raise ClaimLost(f"job {job.pk} was taken over")
            expiration = now + self.config.image_expiration_timeout.total_seconds()
            existing = images.ready_by_image_id(conn, job.system, pulled.itype,
                                                outcome.image_id, exclude=pulled.pk)
            image_format = pulled.format or self.config.default_image_format
            if outcome.reused and not keeps_files(existing, image_format, outcome.access):
                # Expired, or re-published with other ACLs, since the worker decided: the
                # image file may be gone or readable by others. The retry decides again.
                raise Deferred(f"image {outcome.image_id} changed while it was re-pulled")
            values = {"last_pull": now, "last_heartbeat": now, "expiration": expiration,
                      "private": outcome.private, "user_acl": outcome.user_acl,
                      "group_acl": outcome.group_acl}
            if existing is not None:
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
            images.point_tag(conn, job.system, pulled.itype, pulled.pulltag, target)
            done = images.record(conn, target)
            assert done is not None
            return done

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
    """Who may read a READY record's files in imageDir (the transfer applied it)."""
    return ImageAccess(bool(record.private), record.user_acl, record.group_acl)


def keeps_files(existing: ImageRecord | None, image_format: str, access: ImageAccess) -> bool:
    """Whether a pull of the image of READY record `existing` may keep the files already
    published for it instead of converting: the record being READY means its image file
    was published (on a remote platform too), in its format and with its access; this
    pull needs the same format and the same access (mode and ACL of the image file)."""
    return (
        existing is not None
        and existing.status is Status.READY
        and existing.format == image_format
        and record_access(existing) == access
    )


def _list(values: Sequence[str] | None) -> list[str] | None:
    return list(values) if values is not None else None


def final_acls(
    existing: ImageRecord | None,
    private: bool,
    user_acl: tuple[int, ...],
    group_acl: tuple[int, ...],
    requester: Requester,
) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """The ACLs of the READY image after this pull.

    A public pull makes the image public: anyone may fetch it from the registry anyway.
    A private pull by someone the existing ACL admits sets the ACL (how owners change it,
    contract §3.3); by someone it does not admit, who just proved registry access with
    their own credentials, it adds their list, so nobody can revoke another's access.
    """
    if not private:
        return (), (), False
    users, groups = user_acl, group_acl
    if existing is not None and existing.restricted and not existing.readable_by(requester):
        users = tuple(sorted({*users, *existing.user_acl}))
        groups = tuple(sorted({*groups, *existing.group_acl}))
    return users, groups, True
