"""shifterimg's command line: every command has help, options go before or after the
command (the original wanted them before), --user/--group lists resolve to ids."""

from __future__ import annotations

import grp
import pwd

import pytest

from shifter.cli import shifterimg
from shifter.cli.shifterimg_import import image_format
from shifter.cli.shifterimg_pull import acl_values, parse_acl
from shifter.errors import ShifterError
from shifter.gwclient import Acl

pytestmark = pytest.mark.unit

COMMANDS = ("pull", "lookup", "images", "login", "logout", "expire", "autoexpire", "import")


def test_every_command_is_listed_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        shifterimg.main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in text, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_own_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        shifterimg.main([command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: shifterimg {command} ")
    description = text.split("\n\n")[1]
    assert len(description) > 20 and not description.startswith("`"), description


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "--user", "nobody", "pull", "ubuntu"],  # the original's order
        ["pull", "-v", "--user", "nobody", "ubuntu"],
        ["--verbose", "pull", "--user=nobody", "ubuntu"],
    ],
)
def test_options_before_or_after_the_command(argv: list[str]) -> None:
    args = shifterimg.build_parser().parse_args(argv)
    assert args.command == "pull" and args.image == "ubuntu"
    assert args.verbose is True
    assert acl_values(args, "user") == ["nobody"]
    assert acl_values(args, "group") == []


def test_repeated_user_options_accumulate() -> None:
    args = shifterimg.build_parser().parse_args(["-u", "a,b", "pull", "-u", "c", "img"])
    assert acl_values(args, "user") == ["a,b", "c"]


def test_without_options_nothing_is_set() -> None:
    args = shifterimg.build_parser().parse_args(["lookup", "ubuntu"])
    assert "verbose" not in args and "debug" not in args and "main_user" not in args


def test_acl_names_and_numbers_resolve_to_ids() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    acl = parse_acl(["nobody,1234", " 1234 ,", "4321"], ["nogroup", "77"])
    assert acl == Acl(users=(nobody, 1234, 4321), groups=(nogroup, 77))
    assert acl is not None and acl.body() == {
        "allowed_uids": f"{nobody},1234,4321", "allowed_gids": f"{nogroup},77",
    }
    assert parse_acl([], []) is None
    assert parse_acl([""], [","]) is None
    only_groups = parse_acl([], ["77"])
    assert only_groups is not None and only_groups.body() == {"allowed_gids": "77"}


def test_unknown_names_and_root_are_refused() -> None:
    with pytest.raises(ShifterError, match="no user named 'no-such-user-here'"):
        parse_acl(["no-such-user-here"], [])
    with pytest.raises(ShifterError, match="no group named 'no-such-group-here'"):
        parse_acl([], ["no-such-group-here"])
    with pytest.raises(ShifterError, match="root \\(id 0\\)") as caught:
        parse_acl(["root"], [])
    assert caught.value.hint is not None
    with pytest.raises(ShifterError, match="root \\(id 0\\)"):
        parse_acl([], ["0"])


@pytest.mark.parametrize(
    ("path", "given", "expected"),
    [
        ("/x/img.squashfs", None, "squashfs"),
        ("/x/img.SQSH", None, "squashfs"),
        ("/x/img.ext4", None, "ext4"),
        ("/x/img.cramfs", None, "cramfs"),
        ("/x/img", None, "squashfs"),
        ("/x/img.ext4", "squashfs", "squashfs"),
        ("/x/img.sqsh", "other", "other"),  # the gateway decides what it accepts
    ],
)
def test_import_format_from_suffix_or_option(path: str, given: str | None,
                                             expected: str) -> None:
    assert image_format(path, given) == expected
