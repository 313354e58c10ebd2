"""accesstype "remote": scp and ssh to a real sshd, as the dedicated account `shiftergw`.

The "remote" imageDir is a directory on this machine owned by shiftergw, so the tests can
watch it with inotify and read its files as the test accounts. 127.0.0.2 is a dead host:
the loopback network answers there, but nothing listens on the sshd's port.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shifter.errors import ConfigError
from shifter.gateway.access import ImageAccess
from shifter.gateway.config import Platform
from shifter.gateway.transfer import ImageTransfer, RemoteTransfer, TransferError, transfer_for
from shifter.gateway.transfer_remote import STAGING_PREFIX
from tests.service.test_transfer_support import (
    assert_public,
    check_access_changes_in_place,
    check_meta_last,
    check_private_for_group,
    check_private_for_user,
    make_image,
    mounted,
    shared_dir,
)
from tests.services.leftovers import process_running, processes_mentioning
from tests.services.sshd_fixtures import GATEWAY_ACCOUNT, SshServer, running_sshd

DEAD_HOST = "127.0.0.2"


def _owned_dir(parent: Path, account: str) -> Path:
    entry = pwd.getpwnam(account)
    directory = parent / "images"
    directory.mkdir(mode=0o755, exist_ok=True)
    os.chown(directory, entry.pw_uid, entry.pw_gid)
    return directory


@pytest.fixture
def image_dir(sshd: SshServer) -> Iterator[Path]:
    with shared_dir("shifter-transfer-remote-") as top:
        yield _owned_dir(top, sshd.user)


def _transfer(sshd: SshServer, image_dir: Path, **changes: Any) -> ImageTransfer:
    data = sshd.platform_data(image_dir, hosts=changes.pop("hosts", None))
    data["ssh"].update(changes)
    return transfer_for(Platform.model_validate(data), name="mycluster")


@pytest.fixture
def transfer(sshd: SshServer, image_dir: Path) -> ImageTransfer:
    return _transfer(sshd, image_dir)


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_public_publish_lands_complete_and_world_readable(
    transfer: ImageTransfer, image_dir: Path, tmp_path: Path, sshd: SshServer
) -> None:
    files = make_image(tmp_path / "expand", size=1 << 20)
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    assert _names(image_dir) == sorted(files.names)  # the staging directory is gone
    owner = pwd.getpwnam(sshd.user).pw_uid
    for source in files.all:
        published = image_dir / source.name
        assert published.read_bytes() == source.read_bytes()
        assert published.stat().st_uid == owner
        assert_public(published)
        assert transfer.exists(source.name)


def test_meta_is_moved_into_place_last(
    transfer: ImageTransfer, image_dir: Path, tmp_path: Path
) -> None:
    created = check_meta_last(transfer, image_dir, tmp_path / "expand")
    assert len(created) == 1 and created[0].startswith(STAGING_PREFIX)


def test_private_image_is_readable_by_listed_user_only(
    transfer: ImageTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_private_for_user(transfer, image_dir, tmp_path / "expand")


def test_private_image_is_readable_by_listed_group_member(
    transfer: ImageTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_private_for_group(transfer, image_dir, tmp_path / "expand")


def test_failover_to_the_second_host(
    sshd: SshServer, image_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transfer = _transfer(sshd, image_dir, hosts=[DEAD_HOST, sshd.host])
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    assert _names(image_dir) == sorted(files.names)
    assert transfer.exists(files.meta.name)
    transfer.remove(files.names)
    assert not transfer.exists(files.meta.name)
    assert _names(image_dir) == []
    assert f"failed on host {DEAD_HOST}" in caplog.text


def test_every_host_dead_names_each_host_and_ssh_error(
    sshd: SshServer, image_dir: Path, tmp_path: Path
) -> None:
    transfer = _transfer(sshd, image_dir, hosts=[DEAD_HOST, "127.0.0.3"])
    files = make_image(tmp_path / "expand")
    with pytest.raises(TransferError) as caught:
        transfer.publish(files.all, access=ImageAccess.PUBLIC)
    message = str(caught.value)
    assert message.startswith(
        f"could not publish {files.id}.{{squashfs,json,meta}} in imageDir {image_dir} of platform "
        f"'mycluster': host '{DEAD_HOST}': ssh exit status 255: ssh: connect to host "
        f"{DEAD_HOST} port {sshd.port}: Connection refused; host '127.0.0.3'"
    )
    assert caught.value.hint is not None and "BatchMode" in caught.value.hint


def test_unknown_host_key_is_refused(
    sshd: SshServer, image_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    options = [
        option.replace(str(sshd.known_hosts), str(empty)) for option in sshd.ssh_options
    ]
    transfer = _transfer(sshd, image_dir, sshCmdOptions=options)
    with pytest.raises(TransferError, match="Host key verification failed"):
        transfer.exists("a" * 64 + ".meta")


def test_failed_copy_leaves_no_temp_file(
    sshd: SshServer, tmp_path: Path
) -> None:
    entry = pwd.getpwnam(sshd.user)
    with shared_dir("shifter-transfer-remote-full-") as top, mounted(
        "tmpfs", top / "images", f"size=1m,mode=0755,uid={entry.pw_uid},gid={entry.pw_gid}"
    ) as images:
        transfer = _transfer(sshd, images)
        big = make_image(tmp_path / "expand", size=2 << 20)
        with pytest.raises(TransferError) as caught:
            transfer.publish(big.all, access=ImageAccess.PUBLIC)
        assert _names(images) == []
    # Over SFTP the server reports only "Failure"; legacy scp (-O) would say ENOSPC.
    assert "scp exit status 1" in str(caught.value)
    assert "failed to upload file" in str(caught.value)
    assert caught.value.hint is not None and "free space" in caught.value.hint


def test_failed_acl_leaves_nothing_behind(sshd: SshServer, tmp_path: Path) -> None:
    entry = pwd.getpwnam(sshd.user)
    with shared_dir("shifter-transfer-remote-ramfs-") as top, mounted(
        "ramfs", top / "images", "mode=0755"
    ) as images:
        os.chown(images, entry.pw_uid, entry.pw_gid)
        transfer = _transfer(sshd, images)
        files = make_image(tmp_path / "expand")
        with pytest.raises(TransferError) as caught:
            transfer.publish(files.all, access=ImageAccess(True, user_ids=(0,)))
        assert _names(images) == []
    assert "setfacl" in str(caught.value) and "Operation not supported" in str(caught.value)


def test_remove_over_ssh(transfer: ImageTransfer, image_dir: Path, tmp_path: Path) -> None:
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    transfer.remove([files.meta.name, files.image.name])
    assert _names(image_dir) == [files.sidecar.name]
    assert not transfer.exists(files.image.name)
    transfer.remove(files.names)  # missing files are fine
    assert _names(image_dir) == []


def test_hostile_names_never_reach_a_host(sshd: SshServer, image_dir: Path, tmp_path: Path) -> None:
    # The hosts are dead: had anything been sent, the error would be "Connection refused".
    transfer = _transfer(sshd, image_dir, hosts=[DEAD_HOST])
    files = make_image(tmp_path / "expand")
    hostile = files.image.rename(files.image.with_name("$(touch pwned);.meta"))
    with pytest.raises(TransferError, match="refusing image file name"):
        transfer.publish([hostile, files.meta], access=ImageAccess.PUBLIC)
    for name in ("-rf", "a" * 64 + ".meta /", "`id`", ".." + "a" * 62 + ".meta"):
        with pytest.raises(TransferError, match="refusing image file name"):
            transfer.remove([files.meta.name, name])
        with pytest.raises(TransferError, match="refusing image file name"):
            transfer.exists(name)


def test_image_dir_with_shell_characters_is_a_config_error(
    sshd: SshServer, image_dir: Path
) -> None:
    for unsafe in (f"{image_dir}/x;touch pwned", f"{image_dir}/a b", f"{image_dir}/$HOME"):
        with pytest.raises(ConfigError, match="may contain only") as caught:
            _transfer(sshd, Path(unsafe))
        assert caught.value.key == "Platforms.mycluster.ssh.imageDir"


def test_image_dir_with_unusual_safe_characters(
    sshd: SshServer, tmp_path: Path
) -> None:
    with shared_dir("shifter-transfer-remote-odd-") as top:
        odd = top / "img:dir@1,+=%"
        odd.mkdir()
        os.chown(odd, pwd.getpwnam(sshd.user).pw_uid, -1)
        transfer = _transfer(sshd, odd)
        assert isinstance(transfer, RemoteTransfer)
        files = make_image(tmp_path / "expand")
        transfer.publish(files.all, access=ImageAccess.PUBLIC)
        assert _names(odd) == sorted(files.names)
        assert transfer.exists(files.meta.name)


def test_sshd_fixture_lets_the_account_in_and_stops_by_pid() -> None:
    with running_sshd() as server:
        assert server.run("id -un").stdout.decode().strip() == GATEWAY_ACCOUNT
        assert process_running(server.pid)
    assert not process_running(server.pid)
    assert processes_mentioning(str(server.directory)) == []
    assert not server.directory.exists()


def test_access_changes_in_place_over_ssh(
    transfer: ImageTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_access_changes_in_place(transfer, image_dir, tmp_path / "expand")
