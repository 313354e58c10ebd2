"""Image references on generated and random text: every reference the grammar allows parses to
its parts and round-trips; any other text is an `ImageReferenceError`, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shifter.errors import ImageReferenceError
from shifter.image.descriptor import ImageDescriptor, ImageType, parse_descriptor
from shifter.image.reference import (
    DOCKER_HUB_ALIASES,
    DockerReference,
    LocationSplit,
    looks_like_registry,
    parse_docker_reference,
    split_location,
)
from tests.unit.test_image_reference import HUB, LOCATIONS

pytestmark = pytest.mark.unit

ALNUM = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
SEPARATORS = st.sampled_from([".", "_", "__", "-", "---"])
LABEL = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
PORT = st.integers(1, 65535).map(str)
IPV6 = st.from_regex(r"\[[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]", fullmatch=True)
TAG = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True)
HEX64 = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
ALGORITHM = st.from_regex(r"[a-z][a-z0-9]{0,5}(?:[+._-][a-z][a-z0-9]{0,3})?", fullmatch=True)


@st.composite
def components(draw: st.DrawFn) -> str:
    parts = [draw(ALNUM)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(SEPARATORS), draw(ALNUM)]
    return "".join(parts)


@st.composite
def registries(draw: st.DrawFn) -> str:
    host = draw(
        st.one_of(
            st.lists(LABEL, min_size=2, max_size=4).map(".".join),
            st.sampled_from(["localhost", *sorted(DOCKER_HUB_ALIASES)]),
            IPV6,
            LABEL,
        )
    )
    port = draw(st.none() | PORT)
    if port is None and not looks_like_registry(host):
        port = draw(PORT)  # a bare label is a registry only with a port
    return host if port is None else f"{host}:{port}"


DIGESTS = st.one_of(
    HEX64.map(lambda hex_digits: f"sha256:{hex_digits}"),
    st.from_regex(r"[0-9a-f]{128}", fullmatch=True).map(lambda h: f"sha512:{h}"),
    st.tuples(
        ALGORITHM.filter(lambda a: a not in ("sha256", "sha512")),
        st.from_regex(r"[0-9a-f]{32,80}", fullmatch=True),
    ).map(":".join),
)


def _normal_registry(registry: str) -> str:
    if registry.startswith("["):
        host, _, port = registry.partition("]")
        host, port = host + "]", port.removeprefix(":")
    else:
        host, _, port = registry.partition(":")
    normal = host.lower() if not port else f"{host.lower()}:{int(port)}"
    return HUB if normal in DOCKER_HUB_ALIASES else normal


@given(
    registry=st.none() | registries(),
    path=st.lists(components(), min_size=1, max_size=4).map("/".join),
    tag=st.none() | TAG,
    digest=st.none() | DIGESTS,
)
def test_generated_references_parse_to_their_parts_and_round_trip(
    registry: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    # Without a registry, a first component with a '.' would be read as one.
    assume(registry is not None or "/" not in path or not looks_like_registry(path.split("/")[0]))
    text = (f"{registry}/" if registry else "") + path
    text += (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    reference = parse_docker_reference(text)

    expected_registry = HUB if registry is None else _normal_registry(registry)
    expected_path = path
    if expected_registry == HUB and "/" not in path:
        expected_path = f"library/{path}"
    expected_tag = tag if tag is not None or digest is not None else "latest"
    assert reference == DockerReference(expected_registry, expected_path, expected_tag, digest)

    assert parse_docker_reference(reference.canonical()) == reference
    assert parse_docker_reference(reference.familiar()) == reference
    descriptor = parse_descriptor(f"docker:{text}", None)
    assert descriptor.spec == reference.familiar()
    assert parse_descriptor(str(descriptor), None) == descriptor
    split = split_location(reference.canonical(), [reference.registry], "elsewhere.example.org")
    assert split == LocationSplit(reference.registry, reference.repository, reference.manifest_ref)


SEGMENT = st.from_regex(r"[A-Za-z0-9_.+@:-]{1,8}", fullmatch=True).filter(
    lambda segment: segment not in (".", "..")
)


@given(
    segments=st.lists(SEGMENT, max_size=5),
    joints=st.lists(st.sampled_from(["/", "//", "/./"]), min_size=6, max_size=6),
    trailing=st.booleans(),
)
def test_local_paths_normalise_and_round_trip(
    segments: list[str], joints: list[str], trailing: bool
) -> None:
    typed = "".join(joint + segment for joint, segment in zip(joints, segments, strict=False))
    typed = (typed + "/" if trailing else typed) or "/"
    descriptor = parse_descriptor(f"local:{typed}", None)
    assert descriptor == ImageDescriptor(ImageType.LOCAL, "/" + "/".join(segments))
    assert parse_descriptor(str(descriptor), None) == descriptor


@given(
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,20}", fullmatch=True),
    tag=st.none() | TAG,
)
def test_custom_names_round_trip(name: str, tag: str | None) -> None:
    descriptor = parse_descriptor(f"custom:{name}" + (f":{tag}" if tag else ""), "docker")
    assert descriptor == ImageDescriptor(ImageType.CUSTOM, f"{name}:{tag or 'latest'}")
    assert parse_descriptor(str(descriptor), None) == descriptor


@given(digits=HEX64, prefixed=st.booleans())
def test_ids_round_trip(digits: str, prefixed: bool) -> None:
    descriptor = parse_descriptor(f"id:sha256:{digits}" if prefixed else f"id:{digits}", None)
    assert descriptor == ImageDescriptor(ImageType.ID, digits)
    assert parse_descriptor(str(descriptor), None) == descriptor


GRAMMAR_TEXT = st.text(alphabet="abcXY019._-:/@+[]sha256 \x00\u00e9", max_size=80)
ANY_TEXT = st.one_of(st.text(max_size=300), GRAMMAR_TEXT)


@given(text=ANY_TEXT, default=st.sampled_from([None, "docker", "custom", "id", "local"]))
def test_any_text_parses_or_raises_image_reference_error(text: str, default: str | None) -> None:
    try:
        descriptor = parse_descriptor(text, default)
    except ImageReferenceError as error:
        assert error.message and error.hint
    else:
        # A parsed descriptor is in normal form: printing and reading it changes nothing.
        assert parse_descriptor(str(descriptor), None) == descriptor


@given(text=ANY_TEXT)
def test_any_text_is_a_reference_or_image_reference_error(text: str) -> None:
    try:
        reference = parse_docker_reference(text)
    except ImageReferenceError as error:
        assert error.message and error.hint
    else:
        assert parse_docker_reference(reference.canonical()) == reference
        assert parse_docker_reference(reference.familiar()) == reference


@given(text=ANY_TEXT)
def test_any_text_splits_or_raises_image_reference_error(text: str) -> None:
    try:
        split = split_location(text, LOCATIONS, "registry-1.docker.io")
    except ImageReferenceError as error:
        assert error.message and error.hint
    else:
        assert split.location in LOCATIONS
