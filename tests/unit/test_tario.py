"""The streaming tar reader and writer (tario, tarwrite), checked against tarfile and GNU tar."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shifter import proc
from shifter.convert import tario, tarwrite


def members(data: bytes, *, seekable: bool = False) -> list[tuple[tario.TarMember, bytes]]:
    """Every member with its (expanded) content, read the way a layer is read."""
    reader = tario.TarReader(io.BytesIO(data), size=len(data) if seekable else None)
    found = []
    for member in reader:
        content = b"".join(reader.data()) if member.type in (tario.REGULAR, b"0") else b""
        found.append((member, content))
    return found


def tarfile_archive(fmt: int, infos: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for info, content in infos:
            info.size = len(content) if info.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def info(name: str, type_: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    result = tarfile.TarInfo(name)
    result.type = type_
    for key, value in fields.items():
        setattr(result, key, value)
    return result


@pytest.mark.parametrize(
    "fmt",
    [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
    ids=["ustar", "gnu", "pax"],
)
@pytest.mark.parametrize("seekable", [False, True], ids=["stream", "file"])
def test_reader_matches_tarfile(fmt: int, seekable: bool) -> None:
    deep = "/".join(["dir" + "x" * 30] * 4) + "/file"  # 140 bytes: ustar prefix or long name
    infos = [
        (info("d", tarfile.DIRTYPE, mode=0o755), b""),
        (info("d/f", mode=0o4751, uid=1000, gid=100, mtime=1_600_000_000), b"hello" * 300),
        (info(deep), b"deep"),
        (info("d/s", tarfile.SYMTYPE, linkname="f"), b""),
        (info("d/h", tarfile.LNKTYPE, linkname="d/f"), b""),
        (info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), b""),
        (info("fifo", tarfile.FIFOTYPE), b""),
        (info("empty"), b""),
    ]
    data = tarfile_archive(fmt, infos)
    read = members(data, seekable=seekable)
    # Names come back as stored: a directory keeps its slash (normalisation is the plan's job).
    assert [m.name for m, _ in read] == ["d/", *(i.name for i, _ in infos[1:])]
    assert [c for _, c in read] == [c for _, c in infos]
    first = read[1][0]
    assert (first.mode, first.uid, first.gid, first.mtime) == (0o4751, 1000, 100, 1_600_000_000)
    assert [m.linkname for m, _ in read[3:5]] == ["f", "d/f"]
    assert [m.type for m, _ in read] == [b"5", b"0", b"0", b"2", b"1", b"3", b"6", b"0"]


def test_pax_values_override_the_ustar_fields() -> None:
    name = "naïve/文件-" + "y" * 120
    big = info(name, uid=3_000_000, gid=2**31, mtime=2**33)
    big.pax_headers = {"SCHILY.xattr.security.capability": "\x01", "comment": "ignored"}
    link = info("l", tarfile.SYMTYPE, linkname="z" * 150)
    ((member, content), (link_member, _)) = members(
        tarfile_archive(tarfile.PAX_FORMAT, [(big, b"data"), (link, b"")])
    )
    assert (member.name, member.uid, member.gid, member.mtime) == (name, 3_000_000, 2**31, 2**33)
    assert content == b"data"
    assert link_member.linkname == "z" * 150


def test_gnu_base256_numbers() -> None:
    data = tarfile_archive(tarfile.GNU_FORMAT, [(info("f", uid=2**40, gid=-1 & 0xFFFFFFF), b"")])
    ((member, _),) = members(data)
    assert member.uid == 2**40


def test_global_pax_headers_are_ignored() -> None:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "global"}
    ) as tar:
        tar.addfile(info("real"), io.BytesIO(b""))
    assert [m.name for m, _ in members(buffer.getvalue())] == ["real"]


def test_old_style_directory_is_recognised_by_its_slash() -> None:
    data = bytearray(tarfile_archive(tarfile.USTAR_FORMAT, [(info("olddir/"), b"")]))
    data[156] = 0  # type '\0': pre-POSIX regular file
    data[148:156] = b"%06o\x00 " % (sum(data[:148]) + 8 * 32 + sum(data[156:512]))
    ((member, _),) = members(bytes(data))
    assert member.type == tario.DIRECTORY


def test_bad_checksum_and_truncation_are_errors() -> None:
    data = tarfile_archive(tarfile.PAX_FORMAT, [(info("f"), b"x" * 2000)])
    corrupt = bytearray(data)
    corrupt[0] ^= 0x01
    with pytest.raises(tario.TarFormatError, match="checksum"):
        members(bytes(corrupt))
    with pytest.raises(tario.TarFormatError, match="unexpected end of data"):
        members(data[:1200])
    with pytest.raises(tario.TarFormatError, match="unexpected end of data"):
        members(data[:1200], seekable=True)
    with pytest.raises(tario.TarFormatError, match="truncated header"):
        members(data[:100])


def sparse_file(path: Path, regions: int) -> bytes:
    """A 1 MiB file with `regions` short data runs in it, holes elsewhere."""
    content = bytearray(1 << 20)
    with open(path, "wb") as out:
        out.truncate(len(content))
        for number in range(regions):
            offset = number * 20_000 + 4096
            run = f"region {number}\n".encode() * 10
            out.seek(offset)
            out.write(run)
            content[offset : offset + len(run)] = run
    return bytes(content)


@pytest.mark.parametrize(
    "options",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
    ids=["gnu-old", "pax-0.0", "pax-0.1", "pax-1.0"],
)
@pytest.mark.parametrize("regions", [2, 30])  # 30: old GNU needs extension headers
def test_gnu_sparse_files_are_expanded(tmp_path: Path, options: list[str], regions: int) -> None:
    expected = sparse_file(tmp_path / "sparse", regions)
    (tmp_path / "after").write_bytes(b"after")
    archive = tmp_path / "a.tar"
    proc.run(
        ["tar", "--sparse", *options, "-C", str(tmp_path), "-cf", str(archive), "sparse", "after"]
    )
    read = members(archive.read_bytes())
    assert [(m.name, m.type, m.size) for m, _ in read] == [
        ("sparse", tario.REGULAR, len(expected)),
        ("after", tario.REGULAR, 5),
    ]
    assert read[0][1] == expected
    assert read[1][1] == b"after"


def test_skipping_the_data_of_sparse_members_keeps_alignment(tmp_path: Path) -> None:
    sparse_file(tmp_path / "sparse", 30)
    (tmp_path / "after").write_bytes(b"after")
    archive = tmp_path / "a.tar"
    proc.run(
        [
            "tar",
            "--sparse",
            "--format=gnu",
            "-C",
            str(tmp_path),
            "-cf",
            str(archive),
            "sparse",
            "after",
        ]
    )
    names = [m.name for m in tario.TarReader(io.BytesIO(archive.read_bytes()))]
    assert names == ["sparse", "after"]


def written(entries: list[tuple[str, bytes, dict[str, object]]]) -> bytes:
    buffer = io.BytesIO()
    writer = tarwrite.TarWriter(buffer)
    for name, type_, fields in entries:
        content = fields.pop("content", b"")
        assert isinstance(content, bytes)
        writer.add(name, type_, size=len(content), **fields)  # type: ignore[arg-type]
        if type_ == tario.REGULAR:
            writer.write_data(iter([content]), len(content))
    writer.close()
    return buffer.getvalue()


def test_writer_output_reads_back_in_tarfile() -> None:
    long_name = "l/" + "x" * 200
    latin1 = b"caf\xe9".decode("utf-8", "surrogateescape")
    data = written(
        [
            ("./", tario.DIRECTORY, {"mode": 0o755, "uid": 0, "gid": 0, "mtime": 0}),
            ("d/", tario.DIRECTORY, {"mode": 0o700, "uid": 5, "gid": 6, "mtime": 7}),
            (
                long_name,
                tario.REGULAR,
                {"mode": 0o644, "uid": 2**22, "gid": 1, "mtime": 2**32 - 1, "content": b"abc"},
            ),
            (
                "ünï",
                tario.SYMLINK,
                {"mode": 0o777, "uid": 0, "gid": 0, "mtime": 0, "linkname": "t" * 150},
            ),
            (
                "h",
                tario.HARDLINK,
                {"mode": 0o644, "uid": 0, "gid": 0, "mtime": 0, "linkname": long_name},
            ),
            (
                latin1,
                tario.REGULAR,
                {"mode": 0o600, "uid": 0, "gid": 0, "mtime": 0, "content": b""},
            ),
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape") as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [".", "d", long_name, "ünï", "h", latin1]
        assert (infos[2].uid, infos[2].mtime, infos[2].size) == (2**22, 2**32 - 1, 3)
        assert tar.extractfile(infos[2]).read() == b"abc"  # type: ignore[union-attr]
        assert infos[3].linkname == "t" * 150
        assert infos[4].linkname == long_name
        # Long link targets go in GNU long-link records, never PAX linkpath (see tarwrite).
        assert not any(i.pax_headers.keys() - {"path", "uid", "hdrcharset"} for i in infos)


def test_writer_refuses_a_data_length_mismatch() -> None:
    writer = tarwrite.TarWriter(io.BytesIO())
    writer.add("f", tario.REGULAR, mode=0o644, uid=0, gid=0, mtime=0, size=5)
    with pytest.raises(tario.TarFormatError, match="3 bytes, not 5"):
        writer.write_data(iter([b"abc"]), 5)


names_strategy = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=60,
).filter(lambda n: n not in (".", ".."))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(names_strategy, min_size=1, max_size=4).map("/".join),
            st.integers(0, 0o7777),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=700),
        ),
        max_size=5,
    )
)
def test_writer_and_reader_round_trip(entries: list[tuple[str, int, int, bytes]]) -> None:
    data = written(
        [
            (
                name,
                tario.REGULAR,
                {"mode": mode, "uid": uid, "gid": uid, "mtime": uid, "content": content},
            )
            for name, mode, uid, content in entries
        ]
    )
    read = members(data)
    assert [(m.name, m.mode, m.uid, m.gid, m.mtime, c) for m, c in read] == [
        (name, mode, uid, uid, uid, content) for name, mode, uid, content in entries
    ]


# --- where members are, and which can be copied as they are ---------------------------------


class Trickle(io.RawIOBase):
    """A stream that hands out at most `step` bytes a read, as a pipe or a download may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self._step, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


