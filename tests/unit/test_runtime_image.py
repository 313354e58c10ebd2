"""From a descriptor to the image on disk: ids, `.meta` files, formats, the access list,
and who the container user is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shifter.errors import ConfigError, PermissionDeniedError, ShifterError
from shifter.image.descriptor import parse_descriptor
from shifter.image.meta import format_meta
from shifter.runtime.config.load import parse_udiroot_config
from shifter.runtime.identity.user import lookup_user, refuse_root
from shifter.runtime.image.source import ImageNotFoundError, check_acl, find_image

pytestmark = pytest.mark.unit

ID = "ab" * 32


def _config(image_path: Path, extra: str = ""):  # type: ignore[no-untyped-def]
    text = (
        f"udiMount=/u\nloopMount=/l\nimagePath={image_path}\nrootfsType=tmpfs\n"
        f"populateEtcDynamically=1\n{extra}"
    )
    return parse_udiroot_config(text, "u.conf")


def _meta(image_path: Path, fmt: str = "squashfs", **fields: object) -> None:
    text, _ = format_meta(fmt, **fields)  # type: ignore[arg-type]
    (image_path / f"{ID}.meta").write_text(text)


def _find(image_path: Path, text: str, extra: str = ""):  # type: ignore[no-untyped-def]
    config = _config(image_path, extra)
    return find_image(parse_descriptor(text, "docker"), config, environ={})


def test_an_id_image(tmp_path: Path) -> None:
    _meta(tmp_path, workdir="/w")
    image = _find(tmp_path, f"id:{ID}")
    assert (image.id, image.format, image.path) == (ID, "squashfs", f"{tmp_path}/{ID}.squashfs")
    assert image.meta is not None and image.meta.workdir == "/w"


def test_a_directory_image(tmp_path: Path) -> None:
    (tmp_path / f"{ID}.meta").write_text("ENV: A=1\n")  # no FORMAT: an unpacked directory
    image = _find(tmp_path, f"id:{ID}")
    assert (image.format, image.path, image.is_directory) == ("VFS", f"{tmp_path}/{ID}", True)


def test_missing_meta_means_unknown_or_not_ready(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match=r"not found .* or not ready yet"):
        _find(tmp_path, f"id:{ID}")


def test_unknown_format(tmp_path: Path) -> None:
    (tmp_path / f"{ID}.meta").write_text("FORMAT: zip\n")
    with pytest.raises(ImageNotFoundError, match="unknown format"):
        _find(tmp_path, f"id:{ID}")


def test_local_images_need_the_site_switch(tmp_path: Path) -> None:
    with pytest.raises(PermissionDeniedError, match="does not allow local images"):
        _find(tmp_path, f"local:{tmp_path}")
    image = _find(tmp_path, f"local:{tmp_path}", "allowLocalChroot=1\n")
    assert (image.format, image.path, image.meta) == ("local", str(tmp_path), None)
    with pytest.raises(ImageNotFoundError, match="is not a directory"):
        _find(tmp_path, "local:/nonexistent", "allowLocalChroot=1\n")


def test_docker_lookup_needs_a_configured_gateway(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="imageGateway is not set"):
        _find(tmp_path, "docker:ubuntu:22.04")


@pytest.mark.parametrize(
    ("users", "groups", "uid", "gids", "allowed"),
    [
        ((), (), 5, (5,), True),
        ((5,), (), 5, (5,), True),
        ((6,), (), 5, (5,), False),
        ((), (7,), 5, (5, 7), True),
        ((6,), (8,), 5, (5, 7), False),
    ],
)
def test_access_list(tmp_path: Path, users: tuple, groups: tuple, uid: int, gids: tuple,
                     allowed: bool) -> None:  # fmt: skip
    _meta(tmp_path, user_acl=list(users), group_acl=list(groups))
    image = _find(tmp_path, f"id:{ID}")
    if allowed:
        check_acl(image, uid, gids)
    else:
        with pytest.raises(PermissionDeniedError, match="permission denied to image"):
            check_acl(image, uid, gids)


def test_user_from_the_etc_path_passwd(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0::/root:/bin/sh\nbob:x:4321:99:Bob:/h:/bin/sh\n")
    config = _config(tmp_path, f"etcPath={tmp_path}\n")
    assert lookup_user(4321, config).name == "bob"
    with pytest.raises(ShifterError, match=f"uid 4322 in {tmp_path}/passwd"):
        lookup_user(4322, config)
    libc = _config(tmp_path, f"etcPath={tmp_path}\nallowLibcPwdCalls=1\n")
    assert lookup_user(os.getuid(), libc).uid == os.getuid()


def test_root_is_refused() -> None:
    for uid, gid in ((0, 5), (5, 0), (0, 0)):
        with pytest.raises(PermissionDeniedError, match="does not run containers as root"):
            refuse_root(uid, gid)
    refuse_root(5, 5)
