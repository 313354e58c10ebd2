"""Every runtime-side command loads and validates udiRoot.conf before anything else.

Run as root (the config must be owned by root); the user-side checks run the command as the
test account `shiftertest1` created by scripts/install.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
COMMANDS = ("shifter", "shifterimg", "setupRoot", "unsetupRoot")
VALID = (
    "udiMount=/var/udiMount\nloopMount=/var/udiLoopMount\nimagePath=/images\n"
    "rootfsType=tmpfs\npopulateEtcDynamically=1\n"
)
TEST_USER = "shiftertest1"


@pytest.fixture
def config_dir() -> Iterator[Path]:
    # Searchable by the test user (pytest's own tmp dirs are 0700).
    directory = Path(tempfile.mkdtemp(prefix="shifter-cfg-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _write(directory: Path, text: str) -> Path:
    path = directory / "udiRoot.conf"
    path.write_text(text)
    path.chmod(0o644)
    return path


def _run(
    command: str, config: Path, *, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [str(BIN / command), "/bin/true"] if command == "shifter" else [str(BIN / command)]
    if user is not None:
        argv = ["/usr/sbin/runuser", "-u", user, "--", *argv]
    env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(config)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_config_names_file_and_line(command: str, config_dir: Path) -> None:
    config = _write(config_dir, VALID + "this line has no delimiter\n")
    result = _run(command, config)
    assert result.returncode == 1
    assert f"{config}:6" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_key_is_refused(command: str, config_dir: Path) -> None:
    config = _write(config_dir, VALID + "udiMoutn=/x\n")
    result = _run(command, config)
    assert result.returncode == 1
    assert f"{config}:6" in result.stderr
    assert "udiMoutn" in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_config_writable_by_others_is_refused(command: str, config_dir: Path) -> None:
    config = _write(config_dir, VALID)
    config.chmod(0o666)
    result = _run(command, config)
    assert result.returncode == 1
    assert str(config) in result.stderr
    assert "writable" in result.stderr


def test_shifter_refuses_root_after_the_config_check(config_dir: Path) -> None:
    assert os.getuid() == 0, "this tier runs as root"
    result = _run("shifter", _write(config_dir, VALID))
    assert result.returncode == 1
    assert "shifter: shifter does not run containers as root" in result.stderr


@pytest.mark.parametrize("command", ["setupRoot", "unsetupRoot"])
def test_root_commands_refuse_ordinary_users(command: str, config_dir: Path) -> None:
    result = _run(command, _write(config_dir, VALID), user=TEST_USER)
    assert result.returncode == 1
    assert f"{command}: {command} must be run as root" in result.stderr


@pytest.mark.parametrize("command", ["setupRoot", "unsetupRoot"])
def test_root_commands_check_config_before_the_user(command: str, config_dir: Path) -> None:
    config = _write(config_dir, VALID + "bogus line\n")
    result = _run(command, config, user=TEST_USER)
    assert result.returncode == 1
    assert f"{config}:6" in result.stderr
    assert "must be run as root" not in result.stderr
