"""The flattening plan: each rule of docs/flattening.md, one outcome per case, no tar2sqfs.

Layers are written with `shifter.ocibuild.layer` (Python's tarfile underneath) into
tmp_path, so the plan is always checked against tars our own reader did not write.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.convert.layers import Kind, LayerError
from shifter.convert.plan import (
    MAX_SYMLINK_HOPS,
    Plan,
    PlannedEntry,
    normalize_name,
    plan_layers,
)
from shifter.ocibuild.layer import (
    Compression,
    Device,
    Dir,
    Entry,
    Fifo,
    File,
    HardLink,
    Opaque,
    Symlink,
    Whiteout,
    build_layer,
)


def plan_of(
    tmp_path: Path,
    *layers: Sequence[Entry],
    ownership: str = "root",
    compression: Compression = Compression.NONE,
) -> Plan:
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, entries in enumerate(layers):
        path = tmp_path / f"layer{index}"
        path.write_bytes(build_layer(list(entries), compression).blob)
        paths.append(path)
    return plan_layers(paths, ownership=ownership)  # type: ignore[arg-type]


def entry(plan: Plan, path: str) -> PlannedEntry:
    found = plan.get(path)
    assert found is not None, f"{path!r} is not in the plan: {sorted(e.path for e in plan.entries)}"
    return found


def skipped(plan: Plan) -> dict[str, str]:
    return {s.path: s.reason for s in plan.skipped}


def same_inode(plan: Plan, a: str, b: str) -> bool:
    """Whether `a` and `b` are one hard-linked file in the plan."""
    first, second = entry(plan, a), entry(plan, b)
    carrier = {first.link if first.kind is Kind.HARDLINK else a}
    carrier.add(second.link if second.kind is Kind.HARDLINK else b)
    return len(carrier) == 1 and entry(plan, carrier.pop()).kind is Kind.FILE


def source_name(plan: Plan, path: str) -> tuple[int, str]:
    """(layer, member name) that supplies the data of `path`, following a hard link."""
    found = entry(plan, path)
    if found.kind is Kind.HARDLINK:
        found = entry(plan, found.link)
    assert found.kind is Kind.FILE and found.source is not None
    return found.source.layer, found.source.name


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


# --- whiteouts and opaque directories ---------------------------------------------------


def test_whiteout_removes_a_file_and_a_subtree_and_never_appears(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [
            File("keep"),
            File("gone"),
            Dir("tree"),
            File("tree/a"),
            Dir("tree/sub"),
            File("tree/sub/b"),
        ],
        [Whiteout("gone"), Whiteout("tree")],
    )
    assert "keep" in plan
    for path in ("gone", "tree", "tree/a", "tree/sub/b", ".wh.gone", ".wh.tree"):
        assert path not in plan
    assert plan.skipped == ()


def test_whiteout_only_hides_lower_layers_whatever_its_place_in_the_layer(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path, [File("x", b"old")], [File("x", b"new"), Whiteout("x")])
    assert source_name(plan, "x") == (1, "x")


def test_opaque_hides_lower_content_but_keeps_the_same_layer_in_any_order(
    tmp_path: Path,
) -> None:
    lower = [Dir("d"), File("d/a"), File("d/b"), Dir("d/sub"), File("d/sub/c")]
    marker_first = plan_of(tmp_path / "1", lower, [Dir("d"), Opaque("d"), File("d/new")])
    marker_last = plan_of(tmp_path / "2", lower, [Dir("d"), File("d/new"), Opaque("d")])
    for plan in (marker_first, marker_last):
        assert sorted(e.path for e in plan.entries if e.path.startswith("d/")) == ["d/new"]
        assert "d/.wh..wh..opq" not in plan


def test_opaque_marker_at_the_root_hides_every_lower_layer(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [File("a"), Dir("b")], [File(".wh..wh..opq"), File("c")])
    assert sorted(e.path for e in plan.entries) == ["", "c"]


def test_directory_whited_out_then_recreated_does_not_bring_back_old_files(
    tmp_path: Path,
) -> None:
    across = plan_of(
        tmp_path / "1",
        [Dir("d"), File("d/old")],
        [Whiteout("d")],
        [Dir("d"), File("d/new")],
    )
    same_layer = plan_of(
        tmp_path / "2", [Dir("d"), File("d/old")], [Whiteout("d"), Dir("d"), File("d/new")]
    )
    for plan in (across, same_layer):
        assert entry(plan, "d").kind is Kind.DIR
        assert "d/old" not in plan
        assert "d/new" in plan


def test_opaque_marker_inside_a_symlink_does_nothing(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path, [Dir("real"), File("real/a"), Symlink("link", "real")], [Opaque("link")]
    )
    assert "real/a" in plan


def test_aufs_metadata_and_whiteout_named_directories_never_reach_the_image(
    tmp_path: Path,
) -> None:
    plan = plan_of(
        tmp_path, [File("a")], [File(".wh..wh.plnk/123"), File(".wh..wh.aufs"), File(".wh.x/y")]
    )
    assert sorted(e.path for e in plan.entries) == ["", "a"]
    assert skipped(plan) == {
        ".wh..wh.plnk/123": "it lies inside a whiteout name",
        ".wh.x/y": "it lies inside a whiteout name",
    }


# --- replacements -----------------------------------------------------------------------


def test_directory_replaced_by_a_file_and_file_by_directory_across_layers(
    tmp_path: Path,
) -> None:
    plan = plan_of(
        tmp_path,
        [Dir("d2f"), File("d2f/x"), File("f2d")],
        [File("d2f", b"file"), Dir("f2d"), File("f2d/inner")],
    )
    assert entry(plan, "d2f").kind is Kind.FILE
    assert "d2f/x" not in plan
    assert entry(plan, "f2d").kind is Kind.DIR
    assert "f2d/inner" in plan


def test_within_one_layer_the_later_entry_wins(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [
            File("sdir"),
            Dir("sdir"),
            File("sdir/child"),
            Dir("sfile"),
            File("sfile/child"),
            File("sfile", b"last"),
            File("twice", b"1"),
            File("twice", b"2"),
        ],
    )
    assert entry(plan, "sdir").kind is Kind.DIR and "sdir/child" in plan
    assert entry(plan, "sfile").kind is Kind.FILE and "sfile/child" not in plan
    assert entry(plan, "twice").source.member == 7  # type: ignore[union-attr]


def test_a_directory_over_a_directory_merges_and_takes_the_new_metadata(
    tmp_path: Path,
) -> None:
    plan = plan_of(
        tmp_path,
        [Dir("d", mode=0o755), File("d/lower")],
        [Dir("d", mode=0o700, uid=7, gid=8), File("d/upper")],
        ownership="preserve",
    )
    d = entry(plan, "d")
    assert (d.mode, d.uid, d.gid) == (0o700, 7, 8)
    assert "d/lower" in plan and "d/upper" in plan


def test_a_symlink_to_a_directory_is_replaced_by_a_directory_entry(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [Dir("real"), File("real/a"), Symlink("d", "real")], [Dir("d")])
    assert entry(plan, "d").kind is Kind.DIR
    assert "d/a" not in plan
    assert "real/a" in plan


def test_implied_parents_are_root_owned_0755(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [File("a/b/c", uid=5, gid=5)], ownership="preserve")
    for path in ("a", "a/b"):
        d = entry(plan, path)
        assert (d.kind, d.mode, d.uid, d.gid) == (Kind.DIR, 0o755, 0, 0)


def test_the_root_entry_sets_the_root_and_a_non_directory_root_is_skipped(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path, [Dir("./", mode=0o750), File("/")])
    assert entry(plan, "").mode == 0o750
    assert skipped(plan) == {"": "a non-directory cannot replace the image root"}


# --- hard links ------------------------------------------------------------------------


def test_hard_links_within_and_across_layers_share_the_carrier(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [File("a", b"A"), HardLink("b", "a")],
        [HardLink("c", "b")],
    )
    assert entry(plan, "a").kind is Kind.FILE
    assert entry(plan, "b") == PlannedEntry(
        "b", Kind.HARDLINK, 0o644, 0, 0, entry(plan, "a").mtime, link="a"
    )
    assert entry(plan, "c").link == "a"


def test_a_layer_holding_only_a_hard_link_to_a_lower_file_works(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [Dir("lower"), File("lower/t", b"T")], [HardLink("link", "lower/t")])
    assert same_inode(plan, "link", "lower/t")
    assert source_name(plan, "link") == (0, "lower/t")


def test_a_link_keeps_the_data_its_target_had_when_it_was_made(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [File("replaced", b"old"), HardLink("keeps-old", "replaced"), File("deleted", b"d")],
        [HardLink("keeps-deleted", "deleted")],
        [File("replaced", b"new"), Whiteout("deleted")],
    )
    assert source_name(plan, "replaced") == (2, "replaced")
    assert entry(plan, "keeps-old").kind is Kind.FILE  # its only name now: data, not a link
    assert source_name(plan, "keeps-old") == (0, "replaced")
    assert source_name(plan, "keeps-deleted") == (0, "deleted")
    assert "deleted" not in plan


@pytest.mark.parametrize("target", ["/etc/shadow", "../../../etc/shadow", "x/../etc/shadow"])
def test_absolute_and_dotdot_hard_links_are_clamped_to_the_image(
    tmp_path: Path, target: str
) -> None:
    plan = plan_of(tmp_path, [Dir("etc"), File("etc/shadow", b"S")], [HardLink("leak", target)])
    assert entry(plan, "leak").link == "etc/shadow"


@pytest.mark.parametrize("target", ["/etc/shadow", "../../../etc/shadow"])
def test_a_hard_link_to_a_missing_target_fails_naming_it(tmp_path: Path, target: str) -> None:
    with pytest.raises(LayerError, match="etc/shadow"):
        plan_of(tmp_path, [HardLink("leak", target)])


def test_a_hard_link_to_a_later_member_of_the_same_layer_fails(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="'b' points to 'a', which does not exist"):
        plan_of(tmp_path, [HardLink("b", "a"), File("a")])


def test_a_hard_link_to_a_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="points to the directory 'd'"):
        plan_of(tmp_path, [Dir("d"), HardLink("x", "d")])


def test_a_hard_link_to_a_symlink_copies_the_symlink(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [Symlink("s", "target"), HardLink("h", "s")])
    assert (entry(plan, "h").kind, entry(plan, "h").link) == (Kind.SYMLINK, "target")


def test_a_hard_link_to_a_skipped_device_is_skipped_too(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, [Device("null", 1, 3), HardLink("null2", "null")])
    assert skipped(plan) == {
        "null": "device nodes are not kept in images",
        "null2": "a hard link to a skipped device or fifo",
    }


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


# --- order and layers --------------------------------------------------------------------


def test_output_order_is_dirs_parents_first_then_files_links_symlinks(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        [Symlink("z", "a"), File("b/f"), HardLink("b/h", "b/f"), Dir("a/deep/er"), File("a/g")],
        [File("c")],
    )
    kinds = [e.kind for e in plan.entries]
    assert kinds == sorted(kinds, key=[Kind.DIR, Kind.FILE, Kind.HARDLINK, Kind.SYMLINK].index)
    dirs = [e.path for e in plan.entries if e.kind is Kind.DIR]
    assert dirs == ["", "a", "a/deep", "a/deep/er", "b"]
    files = [e.source for e in plan.entries if e.source is not None]
    assert files == sorted(files, key=lambda s: (s.layer, s.member))


@pytest.mark.parametrize("compression", list(Compression))
def test_compressed_layers_give_the_same_plan(tmp_path: Path, compression: Compression) -> None:
    entries = [Dir("d"), File("d/f", b"data"), Symlink("s", "d/f")]
    plain = plan_of(tmp_path / "plain", entries)
    assert plan_of(tmp_path / compression.value, entries, compression=compression) == plain


def test_compression_is_found_by_magic_bytes_not_by_name(tmp_path: Path) -> None:
    raw = build_layer([File("f", b"x")], Compression.NONE).blob
    named_wrong = tmp_path / "layer.tar"  # really xz
    named_wrong.write_bytes(lzma.compress(raw))
    gz = tmp_path / "layer.zst"  # really gzip
    gz.write_bytes(gzip.compress(raw))
    assert plan_layers([named_wrong]) == plan_layers([gz])
    assert "f" in plan_layers([gz])


def test_empty_layers_are_accepted(tmp_path: Path) -> None:
    zero = tmp_path / "zero"
    zero.write_bytes(b"")
    end_only = tmp_path / "end"
    end_only.write_bytes(gzip.compress(bytes(1024)))
    assert [e.path for e in plan_layers([zero, end_only]).entries] == [""]


@pytest.mark.parametrize(
    "blob",
    [
        b"this is not a tar archive at all" * 40,
        gzip.compress(b"x" * 10_000)[:-20],  # truncated gzip
        b"\x28\xb5\x2f\xfd garbage after zstd magic",
    ],
    ids=["garbage", "truncated-gzip", "corrupt-zstd"],
)
def test_unreadable_layers_fail_with_a_layer_error(tmp_path: Path, blob: bytes) -> None:
    layer = tmp_path / "bad"
    layer.write_bytes(blob)
    with pytest.raises(LayerError, match="not a readable tar archive"):
        plan_layers([layer])


def test_a_truncated_layer_fails(tmp_path: Path) -> None:
    raw = build_layer([File("big", b"x" * 5000), File("after")], Compression.NONE).blob
    layer = tmp_path / "cut"
    layer.write_bytes(raw[:3000])
    with pytest.raises(LayerError, match="unexpected end of data"):
        plan_layers([layer])


def test_a_missing_layer_file_fails(tmp_path: Path) -> None:
    with pytest.raises(LayerError, match="cannot open layer"):
        plan_layers([tmp_path / "absent"])


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
