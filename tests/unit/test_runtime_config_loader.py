"""udiRoot.conf on disk: which file, and the loader's checks of its owner, mode, type and bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shifter.errors import ConfigError, ParseError
from shifter.runtime.config.load import DEFAULT_CONFIG_PATH, config_path, load_udiroot_config
from tests.unit.test_runtime_config import BASE, NEXT

pytestmark = pytest.mark.unit


def write_conf(tmp_path: Path, text: str = BASE, mode: int = 0o644) -> Path:
    path = tmp_path / "udiRoot.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_config_path_precedence() -> None:
    assert config_path("/a.conf", environ={"SHIFTER_CONFIG": "/b.conf"}) == "/a.conf"
    assert config_path(None, environ={"SHIFTER_CONFIG": "/b.conf"}) == "/b.conf"
    assert config_path(None, environ={"SHIFTER_CONFIG": ""}) == DEFAULT_CONFIG_PATH
    assert config_path(None, environ={}) == "/etc/shifter/udiRoot.conf"


def test_loads_a_root_owned_file(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    os.chown(path, 0, 0)
    config = load_udiroot_config(str(path))
    assert (config.source, config.udi_mount) == (str(path), "/var/udiMount")
    assert load_udiroot_config(environ={"SHIFTER_CONFIG": str(path)}).source == str(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as caught:
        load_udiroot_config(str(path))
    assert str(caught.value) == f"{path}: no such file"
    assert caught.value.hint == (
        "install udiRoot.conf at /etc/shifter/udiRoot.conf or point SHIFTER_CONFIG at it"
    )


def test_file_not_owned_by_root_is_refused(tmp_path: Path) -> None:
    path = write_conf(tmp_path)
    os.chown(path, 4242, 0)
    with pytest.raises(ConfigError) as caught:
        load_udiroot_config(str(path))
    assert str(caught.value) == f"{path}: must be owned by root, but is owned by uid 4242"
    assert caught.value.hint == f"chown root {path}"
    assert load_udiroot_config(str(path), require_root_owned=False).udi_mount == "/var/udiMount"


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_group_or_other_writable_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_conf(tmp_path, mode=mode)
    os.chown(path, 0, 0)
    with pytest.raises(ConfigError) as caught:
        load_udiroot_config(str(path))
    assert str(caught.value) == (
        f"{path}: must not be writable by group or others (mode {mode:04o})"
    )
    assert caught.value.hint == f"chmod go-w {path}"
    assert (
        load_udiroot_config(str(path), require_root_owned=False).loop_mount == "/var/udiLoopMount"
    )


def test_relaxing_ownership_does_not_relax_the_content(tmp_path: Path) -> None:
    path = write_conf(tmp_path, BASE + "bogus=1\n")
    os.chown(path, 4242, 4242)
    with pytest.raises(ConfigError, match=rf"^{path}:{NEXT} key 'bogus': unknown key"):
        load_udiroot_config(str(path), require_root_owned=False)


def test_directory_and_fifo_are_not_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is not a regular file$"):
        load_udiroot_config(str(tmp_path))
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    # Must not block waiting for a writer.
    with pytest.raises(ConfigError, match=rf"^{fifo}: is not a regular file$"):
        load_udiroot_config(str(fifo))


def test_unreadable_bytes_report_their_line(tmp_path: Path) -> None:
    path = tmp_path / "udiRoot.conf"
    path.write_bytes(BASE.encode() + b"system=caf\xe9\n")
    os.chown(path, 0, 0)
    path.chmod(0o644)
    with pytest.raises(ParseError) as caught:
        load_udiroot_config(str(path))
    assert str(caught.value) == f"{path}:{NEXT}: is not UTF-8 text"


def test_symlinked_config_is_checked_through_the_link(tmp_path: Path) -> None:
    target = write_conf(tmp_path)
    os.chown(target, 4242, 0)
    link = tmp_path / "link.conf"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="owned by uid 4242"):
        load_udiroot_config(str(link))
