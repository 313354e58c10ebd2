"""Saved registry logins: where they live, file permissions, refusals, the pull payload."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from shifter.errors import ConfigError, ShifterError
from shifter.gwclient.logins import (
    Login,
    authorized_locations,
    check_location,
    logins_path,
    read_logins,
    remove_login,
    save_login,
)

pytestmark = pytest.mark.unit

NOBODY = 65534


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "config" / "shifter" / "registry-logins.json")


def test_the_file_follows_xdg_rules() -> None:
    assert logins_path({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"}) == (
        "/x/cfg/shifter/registry-logins.json"
    )
    assert logins_path({"HOME": "/home/u"}) == "/home/u/.config/shifter/registry-logins.json"
    # A relative XDG_CONFIG_HOME is to be ignored (XDG base directory specification).
    assert logins_path({"XDG_CONFIG_HOME": "cfg", "HOME": "/home/u"}) == (
        "/home/u/.config/shifter/registry-logins.json"
    )


def test_saved_logins_are_private_and_read_back(path: str) -> None:
    save_login("mycluster", "default", Login("alice", "s3cr:et"), path)
    save_login("mycluster", "registry.example.org:5000", Login("bob", "pw"), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert read_logins("mycluster", path) == {
        "default": Login("alice", "s3cr:et"),
        "registry.example.org:5000": Login("bob", "pw"),
    }
    assert authorized_locations("mycluster", path) == {
        "default": "alice:s3cr:et", "registry.example.org:5000": "bob:pw",
    }
    document = json.loads(Path(path).read_text())
    assert document["version"] == 1
    assert list(document["systems"]) == ["mycluster"]
    assert [p.name for p in Path(path).parent.iterdir()] == ["registry-logins.json"]


def test_the_umask_does_not_loosen_or_tighten_the_modes(path: str) -> None:
    previous = os.umask(0o000)
    try:
        save_login("mycluster", "default", Login("alice", "pw"), path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700


def test_logins_are_kept_per_system_and_replaced_per_location(path: str) -> None:
    save_login("cori", "default", Login("alice", "old"), path)
    save_login("perlmutter", "default", Login("alice", "other"), path)
    save_login("cori", "default", Login("alice", "new"), path)
    assert read_logins("cori", path) == {"default": Login("alice", "new")}
    assert read_logins("perlmutter", path) == {"default": Login("alice", "other")}
    assert read_logins("edison", path) == {}


def test_remove_login(path: str) -> None:
    save_login("cori", "default", Login("alice", "pw"), path)
    save_login("cori", "quay.io", Login("alice", "pw2"), path)
    assert remove_login("cori", "default", path) is True
    assert remove_login("cori", "default", path) is False
    assert read_logins("cori", path) == {"quay.io": Login("alice", "pw2")}
    assert remove_login("cori", "quay.io", path) is True
    assert "cori" not in json.loads(Path(path).read_text())["systems"]


def test_no_file_means_no_logins(path: str) -> None:
    assert read_logins("cori", path) == {}
    assert authorized_locations("cori", path) == {}
    assert remove_login("cori", "default", path) is False


def test_a_file_others_can_read_is_refused(path: str) -> None:
    save_login("cori", "default", Login("alice", "pw"), path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="others may access it") as caught:
        read_logins("cori", path)
    assert caught.value.hint == f"chmod 600 {path}"
    assert str(caught.value).startswith(f"{path}: ")


def test_a_file_of_another_user_is_refused(path: str) -> None:
    assert os.geteuid() == 0, "the unit tier runs as root (chown needs it)"
    save_login("cori", "default", Login("alice", "pw"), path)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"owned by uid {NOBODY}, not by you"):
        read_logins("cori", path)


def test_a_symlink_is_refused(path: str, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text('{"systems": {}}')
    target.chmod(0o600)
    os.makedirs(os.path.dirname(path), mode=0o700)
    os.symlink(target, path)
    with pytest.raises(ConfigError, match="cannot open") as caught:
        read_logins("cori", path)
    assert caught.value.hint is not None and "symlink" in caught.value.hint


def test_a_directory_of_another_user_is_refused(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700)
    os.chown(os.path.dirname(path), NOBODY, NOBODY)
    with pytest.raises(ConfigError, match="not a directory owned by you"):
        save_login("cori", "default", Login("alice", "pw"), path)


def test_a_broken_file_is_reported_with_its_name(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700)
    Path(path).write_text("{not json")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="is not valid JSON") as caught:
        read_logins("cori", path)
    assert str(caught.value).startswith(path)


@pytest.mark.parametrize(
    ("login", "message"),
    [
        (Login("", "pw"), "user name must be non-empty"),
        (Login("a:b", "pw"), "contain no ':'"),
        (Login("alice", ""), "password is empty"),
        (Login("alice", "p\nw"), "line breaks"),
    ],
)
def test_unusable_logins_are_refused(path: str, login: Login, message: str) -> None:
    with pytest.raises(ShifterError, match=message):
        save_login("cori", "default", login, path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("location", ["", "a/b", "-x", "a b", "é"])
def test_unusable_locations_are_refused(location: str) -> None:
    with pytest.raises(ShifterError, match="is not a registry location"):
        check_location(location)


def test_concurrent_logins_lose_nothing(path: str) -> None:
    def save(index: int) -> None:
        save_login("cori", f"registry{index}.example.org", Login(f"u{index}", "pw"), path)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_logins("cori", path)) == 16
