"""Image records as the gateway's API shows them, and who may see them.

An image record is keyed by (system, image type, tag): `pulltag` is the tag a pull or
import was asked for, and `tags` are the tags that currently point at a READY image.

Access belongs to the tag (docs/gateway.md, "Who may use an image"): each tag of a READY
image carries the ACL its own pull asked for (`TagAccess`), and a lookup, a list entry or a
re-pull answers with that tag's access only. The READY record's own `private`/`user_acl`/
`group_acl` are the access its files in imageDir have: the union of its tags' (public if
any tag is public), which the `.meta` USERACL/GROUPACL lines carry for `id:` launches.
`tag_view` turns a READY record into the record as one tag shows it.

The reply shape (`to_response`) is the original's "create_response" (gateway contract §1.2):
exactly its fields, a field without a value sent as the string "MISSING", `last_pull` a
float and `id` the bare hex digest, because the C `shifterimg` depends on all of that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

MISSING = "MISSING"


class Status(StrEnum):
    """The original's record statuses, with the same strings (contract §2.1)."""

    INIT = "INIT"  # only ever in the first reply to a new pull; stored as PENDING
    PENDING = "PENDING"
    PULLING = "PULLING"
    EXAMINATION = "EXAMINATION"
    CONVERSION = "CONVERSION"
    TRANSFER = "TRANSFER"
    HASHING = "HASHING"
    READY = "READY"
    FAILURE = "FAILURE"
    EXPIRING = "EXPIRING"
    EXPIRED = "EXPIRED"


# A worker owns the record while it is in one of these.
IN_FLIGHT = frozenset(
    {
        Status.PENDING,
        Status.PULLING,
        Status.EXAMINATION,
        Status.CONVERSION,
        Status.TRANSFER,
        Status.HASHING,
    }
)


@dataclass(frozen=True)
class Requester:
    """Who sent a request, as munge vouched for it: uid and gid from the credential, the
    name and supplementary groups from this host's user database (None: no passwd entry)."""

    uid: int
    gid: int
    user: str | None = None
    groups: frozenset[int] = frozenset()

    @property
    def all_gids(self) -> frozenset[int]:
        return self.groups | {self.gid}

    def describe(self) -> str:
        return f"{self.user or '?'}({self.uid})"


@dataclass(frozen=True)
class TagAccess:
    """Who may use one tag of an image: what that tag's pull asked for. `owner` is the uid
    of a custom tag's first importer (None: docker tags, and custom tags from before owners
    were recorded, which only admins may change)."""

    private: bool = False
    user_acl: tuple[int, ...] = ()
    group_acl: tuple[int, ...] = ()
    owner: int | None = None

    @property
    def restricted(self) -> bool:
        """Whether the ACLs limit who may use it: private with a non-empty ACL."""
        return bool(self.private) and bool(self.user_acl or self.group_acl)

    def readable_by(self, who: Requester) -> bool:
        """The original's `_checkread` (contract §3.2): public, no ACL, or listed."""
        if not self.restricted:
            return True
        return who.uid in self.user_acl or bool(who.all_gids & set(self.group_acl))


PUBLIC_TAG = TagAccess()


@dataclass(frozen=True)
class ImageRecord:
    """One row of the image table (see `store_schema.images`)."""

    pk: int
    system: str
    itype: str
    pulltag: str
    status: Status
    created: float
    image_id: str | None = None
    tags: tuple[str, ...] = ()
    format: str | None = None
    user_acl: tuple[int, ...] = ()
    group_acl: tuple[int, ...] = ()
    private: bool | None = None
    env: tuple[str, ...] | None = None
    entry: Any = None
    workdir: str | None = None
    labels: Mapping[str, str] | None = field(default=None, hash=False)
    last_pull: float | None = None
    last_heartbeat: float | None = None
    expiration: float | None = None
    status_message: str | None = None
    # The uid whose pull or import created the record (custom tags: their owner).
    owner: int | None = None
    # Each tag of `tags` with its own access (READY records).
    tag_access: tuple[tuple[str, TagAccess], ...] = ()

    @property
    def access(self) -> TagAccess:
        """Who may see it: a tag view's tag access, else its files'."""
        return TagAccess(bool(self.private), self.user_acl, self.group_acl)

    @property
    def restricted(self) -> bool:
        """Whether the ACLs limit who may see it: a private image with a non-empty ACL."""
        return self.access.restricted

    def readable_by(self, who: Requester) -> bool:
        """The original's `_checkread` (contract §3.2): public, no ACL, or listed."""
        return self.access.readable_by(who)

    def access_of(self, tag: str) -> TagAccess | None:
        return dict(self.tag_access).get(tag)

    def visible_tags(self, viewer: Requester | None) -> tuple[str, ...]:
        """The tags a viewer may know of: a private tag's name is not shown to others."""
        if viewer is None or not self.tag_access:
            return self.tags
        return tuple(tag for tag, access in self.tag_access if access.readable_by(viewer))


