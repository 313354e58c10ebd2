"""`shifter`'s command line: getopt_long rules (stop at the first non-option, attached
optional values, clusters, prefixes), and the help text that documents every option."""

from __future__ import annotations

import pytest

from shifter.cli.shifter import HELP, LONG, SHORT, UsageError, parse_options

pytestmark = pytest.mark.unit


def test_options_stop_at_the_first_non_option() -> None:
    options, command = parse_options(["--image=x", "ls", "-l", "--image=y"])
    assert options == {"image": "x"}
    assert command == ["ls", "-l", "--image=y"]


def test_double_dash_ends_options() -> None:
    assert parse_options(["-i", "x", "--", "-v"]) == ({"image": "x"}, ["-v"])


def test_required_values_attached_or_separate() -> None:
    options, command = parse_options(["-ix", "--volume", "/a:/b", "-V/c:/d", "--env=A=1", "cmd"])
    assert options == {"image": "x", "volume": ["/a:/b", "/c:/d"], "env": ["A=1"]}
    assert command == ["cmd"]


def test_optional_values_must_be_attached() -> None:
    # The original's getopt rule: `--workdir /path` leaves /path as the command.
    assert parse_options(["--workdir", "/path"]) == ({"workdir": ""}, ["/path"])
    assert parse_options(["--workdir=/path", "pwd"]) == ({"workdir": "/path"}, ["pwd"])
    assert parse_options(["-w/path"]) == ({"workdir": "/path"}, [])
    assert parse_options(["-w", "pwd"]) == ({"workdir": ""}, ["pwd"])
    assert parse_options(["--entrypoint", "a"]) == ({"entrypoint": ""}, ["a"])
    assert parse_options(["--entry=/bin/x"]) == ({"entrypoint": "/bin/x"}, [])


def test_short_options_cluster() -> None:
    options, command = parse_options(["-vEnix", "cmd"])
    assert options == {"verbose": True, "clearenv": True, "n": True, "image": "x"}
    assert command == ["cmd"]


def test_last_value_wins_for_single_options() -> None:
    options, _ = parse_options(["-m", "a", "--module=b", "--env-file=1", "--env-file=2"])
    assert options == {"module": "b", "env_file": "2"}


def test_unambiguous_prefixes_of_long_options() -> None:
    assert parse_options(["--ima=x", "--clear"])[0] == {"image": "x", "clearenv": True}
    assert parse_options(["--entry"])[0] == {"entrypoint": ""}  # exact beats prefix


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unrecognized option '--nope'"),
        (["--e=x"], "option '--e' is ambiguous"),
        (["-x"], "invalid option -- 'x'"),
        (["--image"], "option '--image' requires an argument"),
        (["-V"], "option requires an argument -- 'V'"),
        (["--verbose=1"], "option '--verbose' doesn't allow an argument"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_options(argv)
    assert str(caught.value).startswith(message)


def test_a_lone_dash_is_the_command() -> None:
    assert parse_options(["-"]) == ({}, ["-"])


def test_help_documents_every_option() -> None:
    for name in LONG:
        if name != "entry":  # documented as the alias it is, in the original's help
            assert f"--{name}" in HELP, name
    for letter in SHORT:
        if letter != "n":  # accepted for compatibility, does nothing
            assert f"-{letter}" in HELP, letter
