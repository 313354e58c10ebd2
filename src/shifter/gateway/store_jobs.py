"""Jobs, their claims and leases, and the registry of live gateway processes.

A job is `queued` until a worker claims it. Claiming is a compare-and-set: the UPDATE
repeats the conditions the SELECT found true (queued, or running with an expired lease),
so of two gateways racing for one job exactly one changes the row; on PostgreSQL the
SELECT also locks the rows it returns and skips rows locked by others (FOR UPDATE SKIP
LOCKED), so racing workers pick different jobs instead of colliding. Each claim gets a
fresh random `claim` value: renewing the lease and finishing the job both require it, so a
worker that lost its lease (its gateway was frozen longer than the lease) can neither
finish nor undo the work of the worker that took the job over. A job is finished once.

Registry credentials are never stored. A job that needs them may be claimed only by the
process that accepted it (`accepted_by`). Once that process has stopped renewing its
`instances` row for a lease, a process the client re-sends the credentials to may `adopt`
the job; after two leases anyone may take it, and fails the pull for want of credentials.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from shifter.gateway.store_schema import instances, jobs

QUEUED, RUNNING, DONE = "queued", "running", "done"
CLAIM_BATCH = 8
ADOPTION_GRACE_LEASES = 2


@dataclass(frozen=True)
class Job:
    pk: int
    kind: str  # pull, import, expire
    system: str
    image_pk: int | None
    params: Mapping[str, Any] = field(hash=False)
    needs_credentials: bool
    accepted_by: str
    attempts: int
    claim: str | None = None


def _job(row: Any) -> Job:
    return Job(
        pk=row.pk,
        kind=row.kind,
        system=row.system,
        image_pk=row.image_pk,
        params=json.loads(row.params),
        needs_credentials=bool(row.needs_credentials),
        accepted_by=row.accepted_by,
        attempts=row.attempts,
        claim=row.claim,
    )


def add_job(
    conn: Connection,
    *,
    kind: str,
    system: str,
    image_pk: int | None,
    params: Mapping[str, Any],
    accepted_by: str,
    now: float,
    needs_credentials: bool = False,
    not_before: float = 0.0,
) -> int:
    result = conn.execute(
        insert(jobs).values(
            kind=kind,
            system=system,
            image_pk=image_pk,
            params=json.dumps(dict(params), sort_keys=True),
            state=QUEUED,
            needs_credentials=needs_credentials,
            accepted_by=accepted_by,
            not_before=not_before,
            attempts=0,
            created=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def open_job_for(conn: Connection, image_pk: int) -> Job | None:
    """The unfinished job working on an image record, if any."""
    row = conn.execute(
        select(jobs).where(jobs.c.image_pk == image_pk, jobs.c.state != DONE).order_by(jobs.c.pk)
    ).first()
    return _job(row) if row is not None else None


def _live_instances(now: float, lease_s: float) -> Any:
    return select(instances.c.instance_id).where(instances.c.last_seen >= now - lease_s)


def _claimable(instance: str, now: float, lease_s: float) -> Any:
    due = or_(
        and_(jobs.c.state == QUEUED, jobs.c.not_before <= now),
        and_(jobs.c.state == RUNNING, jobs.c.lease_expires < now),
    )
    may_have_credentials = or_(
        jobs.c.needs_credentials.is_(False),
        jobs.c.accepted_by == instance,
        # Adoption is possible one lease after the acceptor stopped; taking the job without
        # its credentials (to fail it) only after two, so a polling client gets to re-send.
        jobs.c.accepted_by.not_in(_live_instances(now, ADOPTION_GRACE_LEASES * lease_s)),
    )
    return and_(due, may_have_credentials)


def claim_next(conn: Connection, instance: str, *, lease_s: float, now: float) -> Job | None:
    """Claim the oldest job this instance may run; None when there is none."""
    condition = _claimable(instance, now, lease_s)
    query = select(jobs.c.pk).where(condition).order_by(jobs.c.pk).limit(CLAIM_BATCH)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=jobs)
    for pk in conn.execute(query).scalars().all():
        claim = uuid.uuid4().hex
        changed = conn.execute(
            update(jobs)
            .where(jobs.c.pk == pk, condition)
            .values(
                state=RUNNING,
                claim=claim,
                claimed_by=instance,
                lease_expires=now + lease_s,
                attempts=jobs.c.attempts + 1,
            )
        ).rowcount
        if changed == 1:
            row = conn.execute(select(jobs).where(jobs.c.pk == pk)).one()
            return _job(row)
    return None


def _held(pk: int, claim: str) -> Any:
    return and_(jobs.c.pk == pk, jobs.c.claim == claim, jobs.c.state == RUNNING)


def renew(conn: Connection, pk: int, claim: str, *, lease_s: float, now: float) -> bool:
    """Extend a lease; False if the claim was lost (the job was taken over)."""
    result = conn.execute(update(jobs).where(_held(pk, claim)).values(lease_expires=now + lease_s))
    return result.rowcount == 1


def still_held(conn: Connection, pk: int, claim: str) -> bool:
    return conn.execute(select(jobs.c.pk).where(_held(pk, claim))).first() is not None


def finish(
    conn: Connection, pk: int, claim: str, *, instance: str, outcome: str, now: float
) -> bool:
    """Mark a job done, once: False (and nothing changed) if the claim was lost."""
    result = conn.execute(
        update(jobs)
        .where(_held(pk, claim))
        .values(state=DONE, finished=now, finished_by=instance, outcome=outcome[:2000])
    )
    return result.rowcount == 1


def release(conn: Connection, pk: int, claim: str, *, not_before: float) -> bool:
    """Give a claimed job back to the queue, to be run again from `not_before` on. The claim
    gives its attempt back: `attempts` counts the gateways that died holding the job, and
    one that defers it (or stops cleanly) did not."""
    result = conn.execute(
        update(jobs)
        .where(_held(pk, claim))
        .values(state=QUEUED, claim=None, lease_expires=None, not_before=not_before,
                attempts=jobs.c.attempts - 1)
    )
    return result.rowcount == 1


def adopt(conn: Connection, pk: int, instance: str, *, lease_s: float, now: float) -> bool:
    """Take over the credential duty of a job whose accepting process has stopped: this
    process now holds credentials the client re-sent, so it may run the job."""
    result = conn.execute(
        update(jobs)
        .where(
            jobs.c.pk == pk,
            jobs.c.state != DONE,
            jobs.c.accepted_by != instance,
            jobs.c.accepted_by.not_in(_live_instances(now, lease_s)),
        )
        .values(accepted_by=instance)
    )
    return result.rowcount == 1


def job(conn: Connection, pk: int) -> Job | None:
    row = conn.execute(select(jobs).where(jobs.c.pk == pk)).first()
    return _job(row) if row is not None else None


def finished_expiries(conn: Connection, system: str, image_id: str) -> frozenset[int]:
    """The finished expire jobs of an image on a system (kept for `job_retention_s`)."""
    # params is JSON written with sort_keys and the default separators (`add_job`).
    marker = f'"image_id": {json.dumps(image_id)}'
    query = select(jobs.c.pk).where(
        jobs.c.kind == "expire", jobs.c.system == system, jobs.c.state == DONE,
        jobs.c.params.contains(marker, autoescape=True),
    )
    return frozenset(conn.execute(query).scalars())


def job_rows(conn: Connection, *conditions: Any) -> list[dict[str, Any]]:
    """Every column of the matching jobs (tests and admin tools look at claims and outcomes)."""
    query = select(jobs).where(*conditions).order_by(jobs.c.pk)
    return [dict(row._mapping) for row in conn.execute(query)]


def heartbeat(conn: Connection, instance: str, *, host: str, pid: int, now: float) -> None:
    """Record that this gateway process is alive (upsert of its `instances` row)."""
    changed = conn.execute(
        update(instances).where(instances.c.instance_id == instance).values(last_seen=now)
    ).rowcount
    if changed == 0:
        conn.execute(
            insert(instances).values(
                instance_id=instance, host=host, pid=pid, started=now, last_seen=now
            )
        )


def leave(conn: Connection, instance: str) -> None:
    """A gateway stopping cleanly: its credential-bound jobs may be adopted at once."""
    conn.execute(delete(instances).where(instances.c.instance_id == instance))


def requeue_expired(conn: Connection, *, now: float) -> int:
    """Jobs whose lease ran out go back to the queue (their workers are gone)."""
    return conn.execute(
        update(jobs)
        .where(jobs.c.state == RUNNING, jobs.c.lease_expires < now)
        .values(state=QUEUED, claim=None, lease_expires=None)
    ).rowcount


def forget_old(conn: Connection, *, now: float, retention_s: float) -> None:
    """Delete finished jobs and dead instances older than the retention period."""
    conn.execute(delete(jobs).where(jobs.c.state == DONE, jobs.c.finished < now - retention_s))
    conn.execute(delete(instances).where(instances.c.last_seen < now - retention_s))


def unfinished_counts(conn: Connection, system: str | None = None) -> dict[str, int]:
    """Number of queued and running jobs (for the metrics)."""
    counts = {QUEUED: 0, RUNNING: 0}
    query = select(jobs.c.state).where(jobs.c.state != DONE)
    if system is not None:
        query = query.where(jobs.c.system == system)
    for state in conn.execute(query).scalars():
        counts[state] = counts.get(state, 0) + 1
    return counts
