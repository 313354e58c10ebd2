"""`shifter.sys`, the only place syscalls are made: errors that name the operation, its
arguments and errno; bind and remount mechanics; the privileged privilege drop.

Anything that changes process or mount state runs in a child Python process (in its own
mount namespace where it mounts), so the test process and the host stay untouched.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shifter.sys.libc import SyscallError
from shifter.sys.mount import MountFlag, add_restrictions, mount, umount
from shifter.sys.root import chroot
from tests.services.runtime_fixtures import TEST_USER, gid_of, uid_of


def _child(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mount_error_names_operation_arguments_and_errno(tmp_path: Path) -> None:
    with pytest.raises(SyscallError) as caught:
        mount("none", str(tmp_path / "absent"), "tmpfs", MountFlag.NOSUID | MountFlag.NODEV)
    error = caught.value
    assert str(error) == (
        f"mount('none', '{tmp_path}/absent', 'tmpfs', NOSUID|NODEV, NULL) failed: "
        "ENOENT (No such file or directory)"
    )
    assert (error.operation, error.errno) == ("mount", 2)


def test_umount_and_chroot_errors(tmp_path: Path) -> None:
    with pytest.raises(SyscallError, match=r"^umount2\('.*', 0\) failed: EINVAL"):
        umount(str(tmp_path))
    with pytest.raises(SyscallError, match=r"^chroot\('/nonexistent'\) failed: ENOENT"):
        chroot("/nonexistent")


def test_bind_keeps_locked_flags_and_adds_restrictions(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    out = _child(f"""
        import os
        from shifter.runtime.rootfs.binds import bind, restrictions
        from shifter.sys.mount import MountFlag, kept_flags, mount
        from shifter.sys.namespace import Namespace, unshare
        unshare(Namespace.NEWNS)
        mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
        mount("tmpfs", "{tmp_path}/src", "tmpfs", MountFlag.NOEXEC | MountFlag.NOATIME)
        bind("{tmp_path}/src", "{tmp_path}/dst", flags=restrictions(read_only=True),
             propagation=MountFlag.PRIVATE)
        print(MountFlag.describe(kept_flags("{tmp_path}/dst")))
    """)
    assert set(out.strip().split("|")) == {"RDONLY", "NOSUID", "NODEV", "NOEXEC", "NOATIME"}


@pytest.mark.parametrize("way", ["mount_setattr", "remounts"])
def test_a_recursive_bind_restricts_every_mount_it_brings(tmp_path: Path, way: str) -> None:
    # In a user namespace (the mounts made before it are locked, as the host's are for
    # `shifter`): a tree with a submount is bound whole, and every mount of the copy gets
    # the restrictions; "remounts" is the way for kernels without mount_setattr.
    for name in ("src", "dst"):
        (tmp_path / name).mkdir()
    out = _child(f"""
        import os
        from shifter.runtime.rootfs.binds import bind, restrict_each, restrictions
        from shifter.sys.libc import SyscallError
        from shifter.sys.mount import MountFlag, kept_flags, mount
        from shifter.sys.namespace import Namespace, enter_user_namespace, unshare
        unshare(Namespace.NEWNS)
        mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
        mount("tmpfs", "{tmp_path}/src", "tmpfs", MountFlag.NOATIME)
        os.mkdir("{tmp_path}/src/sub")
        mount("tmpfs", "{tmp_path}/src/sub", "tmpfs", 0)
        enter_user_namespace(0, 0, Namespace.NEWNS)
        try:
            mount("{tmp_path}/src", "{tmp_path}/dst", None, MountFlag.BIND)
        except SyscallError as error:
            print("plain bind:", error.errno)
        flags = restrictions(read_only=True)
        if "{way}" == "mount_setattr":
            bind("{tmp_path}/src", "{tmp_path}/dst", flags=flags, recursive=True)
        else:
            mount("{tmp_path}/src", "{tmp_path}/dst", None, MountFlag.BIND | MountFlag.REC)
            restrict_each("{tmp_path}/dst", flags)
        print(MountFlag.describe(kept_flags("{tmp_path}/dst")))
        print(MountFlag.describe(kept_flags("{tmp_path}/dst/sub")))
        print(MountFlag.describe(kept_flags("{tmp_path}/src/sub")))
    """)
    lines = out.splitlines()
    assert lines[0] == "plain bind: 22"  # EINVAL: a locked submount would be uncovered
    assert set(lines[1].split("|")) == {"RDONLY", "NOSUID", "NODEV", "NOATIME"}
    assert set(lines[2].split("|")) == {"RDONLY", "NOSUID", "NODEV", "RELATIME"}
    assert lines[3] == "RELATIME"  # the source is untouched


def test_add_restrictions_refuses_what_it_cannot_add(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a restriction"):
        add_restrictions(str(tmp_path), MountFlag.NOSUID | MountFlag.BIND, recursive=True)
    with pytest.raises(SyscallError, match=r"^mount_setattr\('.*', NOSUID, RECURSIVE\) .*EINVAL"):
        add_restrictions(str(tmp_path), MountFlag.NOSUID, recursive=True)  # not a mount


def test_root_drops_to_the_user_for_good() -> None:
    uid, gid, group = uid_of(TEST_USER), gid_of(TEST_USER), gid_of("shiftertestgrp")
    out = _child(f"""
        import os
        from shifter.runtime.identity.privileges import drop_privileges, verify_dropped
        from shifter.sys.caps import capget
        drop_privileges({uid}, {gid}, [{gid}, {group}])
        verify_dropped({uid}, {gid}, [{gid}, {group}])
        print(capget(), os.getresuid(), os.getresgid(), sorted(os.getgroups()))
        try:
            os.setuid(0)
        except PermissionError:
            print("setuid refused")
    """)
    assert out.splitlines() == [
        f"(0, 0, 0) ({uid}, {uid}, {uid}) ({gid}, {gid}, {gid}) {sorted([gid, group])}",
        "setuid refused",
    ]


def test_verification_refuses_leftover_privileges() -> None:
    out = _child(f"""
        from shifter.runtime.identity.privileges import PrivilegeError, verify_dropped
        try:
            verify_dropped({uid_of(TEST_USER)}, {gid_of(TEST_USER)}, [])
        except PrivilegeError as error:
            print(error)
    """)
    assert out.startswith("refusing to run the command with privileges left: CapPrm is")


def test_setns_returns_to_the_original_mount_namespace() -> None:
    out = _child("""
        import os
        from shifter.sys.namespace import Namespace, setns, unshare
        original = os.open("/proc/self/ns/mnt", os.O_RDONLY)
        before = os.readlink("/proc/self/ns/mnt")
        unshare(Namespace.NEWNS)
        inside = os.readlink("/proc/self/ns/mnt")
        setns(original, Namespace.NEWNS)
        print(before != inside, os.readlink("/proc/self/ns/mnt") == before)
    """)
    assert out == "True True\n"


def test_pivot_root_into_a_fresh_root(tmp_path: Path) -> None:
    out = _child(f"""
        import os
        from shifter.sys.mount import MountFlag, UmountFlag, mount, umount
        from shifter.sys.namespace import Namespace, unshare
        from shifter.sys.root import pivot_root
        unshare(Namespace.NEWNS)
        mount(None, "/", None, MountFlag.REC | MountFlag.PRIVATE)
        mount("tmpfs", "{tmp_path}", "tmpfs", MountFlag.NOSUID)
        os.mkdir("{tmp_path}/old")
        open("{tmp_path}/marker", "w").close()
        pivot_root("{tmp_path}", "{tmp_path}/old")
        os.chdir("/")
        umount("/old", UmountFlag.DETACH)
        print(sorted(os.listdir("/")))
    """)
    assert out == "['marker', 'old']\n"
