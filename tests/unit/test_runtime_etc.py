"""/etc/group filtering (maxGroupCount) and the generated passwd and group files."""

from __future__ import annotations

import os

import pytest

from shifter.runtime.identity.user import UserRecord, parse_passwd_line
from shifter.runtime.rootfs.etc import NSSWITCH, dynamic_group, dynamic_passwd, filter_group

pytestmark = pytest.mark.unit


def test_membership_is_kept_for_the_first_groups_only() -> None:
    text = "a:x:10:u\nb:x:11:v,u\nc:x:12:u\nd:x:13:v\n"
    assert filter_group(text, "u", 2) == "a:x:10:u\nb:x:11:u\nc:x:12:\nd:x:13:\n"


def test_group_named_like_the_user_counts_as_membership() -> None:
    assert filter_group("u:x:1000:\n", "u", 31) == "u:x:1000:u\n"


def test_zero_max_lists_no_member() -> None:
    assert filter_group("a:x:10:u\n", "u", 0) == "a:x:10:\n"


def test_gid_zero_and_broken_lines_are_dropped() -> None:
    text = "root:x:0:u\nbad line\nnogid:x::u\n# comment\n\nok:x:5:\n"
    assert filter_group(text, "u", 31) == "ok:x:5:\n"


def test_empty_fields_are_read_as_fields() -> None:
    # The original's strtok merged `g::100:u` into a line with gid 0 and dropped it.
    assert filter_group("g::100:u\n", "u", 31) == "g:x:100:u\n"


def test_members_are_never_listed_except_the_user() -> None:
    assert filter_group("g:x:7:alice,bob\n", "u", 31) == "g:x:7:\n"


def test_dynamic_passwd() -> None:
    users = [UserRecord("u", 1000, 100, "U Ser", "/home/u", "/bin/bash"), UserRecord("v", 2, 3)]
    assert dynamic_passwd(users) == "u:x:1000:100:U Ser:/home/u:/bin/bash\nv:x:2:3::/:\n"


def test_dynamic_group_lists_each_group_once_with_its_users() -> None:
    import grp

    gid = os.getgid()
    name = grp.getgrgid(gid).gr_name
    text = dynamic_group([("u", [gid, 987654]), ("v", [gid])])
    assert text == f"{name}:x:{gid}:u,v\n"  # an unnamed gid has no line


def test_nsswitch_uses_files() -> None:
    assert "passwd:    files\n" in NSSWITCH
    assert "hosts:     files dns\n" in NSSWITCH


def test_parse_passwd_line() -> None:
    record = parse_passwd_line("u:x:1000:100:gecos:/home/u:/bin/sh\n")
    assert record is not None
    assert (record.name, record.uid, record.gid, record.home) == ("u", 1000, 100, "/home/u")
    assert parse_passwd_line("# comment") is None
    assert parse_passwd_line("u:x:abc:100:::") is None
    assert record.passwd_line() == "u:x:1000:100:gecos:/home/u:/bin/sh"
