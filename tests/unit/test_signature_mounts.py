"""What counts as "the container" in the mount table: the mountinfo reader, and the
choice of mounts unsetupRoot takes down (everything at or below udiMount and loopMount,
except a site's private self-bind there)."""

from __future__ import annotations

import pytest

from shifter.runtime.job.teardown import container_mounts
from shifter.runtime.rootfs.mountinfo import (
    is_self_bind,
    is_under,
    mount_containing,
    parse_mountinfo,
    unescape,
)
from shifter.sys.caps import Prctl
from shifter.sys.namespace import Namespace

TABLE = """\
20 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 20 254:0 /var/udiMount /var/udiMount rw,relatime - ext4 /dev/vda rw
31 30 0:40 / /var/udiMount ro,nosuid,nodev - tmpfs shifter ro,mode=755
32 31 7:0 /bin /var/udiMount/bin ro,nosuid,nodev - squashfs /dev/loop0 ro
33 31 0:41 / /var/udiMount/proc rw,nosuid,nodev,noexec - proc proc rw
34 20 7:0 / /var/udiLoopMount ro,nosuid,nodev shared:7 master:3 - squashfs /dev/loop0 ro
35 20 254:0 /var/udiMountOther /var/udiMountOther rw - ext4 /dev/vda rw
36 20 0:50 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def test_parse_fields_escapes_and_propagation() -> None:
    entries = parse_mountinfo(TABLE + "garbage line\n")
    assert [e.id for e in entries] == [20, 30, 31, 32, 33, 34, 35, 36]
    loop = entries[5]
    assert (loop.parent, loop.device, loop.root) == (20, "7:0", "/")
    assert (loop.mount_point, loop.fstype, loop.source) == ("/var/udiLoopMount", "squashfs",
                                                           "/dev/loop0")  # fmt: skip
    assert loop.shared
    assert entries[0].shared and not entries[1].shared
    assert entries[7].mount_point == "/mnt/with space"


def test_unescape() -> None:
    assert unescape("a\\040b\\011c\\134d") == "a b\tc\\d"
    assert unescape("no\\escape\\9") == "no\\escape\\9"


@pytest.mark.parametrize(
    ("path", "tree", "under"),
    [
        ("/var/udiMount", "/var/udiMount", True),
        ("/var/udiMount/bin", "/var/udiMount", True),
        ("/var/udiMountOther", "/var/udiMount", False),
        ("/var/udiMount/x", "/var/udiMount/", True),
        ("/anything", "/", True),
    ],
)
def test_is_under_compares_components(path: str, tree: str, under: bool) -> None:
    assert is_under(path, tree) is under


def test_self_binds_are_recognised() -> None:
    entries = parse_mountinfo(TABLE)
    by_id = {entry.id: entry for entry in entries}
    assert is_self_bind(by_id[30], entries)  # /var/udiMount bound onto itself
    assert not is_self_bind(by_id[31], entries)  # the container's tmpfs on top of it
    assert not is_self_bind(by_id[34], entries)  # the image
    assert not is_self_bind(by_id[20], entries)  # no parent in the table


def test_the_mount_a_path_is_on() -> None:
    entries = parse_mountinfo(TABLE)
    assert mount_containing(entries, "/var/udiMount/etc").id == 31  # type: ignore[union-attr]
    assert mount_containing(entries, "/var/udiMountOther/x").id == 35  # type: ignore[union-attr]
    assert mount_containing(entries, "/srv").id == 20  # type: ignore[union-attr]


def test_teardown_takes_the_container_and_keeps_the_sites_self_bind() -> None:
    entries = parse_mountinfo(TABLE)
    chosen = container_mounts(entries, ("/var/udiMount", "/var/udiLoopMount"))
    assert [entry.id for entry in chosen] == [31, 32, 33, 34]


def test_flags_show_by_name_without_enum() -> None:
    assert Namespace.describe(Namespace.NEWUSER | Namespace.NEWNS) == "NEWNS|NEWUSER"
    assert Namespace.describe(Namespace.NEWNS | 1) == "NEWNS|0x1"
    assert Prctl.describe(Prctl.SET_NO_NEW_PRIVS) == "SET_NO_NEW_PRIVS"