def tag_view(record: ImageRecord, tag: str) -> ImageRecord:
    """A READY record as `tag` shows it: with that tag's access instead of its files'."""
    access = record.access_of(tag)
    if access is None:
        return record
    return replace(record, private=access.private, user_acl=access.user_acl,
                   group_acl=access.group_acl)


def listed_views(record: ImageRecord, viewer: Requester) -> list[ImageRecord]:
    """The list entries of a READY record for a viewer: one per access among the tags the
    viewer may use, each naming those tags (a record with no tags: itself, by its files'
    access)."""
    if not record.tag_access:
        return [record] if record.readable_by(viewer) else []
    groups: dict[TagAccess, list[str]] = {}
    for tag, access in record.tag_access:
        if access.readable_by(viewer):
            groups.setdefault(replace(access, owner=None), []).append(tag)
    return [
        replace(record, tags=tuple(tags), private=access.private, user_acl=access.user_acl,
                group_acl=access.group_acl)
        for access, tags in groups.items()
    ]


def to_response(
    record: ImageRecord, viewer: Requester | None = None, *, status: Status | None = None
) -> dict[str, Any]:
    """The record as the API sends it. `status` overrides the stored one (INIT in the first
    reply to a pull, which like the original's has no last_pull or status_message yet). The
    ACL lists are shown only to someone they admit: a user who shares an in-flight pull of
    another user's private image must not learn who else may read it."""
    fresh = status is Status.INIT
    show_acls = viewer is None or not (record.user_acl or record.group_acl) or (
        viewer.uid in record.user_acl or bool(viewer.all_gids & set(record.group_acl))
    )
    return {
        "id": record.image_id or MISSING,
        "system": record.system,
        "itype": record.itype,
        "tag": list(record.visible_tags(viewer)),
        "status": str(status or record.status),
        "userACL": list(record.user_acl) if show_acls else [],
        "groupACL": list(record.group_acl) if show_acls else [],
        "ENV": list(record.env) if record.env is not None else MISSING,
        "ENTRY": (record.entry if record.status is Status.READY and record.entry is not None
                  else MISSING),
        "WORKDIR": record.workdir or MISSING,
        "LABELS": dict(record.labels) if record.labels is not None else MISSING,
        "last_pull": MISSING if fresh or record.last_pull is None else float(record.last_pull),
        "status_message": MISSING if fresh else record.status_message or MISSING,
    }


def parse_id_list(text: Any, what: str) -> tuple[int, ...]:
    """`allowed_uids`/`allowed_gids` of a pull body: "1000,1001" as the C client sends it.

    A JSON list of integers is accepted too. Empty items are skipped as the runtime skips
    them in USERACL; anything else that is not a whole number in 0..2^32-2 is a ValueError.
    """
    if text is None or text == "":
        return ()
    if isinstance(text, list):
        items: list[Any] = text
    elif isinstance(text, str):
        items = [item.strip() for item in text.split(",") if item.strip()]
    elif isinstance(text, int) and not isinstance(text, bool):
        items = [text]
    else:
        raise ValueError(f"{what} must be a comma-separated list of ids, such as \"1000,1001\"")
    ids = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(f"{what}: {item!r} is not a numeric id")
        if isinstance(item, str) and not item.isdecimal():
            raise ValueError(f"{what}: {item!r} is not a numeric id")
        value = int(item)
        if not 0 <= value <= 0xFFFFFFFE:
            raise ValueError(f"{what}: {value} is out of range")
        ids.add(value)
    return tuple(sorted(ids))
