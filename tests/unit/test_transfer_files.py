"""File-name rule, publish/remove order, the remote finalize script, transfer_for."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ConfigError
from shifter.gateway.access import ImageAccess
from shifter.gateway.config import Platform
from shifter.gateway.transfer import (
    IMAGE_FILE_NAME,
    LocalTransfer,
    RemoteTransfer,
    TransferError,
    check_file_name,
    publish_order,
    removal_order,
    transfer_for,
)
from shifter.gateway.transfer_files import describe_names
from shifter.gateway.transfer_remote import finalize_command

ID = "0123456789abcdef" * 4
IMAGE, SIDECAR, META = f"{ID}.squashfs", f"{ID}.json", f"{ID}.meta"


@pytest.mark.parametrize("suffix", ["squashfs", "ext4", "cramfs", "meta", "json"])
def test_image_file_names_are_accepted(suffix: str) -> None:
    assert check_file_name(f"{ID}.{suffix}") == f"{ID}.{suffix}"


@pytest.mark.parametrize(
    "hostile",
    [
        "", ".meta", f".{ID}.meta", f"-{ID[1:]}.meta", f"../{ID}.meta", f"{ID}.meta/..",
        f"/etc/{ID}.meta", f"{ID.upper()}.meta", f"{ID[:-1]}.meta", f"{ID}0.meta",
        f"{ID}.meta\n", f"{ID}.meta ", f"{ID}.meta;rm -rf /", f"{ID}.sh", f"{ID}.meta.partial",
        f"{ID}", "$(id).meta", f"{ID}.squashfs\x00", f"sha256:{ID}.meta",
    ],
)
def test_hostile_names_are_refused(hostile: str) -> None:
    with pytest.raises(TransferError) as caught:
        check_file_name(hostile)
    assert str(caught.value) == f"refusing image file name {hostile!r}"
    assert caught.value.hint is not None and "sha256" in caught.value.hint


def _accepted(name: str) -> bool:
    try:
        check_file_name(name)
    except TransferError:
        return False
    return True


@given(st.text(max_size=80) | st.from_regex(IMAGE_FILE_NAME, fullmatch=True))
def test_every_accepted_name_is_inert_in_a_path_and_a_shell(name: str) -> None:
    inert = shlex.quote(name) == name and "/" not in name and not name.startswith(("-", "."))
    assert inert or not _accepted(name)


def test_publish_order_puts_meta_last_and_keeps_the_rest() -> None:
    files = [Path("/x") / META, Path("/x") / SIDECAR, Path("/y") / IMAGE]
    assert [p.name for p in publish_order(files)] == [SIDECAR, IMAGE, META]
    assert publish_order([]) == []


def test_publish_order_refuses_a_name_twice_and_bad_names() -> None:
    with pytest.raises(TransferError, match="listed twice"):
        publish_order([Path("/a") / IMAGE, Path("/b") / IMAGE])
    with pytest.raises(TransferError, match="refusing"):
        publish_order([Path("/a") / IMAGE, Path("/a/-rf")])


def test_removal_order_puts_meta_first_once() -> None:
    assert removal_order([IMAGE, SIDECAR, META, IMAGE]) == [META, IMAGE, SIDECAR]


def test_names_of_one_image_are_described_together() -> None:
    assert describe_names([IMAGE, SIDECAR, META]) == f"{ID}.{{squashfs,json,meta}}"
    assert describe_names([META]) == META


def _steps(command: str) -> list[list[str]]:
    """The simple commands of the `sh -c` script, in order."""
    shell, flag, script = shlex.split(command)
    assert (shell, flag) == ("sh", "-c")
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.wordchars += ":,$?@%+"  # characters of paths, ACL specs and `$?`
    lexer.whitespace_split = True
    steps: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", ";", "{", "}"):
            steps.append([])
        else:
            steps[-1].append(token)
    return [step for step in steps if step]


def test_finalize_moves_meta_last_and_always_removes_staging() -> None:
    staging = "/images/.shifter-upload.00ff"
    steps = _steps(finalize_command(staging, "/images", [IMAGE, SIDECAR, META], ImageAccess.PUBLIC))
    staged = [f"{staging}/{name}" for name in (IMAGE, SIDECAR, META)]
    assert steps[0] == ["chmod", "0644", "--", *staged]
    assert not any(step[0] == "setfacl" for step in steps)
    moves = [step[3:] for step in steps if step[0] == "mv"]
    assert [step[:3] for step in steps if step[0] == "mv"] == [["mv", "-f", "--"]] * 3
    assert moves == [[f"{staging}/{n}", f"/images/{n}"] for n in (IMAGE, SIDECAR, META)]
    assert steps[-3:] == [["status=$?"], ["rm", "-rf", "--", staging], ["exit", "$status"]]


def test_finalize_sets_the_acl_before_any_move() -> None:
    access = ImageAccess(True, user_ids=(1002,), group_ids=(1004,))
    steps = _steps(finalize_command("/i/.s", "/i", [IMAGE, META], access))
    commands = [step[0] for step in steps]
    assert steps[0][:2] == ["chmod", "0600"]
    assert steps[1] == ["setfacl", "--set", access.setfacl_spec(), "--", "/i/.s/" + IMAGE,
                        "/i/.s/" + META]
    assert commands.index("setfacl") < commands.index("sync") < commands.index("mv")


def test_finalize_refuses_bad_names() -> None:
    with pytest.raises(TransferError):
        finalize_command("/i/.s", "/i", ["x;reboot"], ImageAccess.PUBLIC)


def _remote(**changes: object) -> Platform:
    data: dict[str, object] = {
        "accesstype": "remote",
        "host": ["login1", "login2"],
        "ssh": {"username": "shifter", "imageDir": "/images", **changes},
    }
    return Platform.model_validate(data)


def test_transfer_for_picks_the_mode_and_names_the_platform() -> None:
    local_platform = {"accesstype": "local", "local": {"imageDir": "/i"}}
    local = transfer_for(Platform.model_validate(local_platform))
    assert isinstance(local, LocalTransfer) and local.label == "imageDir /i"
    remote = transfer_for(_remote(key="/k", sshCmdOptions=["-p", "22"]), name="mycluster")
    assert isinstance(remote, RemoteTransfer)
    assert remote.hosts == ("login1", "login2")
    assert (remote.username, remote.key, remote.ssh_options) == ("shifter", "/k", ("-p", "22"))
    assert remote.label == "imageDir /images of platform 'mycluster'"


@pytest.mark.parametrize("image_dir", ["/a b", "/x;reboot", "/$HOME", "/a'b", "/a\nb", "/`id`"])
def test_remote_image_dir_must_be_shell_safe(image_dir: str) -> None:
    with pytest.raises(ConfigError, match="may contain only") as caught:
        transfer_for(_remote(imageDir=image_dir), name="c1")
    assert caught.value.key == "Platforms.c1.ssh.imageDir"


def test_remote_image_dir_trailing_slash_is_dropped() -> None:
    remote = transfer_for(_remote(imageDir="/images/"))
    assert isinstance(remote, RemoteTransfer) and remote.image_dir == "/images"
