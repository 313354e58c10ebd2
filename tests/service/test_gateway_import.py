"""/api/doimport: a user's squashfs file becomes a `custom` image (gateway contract §4).

The gateway runs as root here, so it could read anything: every refusal below is about
what the *requesting user* may read, checked with their uid and groups.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shifter.gateway.imports import fasthash
from shifter.image.meta import read_meta
from tests.service.test_gateway_api import error_of
from tests.services.gateway_fixtures import (
    SYSTEM,
    USER_A,
    USER_B,
    Caller,
    GatewayEnv,
    running_app,
    uid_of,
    wait_for,
)

TAG = "load_test:v1"


def squashfs(path: Path, content: bytes = b"hello from an imported image\n") -> Path:
    tree = path.parent / f"{path.name}.tree"
    tree.mkdir()
    (tree / "hello.txt").write_bytes(content)
    subprocess.run(["mksquashfs", str(tree), str(path), "-no-xattrs", "-all-root", "-quiet",
                    "-noappend"], check=True, capture_output=True)
    shutil.rmtree(tree)
    return path


def owned_by(path: Path, user: str, mode: int) -> Path:
    os.chown(path, uid_of(user), uid_of(user))
    path.chmod(mode)
    return path


@pytest.fixture
def home_of_a() -> Iterator[Path]:
    """A directory of user A that others may search (as a home directory would be)."""
    directory = Path(tempfile.mkdtemp(prefix="shifter-import-", dir="/tmp"))
    owned_by(directory, USER_A, 0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def client(gateway_env: GatewayEnv) -> Iterator[Any]:
    with running_app(gateway_env.config(), SHIFTER_IMAGEGW_IMPORT_MAX_BYTES="1000000") as running:
        yield running


def doimport(client: Any, caller: Caller, path: Path | str, user: str = USER_A,
             tag: str = TAG, itype: str = "custom", fmt: str = "squashfs") -> Any:
    return client.post(f"/api/doimport/{SYSTEM}/{itype}/{tag}/", headers=caller.headers(user),
                       json={"filepath": str(path), "format": fmt})


def test_an_import_users_file_becomes_a_custom_image(
    client: Any, caller: Caller, gateway_env: GatewayEnv, home_of_a: Path
) -> None:
    image = owned_by(squashfs(home_of_a / "mine.squashfs"), USER_A, 0o600)
    first = doimport(client, caller, image)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "INIT"

    def ready() -> dict[str, Any] | None:
        record: dict[str, Any] = doimport(client, caller, image).json()
        return record if record["status"] in ("READY", "FAILURE") else None

    done = wait_for(ready, what="the import")
    assert done["status"] == "READY", done["status_message"]
    # fasthash of a file under 1 MiB is its sha256 (contract §4).
    assert done["id"] == fasthash(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    assert (done["itype"], done["tag"], done["userACL"]) == ("custom", [TAG], [])
    assert gateway_env.image_files() == [f"{done['id']}.meta", f"{done['id']}.squashfs"]
    assert read_meta(str(gateway_env.image_dir / f"{done['id']}.meta")).format == "squashfs"
    found = client.get(f"/api/lookup/{SYSTEM}/custom/{TAG}/", headers=caller.headers(USER_B))
    assert found.json()["id"] == done["id"]
    assert image.exists()  # the user's file is left alone


def test_only_import_users_may_import(client: Any, caller: Caller, home_of_a: Path) -> None:
    image = owned_by(squashfs(home_of_a / "a.squashfs"), USER_A, 0o644)
    reply = doimport(client, caller, image, user=USER_B)
    assert error_of(reply, 403).startswith(f"{USER_B}({uid_of(USER_B)}) may not import images")


def test_import_can_be_disabled(gateway_env: GatewayEnv, caller: Caller, home_of_a: Path) -> None:
    image = owned_by(squashfs(home_of_a / "a.squashfs"), USER_A, 0o644)
    with running_app(gateway_env.config(ImportUsers="none")) as client:
        reply = doimport(client, caller, image)
    assert error_of(reply, 403).startswith("image import is disabled on this gateway")


def test_a_file_the_user_cannot_reach_is_refused(
    client: Any, caller: Caller, tmp_path: Path
) -> None:
    """pytest's tmp dirs are root's alone: the gateway (root) could read this file."""
    image = squashfs(tmp_path / "roots.squashfs")
    image.chmod(0o644)
    reply = doimport(client, caller, image)
    assert error_of(reply, 403).startswith(
        f"{USER_A}({uid_of(USER_A)}) may not search a directory on the way of {image}")


def test_another_users_private_file_is_refused(
    client: Any, caller: Caller, home_of_a: Path
) -> None:
    image = owned_by(squashfs(home_of_a / "bs.squashfs"), USER_B, 0o600)
    reply = doimport(client, caller, image)
    assert error_of(reply, 403).startswith(
        f"{USER_A}({uid_of(USER_A)}) may not read the file of {image}")


def test_a_symlink_to_a_file_the_user_cannot_read_is_refused(
    client: Any, caller: Caller, home_of_a: Path, tmp_path: Path
) -> None:
    secret = squashfs(tmp_path / "secret.squashfs")
    link = home_of_a / "innocent.squashfs"
    link.symlink_to(secret)
    os.lchown(link, uid_of(USER_A), uid_of(USER_A))
    reply = doimport(client, caller, link)
    assert error_of(reply, 403).startswith(f"{USER_A}({uid_of(USER_A)}) may not search")


def test_a_symlink_planted_by_someone_else_in_a_sticky_directory_is_refused(
    client: Any, caller: Caller, home_of_a: Path
) -> None:
    image = owned_by(squashfs(home_of_a / "a.squashfs"), USER_A, 0o644)
    planted = Path(tempfile.mktemp(prefix="shifter-planted-", dir="/tmp"))
    planted.symlink_to(image)
    os.lchown(planted, uid_of(USER_B), uid_of(USER_B))
    try:
        reply = doimport(client, caller, planted)
    finally:
        planted.unlink()
    assert error_of(reply, 403) == f"{planted}: refusing to follow a symlink there"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"x" * 4096, "is not a squashfs image (bad magic number)"),
        (b"hsqs", "is too small to be a squashfs image"),
    ],
)
def test_a_file_that_is_no_squashfs_is_refused(
    client: Any, caller: Caller, home_of_a: Path, content: bytes, message: str
) -> None:
    path = home_of_a / "not.squashfs"
    path.write_bytes(content)
    owned_by(path, USER_A, 0o644)
    assert error_of(doimport(client, caller, path), 400).startswith(f"{path} {message}")


def test_what_is_not_a_regular_file_is_refused(
    client: Any, caller: Caller, home_of_a: Path
) -> None:
    fifo = home_of_a / "pipe"
    os.mkfifo(fifo)
    owned_by(fifo, USER_A, 0o644)
    assert error_of(doimport(client, caller, fifo), 400) == f"{fifo} is not a regular file"
    assert error_of(doimport(client, caller, home_of_a), 400) == (
        f"{home_of_a} names a directory, not a squashfs file")


def test_a_file_over_the_size_limit_is_refused(
    client: Any, caller: Caller, home_of_a: Path
) -> None:
    image = owned_by(squashfs(home_of_a / "big.squashfs", os.urandom(2_000_000)), USER_A, 0o644)
    assert error_of(doimport(client, caller, image), 400).startswith(
        f"{image} is {image.stat().st_size} bytes, more than the 1000000 bytes")


@pytest.mark.parametrize(
    ("itype", "path", "fmt", "message"),
    [
        ("docker", "/x.squashfs", "squashfs", "image type 'docker' cannot be used here"),
        ("custom", "/x.squashfs", "ext4", "cannot import format 'ext4'"),
        ("custom", "relative.squashfs", "squashfs", "the import path must be an absolute path"),
    ],
)
def test_bad_import_requests(client: Any, caller: Caller, itype: str, path: str, fmt: str,
                             message: str) -> None:
    reply = doimport(client, caller, path, itype=itype, fmt=fmt)
    assert error_of(reply, 400).startswith(message)


def _wait_done(client: Any, caller: Caller, image: Path, user: str = USER_A,
               tag: str = TAG) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        record: dict[str, Any] = doimport(client, caller, image, user, tag).json()
        return record if record["status"] in ("READY", "FAILURE") else None

    return wait_for(done, what="the import")


def test_an_image_holding_privileges_is_refused_and_nothing_published(
    client: Any, caller: Caller, gateway_env: GatewayEnv, home_of_a: Path
) -> None:
    tree = home_of_a / "hostile.tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "su").write_text("#!/bin/sh\n")
    (tree / "bin" / "su").chmod(0o4755)
    (tree / "bin" / "wall").write_text("#!/bin/sh\n")
    (tree / "bin" / "wall").chmod(0o2755)
    os.mknod(tree / "mem", 0o600 | stat.S_IFCHR, os.makedev(1, 1))
    (tree / "tagged").write_text("x\n")
    os.setxattr(tree / "tagged", "user.origin", b"elsewhere")
    image = home_of_a / "hostile.squashfs"
    subprocess.run(["mksquashfs", str(tree), str(image), "-all-root", "-quiet", "-noappend"],
                   check=True, capture_output=True)
    owned_by(image, USER_A, 0o644)
    done = _wait_done(client, caller, image)
    assert done["status"] == "FAILURE"
    assert done["status_message"] == (
        f"{image} holds 4 file(s) that may not be imported: /bin/su: setuid; /bin/wall: "
        "setgid; /mem: device node; /tagged: extended attributes user.origin")
    assert gateway_env.image_files() == []


def _import_ready(client: Any, caller: Caller, image: Path, user: str = USER_A) -> str:
    """Start an import (PullUpdateTimeout 0: every POST starts one) and wait until the tag
    names the file's image."""
    started = doimport(client, caller, image, user)
    assert started.status_code == 200, started.text
    wanted = fasthash(image)

    def ready() -> str | None:
        found = client.get(f"/api/lookup/{SYSTEM}/custom/{TAG}/", headers=caller.headers(user))
        return wanted if found.status_code == 200 and found.json()["id"] == wanted else None

    return wait_for(ready, what="the import")


