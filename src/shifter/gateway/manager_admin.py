"""The admin requests of the image manager: expire, autoexpire and usage metrics.

Only users named in the platform's `admins` may make them (403 for anyone else; the
original answered 200 with `false`), except that the owner of a custom tag may expire it.
Expiring the last tag of an image drops it at once, so lookups stop finding it and a new
pull of the tag may start, and queues a job that removes its files from imageDir and then
its record. Expiring one of several tags drops that tag and queues a job that narrows the
files' access to the remaining tags' (`Lifecycle.settle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.failures import BadRequest, Forbidden
from shifter.gateway.manager_parts import ManagerParts
from shifter.gateway.records import IN_FLIGHT, ImageRecord, Requester, Status
from shifter.gateway.usage import UsageLog

log = logging.getLogger(__name__)

METRICS_LIMIT_MAX = 10_000


class AdminRequests(ManagerParts):
    """Mixed into `ImageManager`, which provides what is declared here."""

    usage: UsageLog

    # From `ImportRequests`: may `who` change a custom tag (its owner, or an admin).
    _check_owner: Callable[[Connection, str, str, str, Requester, str], None]

    def _admin(self, system: str, who: Requester, doing: str) -> None:
        platform = self.platform(system)
        if who.user is None or not platform.is_admin(who.user):
            raise Forbidden(f"{who.describe()} may not {doing} on {system}",
                            hint=f"only the admins of {system} in imagemanager.json may")

    def expire(self, system: str, itype: str, tag: str, who: Requester) -> bool | None:
        """Expire a tag: True, or None if the tag has no image. The image goes with its
        last tag; while other tags point at it, only this tag goes, and a job narrows the
        files' access to what the others need. Admins may expire any tag, the owner of a
        custom tag that tag."""
        tag = self.normal_tag(itype, tag, ("docker", "custom"))
        if itype != "custom":
            self._admin(system, who, "expire images")

        def mark(conn: Connection) -> bool | None:
            if itype == "custom":
                self._check_owner(conn, system, itype, tag, who, "expire")
            found = images.ready_by_tag(conn, system, itype, tag)
            if found is None:
                return None
            if len(found.tags) > 1:
                images.drop_tag(conn, system, itype, tag)
                jobs.add_job(conn, kind="access", system=system, image_pk=found.pk,
                             accepted_by=self.instance_id, now=self.clock(),
                             params={"image_id": found.image_id, "itype": found.itype})
                return True
            self._queue_expiry(conn, found)
            return True

        queued = self.store.write(mark)
        if queued:
            log.info("expire queued: %s:%s by %s", itype, tag, who.describe())
            self.on_new_job()
        return queued

    def autoexpire(self, system: str, who: Requester) -> list[str]:
        """Remove stale failures and queue the removal of images unused for
        ImageExpirationTimeout; returns the ids queued."""
        self._admin(system, who, "expire images")

        def sweep(conn: Connection) -> list[str]:
            now = self.clock()
            self._forget_failures(conn, system, now)
            timeout = self.config.pull_update_timeout.total_seconds()
            orphans = [
                record.pk
                for record in images.with_status(conn, system, IN_FLIGHT)
                if jobs.open_job_for(conn, record.pk) is None
                and (record.last_pull or 0.0) + timeout < now
            ]
            images.delete_records(conn, orphans)
            expired = images.expired_ready(conn, system, now)
            for record in expired:
                self._queue_expiry(conn, record)
            return [record.image_id or "" for record in expired]

        ids = self.store.write(sweep)
        if ids:
            log.info("autoexpire queued %d image(s) on %s", len(ids), system)
            self.on_new_job()
        return ids

    def _queue_expiry(self, conn: Connection, record: ImageRecord) -> None:
        # Its tags go at once: lookups stop finding it and a new pull of the tag may start.
        images.drop_tags(conn, record.pk)
        images.update_record(conn, record.pk, status=Status.EXPIRING, status_message="EXPIRING",
                             last_heartbeat=self.clock())
        jobs.add_job(
            conn, kind="expire", system=record.system, image_pk=record.pk,
            accepted_by=self.instance_id, now=self.clock(),
            params={"image_id": record.image_id, "itype": record.itype,
                    "format": record.format or self.config.default_image_format},
        )

    def metrics(self, system: str, who: Requester, limit: int) -> list[dict[str, Any]]:
        self._admin(system, who, "read metrics")
        if not self.config.metrics:
            return []
        if not 1 <= limit <= METRICS_LIMIT_MAX:
            raise BadRequest(f"limit must be between 1 and {METRICS_LIMIT_MAX}")
        self.usage.flush()  # this process's lookups not yet written
        with self.store.reading() as conn:
            return images.recent_metrics(conn, system, limit)
