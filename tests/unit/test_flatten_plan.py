"""The flattening plan: each rule of docs/flattening.md, one outcome per case, no tar2sqfs.

This module: how layers merge (whiteouts, opaque directories, replacements, hard links),
the order of the plan and the layers' compression and damage. A member's name, path and
header: test_flatten_plan_members.py. Helpers: test_flatten_plan_support.py.

Layers are written with `shifter.ocibuild.layer` (Python's tarfile underneath) into
tmp_path, so the plan is always checked against tars our own reader did not write.
"""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest

from shifter.convert.layers import Kind, LayerError
from shifter.convert.plan import PlannedEntry, plan_layers
from shifter.ocibuild.layer import (
    Compression,
    Device,
    Dir,
    File,
    HardLink,
    Opaque,
    Symlink,
    Whiteout,
    build_layer,
)
from tests.unit.test_flatten_plan_support import entry, plan_of, same_inode, skipped, source_name

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
