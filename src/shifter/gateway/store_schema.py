"""The metadata store's tables, and creating or upgrading them at start.

- `images`: one row per image record. A record that is not READY (a pull or import in
  flight, a failure, an expiry) carries `active_key` = system/type/pulltag, which is
  unique: two gateways accepting the same pull at once cannot both create a record, the
  second one's insert fails and it answers with the first one's record.
- `tags`: which READY image a tag points at, one image per (system, type, tag), and who may
  use the tag: its own ACL (`records.TagAccess`) and, for a custom tag, its owner.
- `jobs`: work for the workers (pull, import, expire) with its claim and lease.
- `instances`: running gateway processes and when each was last seen alive.
- `metrics`: one row per successful lookup (when Metrics is on).
- `schema_version`: one row, the version the tables are at.

Creation runs in one transaction under a lock (SQLite's write lock, a PostgreSQL advisory
lock), so gateways starting together neither race nor half-create the schema.
"""

from __future__ import annotations

import json

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

from shifter.errors import ShifterError

SCHEMA_VERSION = 2
# Any constant: the key of the PostgreSQL advisory lock held while the schema is created.
_MIGRATION_LOCK = 0x5F1F7E2

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

images = Table(
    "images",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("system", String(255), nullable=False),
    Column("itype", String(32), nullable=False),
    Column("pulltag", String(1024), nullable=False),
    Column("active_key", String(1400), unique=True),
    Column("status", String(16), nullable=False),
    Column("image_id", String(128)),
    Column("format", String(16)),
    Column("user_acl", Text, nullable=False, default="[]"),
    Column("group_acl", Text, nullable=False, default="[]"),
    Column("private", Boolean),
    Column("env", Text),
    Column("entry", Text),
    Column("workdir", Text),
    Column("labels", Text),
    Column("last_pull", Float),
    Column("last_heartbeat", Float),
    Column("expiration", Float),
    Column("status_message", Text),
    Column("created", Float, nullable=False),
    Column("owner", Integer),  # added in version 2
    Index("images_by_id", "system", "image_id"),
    Index("images_by_status", "system", "status"),
    # Never reuse a number: a worker or a job still naming a deleted record must not find a
    # new record under it.
    sqlite_autoincrement=True,
)

tags = Table(
    "tags",
    metadata,
    Column("system", String(255), primary_key=True),
    Column("itype", String(32), primary_key=True),
    Column("tag", String(1024), primary_key=True),
    Column("image_pk", Integer, ForeignKey("images.pk", ondelete="CASCADE"), nullable=False),
    # Added in version 2: access belongs to the tag.
    Column("private", Boolean),
    Column("user_acl", Text, nullable=False, default="[]"),
    Column("group_acl", Text, nullable=False, default="[]"),
    Column("owner", Integer),
    Index("tags_by_image", "image_pk"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("system", String(255), nullable=False),
    Column("image_pk", Integer, ForeignKey("images.pk", ondelete="SET NULL")),
    Column("params", Text, nullable=False),
    Column("state", String(16), nullable=False),  # queued, running, done
    # Registry credentials live only in the memory of the process that accepted the pull.
    Column("needs_credentials", Boolean, nullable=False, default=False),
    Column("accepted_by", String(64), nullable=False),
    Column("claim", String(64)),  # unique per claim; completing a job requires holding it
    Column("claimed_by", String(64)),
    Column("lease_expires", Float),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("finished", Float),
    Column("finished_by", String(64)),
    Column("outcome", Text),
    Index("jobs_by_state", "state", "not_before"),
    sqlite_autoincrement=True,
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("user", String(255)),
    Column("uid", Integer, nullable=False),
    Column("system", String(255), nullable=False),
    Column("type", String(32), nullable=False),
    Column("tag", String(1024), nullable=False),
    Column("image_id", String(128)),
    Column("time", Float, nullable=False),
    Index("metrics_by_system", "system", "pk"),
)


class SchemaError(ShifterError):
    """The database holds a schema this gateway cannot use."""


def migrate(conn: Connection) -> int:
    """Create the tables, or upgrade them to SCHEMA_VERSION; returns the version found
    (0 for a new database). Runs inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    metadata.create_all(conn, tables=[schema_version], checkfirst=True)
    found = conn.execute(select(schema_version.c.version)).scalar()
    if found is None:
        metadata.create_all(conn, checkfirst=True)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return 0
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the metadata store is at schema version {found}, newer than this gateway's "
            f"{SCHEMA_VERSION}",
            hint="a newer gateway has used this database: upgrade this one too",
        )
    if found < 2:
        _upgrade_to_2(conn)
    # Future versions add their upgrade steps here, one `if found < N:` block each.
    if found < SCHEMA_VERSION:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION))
    return found


def _upgrade_to_2(conn: Connection) -> None:
    """Access moves from the image to each tag: every tag gets the ACL its image had (what
    every tag of it had under version 1), and each custom tag the first importer the job
    history still names (none: only admins may re-import or expire it)."""
    for statement in (
        "ALTER TABLE tags ADD COLUMN private BOOLEAN",
        "ALTER TABLE tags ADD COLUMN user_acl TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE tags ADD COLUMN group_acl TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE tags ADD COLUMN owner INTEGER",
        "ALTER TABLE images ADD COLUMN owner INTEGER",
    ):
        conn.execute(text(statement))
    conn.execute(text(
        "UPDATE tags SET "
        "private = (SELECT images.private FROM images WHERE images.pk = tags.image_pk), "
        "user_acl = (SELECT images.user_acl FROM images WHERE images.pk = tags.image_pk), "
        "group_acl = (SELECT images.group_acl FROM images WHERE images.pk = tags.image_pk)"
    ))
    importers: dict[tuple[str, str], int] = {}
    query = select(jobs.c.system, jobs.c.params).where(
        jobs.c.kind == "import", jobs.c.outcome.like("ready:%")).order_by(jobs.c.pk)
    for system, params in conn.execute(query):
        try:
            document = json.loads(params)
            key = (system, str(document["tag"]))
            uid = int(document["requester"]["uid"])
        except (ValueError, KeyError, TypeError):
            continue
        importers.setdefault(key, uid)
    for (system, tag), uid in importers.items():
        conn.execute(tags.update().where(
            tags.c.system == system, tags.c.itype == "custom", tags.c.tag == tag,
        ).values(owner=uid))
