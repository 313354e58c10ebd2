"""accesstype "local": publishing into an imageDir on this host, checked with real users.

Needs root: small file systems are mounted for the full-disk and no-ACL cases, and reads
are tried as the test accounts with runuser.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter import proc
from shifter.gateway.access import XATTR_NAME, ImageAccess
from shifter.gateway.config import Platform
from shifter.gateway.transfer import LocalTransfer, TransferError, transfer_for
from tests.service.test_transfer_support import (
    Accounts,
    ImageFiles,
    accounts,
    acl_of,
    assert_private,
    assert_public,
    check_access_changes_in_place,
    check_meta_last,
    check_private_for_group,
    check_private_for_user,
    make_image,
    mounted,
    shared_dir,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts file systems, runs runuser")


@pytest.fixture
def image_dir() -> Iterator[Path]:
    with shared_dir("shifter-transfer-local-") as top:
        images = top / "images"
        images.mkdir(mode=0o755)
        yield images


@pytest.fixture
def transfer(image_dir: Path) -> LocalTransfer:
    data = {"accesstype": "local", "local": {"imageDir": str(image_dir)}}
    platform = Platform.model_validate(data)
    made = transfer_for(platform, name="mycluster")
    assert isinstance(made, LocalTransfer)
    return made


@pytest.fixture
def users() -> Accounts:
    return accounts()


def _listing(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_public_publish_copies_every_file_world_readable(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    assert sorted(p.name for p in image_dir.iterdir()) == sorted(files.names)
    for source in files.all:
        published = image_dir / source.name
        assert published.read_bytes() == source.read_bytes()
        assert_public(published)
        assert transfer.exists(source.name)
    assert source.exists(), "the worker's own copy is left for it to clean up"


def test_meta_is_renamed_into_place_last(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    temps = check_meta_last(transfer, image_dir, tmp_path / "expand")
    assert temps and all(name.startswith(".") and name.endswith(".partial") for name in temps)


def test_private_image_is_readable_by_listed_user_only(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_private_for_user(transfer, image_dir, tmp_path / "expand")


def test_private_image_is_readable_by_listed_group_member(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_private_for_group(transfer, image_dir, tmp_path / "expand")


def test_private_acl_is_what_setfacl_writes(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path, users: Accounts
) -> None:
    access = ImageAccess(True, user_ids=(users.other_uid, users.reader_uid), group_ids=(0, 7))
    files = make_image(tmp_path / "expand")
    transfer.publish([files.image], access=access)
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    proc.run(["setfacl", "--set", access.setfacl_spec(), reference])
    published = image_dir / files.image.name
    assert os.getxattr(published, XATTR_NAME) == os.getxattr(reference, XATTR_NAME)
    assert os.stat(published).st_mode & 0o777 == os.stat(reference).st_mode & 0o777 == 0o640


def test_default_acl_of_image_dir_does_not_open_a_private_image(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    # A site's default ACL hands entries to new files; a private image must not keep them.
    proc.run(["setfacl", "-d", "-m", "u::rwx,g::rx,o::rx,u:shiftertest2:r", image_dir])
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess(True, user_ids=(0,)))
    assert_private(image_dir / files.meta.name, readers=())


def test_republishing_changes_access(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    transfer.publish(files.all, access=ImageAccess(True, user_ids=(0,)))
    assert_private(image_dir / files.image.name, readers=())
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    assert_public(image_dir / files.image.name)
    assert acl_of(image_dir / files.image.name) == ["user::rw-", "group::r--", "other::r--"]


def test_full_disk_leaves_no_temp_file_and_the_old_image(tmp_path: Path) -> None:
    with shared_dir("shifter-transfer-full-") as top, mounted(
        "tmpfs", top / "images", "size=1m,mode=0755"
    ) as images:
        transfer = LocalTransfer(images, label=f"imageDir {images}")
        old = make_image(tmp_path / "old", size=256 * 1024)
        transfer.publish(old.all, access=ImageAccess.PUBLIC)
        before = _listing(images)
        # Same meta name as a published image, bigger than the file system.
        big = make_image(tmp_path / "big", size=2 << 20)
        big_meta = big.meta.rename(big.meta.with_name(old.meta.name))
        with pytest.raises(TransferError) as caught:
            transfer.publish([big.image, big_meta], access=ImageAccess.PUBLIC)
        assert _listing(images) == before
    assert "No space left on device" in str(caught.value)
    assert caught.value.hint == "free space in imageDir, or remove expired images"
    assert f"imageDir {images}" in str(caught.value)


def test_image_dir_without_acl_support_refuses_a_private_image(tmp_path: Path) -> None:
    with shared_dir("shifter-transfer-ramfs-") as top, mounted(
        "ramfs", top / "images", "mode=0755"
    ) as images:
        transfer = LocalTransfer(images, label=f"imageDir {images}")
        files = make_image(tmp_path / "expand")
        with pytest.raises(TransferError) as caught:
            transfer.publish(files.all, access=ImageAccess(True, user_ids=(0,)))
        assert list(images.iterdir()) == []
        transfer.publish(files.all, access=ImageAccess.PUBLIC)  # needs no ACL
        assert sorted(p.name for p in images.iterdir()) == sorted(files.names)
    assert caught.value.hint is not None and "POSIX ACLs" in caught.value.hint
    assert "not supported" in str(caught.value)


def test_remove_and_exists(transfer: LocalTransfer, image_dir: Path, tmp_path: Path) -> None:
    files = make_image(tmp_path / "expand")
    transfer.publish(files.all, access=ImageAccess.PUBLIC)
    transfer.remove([files.image.name, files.meta.name])
    assert not transfer.exists(files.meta.name)
    assert not transfer.exists(files.image.name)
    assert transfer.exists(files.sidecar.name)
    transfer.remove(files.names)  # two of them are already gone: fine
    assert list(image_dir.iterdir()) == []


@pytest.mark.parametrize(
    "hostile", ["-rf", ".meta", "x.meta", "A" * 64 + ".meta", "a" * 64 + ".sh", "a" * 64]
)
def test_hostile_names_are_refused(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path, hostile: str
) -> None:
    files = make_image(tmp_path / "expand")
    evil = files.image.rename(files.image.with_name(hostile))
    with pytest.raises(TransferError, match="refusing image file name"):
        transfer.publish([files.meta, evil], access=ImageAccess.PUBLIC)
    with pytest.raises(TransferError, match="refusing image file name"):
        transfer.remove([hostile])
    with pytest.raises(TransferError, match="refusing image file name"):
        transfer.exists("../" + files.meta.name)
    assert list(image_dir.iterdir()) == []


def test_missing_source_publishes_nothing(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    files = make_image(tmp_path / "expand")
    files.image.unlink()
    with pytest.raises(TransferError, match="No such file or directory"):
        transfer.publish(files.all, access=ImageAccess.PUBLIC)
    assert list(image_dir.iterdir()) == []


def test_missing_image_dir_is_named(tmp_path: Path) -> None:
    platform = Platform.model_validate(
        {"accesstype": "local", "local": {"imageDir": str(tmp_path / "absent")}}
    )
    files: ImageFiles = make_image(tmp_path / "expand")
    with pytest.raises(TransferError) as caught:
        transfer_for(platform, name="mycluster").publish(files.all, access=ImageAccess.PUBLIC)
    assert str(caught.value).startswith(
        f"could not publish image files in imageDir {tmp_path / 'absent'} of platform "
        "'mycluster': No such file or directory"
    )
    assert caught.value.hint == "create imageDir and make it writable by the gateway account"



def test_access_changes_in_place(
    transfer: LocalTransfer, image_dir: Path, tmp_path: Path
) -> None:
    check_access_changes_in_place(transfer, image_dir, tmp_path / "expand")
