"""Who may read an image's files in imageDir: public, or private with user and group ACLs.

The gateway checks ACLs on lookup and the setuid runtime checks the `.meta` file's
USERACL/GROUPACL (gateway contract §3), and the files in imageDir carry the same rule:

- public: mode 0644, anyone may read them;
- private: owner read-write, nobody else by mode (0600), plus one POSIX ACL entry granting
  read to each listed uid (`u:<uid>:r`) and gid (`g:<gid>:r`), so that a user who is not
  listed cannot open the file even though the image directory is world-readable.

`setfacl_spec` (for `setfacl --set` on a remote host) and `posix_acl_xattr` (for
`os.setxattr` on the gateway host) express the same ACL; both replace the whole access
ACL, so entries a directory's default ACL handed down to a new file are dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from shifter.errors import ShifterError

PUBLIC_MODE = 0o644
PRIVATE_MODE = 0o600
# 0xFFFFFFFF is ACL_UNDEFINED_ID (and (uid_t)-1, "no change" to chown), never a real id.
MAX_ID = 0xFFFFFFFE
XATTR_NAME = "system.posix_acl_access"

# The kernel's on-disk form (linux/posix_acl_xattr.h): a little-endian u32 version, then
# per entry a u16 tag, a u16 permission set and a u32 id.
_XATTR_VERSION = 2
_TAG_USER_OBJ, _TAG_USER, _TAG_GROUP_OBJ, _TAG_GROUP, _TAG_MASK, _TAG_OTHER = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20,
)
_READ, _WRITE = 4, 2
_UNDEFINED_ID = 0xFFFFFFFF


class AccessError(ShifterError):
    """An ACL id that no file system can hold (negative, too large, not a number)."""


def _ids(values: Iterable[int], what: str) -> tuple[int, ...]:
    checked = set()
    for value in values:
        # bool is an int subclass: True would silently become uid 1.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
            raise AccessError(
                f"{what} {value!r} is not a valid ACL id",
                hint=f"ids are whole numbers from 0 to {MAX_ID}",
            )
        checked.add(value)
    return tuple(sorted(checked))


@dataclass(frozen=True)
class ImageAccess:
    """Who may read an image's files.

    The id lists are kept sorted and without repeats, so two accesses granting the same
    ids compare equal whatever order a request listed them in (contract §3.3). A public
    image has no ACL: ids given with `private=False` are dropped, as the original drops
    the ACLs of a pull that turned out public (§3.1). A private image with no ids is
    readable by its owner (and root) only.
    """

    private: bool
    user_ids: tuple[int, ...] = ()
    group_ids: tuple[int, ...] = ()
    PUBLIC: ClassVar[ImageAccess]

    def __post_init__(self) -> None:
        users = _ids(self.user_ids, "user id") if self.private else ()
        groups = _ids(self.group_ids, "group id") if self.private else ()
        # Frozen: normalising in place is the one write the dataclass allows itself.
        object.__setattr__(self, "private", bool(self.private))
        object.__setattr__(self, "user_ids", users)
        object.__setattr__(self, "group_ids", groups)

    def covers(self, other: ImageAccess) -> bool:
        """Whether everyone `other` admits is admitted by this one too."""
        if not self.private:
            return True
        return (other.private and set(other.user_ids) <= set(self.user_ids)
                and set(other.group_ids) <= set(self.group_ids))

    def widened(self, other: ImageAccess) -> ImageAccess:
        """Admits everyone either admits."""
        if not self.private or not other.private:
            return ImageAccess.PUBLIC
        return ImageAccess(True, (*self.user_ids, *other.user_ids),
                           (*self.group_ids, *other.group_ids))

    @property
    def mode(self) -> int:
        """Permission bits before the ACL is applied (which widens the group bits to r)."""
        return PRIVATE_MODE if self.private else PUBLIC_MODE

    def setfacl_spec(self) -> str:
        """The whole ACL as `setfacl --set` takes it, e.g. `u::rw,g::-,o::-,u:1002:r,m::r`."""
        entries = ["u::rw", "g::-", "o::-"]
        entries += [f"u:{uid}:r" for uid in self.user_ids]
        entries += [f"g:{gid}:r" for gid in self.group_ids]
        if self.user_ids or self.group_ids:
            entries.append("m::r")
        return ",".join(entries)

    def posix_acl_xattr(self) -> bytes:
        """The same ACL encoded as the value of `system.posix_acl_access`.

        The kernel refuses an ACL whose entries are out of order (owner, named users by id,
        owning group, named groups by id, mask, other) or that has named entries but no mask.
        """
        entries = [(_TAG_USER_OBJ, _READ | _WRITE, _UNDEFINED_ID)]
        entries += [(_TAG_USER, _READ, uid) for uid in self.user_ids]
        entries.append((_TAG_GROUP_OBJ, 0, _UNDEFINED_ID))
        entries += [(_TAG_GROUP, _READ, gid) for gid in self.group_ids]
        if self.user_ids or self.group_ids:
            entries.append((_TAG_MASK, _READ, _UNDEFINED_ID))
        entries.append((_TAG_OTHER, 0, _UNDEFINED_ID))
        return struct.pack("<I", _XATTR_VERSION) + b"".join(
            struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries
        )


ImageAccess.PUBLIC = ImageAccess(False)


def union_access(accesses: Iterable[ImageAccess]) -> ImageAccess | None:
    """The access of files shared by several tags: everyone any of them admits (None: no
    tags)."""
    result: ImageAccess | None = None
    for access in accesses:
        result = access if result is None else result.widened(access)
    return result
