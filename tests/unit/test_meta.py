"""The `.meta` file: written as the original gateway wrote it, read as the original runtime
reads it (runtime-behaviors 1.5, gateway-contract 5.9)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ParseError
from shifter.image.meta import (
    ACL_MAX,
    ImageMeta,
    MetaError,
    format_argv_list,
    format_meta,
    parse_argv_list,
    parse_meta,
    read_meta,
    with_acls,
)
from shifter.keyvalue import WHITESPACE

# -- writing, in the original's order and form ---------------------------------------------


def test_busybox_meta_is_written_like_the_original() -> None:
    text, warnings = format_meta(
        "squashfs",
        env=["PATH=/usr/local/bin:/usr/bin:/bin", "SHIFTER_TEST_IMAGE=busybox"],
        entrypoint=["/bin/echo", "shifter-test-entrypoint"],
        cmd=["default-cmd"],
        workdir="/home/shifter",
        user_acl=[1001, 1002, 100],
        group_acl=[1003, 100],
    )
    assert warnings == ()
    assert text == (
        "FORMAT: squashfs\n"
        "ENTRY: ['/bin/echo', 'shifter-test-entrypoint']\n"
        "CMD: ['default-cmd']\n"
        "WORKDIR: /home/shifter\n"
        "USERACL: 1001,1002,100\n"
        "GROUPACL: 1003,100\n"
        "ENV: PATH=/usr/local/bin:/usr/bin:/bin\n"
        "ENV: SHIFTER_TEST_IMAGE=busybox\n"
    )


def test_empty_values_are_not_written() -> None:
    text, _ = format_meta("ext4", entrypoint=[], cmd=None, workdir="", user_acl=[], group_acl=None)
    assert text == "FORMAT: ext4\n"


def test_the_list_form_matches_python_repr_for_plain_strings() -> None:
    items = ["/bin/sh", "-c", "echo hi there", "ünïcode"]
    assert format_argv_list(items) == str(items)


@pytest.mark.parametrize(
    ("kwargs", "warning"),
    [
        ({"cmd": ["sh", "-c", "echo 'hi'"]}, "CMD left out"),
        ({"entrypoint": ["a\nb"]}, "ENTRY left out"),
        ({"workdir": "/srv\n/x"}, "WORKDIR left out"),
        ({"env": ["DIR=C:\\ "]}, "ENV left out"),
        ({"env": ["A=1\nB=2"]}, "ENV left out"),
        ({"env": ["TRAILING=space "]}, "ENV trimmed"),
    ],
)
def test_values_the_runtime_cannot_read_back_are_reported(kwargs: dict, warning: str) -> None:
    text, warnings = format_meta("squashfs", **kwargs)
    assert any(w.startswith(warning) for w in warnings)
    meta = parse_meta(text)  # whatever was written still parses, line for line
    assert len(text.splitlines()) == 1 + len(meta.env) + (meta.workdir is not None)


def test_acl_limits_are_checked_when_writing() -> None:
    with pytest.raises(MetaError, match="the runtime accepts 1000"):
        format_meta("squashfs", user_acl=list(range(ACL_MAX + 1)))
    with pytest.raises(MetaError, match="is not a uid/gid"):
        format_meta("squashfs", group_acl=[-1])
    with pytest.raises(MetaError, match="unknown image format"):
        format_meta("tar")


# -- reading, as the C runtime does ---------------------------------------------------------


def test_reading_a_full_file() -> None:
    meta = parse_meta(
        "# comment\n"
        "FORMAT: squashfs\n"
        "ENTRY: ['/bin/sh', '-c']\n"
        "CMD: ['/app.sh']\n"
        "WORKDIR: /root\n"
        "USERACL: 1001,1002,100\n"
        "GROUPACL: 1003,100\n"
        "ENV: PATH=/usr/local/sbin:/usr/bin\n"
        "ENV: FOO=bar\n"
        "USER: alice\n"
        "VOLUME: /data\n"
    )
    assert meta == ImageMeta(
        format="squashfs",
        env=("PATH=/usr/local/sbin:/usr/bin", "FOO=bar"),
        entrypoint=("/bin/sh", "-c"),
        cmd=("/app.sh",),
        workdir="/root",
        user_acl=(1001, 1002, 100),
        group_acl=(1003, 100),
        volumes=("/data",),
        unknown_keys=("USER",),
    )
    assert meta.restricted


@pytest.mark.parametrize(
    ("value", "argv"),
    [
        ("['a', 'b']", ("a", "b")),
        ("[u'a', u'b c']", ("a", "b c")),
        ("['']", ("",)),
        ('["a", "b"]', ('["a", "b"]',)),  # JSON is not split: one argument
        ("/bin/sh -c", ("/bin/sh -c",)),
        ("['a'x'b']", ("a", "b")),  # text outside quotes is ignored, as in C
    ],
)
def test_entry_forms(value: str, argv: tuple[str, ...]) -> None:
    assert parse_meta(f"ENTRY: {value}\nCMD: {value}\n").entrypoint == argv
    assert parse_meta(f"CMD: {value}\n").cmd == argv


@pytest.mark.parametrize("value", ["['a', 'b'", "['a', 'b]", "['a]", "['"])
def test_malformed_lists_fail_the_parse(value: str) -> None:
    with pytest.raises(ParseError, match="Malformed JSON") as caught:
        parse_meta(f"FORMAT: squashfs\nENTRY: {value}\n", source="x.meta")
    assert str(caught.value).startswith("x.meta:2: ")
    assert parse_argv_list(value) is None


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("1000,,5000", (1000, 5000)),
        ("1000,123temp,2000", (1000, 2000)),
        (" 7 , 8 ", (7, 8)),
        ("-5,6", (6,)),
        ("", ()),
    ],
)
def test_acl_lists(value: str, ids: tuple[int, ...]) -> None:
    assert parse_meta(f"USERACL: {value}\nGROUPACL: {value}\n").user_acl == ids
    assert parse_meta(f"GROUPACL: {value}\n").group_acl == ids


@pytest.mark.parametrize("key", ["USERACL", "GROUPACL"])
def test_acl_without_any_id_is_an_error(key: str) -> None:
    with pytest.raises(ParseError, match=f"failed to parse {key} from image"):
        parse_meta(f"{key}: abc,def\n")
    too_many = ",".join(str(n) for n in range(ACL_MAX + 1))
    with pytest.raises(ParseError, match="more than 1000"):
        parse_meta(f"{key}: {too_many}\n")


@pytest.mark.parametrize(
    ("text", "image_format"),
    [
        ("", "VFS"),
        ("FORMAT: xfs\n", "xfs"),
        ("FORMAT: SquashFS\n", "INVALID"),
        ("FORMAT: VFS\n", "VFS"),
    ],
)
def test_format_values(text: str, image_format: str) -> None:
    assert parse_meta(text).format == image_format


def test_repeated_keys_last_wins_except_env() -> None:
    meta = parse_meta("ENTRY: ['a']\nENTRY: ['b']\nENV: A=1\nENV: A=2\nUSERACL: 1\nUSERACL: 2\n")
    assert meta.entrypoint == ("b",) and meta.env == ("A=1", "A=2") and meta.user_acl == (2,)


def test_read_meta_keeps_carriage_returns_and_odd_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x.meta"
    path.write_bytes(b"FORMAT: squashfs\nENV: A=x\ry\nENV: B=\xff\n")
    meta = read_meta(str(path))
    assert meta.env == ("A=x\ry", "B=\udcff")


# -- round trips ----------------------------------------------------------------------------

# What a line can carry back: no newline or NUL, nothing the reader trims, no continuation.
line_values = st.text(
    alphabet=st.characters(blacklist_characters="\n\0", blacklist_categories=("Cs",)), min_size=1
).filter(lambda v: v == v.strip(WHITESPACE) and not v.endswith("\\"))
argv_items = st.text(
    alphabet=st.characters(blacklist_characters="'\n\0", blacklist_categories=("Cs",))
)
argvs = st.lists(argv_items, min_size=1, max_size=6)
ids = st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=20)


@given(
    env=st.lists(line_values, max_size=8),
    entrypoint=st.none() | argvs,
    cmd=st.none() | argvs,
    workdir=st.none() | line_values,
    user_acl=ids,
    group_acl=ids,
    image_format=st.sampled_from(["squashfs", "ext4", "cramfs"]),
)
def test_representable_values_round_trip(
    env: list[str],
    entrypoint: list[str] | None,
    cmd: list[str] | None,
    workdir: str | None,
    user_acl: list[int],
    group_acl: list[int],
    image_format: str,
) -> None:
    text, warnings = format_meta(
        image_format,
        env=env,
        entrypoint=entrypoint,
        cmd=cmd,
        workdir=workdir,
        user_acl=user_acl,
        group_acl=group_acl,
    )
    assert warnings == ()
    meta = parse_meta(text)
    assert meta.format == image_format
    assert meta.env == tuple(env)
    assert meta.entrypoint == (tuple(entrypoint) if entrypoint else None)
    assert meta.cmd == (tuple(cmd) if cmd else None)
    assert meta.workdir == workdir
    assert (meta.user_acl, meta.group_acl) == (tuple(user_acl), tuple(group_acl))
    assert meta.unknown_keys == ()


def _survives(value: str) -> bool:
    trimmed = value.strip(WHITESPACE)
    return bool(trimmed) and not trimmed.endswith("\\") and "\n" not in value and "\0" not in value


@given(env=st.lists(st.text(), max_size=6), cmd=st.lists(st.text(), min_size=1, max_size=4))
def test_any_values_give_a_file_that_reads_back_without_merging_lines(
    env: list[str], cmd: list[str]
) -> None:
    text, warnings = format_meta("squashfs", env=env, cmd=cmd)
    meta = parse_meta(text)
    assert meta.env == tuple(v.strip(WHITESPACE) for v in env if _survives(v))
    writable = not any(bad in item for item in cmd for bad in ("'", "\n", "\0"))
    assert meta.cmd == (tuple(cmd) if writable else None)
    assert any(w.startswith("CMD left out") for w in warnings) is not writable
    dropped_or_changed = sum(1 for v in env if v != v.strip(WHITESPACE) or not _survives(v))
    assert len(warnings) == dropped_or_changed + (not writable)


def test_reading_meta_loads_no_heavy_library() -> None:
    """The runtime reads .meta on the `shifter` launch path: standard library only."""
    code = (
        "import sys; import shifter.image.meta; "
        "print(','.join(m for m in ('httpx', 'pydantic', 'tqdm', 'zstandard', "
        "'shifter.registry', 'shifter.convert') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


ids = st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=5, unique=True)


@given(users=ids, groups=ids, new_users=ids, new_groups=ids,
       env=st.lists(st.from_regex(r"[A-Z]{1,5}=[a-z:/ ]{0,10}", fullmatch=True), max_size=3))
def test_acl_lines_are_replaced_and_nothing_else_changes(
    users: list[int], groups: list[int], new_users: list[int], new_groups: list[int],
    env: list[str],
) -> None:
    written, _ = format_meta("squashfs", env=env, entrypoint=["/bin/sh"], workdir="/w",
                             user_acl=users, group_acl=groups)
    expected, _ = format_meta("squashfs", env=env, entrypoint=["/bin/sh"], workdir="/w",
                              user_acl=new_users, group_acl=new_groups)
    assert with_acls(written, new_users, new_groups) == expected
    meta = parse_meta(with_acls(written, new_users, new_groups))
    assert (list(meta.user_acl), list(meta.group_acl)) == (new_users, new_groups)