@pytest.mark.parametrize("step", [1, 7, 512, 70_000])
def test_reader_over_a_trickling_stream_matches_one_over_bytes(step: int) -> None:
    infos = [(info(f"f{n}", mode=0o640), bytes([n]) * (n * 997 % 3000)) for n in range(40)]
    data = tarfile_archive(tarfile.PAX_FORMAT, infos)
    reader = tario.TarReader(Trickle(data, step))  # type: ignore[arg-type]
    found = [(m.name, b"".join(reader.data())) for m in reader]
    assert found == [(m.name, content) for m, content in members(data)]


def test_members_know_where_their_blocks_start() -> None:
    infos = [
        (info("plain"), b"x" * 600),
        (info("l/" + "o" * 120), b"long"),  # a PAX path record before its header
        (info("after"), b""),
    ]
    data = tarfile_archive(tarfile.PAX_FORMAT, infos)
    found = [m for m, _ in members(data)]
    assert [m.start for m in found] == [0, 512 + 1024, 512 + 1024 + 4 * 512]
    assert [m.offset - m.start for m in found] == [0, 1024, 0]
    assert data[found[2].offset : found[2].offset + 5] == b"after"


@pytest.mark.parametrize(
    ("fmt", "fields", "plain"),
    [
        (tarfile.PAX_FORMAT, {}, True),
        (tarfile.GNU_FORMAT, {}, True),
        (tarfile.PAX_FORMAT, {"pax_headers": {"mtime": "1700000000.5", "atime": "3"}}, True),
        (tarfile.PAX_FORMAT, {"pax_headers": {"mtime": "1700000000"}}, False),  # no fraction
        (tarfile.PAX_FORMAT, {"pax_headers": {"uid": "5"}}, False),
        (tarfile.PAX_FORMAT, {"pax_headers": {"SCHILY.xattr.user.x": "y"}}, False),
        (tarfile.PAX_FORMAT, {"name": "p/" + "n" * 120}, False),  # PAX path
        (tarfile.GNU_FORMAT, {"name": "p/" + "n" * 120}, False),  # GNU long name
        (tarfile.USTAR_FORMAT, {"name": "p" * 60 + "/" + "n" * 60}, False),  # ustar prefix
        (tarfile.GNU_FORMAT, {"uid": 8**8}, False),  # base-256
        (tarfile.PAX_FORMAT, {"type": tarfile.SYMTYPE, "linkname": "x"}, False),
    ],
)
def test_plain_members_are_those_any_reader_reads_alike(
    fmt: int, fields: dict[str, object], plain: bool
) -> None:
    member = info("f", mode=0o644, mtime=1_700_000_000)
    for key, value in fields.items():
        setattr(member, key, value)
    (found, _content), *_ = members(tarfile_archive(fmt, [(member, b"data")]))
    assert found.plain is plain


