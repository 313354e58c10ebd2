"""The image record the gateway sends (lookup, pull, doimport, list), as a typed value.

The gateway sends every field of its record shape; a field its database lacks arrives as the
string "MISSING" (a fresh pull record has no id, no last_pull yet), which becomes None here.
Older gateways sent `tag` as a bare string and `last_pull` as an integer: both are accepted.
Parsing is pure: a JSON value in, an `ImageRecord` or `GatewayReplyError` out.
"""

from __future__ import annotations

from types import MappingProxyType

from shifter.frozen import Frozen
from shifter.gwclient.errors import GatewayReplyError

TYPE_CHECKING = False  # `collections` costs `shifterimg lookup` ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping

MISSING = "MISSING"

# Statuses of work the gateway is still doing: a pull or an import is polled while its record
# is in one of these (the original's set, plus HASHING, which only an import reports).
IN_PROGRESS = frozenset(
    {"MISSING", "INIT", "PENDING", "PULLING", "EXAMINATION", "CONVERSION", "TRANSFER", "HASHING"}
)
# SUCCESS is the original's legacy spelling of READY.
READY = frozenset({"READY", "SUCCESS"})

# Frozen, not a dataclass or a named tuple: this is imported on every `shifter` launch and
# `shifterimg lookup`; a 14-field dataclass costs over a millisecond to create, a named
# tuple the import of `collections`. Build it with keywords.
class ImageRecord(Frozen):
    """One image as the gateway describes it; None where the gateway has no value.

    - `status` (str), `id` (64 hex digits; None on a pull record that has not finished),
      `system`, `itype` (str or None);
    - `tags`: every tag pointing at this image (tuple of str);
    - `user_acl`, `group_acl`: tuples of ids, empty for a public image;
    - `env` (tuple of "NAME=value" or None), `entry` (the image's raw Entrypoint: usually a
      list, sometimes a string, or None), `workdir`, `labels` (mapping or None);
    - `last_pull` (epoch seconds, float, or None), `status_message` (the last progress
      message or None);
    - `raw`: the JSON object as received (`shifterimg images --json`, debugging).
    """

    status: str
    id: str | None = None
    system: str | None = None
    itype: str | None = None
    tags: tuple[str, ...] = ()
    user_acl: tuple[int, ...] = ()
    group_acl: tuple[int, ...] = ()
    env: tuple[str, ...] | None = None
    entry: object = None
    workdir: str | None = None
    labels: Mapping[str, object] | None = None
    last_pull: float | None = None
    status_message: str | None = None
    raw: Mapping[str, object] = MappingProxyType({})

    @property
    def in_progress(self) -> bool:
        """Whether the gateway is still working on this record (keep polling)."""
        return self.status in IN_PROGRESS

    @property
    def ready(self) -> bool:
        return self.status in READY


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value != MISSING else None


def _texts(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return () if value == MISSING else (value,)
    if isinstance(value, list):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _ids(value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    ids = []
    for item in value:
        # bool is an int in Python; JSON true is not an id.
        if isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        elif isinstance(item, str) and item.isdigit():
            ids.append(int(item))
    return tuple(ids)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def parse_record(value: object, *, where: str = "the gateway") -> ImageRecord:
    """An `ImageRecord` from one decoded JSON object; it must at least carry a status."""
    if not isinstance(value, dict):
        raise GatewayReplyError(f"{where} sent {type(value).__name__} where an image record "
                                "(a JSON object) belongs")
    status = value.get("status")
    if not isinstance(status, str) or not status:
        raise GatewayReplyError(f"{where} sent an image record without a status")
    env = value.get("ENV")
    labels = value.get("LABELS")
    return ImageRecord(
        status=status,
        id=_text(value.get("id")),
        system=_text(value.get("system")),
        itype=_text(value.get("itype")),
        tags=_texts(value.get("tag")),
        user_acl=_ids(value.get("userACL")),
        group_acl=_ids(value.get("groupACL")),
        env=_texts(env) if isinstance(env, list) else None,
        entry=None if value.get("ENTRY") == MISSING else value.get("ENTRY"),
        workdir=_text(value.get("WORKDIR")),
        labels=MappingProxyType(dict(labels)) if isinstance(labels, dict) else None,
        last_pull=_number(value.get("last_pull")),
        status_message=_text(value.get("status_message")),
        raw=MappingProxyType(value),
    )


def parse_list(value: object, *, where: str = "the gateway") -> list[ImageRecord]:
    """The records of a list reply, `{"list": [...]}` (the original client also took "data")."""
    items = None
    if isinstance(value, dict):
        items = value.get("list", value.get("data"))
    if not isinstance(items, list):
        raise GatewayReplyError(f"{where} sent an image list without a \"list\" array")
    return [parse_record(item, where=where) for item in items]
