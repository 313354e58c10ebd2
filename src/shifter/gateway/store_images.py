"""Queries on image records, tags and metrics rows: functions of an open connection.

The manager calls several of these inside one `MetadataStore.write` transaction, so a
decision and the change it leads to are atomic.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from shifter.gateway.records import ImageRecord, Status, TagAccess, tag_view
from shifter.gateway.store_schema import images, metrics, tags

_JSON_COLUMNS = ("user_acl", "group_acl", "env", "entry", "labels")


def active_key(system: str, itype: str, pulltag: str) -> str:
    """The unique key of the one record a (system, type, tag) may have that is not READY."""
    return f"{system}\x1f{itype}\x1f{pulltag}"


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    encoded = dict(values)
    for column in _JSON_COLUMNS:
        if column in encoded:
            value = encoded[column]
            if column in ("user_acl", "group_acl"):
                encoded[column] = json.dumps(list(value or ()))
            else:
                encoded[column] = None if value is None else json.dumps(value)
    if isinstance(encoded.get("status"), Status):
        encoded["status"] = str(encoded["status"])
    return encoded


def _tag_access(private: Any, user_acl: Any, group_acl: Any, owner: Any) -> TagAccess:
    return TagAccess(private=bool(private), user_acl=tuple(json.loads(user_acl or "[]")),
                     group_acl=tuple(json.loads(group_acl or "[]")), owner=owner)


def _record(row: Row[Any], record_tags: Sequence[tuple[str, TagAccess]] = ()) -> ImageRecord:
    env = json.loads(row.env) if row.env is not None else None
    ordered = tuple(sorted(record_tags, key=lambda item: item[0]))
    return ImageRecord(
        pk=row.pk,
        system=row.system,
        itype=row.itype,
        pulltag=row.pulltag,
        status=Status(row.status),
        created=row.created,
        image_id=row.image_id,
        tags=tuple(tag for tag, _ in ordered),
        tag_access=ordered,
        owner=row.owner,
        format=row.format,
        user_acl=tuple(json.loads(row.user_acl or "[]")),
        group_acl=tuple(json.loads(row.group_acl or "[]")),
        private=row.private,
        env=tuple(env) if env is not None else None,
        entry=json.loads(row.entry) if row.entry is not None else None,
        workdir=row.workdir,
        labels=json.loads(row.labels) if row.labels is not None else None,
        last_pull=row.last_pull,
        last_heartbeat=row.last_heartbeat,
        expiration=row.expiration,
        status_message=row.status_message,
    )


def _with_tags(conn: Connection, rows: Sequence[Row[Any]]) -> list[ImageRecord]:
    if not rows:
        return []
    found: dict[int, list[tuple[str, TagAccess]]] = {row.pk: [] for row in rows}
    query = select(tags).where(tags.c.image_pk.in_(list(found)))
    for tag in conn.execute(query):
        found[tag.image_pk].append(
            (tag.tag, _tag_access(tag.private, tag.user_acl, tag.group_acl, tag.owner)))
    return [_record(row, found[row.pk]) for row in rows]


def records(conn: Connection, *conditions: Any, for_update: bool = False) -> list[ImageRecord]:
    query = select(images).where(*conditions).order_by(images.c.pk)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return _with_tags(conn, conn.execute(query).all())


def record(conn: Connection, pk: int) -> ImageRecord | None:
    found = records(conn, images.c.pk == pk)
    return found[0] if found else None


@functools.cache
def _ready_by_tag_query() -> Executable:
    # The lookup's statement, built once: SQLAlchemy then finds its compiled form by a
    # cached key instead of building it and its key on every call. One row per tag of the
    # image, so the record and its tags come in one round trip.
    wanted = tags.alias("wanted")
    every = tags.alias("every")
    return (
        select(images, every.c.tag.label("image_tag"), every.c.private.label("tag_private"),
               every.c.user_acl.label("tag_user_acl"), every.c.group_acl.label("tag_group_acl"),
               every.c.owner.label("tag_owner"))
        .select_from(
            wanted.join(images, wanted.c.image_pk == images.c.pk)
            .join(every, every.c.image_pk == images.c.pk)
        )
        .where(
            wanted.c.system == bindparam("system"),
            wanted.c.itype == bindparam("itype"),
            wanted.c.tag == bindparam("tag"),
            images.c.status == str(Status.READY),
        )
    )


@functools.cache
def _touch_expiration_query() -> Executable:
    return (
        update(images)
        .where(
            images.c.pk == bindparam("image_pk"),
            images.c.status == str(Status.READY),
            images.c.expiration.is_(None) | (images.c.expiration < bindparam("new_expiration")),
        )
        .values(expiration=bindparam("new_expiration"))
    )


def ready_by_tag(conn: Connection, system: str, itype: str, tag: str) -> ImageRecord | None:
    """The READY image a tag points at, as that tag shows it (`records.tag_view`)."""
    rows = conn.execute(
        _ready_by_tag_query(), {"system": system, "itype": itype, "tag": tag}
    ).all()
    if not rows:
        return None
    found = _record(rows[0], [
        (row.image_tag, _tag_access(row.tag_private, row.tag_user_acl, row.tag_group_acl,
                                    row.tag_owner))
        for row in rows
    ])
    return tag_view(found, tag)


def lock_image(conn: Connection, system: str, image_id: str) -> None:
    """Serialise changes to the access of one image's files until the transaction ends.

    SQLite's write transactions already hold the database's one write lock; PostgreSQL
    takes an advisory lock keyed on the image, so other images are not held up."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                     {"key": f"image-access\x1f{system}\x1f{image_id}"})


