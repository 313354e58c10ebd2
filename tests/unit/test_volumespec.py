"""The volume-map grammar: accepted forms, normal form, signature, and every error message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ParseError
from shifter.runtime.volumes.spec import (
    DEFAULT_BLOCK_SIZE,
    SPEC_HINT,
    PerNodeCache,
    VolumeSpec,
    format_volume_spec,
    format_volume_specs,
    parse_size,
    parse_volume_spec,
    parse_volume_specs,
    volume_signature,
)

pytestmark = pytest.mark.unit

MIB = 1024 * 1024


def error_of(text: str, **kwargs: object) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_volume_specs(text, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_simple_map() -> None:
    assert parse_volume_specs("/scratch/data:/input") == (VolumeSpec("/scratch/data", "/input"),)


def test_flags_case_insensitive_in_any_order() -> None:
    (spec,) = parse_volume_specs("/a:/b:PRIVATE:Rec:ro")
    assert spec == VolumeSpec("/a", "/b", read_only=True, recursive=True, propagation="private")
    assert spec.flags == ("ro", "rec", "private")
    assert str(spec) == "/a:/b:ro:rec:private"


def test_several_maps_empty_entries_and_whitespace() -> None:
    specs = parse_volume_specs(";/a:/b; ;\n  /c:/d:slave ;")
    assert specs == (VolumeSpec("/a", "/b"), VolumeSpec("/c", "/d", propagation="slave"))


def test_quoted_entry_loses_its_quotes() -> None:
    assert parse_volume_specs('"/a:/b:ro";/c:/d') == (
        VolumeSpec("/a", "/b", read_only=True),
        VolumeSpec("/c", "/d"),
    )


def test_paths_are_normalised() -> None:
    (spec,) = parse_volume_specs("//a/./b//:/c/")
    assert (spec.source, spec.target) == ("/a/b", "/c")
    assert parse_volume_spec("/:/") == VolumeSpec("/", "/")


def test_bare_source_only_when_allowed() -> None:
    assert parse_volume_specs("/global/u1", allow_bare_source=True) == (
        VolumeSpec("/global/u1", "/global/u1"),
    )
    error = error_of("/global/u1")
    assert str(error) == "invalid volume '/global/u1': the container path is missing"
    assert error.hint == "write SOURCE:TARGET"


def test_per_node_cache_defaults_and_units() -> None:
    (spec,) = parse_volume_specs("/tmp/x:/cache:perNodeCache=size=100M")
    assert spec.per_node_cache == PerNodeCache(size=100 * MIB)
    (spec,) = parse_volume_specs("/a:/b:pernodecache=SIZE=1.5g,bs=4k,FS=XFS,method=loop")
    assert spec.per_node_cache == PerNodeCache(size=1536 * MIB, block_size=4096)


def test_canonical_form_matches_the_originals_signature() -> None:
    # The original's own example (notes 1.8, item 68).
    specs = parse_volume_specs("/d:/c;/a:/b;/q:/r;/a:/c:rec:perNodeCache=size=100M:ro")
    assert volume_signature(specs) == (
        "/a:/b;/a:/c:ro:rec:perNodeCache=size=104857600,bs=1048576,method=loop,fstype=xfs;"
        "/d:/c;/q:/r"
    )
    assert format_volume_specs(specs).startswith("/d:/c;/a:/b;")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("10b", 10),
        ("500k", 512000),
        ("500KB", 512000),
        ("500KiB", 512000),
        ("2M", 2 * MIB),
        ("1.5G", 1536 * MIB),
        ("1t", 1024**4),
        ("1P", 1024**5),
        ("1e", 1024**6),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "0", "0.1", "-1", "5Gx", "5 G", "1.G", "5bb", "5x"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ParseError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (":/b", "the source path is empty"),
        ("/a:", "the target path is empty"),
        ("a:/b", "the source path 'a' is not absolute"),
        ("/a:b", "the target path 'b' is not absolute"),
        ("/a/../etc:/b", "the source path '/a/../etc' contains '..'"),
        ("/a:/b/..", "the target path '/b/..' contains '..'"),
        ("/a:/b:", "empty flag (two ':' in a row or a trailing ':')"),
        ("/a:/b::ro", "empty flag (two ':' in a row or a trailing ':')"),
        ("/a:/b:rw", "unknown flag 'rw'"),
        ("/a:/b:shared", "unknown flag 'shared'"),
        ("/a:/b:ro=1", "flag 'ro' takes no value"),
        ("/a:/b:ro:RO", "flag 'ro' given twice"),
        ("/a:/b:slave:private", "flags 'slave' and 'private' contradict each other"),
        ("/a:/b:perNodeCache", "'perNodeCache' needs at least size=SIZE"),
        ("/a:/b:perNodeCache=bs=1M", "perNodeCache needs size=SIZE"),
        ("/a:/b:perNodeCache=size=0", "invalid perNodeCache size '0': must be at least one byte"),
        ("/a:/b:perNodeCache=size=5Gx", "invalid perNodeCache size '5Gx'"),
        (
            "/a:/b:perNodeCache=size=1G,fs=ext4",
            "perNodeCache fs 'ext4' is not supported (only xfs)",
        ),
        (
            "/a:/b:perNodeCache=size=1G,method=nbd",
            "perNodeCache method 'nbd' is not supported (only loop)",
        ),
        ("/a:/b:perNodeCache=size=1G,color=red", "bad perNodeCache option 'color=red'"),
        ("/a:/b:perNodeCache=size=1G,size=2G", "perNodeCache option 'size' given twice"),
        (
            "/a:/b:perNodeCache=size=1G,fs=xfs,fstype=xfs",
            "perNodeCache option 'fstype' given twice",
        ),
        ("/a:/b:perNodeCache=size=", "bad perNodeCache option 'size='"),
    ],
)
def test_errors_name_the_entry_and_the_reason(text: str, reason: str) -> None:
    error = error_of(text, source="--volume")
    assert str(error) == f"--volume: invalid volume {text!r}: {reason}"
    assert error.hint


def test_default_hint_shows_the_expected_form() -> None:
    assert error_of("/a:/b:rw").hint == SPEC_HINT
    assert "SOURCE:TARGET[:FLAG]" in SPEC_HINT


def test_forbidden_characters_are_named_not_dropped() -> None:
    error = error_of("/my dir:/data")
    assert str(error) == "invalid volume '/my dir:/data': the source path '/my dir' contains ' '"
    assert error.hint == "paths may hold only ASCII letters, digits and _ . + - /"
    assert "contains '$'" in str(error_of("/a:/b$(x)"))


def test_comma_joined_flags_get_the_colon_form_as_hint() -> None:
    error = error_of("/a:/b:ro,rec")
    assert (
        str(error)
        == "invalid volume '/a:/b:ro,rec': flags are separated by ':', not ',' ('ro,rec')"
    )
    assert error.hint == "write ...:ro:rec"


def test_error_location_comes_from_the_caller() -> None:
    error = error_of("/a", source="/etc/shifter/udiRoot.conf", line=7)
    assert (error.source, error.line) == ("/etc/shifter/udiRoot.conf", 7)
    assert str(error).startswith("/etc/shifter/udiRoot.conf:7: invalid volume '/a'")


# --- properties -----------------------------------------------------------------------------

SEGMENT = st.text(st.sampled_from("abcXYZ019_.+-"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..")
)
PATHS = st.lists(SEGMENT, max_size=4).map(lambda parts: "/" + "/".join(parts))
SIZES = st.integers(min_value=1, max_value=2**50)
CACHES = st.builds(PerNodeCache, size=SIZES, block_size=SIZES)
SPECS = st.builds(
    VolumeSpec,
    source=PATHS,
    target=PATHS,
    read_only=st.booleans(),
    recursive=st.booleans(),
    propagation=st.sampled_from([None, "slave", "private"]),
    per_node_cache=st.none() | CACHES,
)
UNITS = {"": 1, "k": 1024, "M": MIB, "g": 1024**3}


@st.composite
def written(draw: st.DrawFn, spec: VolumeSpec) -> str:
    """`spec` as a person might type it: noisy slashes, any flag order and case, units."""

    def noisy(path: str) -> str:
        parts = path.split("/")[1:] if path != "/" else []
        glue = draw(st.sampled_from(["/", "//", "/./"]))
        return glue + glue.join(parts) + draw(st.sampled_from(["", "/"]))

    flags = []
    for flag in spec.flags:
        if flag == "perNodeCache":
            cache = spec.per_node_cache
            assert cache is not None
            unit = draw(st.sampled_from([u for u, m in UNITS.items() if cache.size % m == 0]))
            options = [f"size={cache.size // UNITS[unit]}{unit}", f"bs={cache.block_size}"]
            options += draw(st.sampled_from([[], ["fs=xfs"], ["fstype=XFS", "method=loop"]]))
            flag = "pernodecache=" + ",".join(draw(st.permutations(options)))
        flags.append(draw(st.sampled_from([flag, flag.upper(), flag.capitalize()])))
    return ":".join([noisy(spec.source), noisy(spec.target), *draw(st.permutations(flags))])


@given(SPECS)
def test_canonical_form_reads_back_to_the_same_value(spec: VolumeSpec) -> None:
    assert parse_volume_spec(format_volume_spec(spec)) == spec


@given(st.data())
def test_format_of_parse_is_the_normalised_text(data: st.DataObject) -> None:
    spec = data.draw(SPECS)
    text = data.draw(written(spec))
    assert format_volume_spec(parse_volume_spec(text)) == format_volume_spec(spec)


@given(st.lists(SPECS, max_size=5))
def test_signature_ignores_order(specs: list[VolumeSpec]) -> None:
    text = format_volume_specs(specs)
    assert parse_volume_specs(text) == tuple(specs)
    assert volume_signature(reversed(specs)) == volume_signature(parse_volume_specs(text))


@given(SIZES)
def test_plain_byte_counts_read_back(size: int) -> None:
    assert parse_size(str(size)) == size


def test_default_block_size_is_one_mebibyte() -> None:
    assert DEFAULT_BLOCK_SIZE == MIB
