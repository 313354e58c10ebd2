"""The flattening plan, member by member: names normalised inside the root, symlinks met on
the way, hostile names, what is dropped or rewritten (devices, setuid bits, owners, times),
and which members the merge may copy as they are.

Layers are written with `shifter.ocibuild.layer` (Python's tarfile underneath) into
tmp_path, so the plan is always checked against tars our own reader did not write.
Helpers: test_flatten_plan_support.py.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.convert.layers import Kind
from shifter.convert.plan import MAX_SYMLINK_HOPS, Plan, normalize_name, plan_layers
from shifter.ocibuild.layer import Device, Dir, Entry, Fifo, File, HardLink, Symlink
from tests.unit.test_flatten_plan_support import entry, plan_of, skipped, source_name

# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("a/b", "a/b"),
        ("/abs/file", "abs/file"),
        ("./a/./b/", "a/b"),
        ("a//b///c", "a/b/c"),
        ("../../etc/x", "etc/x"),
        ("a/../../../etc/x", "etc/x"),
        ("a/b/../c", "a/c"),
        ("/", ""),
        ("./", ""),
        ("..", ""),
        ("", ""),
        ("naïve/文件", "naïve/文件"),
    ],
)
def test_names_are_normalised_inside_the_root(name: str, normal: str) -> None:
    assert normalize_name(name) == normal


def test_a_name_with_nul_is_invalid() -> None:
    assert normalize_name("a\x00b") is None


@given(st.lists(st.sampled_from(["..", ".", "", "a", "b", "é", ".wh.x", "..."]), max_size=12))
def test_normalised_names_never_escape_and_are_stable(parts: list[str]) -> None:
    name = "/".join(parts)
    normal = normalize_name(name)
    assert normal is not None
    assert not normal.startswith("/")
    if normal:
        assert all(p not in ("", ".", "..") for p in normal.split("/"))
    assert normalize_name(normal) == normal
    assert normalize_name("/" + name) == normal


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_any_text_normalises_to_a_relative_path(name: str) -> None:
    normal = normalize_name(name)
    assert normal is not None
    assert ".." not in normal.split("/")
    assert normalize_name(normal) == normal


# --- symlinks met on the way -------------------------------------------------------------


def test_a_parent_symlink_is_followed_inside_the_image(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [Dir("etc"), File("etc/passwd", b"image")],
        [Symlink("evil", "/etc"), File("evil/passwd", b"hostile")],
    )
    assert source_name(plan, "etc/passwd") == (1, "evil/passwd")
    assert entry(plan, "evil").kind is Kind.SYMLINK
    assert "evil/passwd" not in plan


@pytest.mark.parametrize("target", ["../../..", "/", "../../../../..", "/../.."])
def test_symlinks_climbing_above_the_root_stop_at_the_root(tmp_path: Path, target: str) -> None:
    plan = plan_of(tmp_path, [Dir("a"), Symlink("a/up", target), File("a/up/escaped")])
    assert "escaped" in plan


def test_relative_symlinks_resolve_from_their_directory_and_chain(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [
            Dir("usr/lib"),
            Symlink("lib", "usr/lib"),
            Dir("usr/lib64"),
            Symlink("usr/lib/up", "../lib64"),
            File("lib/up/deep/f"),
        ],
    )
    assert entry(plan, "usr/lib64/deep").kind is Kind.DIR  # created, as MkdirAll would
    assert "usr/lib64/deep/f" in plan


def test_symlink_loops_skip_the_entry(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [Symlink("a", "b"), Symlink("b", "a"), File("a/x")])
    assert skipped(plan) == {"a/x": "too many levels of symbolic links"}
    assert MAX_SYMLINK_HOPS == 40


def test_a_long_but_finite_symlink_chain_resolves(tmp_path: Path) -> None:
    chain = [Symlink(f"s{i}", f"s{i + 1}") for i in range(MAX_SYMLINK_HOPS - 1)]
    plan = plan_of(
        tmp_path, [Dir("end"), *chain, Symlink(f"s{MAX_SYMLINK_HOPS - 1}", "end"), File("s0/f")]
    )
    assert "end/f" in plan


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([Symlink("dangling", "missing/dir"), File("dangling/f")], "dangling symbolic link"),
        ([File("file"), Symlink("tofile", "file"), File("tofile/f")], "not a directory"),
        ([File("file"), File("file/f")], "not a directory"),
    ],
)
def test_unwalkable_parents_skip_the_entry(
    tmp_path: Path, entries: list[Entry], reason: str
) -> None:
    plan = plan_of(tmp_path, entries)
    (path,) = (p for p in skipped(plan))
    assert path.endswith("/f")
    assert reason in skipped(plan)[path]
    assert "missing" not in plan


# --- hostile names ---------------------------------------------------------------------


def test_dotdot_and_absolute_members_land_inside_the_root(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path, [File("../../escape"), File("d/../../../escape-deep"), File("/abs/file")]
    )
    assert {"escape", "escape-deep", "abs/file"} <= {e.path for e in plan.entries}


def test_names_with_nul_and_overlong_components_are_skipped(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("ok", "bad\x00name", "x" * 256, "d/" + "é" * 128):
            info = tarfile.TarInfo(name)
            info.pax_headers = {"path": name}  # the only way a NUL reaches a member name
            tar.addfile(info, io.BytesIO(b""))
    plan = plan_layers([layer])
    assert [e.path for e in plan.entries] == ["", "ok"]
    assert [s.reason for s in plan.skipped] == [
        "invalid name (contains NUL)",
        "a name is longer than 255 bytes",
        "a name is longer than 255 bytes",
    ]


def test_unicode_non_utf8_and_long_names_survive(tmp_path: Path) -> None:
    long_name = "deep/" + "/".join(["segment-" + "x" * 40] * 5) + "/file"
    plan = plan_of(
        tmp_path, [File("données/naïve-文件.txt"), File(b"latin1-\xe9"), File(long_name)]
    )
    assert "données/naïve-文件.txt" in plan
    assert b"latin1-\xe9".decode("utf-8", "surrogateescape") in plan
    assert long_name in plan


def test_gnu_long_names_are_read(tmp_path: Path) -> None:
    layer = tmp_path / "gnu.tar"
    name = "g/" + "n" * 150
    with tarfile.open(layer, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
        link = tarfile.TarInfo("l")
        link.type, link.linkname = tarfile.LNKTYPE, name
        tar.addfile(link)
    plan = plan_layers([layer])
    assert entry(plan, "l").link == name


# --- what is dropped or rewritten --------------------------------------------------------


def test_devices_and_fifos_are_skipped_and_change_nothing(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [File("dev/kept", b"x")],
        [
            Device("dev/null", 1, 3),
            Device("dev/sda", 8, 0, block=True),
            Fifo("fifo"),
            Device("dev/kept", 1, 5),
        ],
    )
    assert skipped(plan) == {
        "dev/null": "device nodes are not kept in images",
        "dev/sda": "device nodes are not kept in images",
        "fifo": "fifo nodes are not kept in images",
        "dev/kept": "device nodes are not kept in images",
    }
    assert entry(plan, "dev/kept").kind is Kind.FILE


def test_setuid_and_setgid_are_stripped_and_sticky_kept(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [
            File("suid", mode=0o4755),
            File("sgid", mode=0o2711),
            Dir("tmp", mode=0o1777),
            Dir("sgdir", mode=0o2775),
        ],
    )
    assert {p: entry(plan, p).mode for p in ("suid", "sgid", "tmp", "sgdir")} == {
        "suid": 0o755,
        "sgid": 0o711,
        "tmp": 0o1777,
        "sgdir": 0o775,
    }


@pytest.mark.parametrize(("ownership", "owner"), [("root", (0, 0)), ("preserve", (1000, 100))])
def test_ownership_modes(tmp_path: Path, ownership: str, owner: tuple[int, int]) -> None:
    plan = plan_of(
        tmp_path,
        [
            Dir("home", uid=1000, gid=100),
            File("home/f", uid=1000, gid=100),
            Symlink("s", "x", uid=1000, gid=100),
        ],
        ownership=ownership,
    )
    for path in ("home", "home/f", "s"):
        assert (entry(plan, path).uid, entry(plan, path).gid) == owner


def test_unknown_ownership_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ownership"):
        plan_of(tmp_path, [File("a")], ownership="nobody")


def test_xattrs_do_not_change_the_plan(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [File("capped", b"#!", xattrs={"security.capability": b"\x01\x02"})])
    assert entry(plan, "capped").kind is Kind.FILE


def test_mtimes_are_clamped_to_what_squashfs_stores(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [File("old", mtime=-5), File("future", mtime=2**40)])
    assert (entry(plan, "old").mtime, entry(plan, "future").mtime) == (0, 2**32 - 1)


# --- members the merge may copy as they are ---------------------------------------------------


def verbatim(plan: Plan) -> dict[str, bool]:
    return {e.path: e.verbatim for e in plan.entries if e.kind is Kind.FILE}


@pytest.mark.parametrize("ownership", ["root", "preserve"])
def test_files_whose_headers_say_what_the_plan_says_are_copied_verbatim(
    tmp_path: Path, ownership: str
) -> None:
    plan = plan_of(
        tmp_path,
        [
            Dir("real"),
            Symlink("link", "real"),
            File("plain", b"p", uid=5, gid=6),
            File("setuid", b"s", mode=0o4755),  # the plan drops the bit: the header is wrong
            File("future", b"f", mtime=2**33),  # clamped by the plan
            File("link/through", b"t"),  # lands at real/through: its name is not its path
            File("z-target", b"z"),
            HardLink("a-link", "z-target"),  # the carrier is a-link, not the member's name
        ],
        ownership=ownership,
    )
    assert verbatim(plan) == {
        "plain": True,
        "setuid": False,
        "future": False,
        "real/through": False,
        "a-link": False,
    }


@pytest.mark.parametrize(("ownership", "copied"), [("root", True), ("preserve", False)])
def test_owner_names_keep_a_member_from_being_copied_when_owners_are_kept(
    tmp_path: Path, ownership: str, copied: bool
) -> None:
    """mksquashfs maps owner names through the host's user database; with ownership "root"
    its -all-root makes them irrelevant."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("named")
        info.uname, info.uid, info.size = "nobody", 0, 1
        tar.addfile(info, io.BytesIO(b"n"))
    layer = tmp_path / "layer.tar"
    layer.write_bytes(buffer.getvalue())
    plan = plan_layers([layer], ownership=ownership)  # type: ignore[arg-type]
    assert verbatim(plan) == {"named": copied}