def test_a_custom_tag_belongs_to_its_first_importer(
    gateway_env: GatewayEnv, caller: Caller, home_of_a: Path
) -> None:
    mine = owned_by(squashfs(home_of_a / "mine.squashfs"), USER_A, 0o644)
    theirs = owned_by(squashfs(home_of_a / "theirs.squashfs", b"other code\n"), USER_A, 0o644)
    config = gateway_env.config(ImportUsers=[USER_A, USER_B], PullUpdateTimeout=0)
    with running_app(config) as client:
        _import_ready(client, caller, mine)
        taken = doimport(client, caller, theirs, USER_B)
        assert error_of(taken, 403).startswith(
            f"custom:{TAG} belongs to another user: {USER_B}({uid_of(USER_B)}) may not import "
            "it")
        expire = client.get(f"/api/expire/{SYSTEM}/custom/{TAG}/", headers=caller.headers(USER_B))
        assert error_of(expire, 403).startswith(f"custom:{TAG} belongs to another user")
        found = client.get(f"/api/lookup/{SYSTEM}/custom/{TAG}/", headers=caller.headers(USER_B))
        assert found.json()["id"] == fasthash(mine)
        # The owner may import over it, and expire it; then the name is free again.
        _import_ready(client, caller, theirs)
        again = client.get(f"/api/expire/{SYSTEM}/custom/{TAG}/", headers=caller.headers(USER_A))
        assert again.status_code == 200, again.text
        wait_for(lambda: client.get(f"/api/lookup/{SYSTEM}/custom/{TAG}/",
                                    headers=caller.headers(USER_A)).status_code == 404,
                 what="the expired tag to go")
        _import_ready(client, caller, mine, USER_B)