def ready_with_id(conn: Connection, system: str, image_id: str) -> list[ImageRecord]:
    """The READY records of an image on a system (they share its files in imageDir)."""
    return records(conn, images.c.system == system, images.c.image_id == image_id,
                   images.c.status == str(Status.READY))


def touch_expiration(conn: Connection, pk: int, expiration: float) -> bool:
    """Push a READY image's expiration forward to `expiration` (never back)."""
    result = conn.execute(_touch_expiration_query(), {"image_pk": pk, "new_expiration": expiration})
    return bool(result.rowcount == 1)


def active(conn: Connection, system: str, itype: str, pulltag: str) -> ImageRecord | None:
    """The record of this tag that is not READY (in flight, failed, expiring), if any."""
    found = records(conn, images.c.active_key == active_key(system, itype, pulltag))
    return found[0] if found else None


def ready_by_image_id(
    conn: Connection, system: str, itype: str, image_id: str, *, exclude: int | None = None
) -> ImageRecord | None:
    conditions = [
        images.c.system == system,
        images.c.itype == itype,
        images.c.image_id == image_id,
        images.c.status == str(Status.READY),
    ]
    if exclude is not None:
        conditions.append(images.c.pk != exclude)
    found = records(conn, *conditions)
    return found[0] if found else None


def with_status(conn: Connection, system: str, statuses: Iterable[Status]) -> list[ImageRecord]:
    wanted = [str(status) for status in statuses]
    return records(conn, images.c.system == system, images.c.status.in_(wanted))


def insert_record(conn: Connection, **values: Any) -> int:
    result = conn.execute(insert(images).values(**_encode(values)))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def update_record(conn: Connection, pk: int, *conditions: Any, **values: Any) -> bool:
    """Change one record; False when it no longer exists (or `conditions` do not hold)."""
    statement = update(images).where(images.c.pk == pk, *conditions)
    result = conn.execute(statement.values(**_encode(values)))
    return result.rowcount == 1


def delete_records(conn: Connection, pks: Iterable[int]) -> int:
    wanted = list(pks)
    if not wanted:
        return 0
    conn.execute(delete(tags).where(tags.c.image_pk.in_(wanted)))
    return conn.execute(delete(images).where(images.c.pk.in_(wanted))).rowcount


def point_tag(
    conn: Connection, system: str, itype: str, tag: str, image_pk: int, access: TagAccess
) -> None:
    """Make `tag` point at `image_pk` with `access`, taking it from whichever image had it
    (an upsert, so two gateways completing pulls of one tag at once do not both insert it)."""
    values = {"system": system, "itype": itype, "tag": tag, "image_pk": image_pk,
              "private": access.private, "user_acl": json.dumps(list(access.user_acl)),
              "group_acl": json.dumps(list(access.group_acl)), "owner": access.owner}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(tags).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[tags.c.system, tags.c.itype, tags.c.tag],
        set_={key: getattr(statement.excluded, key)
              for key in ("image_pk", "private", "user_acl", "group_acl", "owner")},
    )
    conn.execute(statement)


def tag_target(conn: Connection, system: str, itype: str, tag: str) -> tuple[int, TagAccess] | None:
    """The image record a tag points at (READY or being expired) and the tag's access."""
    row = conn.execute(select(tags).where(
        tags.c.system == system, tags.c.itype == itype, tags.c.tag == tag)).first()
    if row is None:
        return None
    return row.image_pk, _tag_access(row.private, row.user_acl, row.group_acl, row.owner)


def drop_tag(conn: Connection, system: str, itype: str, tag: str) -> None:
    conn.execute(delete(tags).where(
        tags.c.system == system, tags.c.itype == itype, tags.c.tag == tag))


def drop_tags(conn: Connection, image_pk: int) -> None:
    conn.execute(delete(tags).where(tags.c.image_pk == image_pk))


def add_metric(conn: Connection, **values: Any) -> None:
    conn.execute(insert(metrics).values(**values))


def add_metrics(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Many metrics rows in one statement (executemany)."""
    if rows:
        conn.execute(insert(metrics), [dict(row) for row in rows])


def recent_metrics(conn: Connection, system: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` rows of a system, oldest of them first (the original's order)."""
    query = (
        select(metrics)
        .where(metrics.c.system == system)
        .order_by(metrics.c.pk.desc())
        .limit(limit)
    )
    rows = list(reversed(conn.execute(query).all()))
    return [
        {
            "user": row.user,
            "uid": row.uid,
            "system": row.system,
            "type": row.type,
            "tag": row.tag,
            "id": row.image_id,
            "time": float(row.time),
        }
        for row in rows
    ]


def expired_ready(conn: Connection, system: str, now: float) -> list[ImageRecord]:
    """READY images of a system whose expiration has passed (set by lookups only)."""
    return records(
        conn,
        and_(
            images.c.system == system,
            images.c.status == str(Status.READY),
            images.c.expiration.is_not(None),
            images.c.expiration < now,
        ),
    )
