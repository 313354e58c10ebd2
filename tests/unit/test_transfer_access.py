"""ImageAccess: normalised ids, modes, and the ACL in setfacl's and the kernel's forms."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.gateway.access import MAX_ID, AccessError, ImageAccess

ids = st.lists(st.integers(min_value=0, max_value=MAX_ID), max_size=8)


def test_public_is_mode_0644_without_acl() -> None:
    assert ImageAccess(False) == ImageAccess.PUBLIC
    assert ImageAccess.PUBLIC.mode == 0o644
    assert ImageAccess.PUBLIC.setfacl_spec() == "u::rw,g::-,o::-"


def test_public_access_drops_ids() -> None:
    # The original discards the ACLs of a pull that turned out public (contract §3.1).
    assert ImageAccess(False, user_ids=(5,), group_ids=(6,)) == ImageAccess.PUBLIC


def test_ids_are_sorted_and_unique_so_order_does_not_matter() -> None:
    access = ImageAccess(True, user_ids=(1003, 1002, 1003), group_ids=[7, 3])  # type: ignore[arg-type]
    assert access.user_ids == (1002, 1003)
    assert access.group_ids == (3, 7)
    assert access == ImageAccess(True, user_ids=(1002, 1003), group_ids=(7, 3))
    assert hash(access) == hash(ImageAccess(True, (1003, 1002), (3, 7)))


def test_private_is_mode_0600() -> None:
    assert ImageAccess(True).mode == 0o600
    assert ImageAccess(True, user_ids=(1,)).mode == 0o600


@pytest.mark.parametrize("bad", [-1, MAX_ID + 1, 2**40, True, "1002", 1.5, None])
def test_invalid_ids_are_refused(bad: object) -> None:
    with pytest.raises(AccessError, match="is not a valid ACL id") as caught:
        ImageAccess(True, user_ids=(bad,))  # type: ignore[arg-type]
    assert str(caught.value) == f"user id {bad!r} is not a valid ACL id"
    with pytest.raises(AccessError, match="group id"):
        ImageAccess(True, group_ids=(bad,))  # type: ignore[arg-type]


def test_access_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ImageAccess.PUBLIC.private = True  # type: ignore[misc]


def test_setfacl_spec_lists_users_then_groups_with_a_read_mask() -> None:
    access = ImageAccess(True, user_ids=(1002, 1001), group_ids=(1004,))
    assert access.setfacl_spec() == "u::rw,g::-,o::-,u:1001:r,u:1002:r,g:1004:r,m::r"
    assert ImageAccess(True).setfacl_spec() == "u::rw,g::-,o::-"


def test_xattr_matches_what_setfacl_wrote_for_one_user() -> None:
    # Read back with os.getxattr after `setfacl --set u::rw,g::-,o::-,u:1002:r,m::r`.
    written_by_setfacl = bytes.fromhex(
        "02000000" "01000600ffffffff" "02000400ea030000" "04000000ffffffff"
        "10000400ffffffff" "20000000ffffffff"
    )
    assert ImageAccess(True, user_ids=(1002,)).posix_acl_xattr() == written_by_setfacl


@given(users=ids, groups=ids)
def test_xattr_entries_are_in_the_order_the_kernel_requires(
    users: list[int], groups: list[int]
) -> None:
    data = ImageAccess(True, tuple(users), tuple(groups)).posix_acl_xattr()
    assert struct.unpack_from("<I", data)[0] == 2
    entries = list(struct.iter_unpack("<HHI", data[4:]))
    tags = [tag for tag, _, _ in entries]
    assert tags == sorted(tags)  # owner, users, owning group, groups, mask, other
    named = [(tag, ident) for tag, _, ident in entries if tag in (0x02, 0x08)]
    assert named == sorted(set(named))
    assert len(named) == len(set(users)) + len(set(groups))
    assert (0x10 in tags) == bool(named)  # a mask exactly when there are named entries
    assert {perm for tag, perm, _ in entries if tag in (0x02, 0x08, 0x10)} <= {4}
    assert [perm for tag, perm, _ in entries if tag in (0x01, 0x04, 0x20)] == [6, 0, 0]
