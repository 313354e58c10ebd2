"""The list of gateways that did not answer: kept a minute, struck off when they answer,
only in a directory that is the user's own."""

from __future__ import annotations

import os
from pathlib import Path

from shifter.gwclient.downlist import MEMORY_S, DownList, memory_path


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_gateway_is_remembered_for_a_while_and_struck_off_when_it_answers(
    tmp_path: Path,
) -> None:
    clock = Clock()
    down = DownList(str(tmp_path / "shifter" / "gateways-down"), clock=clock)
    assert down.down() == {}
    down.mark("http://a:5000")
    down.mark("http://b:5000")
    assert set(down.down()) == {"http://a:5000", "http://b:5000"}
    assert (tmp_path / "shifter").stat().st_mode & 0o777 == 0o700
    down.clear("http://a:5000")
    assert set(DownList(down.path, clock=clock).down()) == {"http://b:5000"}
    clock.now += MEMORY_S + 1
    assert down.down() == {}


def test_only_a_directory_of_the_users_own_holds_the_list(tmp_path: Path) -> None:
    mine = tmp_path / "run"
    mine.mkdir(mode=0o700)
    assert memory_path({"XDG_RUNTIME_DIR": str(mine)}) == str(mine / "shifter" / "gateways-down")
    mine.chmod(0o777)  # anyone may write there: not a place for it
    assert memory_path({"XDG_RUNTIME_DIR": str(mine)}) is None
    assert memory_path({"HOME": str(tmp_path)}) == str(tmp_path / ".cache/shifter/gateways-down")
    assert memory_path({"XDG_RUNTIME_DIR": "relative"}) is None
    if os.geteuid() == 0:
        os.chown(mine, 65534, 65534)
        mine.chmod(0o700)
        assert memory_path({"XDG_RUNTIME_DIR": str(mine)}) is None  # someone else's


def test_a_broken_list_is_no_list(tmp_path: Path) -> None:
    path = tmp_path / "gateways-down"
    path.write_text("not a line\n12 \n\u00e9\u00e9 http://x\n")
    assert DownList(str(path)).down() == {}
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text(f"{Clock.now} http://x\n")
    assert DownList(str(path), clock=Clock()).down() == {}  # never through a link