def test_a_mode_with_file_type_bits_is_not_plain() -> None:
    data = bytearray(
        written([("f", tario.REGULAR, {"mode": 0o644, "uid": 0, "gid": 0, "mtime": 0})])
    )
    data[100:108] = b"0100644\x00"  # some writers keep S_IFREG in the mode field
    data[148:156] = b"%06o\x00 " % (sum(data[:148]) + 8 * 32 + sum(data[156:512]))
    (found, _content), *_ = members(bytes(data))
    assert (found.mode, found.plain) == (0o644, False)


def test_owner_names_are_noticed() -> None:
    named = info("a", uname="root", gname="root")
    bare = info("b")
    found = [
        m for m, _ in members(tarfile_archive(tarfile.GNU_FORMAT, [(named, b""), (bare, b"")]))
    ]
    assert [m.owner_names for m in found] == [True, False]


def test_members_and_raw_ranges_are_read_forward_by_position() -> None:
    infos = [(info(f"f{n}"), str(n).encode() * 700) for n in range(5)]
    data = tarfile_archive(tarfile.PAX_FORMAT, infos)
    where = [m for m, _ in members(data)]
    reader = tario.TarReader(Trickle(data, 300))  # type: ignore[arg-type]
    third = reader.member_at(where[2].start)
    assert (third.name, b"".join(reader.data())) == ("f2", b"2" * 700)
    raw = b"".join(reader.read_range(where[3].start, where[4].start))
    assert raw == data[where[3].start : where[4].start]
    assert tario.header_name_size(raw[:512]) == ("f3", 700)
    with pytest.raises(tario.TarFormatError, match="cannot go back"):
        reader.member_at(where[0].start)
    end = where[4].offset + 512 + 1024
    with pytest.raises(tario.TarFormatError, match=f"no member at offset {end}"):
        tario.TarReader(io.BytesIO(data)).member_at(end)


def test_long_link_targets_use_a_gnu_record_that_gnu_tar_reads(tmp_path: Path) -> None:
    target = "/" + "t" * 150
    archive = tmp_path / "links.tar"
    archive.write_bytes(
        written(
            [
                (
                    "s",
                    tario.SYMLINK,
                    {"mode": 0o777, "uid": 0, "gid": 0, "mtime": 0, "linkname": target},
                )
            ]
        )
    )
    listing = proc.run(["tar", "-tvf", str(archive)]).stdout.decode()
    assert f"s -> {target}" in listing
    assert b"linkpath" not in archive.read_bytes()
