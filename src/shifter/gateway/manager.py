"""The image manager: what each API request does, without HTTP.

lookup, list, pull, doimport, expire, autoexpire, queue and metrics, with the original's
record lifecycle (gateway contract §2): a pull creates a PENDING record and a job, the
workers move it through PULLING, CONVERSION and TRANSFER to READY or FAILURE, and re-POSTs
of the same pull return that record until it may be pulled again. Each decision and the
change it leads to happen in one store transaction; a record that is not READY is unique
per (system, type, tag), so gateways racing to accept one pull end up sharing one job.

Private images (§3): a READY image the caller may not read does not exist for them: lookup
answers 404 exactly as for a missing image, list leaves it out, and pull treats the tag as
unknown (the caller then pulls with their own registry credentials).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from shifter.errors import ImageReferenceError
from shifter.gateway import store_images as images
from shifter.gateway import store_jobs as jobs
from shifter.gateway.config import GatewayConfig, Platform, UnknownPlatformError
from shifter.gateway.credentials import CredentialVault, RegistryCredentials, credentials_for
from shifter.gateway.failures import BadRequest, NotFound
from shifter.gateway.manager_admin import AdminRequests
from shifter.gateway.manager_imports import ImportRequests
from shifter.gateway.readycache import ReadyCache
from shifter.gateway.records import IN_FLIGHT, ImageRecord, Requester, Status, listed_views
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store import MetadataStore
from shifter.gateway.usage import UsageLog
from shifter.image.descriptor import parse_descriptor
from shifter.image.reference import split_location

log = logging.getLogger(__name__)

PULLABLE_TYPES = ("docker",)
# A lookup pushes the expiration back only when the stored one is this much behind, so
# lookups of a busy image do not all write: expiration is kept to the minute.
EXPIRATION_STEP_S = 60.0


class ImageManager(ImportRequests, AdminRequests):
    """Business logic shared by every request thread of one gateway process (imports:
    `manager_imports`; admin requests: `manager_admin`)."""

    def __init__(
        self,
        config: GatewayConfig,
        store: MetadataStore,
        *,
        instance_id: str,
        settings: ServiceSettings,
        vault: CredentialVault,
        clock: Callable[[], float] = time.time,
        on_new_job: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.store = store
        self.instance_id = instance_id
        self.settings = settings
        self.vault = vault
        self.clock = clock
        self.on_new_job = on_new_job
        self.usage = UsageLog(store)
        self.ready_cache = ReadyCache(settings.lookup_cache_s)
        # READY records of tags with no pull in flight, for re-pulls (`_ready_unchanged`).
        self.settled_cache = ReadyCache(settings.lookup_cache_s)

    # -- names ---------------------------------------------------------------------------

    def platform(self, system: str) -> Platform:
        try:
            return self.config.platform(system)
        except UnknownPlatformError as error:
            raise BadRequest(str(error.message), hint=error.hint) from None

    def normal_tag(self, itype: str, tag: str, allowed: Sequence[str]) -> str:
        """The tag as records are keyed: validated, `:latest` added when it has none."""
        if itype not in allowed:
            raise BadRequest(
                f"image type {itype!r} cannot be used here",
                hint=f"use {' or '.join(allowed)}",
            )
        try:
            if itype == "docker":
                # Validated exactly as the worker will resolve it (location, repository, tag).
                split_location(
                    tag, tuple(self.config.locations), self.config.default_image_location
                )
                last = tag.rsplit("/", 1)[-1]
                return tag if ":" in last or "@" in tag else f"{tag}:latest"
            return parse_descriptor(f"{itype}:{tag}", None).spec
        except ImageReferenceError as error:
            raise BadRequest(error.message, hint=error.hint) from None

    # -- lookup and list -----------------------------------------------------------------

    def lookup(self, system: str, itype: str, tag: str, who: Requester) -> ImageRecord:
        """The READY image of a tag; NotFound if there is none the caller may read. Each
        lookup is a use: it pushes the image's expiration back, to the minute (and is
        counted in metrics). The lookup itself only reads: the expiration is written when
        the stored one is more than EXPIRATION_STEP_S behind, and metrics rows in batches."""
        self.platform(system)
        tag = self.normal_tag(itype, tag, ("docker", "custom"))
        found = self._ready(system, itype, tag)
        if found is None or not found.readable_by(who):
            raise NotFound("image not found")
        now = self.clock()
        expiration = now + self.config.image_expiration_timeout.total_seconds()
        if found.expiration is None or found.expiration < expiration - EXPIRATION_STEP_S:
            self.store.write(lambda conn: images.touch_expiration(conn, found.pk, expiration))
        if self.config.metrics:
            self.usage.add(user=who.user, uid=who.uid, system=system, type=itype, tag=tag,
                           image_id=found.image_id, time=now)
        return found

    def _ready(self, system: str, itype: str, tag: str) -> ImageRecord | None:
        """The READY record of a tag, from the cache when it is fresh (`readycache`)."""
        return self._cached(self.ready_cache, (system, itype, tag),
                            lambda conn: images.ready_by_tag(conn, system, itype, tag))

    def _cached(
        self, cache: ReadyCache, key: tuple[str, str, str],
        read: Callable[[Connection], ImageRecord | None],
    ) -> ImageRecord | None:
        """`cache`'s record for `key` while fresh, else `read` in a read transaction (and
        remembered when it finds one)."""
        generation = self.store.generation  # before reading: a change meanwhile drops it
        found = cache.get(key, generation)
        if found is None:
            with self.store.reading() as conn:
                found = read(conn)
            if found is not None:
                cache.put(key, found, generation)
        return found

    def list(self, system: str, who: Requester) -> list[ImageRecord]:
        """The READY images the caller may use: one entry per access among the tags of an
        image the caller may use (`records.listed_views`)."""
        self.platform(system)
        with self.store.reading() as conn:
            ready = images.with_status(conn, system, [Status.READY])
        return [view for record in ready for view in listed_views(record, who)]

    def queue(self, system: str) -> list[dict[str, str]]:
        """Work not yet READY (the original's unauthenticated queue view). A pull made with
        registry credentials or ACLs is left out: the name of a private image is not for
        everyone (docs/gateway.md)."""
        self.platform(system)
        with self.store.reading() as conn:
            pending = images.with_status(conn, system, [*IN_FLIGHT, Status.FAILURE,
                                                        Status.EXPIRING])
        return [{"status": str(record.status), "image": record.pulltag}
                for record in pending if not record.private]

    # -- pull ----------------------------------------------------------------------------

    def pull(
        self,
        system: str,
        itype: str,
        tag: str,
        who: Requester,
        *,
        user_acl: Sequence[int] = (),
        group_acl: Sequence[int] = (),
        authorized: Mapping[str, str] | None = None,
    ) -> tuple[ImageRecord, Status | None]:
        """Start a pull or return the one in flight or the READY image (contract §2.2).

        Returns the record and the status to show instead of the stored one (INIT for the
        first reply to a new pull)."""
        self.platform(system)
        tag = self.normal_tag(itype, tag, PULLABLE_TYPES)
        location = split_location(
            tag, tuple(self.config.locations), self.config.default_image_location
        ).location
        credentials = credentials_for(
            location, authorized or {}, self.config.default_image_location
        )
        if credentials is not None and self.config.location_for(location).refuses_credentials:
            raise BadRequest(
                f"cannot pull {tag} with your registry login: {location} is served over plain "
                "http, and this gateway never sends credentials in clear text",
                hint=f"pull it without a login for {location} (shifterimg logout), or ask the "
                "gateway's admins to serve it over https",
            )
        # The caller is always on a non-empty list they give (the original's rule).
        uacl = tuple(sorted({*user_acl, who.uid})) if user_acl else ()
        gacl = tuple(sorted({*group_acl, who.gid})) if group_acl else ()
        request = _PullRequest(system, itype, tag, who, uacl, gacl, None)
        unchanged = self._ready_unchanged(request)
        if unchanged is not None:
            return unchanged, None
        reference = None
        if credentials is not None:
            reference = os.urandom(16).hex()
            self.vault.put(reference, credentials)
            request = dataclasses.replace(request, credential_ref=reference)
        record, shown, new_job = self.store.write(lambda conn: self._decide_pull(conn, request))
        if new_job:
            log.info("pull accepted: %s:%s for %s", itype, tag, who.describe())
            self.on_new_job()
        else:
            if reference is not None:
                self.vault.discard(reference)
            if credentials is not None and record.status in IN_FLIGHT:
                self._refresh_credentials(record, credentials)
        return record, shown

    def _decide_pull(
        self, conn: Connection, request: _PullRequest
    ) -> tuple[ImageRecord, Status | None, bool]:
        now = self.clock()
        system, itype, tag = request.system, request.itype, request.tag
        self._forget_failures(conn, system, now)
        ready = images.ready_by_tag(conn, system, itype, tag)
        if ready is not None and not ready.readable_by(request.who):
            ready = None  # another user's private image: as if it did not exist
        current = images.active(conn, system, itype, tag) or ready
        if current is not None and self._keeps(current, request, now):
            return current, None, False
        params = {
            "user_acl": list(request.user_acl), "group_acl": list(request.group_acl),
            "credential_ref": request.credential_ref,
        }
        created = self._start(
            conn, "pull", current, request.who, system=system, itype=itype, tag=tag,
            fmt=self.config.default_image_format, params=params,
            needs_credentials=request.credential_ref is not None,
            user_acl=request.user_acl, group_acl=request.group_acl,
            private=request.credential_ref is not None or bool(request.user_acl
                                                                or request.group_acl),
        )
        return created, Status.INIT, True

    def _ready_unchanged(self, request: _PullRequest) -> ImageRecord | None:
        """The READY image a re-pull leaves as it is, decided in a read transaction (the
        common case: no write, no lock); None when the write path must decide."""
        key = (request.system, request.itype, request.tag)

        def settled(conn: Connection) -> ImageRecord | None:
            if images.active(conn, *key) is not None:
                return None  # a pull of the tag is in flight: the write path decides
            return images.ready_by_tag(conn, *key)

        ready = self._cached(self.settled_cache, key, settled)
        if ready is None or not ready.readable_by(request.who):
            return None
        return ready if self._keeps(ready, request, self.clock()) else None

    def _keeps(self, current: ImageRecord, request: _PullRequest, now: float) -> bool:
        """Whether a pull leaves the tag's current record as it is (no new job)."""
        in_flight = current.status is not Status.READY
        acl_changed = (
            set(request.user_acl) != set(current.user_acl)
            or set(request.group_acl) != set(current.group_acl)
        )
        recent = (
            current.status is Status.READY
            and now - (current.last_pull or 0.0) < self.settings.recent_pull_s
        )
        return not ((not recent and not in_flight and acl_changed)
                    or self._pullable(current, now))

    def _start(
        self,
        conn: Connection,
        kind: str,
        current: ImageRecord | None,
        who: Requester,
        *,
        system: str,
        itype: str,
        tag: str,
        fmt: str,
        params: Mapping[str, Any],
        needs_credentials: bool = False,
        user_acl: tuple[int, ...] = (),
        group_acl: tuple[int, ...] = (),
        private: bool = False,
    ) -> ImageRecord:
        """Replace the tag's record that is not READY (if any) by a new PENDING one and
        queue its job. Another gateway doing the same at the same moment makes the insert
        fail on `active_key`; the transaction is retried and then finds that record.
        `private` marks a pull whose name the queue must not show; the record's `owner`
        is the requester (a custom tag's owner when its import is the first)."""
        now = self.clock()
        if current is not None and current.status is not Status.READY:
            images.delete_records(conn, [current.pk])
        pk = images.insert_record(
            conn, system=system, itype=itype, pulltag=tag,
            active_key=images.active_key(system, itype, tag),
            status=Status.PENDING, status_message="PENDING", format=fmt,
            user_acl=user_acl, group_acl=group_acl, private=private, owner=who.uid,
            last_pull=now, last_heartbeat=now, created=now,
        )
        jobs.add_job(
            conn, kind=kind, system=system, image_pk=pk, accepted_by=self.instance_id,
            now=now, needs_credentials=needs_credentials,
            params={**params, "tag": tag, "itype": itype, "requester": _requester_params(who)},
        )
        created = images.record(conn, pk)
        assert created is not None
        return created

    def _pullable(self, record: ImageRecord, now: float) -> bool:
        timeout = self.config.pull_update_timeout.total_seconds()
        if record.last_pull is None or record.status is Status.EXPIRED:
            return True
        if record.status is Status.READY:
            return now > record.last_pull + timeout
        if record.status is Status.FAILURE:
            # Held long enough for a polling client to see it, then retried.
            hold = min(self.settings.failure_hold_s, timeout)
            return now > (record.last_heartbeat or record.last_pull) + hold
        return False

    def _forget_failures(self, conn: Connection, system: str, now: float) -> None:
        """The original's update_states: failures older than PullUpdateTimeout go."""
        timeout = self.config.pull_update_timeout.total_seconds()
        stale = [
            record.pk
            for record in images.with_status(conn, system, [Status.FAILURE])
            if (record.last_heartbeat or record.last_pull or 0.0) + timeout < now
        ]
        images.delete_records(conn, stale)

    def _refresh_credentials(self, record: ImageRecord, credentials: RegistryCredentials) -> None:
        """A client re-POSTing a pull re-sends its credentials: if the process that accepted
        the pull has stopped, this one adopts the job and keeps them (see store_jobs)."""
        with self.store.reading() as conn:
            job = jobs.open_job_for(conn, record.pk)
        reference = str(job.params.get("credential_ref") or "") if job is not None else ""
        if job is None or not job.needs_credentials or not reference:
            return
        if job.accepted_by == self.instance_id or self.vault.get(reference) is not None:
            return
        # In the vault before the job is ours: our workers may claim it the moment it is.
        self.vault.put(reference, credentials)
        adopted = self.store.write(lambda conn: jobs.adopt(
            conn, job.pk, self.instance_id, lease_s=self.settings.lease_s, now=self.clock()))
        if not adopted:
            self.vault.discard(reference)
            return
        log.info("adopted pull %s:%s with re-sent credentials", record.itype, record.pulltag)
        self.on_new_job()


@dataclass(frozen=True)
class _PullRequest:
    system: str
    itype: str
    tag: str
    who: Requester
    user_acl: tuple[int, ...]
    group_acl: tuple[int, ...]
    credential_ref: str | None


def _requester_params(who: Requester) -> dict[str, Any]:
    return {"uid": who.uid, "gid": who.gid, "user": who.user, "groups": sorted(who.groups)}


def requester_from_params(params: Mapping[str, Any]) -> Requester:
    return Requester(uid=int(params["uid"]), gid=int(params["gid"]), user=params.get("user"),
                     groups=frozenset(int(g) for g in params.get("groups", ())))
