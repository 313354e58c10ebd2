"""A remote platform end to end: `shifter-imagegw serve` with an `accesstype: remote` system
whose imageDir is reached only over ssh and scp, and `shifterimg` run by real users.

The system `testsys` is served by the real sshd of the `sshd` fixture on 127.0.0.1, as its
account `shiftergw`, with the fixture's key and known_hosts passed through sshCmdOptions and
scpCmdOptions; the "remote" imageDir is a directory on this machine owned by shiftergw, so
the tests can look at what landed there and try to read it as other users. The sshd log
shows that every publish and removal went through ssh.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shifter.image.meta import read_meta
from tests.service.test_shifterimg_e2e import (
    HEX_ID,
    ok,
    push_private,
    push_public,
    status_lines,
)
from tests.service.test_transfer_support import assert_private, assert_public, shared_dir
from tests.services.gateway_fixtures import (
    ADMIN,
    PRIVATE,
    SYSTEM,
    USER_A,
    USER_B,
    GatewayEnv,
    Site,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint
from tests.services.sshd_fixtures import SshServer

ACCEPTED = "Accepted publickey for "


@pytest.fixture
def remote_dir(sshd: SshServer) -> Iterator[Path]:
    """The remote system's imageDir: owned by the ssh account, reachable by test users."""
    account = pwd.getpwnam(sshd.user)
    with shared_dir("shifter-gateway-remote-") as top:
        directory = top / "images"
        directory.mkdir(mode=0o755)
        os.chown(directory, account.pw_uid, account.pw_gid)
        yield directory


@pytest.fixture
def start_remote_site(
    gateway_env: GatewayEnv, sshd: SshServer, remote_dir: Path,
    start_site: Callable[..., Site],
) -> Callable[[], Site]:
    """A gateway whose platform `testsys` is remote (ssh to the sshd fixture), and a login
    node's udiRoot.conf pointing at it."""

    def start() -> Site:
        local = gateway_env.data["Platforms"][SYSTEM]
        gateway_env.data["Platforms"][SYSTEM] = {
            **sshd.platform_data(remote_dir),
            "mungeSocketPath": local["mungeSocketPath"],
            "admins": local["admins"],
        }
        return start_site()

    return start


def logins(sshd: SshServer) -> int:
    """How many ssh logins of the gateway account sshd has accepted so far."""
    return sshd.log_path.read_text(errors="replace").count(ACCEPTED + sshd.user)


def landed(directory: Path, image_id: str) -> list[str]:
    """What is in the remote imageDir, hidden names (staging directories) included."""
    names = sorted(path.name for path in directory.iterdir())
    assert names == sorted(f"{image_id}.{suffix}" for suffix in ("json", "meta", "squashfs"))
    return names


def test_a_public_pull_lands_over_ssh_and_expire_removes_it(
    start_remote_site: Callable[[], Site], sshd: SshServer, remote_dir: Path,
    registry_anon: RegistryEndpoint, repo_name: str,
) -> None:
    site = start_remote_site()
    tag = push_public(registry_anon, repo_name)
    before = logins(sshd)

    pulled = ok(site.run("pull", tag))
    assert status_lines(pulled)[-1] == ("Pulling", f"docker:{tag}", "READY")
    image_id = ok(site.run("lookup", tag, user=USER_B)).strip()
    assert HEX_ID.match(image_id)
    published = logins(sshd)
    assert published >= before + 3  # staging directory, scp, finalize

    landed(remote_dir, image_id)
    owner = pwd.getpwnam(sshd.user).pw_uid
    for suffix in ("squashfs", "meta", "json"):
        path = remote_dir / f"{image_id}.{suffix}"
        assert path.stat().st_uid == owner, f"{path.name} was not written by {sshd.user}"
        assert_public(path)  # 0644, and another user reads it
    meta = read_meta(str(remote_dir / f"{image_id}.meta"))
    assert meta.format == "squashfs"
    assert (meta.user_acl, meta.group_acl) == ((), ())
    with open(remote_dir / f"{image_id}.squashfs", "rb") as image:
        assert image.read(4) == b"hsqs"  # a squashfs superblock

    assert ok(site.run("expire", tag, user=ADMIN)) == ""
    wait_for(lambda: not any(remote_dir.iterdir()), what="the expired files to go over ssh")
    assert logins(sshd) > published
    missing = site.run("lookup", tag)
    assert missing.returncode == 1 and "is not on the image gateway" in missing.stderr


def test_a_private_pull_is_unreadable_by_others_on_the_remote_system(
    start_remote_site: Callable[[], Site], private_registry: RegistryEndpoint,
    sshd: SshServer, remote_dir: Path, repo_name: str,
) -> None:
    site = start_remote_site()
    tag = push_private(private_registry, repo_name)
    password = private_registry.credentials["puller"]
    ok(site.run("login", PRIVATE, "--username", "puller", "--password-stdin",
                stdin=f"{password}\n"))

    pulled = site.run("pull", "--user", USER_A, tag)
    assert status_lines(ok(pulled))[-1][2] == "READY", pulled.stderr
    image_id = ok(site.run("lookup", tag)).strip()
    assert HEX_ID.match(image_id)
    denied = site.run("lookup", tag, user=USER_B)
    assert denied.returncode == 1 and "is not on the image gateway" in denied.stderr

    landed(remote_dir, image_id)
    meta = read_meta(str(remote_dir / f"{image_id}.meta"))
    assert meta.user_acl == (uid_of(USER_A),)
    for suffix in ("squashfs", "meta", "json"):
        path = remote_dir / f"{image_id}.{suffix}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 | 0o040  # owner rw, ACL mask r
        assert_private(path, readers=(USER_A,))  # and USER_B gets "Permission denied"

    assert ok(site.run("expire", tag, user=ADMIN)) == ""
    wait_for(lambda: not any(remote_dir.iterdir()), what="the expired files to go over ssh")
