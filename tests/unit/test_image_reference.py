"""Image descriptors and docker references: what users may type, its normal form, every message."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shifter.errors import ImageReferenceError, ParseError
from shifter.image.descriptor import ImageDescriptor, ImageType, parse_descriptor
from shifter.image.reference import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    DockerReference,
    LocationSplit,
    is_docker_hub,
    looks_like_registry,
    parse_docker_reference,
    split_location,
)

pytestmark = pytest.mark.unit

SHA = "0123456789abcdef" * 4
SHA512 = SHA * 2
HUB = DOCKER_HUB


# --- descriptors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "default", "image_type", "spec"),
    [
        ("ubuntu", "docker", "docker", "ubuntu:latest"),
        ("ubuntu:22.04", "docker", "docker", "ubuntu:22.04"),
        ("docker:ubuntu:22.04", None, "docker", "ubuntu:22.04"),
        ("docker:ubuntu:22.04", "custom", "docker", "ubuntu:22.04"),
        ("library/ubuntu", "docker", "docker", "ubuntu:latest"),
        ("docker.io/library/ubuntu:22.04", "docker", "docker", "ubuntu:22.04"),
        ("index.docker.io/ubuntu", "docker", "docker", "ubuntu:latest"),
        ("dmjacobsen/mpitest:latest", "docker", "docker", "dmjacobsen/mpitest:latest"),
        (
            "registry.example.org:5000/group/app:tag",
            "docker",
            "docker",
            "registry.example.org:5000/group/app:tag",
        ),
        ("quay.io/biocontainers/barrnap:0.9--3", None, None, None),
        (f"repo@sha256:{SHA}", "docker", "docker", f"repo@sha256:{SHA}"),
        (f"docker:repo:1.0@sha256:{SHA}", None, "docker", f"repo:1.0@sha256:{SHA}"),
        (f"id:{SHA}", None, "id", SHA),
        (f"id:sha256:{SHA}", "docker", "id", SHA),
        ("custom:name:tag", None, "custom", "name:tag"),
        ("custom:load_test:v1", "docker", "custom", "load_test:v1"),
        ("custom:Load_Test", None, "custom", "Load_Test:latest"),
        ("load_test:v1", "custom", "custom", "load_test:v1"),
        ("local:/", None, "local", "/"),
        ("local:/path", None, "local", "/path"),
        ("local:/scratch//me/./img/", "docker", "local", "/scratch/me/img"),
        ("local:/opt/a:b@c+d", None, "local", "/opt/a:b@c+d"),
        ("/this/is/allowed", "local", "local", "/this/is/allowed"),
        # A type-like prefix that is not a type is part of a docker name, as in the original.
        ("podman:v1", "docker", "docker", "podman:v1"),
        ("docker", "docker", "docker", "docker:latest"),
    ],
)
def test_valid_descriptors(
    text: str, default: str | None, image_type: str | None, spec: str | None
) -> None:
    if image_type is None:  # a row whose text must go through the default docker type
        image_type, spec, default = "docker", text, "docker"
    descriptor = parse_descriptor(text, default)
    assert descriptor == ImageDescriptor(ImageType(image_type), str(spec))
    assert str(descriptor) == f"{image_type}:{spec}"
    assert parse_descriptor(str(descriptor), None) == descriptor


def test_descriptor_types_are_exactly_the_originals() -> None:
    assert [member.value for member in ImageType] == ["docker", "custom", "id", "local"]


def test_only_docker_and_custom_need_a_gateway_lookup() -> None:
    looked_up = {
        text.split(":", 1)[0]
        for text in ("docker:a", "custom:a", f"id:{SHA}", "local:/a")
        if parse_descriptor(text, None).needs_lookup
    }
    assert looked_up == {"docker", "custom"}


def test_descriptor_gives_its_docker_reference() -> None:
    descriptor = parse_descriptor("ubuntu:22.04", "docker")
    assert descriptor.docker_reference() == DockerReference(HUB, "library/ubuntu", "22.04", None)
    with pytest.raises(ValueError, match="is not a docker image"):
        parse_descriptor("custom:a", None).docker_reference()


INVALID_DESCRIPTORS = [
    ("", "docker", "invalid image '': it is empty", "expected TYPE:IMAGE"),
    (
        "ubuntu:22.04",
        None,
        "invalid image 'ubuntu:22.04': it names no image type and no default type is configured",
        "set defaultImageType in udiRoot.conf",
    ),
    (
        "ubuntu",
        "podman",
        "invalid default image type 'podman': it is not one of docker, custom, id, local",
        "set defaultImageType",
    ),
    (
        "Docker:ubuntu",
        "docker",
        "invalid image 'Docker:ubuntu': image type 'Docker' is unknown; types are lowercase",
        "write docker:ubuntu",
    ),
    (
        "ID:abc",
        None,
        "invalid image 'ID:abc': image type 'ID' is unknown; types are lowercase",
        "write id:abc",
    ),
    ("docker:", None, "invalid image 'docker:': nothing follows 'docker:'", "docker:[REGISTRY"),
    ("local:", None, "invalid image 'local:': nothing follows 'local:'", "local:/ABSOLUTE"),
    (
        "ubuntu 22.04",
        "docker",
        "invalid image reference 'ubuntu 22.04': character ' ' at position 7 is not allowed",
        "docker:[REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST]",
    ),
    (
        # The original's own example: it silently ran `thisisincorrect`.
        "this is *incorrect*",
        "docker",
        "invalid image reference 'this is *incorrect*': character ' ' at position 5 is not allowed",
        "docker:[REGISTRY",
    ),
    (
        "docker:ubuntu\n",
        None,
        "invalid image reference 'ubuntu\\n': character '\\n' at position 7 is not allowed",
        "docker:[REGISTRY",
    ),
    (
        "ubunt\u00fc",
        "docker",
        "invalid image reference 'ubunt\u00fc': character '\u00fc' at position 6 is not allowed",
        "docker:[REGISTRY",
    ),
    (
        "/srv/images/app",
        "docker",
        "invalid image reference '/srv/images/app': it starts with '/'",
        "for a directory on this host write local:/PATH",
    ),
    (
        "custom:a/b",
        None,
        "invalid custom image 'a/b': character '/' at position 2 is not allowed",
        "expected custom:NAME[:TAG]",
    ),
    ("custom::v1", None, "invalid custom image ':v1': the name is empty", "custom:NAME"),
    (
        "custom:.hidden",
        None,
        "invalid custom image '.hidden': the name must start with a letter or digit and be at "
        "most 255 characters",
        "custom:NAME",
    ),
    (
        "custom:app:",
        None,
        "invalid custom image 'app:': tag '' must be 1 to 128 letters, digits, '_', '.' and '-', "
        "not starting with '.' or '-'",
        "custom:NAME",
    ),
    (
        "custom:app:a:b",
        None,
        "invalid custom image 'app:a:b': tag 'a:b' must be 1 to 128 letters, digits, '_', '.' "
        "and '-', not starting with '.' or '-'",
        "custom:NAME",
    ),
    ("id:abc", None, "invalid image id 'abc': an id has 64 hex digits, found 3", "id:HEX"),
    (
        f"id:{SHA.upper()}",
        None,
        f"invalid image id '{SHA.upper()}': ids are lowercase hex, found 'A'",
        "id:HEX",
    ),
    ("id:xyz", None, "invalid image id 'xyz': character 'x' at position 1 is not allowed", "id:"),
    (
        "id:sha256:g1",
        None,
        "invalid image id 'sha256:g1': character 'g' at position 8 is not allowed",
        "id:HEX",
    ),
    (
        f"id:sha512:{SHA}",
        None,
        f"invalid image id 'sha512:{SHA}': character 's' at position 1 is not allowed",
        "id:HEX",
    ),
    (
        "local:relative/dir",
        None,
        "invalid local image path 'relative/dir': the path must be absolute",
        "local:/ABSOLUTE/PATH",
    ),
    (
        "local:/scratch/../etc",
        None,
        "invalid local image path '/scratch/../etc': '..' is not allowed in it",
        "local:/",
    ),
    (
        "local:/my dir",
        None,
        "invalid local image path '/my dir': character ' ' at position 4 is not allowed",
        "local:/",
    ),
    (
        "local:/a\x00b",
        None,
        "invalid local image path '/a\\x00b': character '\\x00' at position 3 is not allowed",
        "local:/",
    ),
]


@pytest.mark.parametrize(("text", "default", "message", "hint"), INVALID_DESCRIPTORS)
def test_invalid_descriptors_are_refused_with_pinned_messages(
    text: str, default: str | None, message: str, hint: str
) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_descriptor(text, default)
    assert str(caught.value) == message
    assert caught.value.hint is not None
    assert hint in caught.value.hint
    assert caught.value.describe() == f"{message}\nhint: {caught.value.hint}"


def test_overlong_text_is_refused_without_quoting_all_of_it() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_descriptor("a" * 5000, "docker")
    assert (
        str(caught.value)
        == f"invalid image '{'a' * 64}...': it is 5000 characters long, more than 4096"
    )


def test_image_reference_errors_are_parse_errors() -> None:
    with pytest.raises(ParseError):
        parse_descriptor("", None)


# --- docker references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "familiar"),
    [
        ("ubuntu", HUB, "library/ubuntu", "latest", None, "ubuntu:latest"),
        ("ubuntu:22.04", HUB, "library/ubuntu", "22.04", None, "ubuntu:22.04"),
        ("library/ubuntu", HUB, "library/ubuntu", "latest", None, "ubuntu:latest"),
        ("docker.io/ubuntu", HUB, "library/ubuntu", "latest", None, "ubuntu:latest"),
        ("Index.Docker.IO/library/ubuntu", HUB, "library/ubuntu", "latest", None, "ubuntu:latest"),
        ("registry-1.docker.io/a/b:c", HUB, "a/b", "c", None, "a/b:c"),
        ("library/a/b", HUB, "library/a/b", "latest", None, "library/a/b:latest"),
        (
            "registry.example.org:5000/group/app:tag",
            "registry.example.org:5000",
            "group/app",
            "tag",
            None,
            "registry.example.org:5000/group/app:tag",
        ),
        ("Registry.Example.ORG/app", "registry.example.org", "app", "latest", None, None),
        ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest"),
        ("localhost:5000/app:1", "localhost:5000", "app", "1", None, None),
        ("127.0.0.1:05000/app", "127.0.0.1:5000", "app", "latest", None, None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None, None),
        ("[FE80::1]/app", "[fe80::1]", "app", "latest", None, None),
        # Without a '/', a first component is never a registry: this is a tag.
        ("localhost:5000", HUB, "library/localhost", "5000", None, "localhost:5000"),
        (f"repo@sha256:{SHA}", HUB, "library/repo", None, f"sha256:{SHA}", None),
        (f"repo:1@sha256:{SHA}", HUB, "library/repo", "1", f"sha256:{SHA}", None),
        (f"q.io/a/b@sha512:{SHA512}", "q.io", "a/b", None, f"sha512:{SHA512}", None),
        (f"a@blake3:{SHA[:32]}", HUB, "library/a", None, f"blake3:{SHA[:32]}", None),
        (f"a@multi+hash.v-two:{SHA}1", HUB, "library/a", None, f"multi+hash.v-two:{SHA}1", None),
        ("group/a.b__c-d---e_f", HUB, "group/a.b__c-d---e_f", "latest", None, None),
        ("foo.bar:1", HUB, "library/foo.bar", "1", None, "foo.bar:1"),
        ("app:_Tag.With-Caps", HUB, "library/app", "_Tag.With-Caps", None, None),
    ],
)
def test_docker_references(
    text: str,
    registry: str,
    repository: str,
    tag: str | None,
    digest: str | None,
    familiar: str | None,
) -> None:
    reference = parse_docker_reference(text)
    assert reference == DockerReference(registry, repository, tag, digest)
    if familiar is not None:
        assert reference.familiar() == familiar
    assert parse_docker_reference(reference.familiar()) == reference
    assert parse_docker_reference(reference.canonical()) == reference


def test_canonical_familiar_and_api_forms() -> None:
    hub = parse_docker_reference("ubuntu:22.04")
    assert hub.canonical() == "registry-1.docker.io/library/ubuntu:22.04"
    assert hub.familiar() == "ubuntu:22.04"
    assert hub.repository_path == "library/ubuntu"
    assert hub.manifest_ref == "22.04"
    assert hub.name == "registry-1.docker.io/library/ubuntu"
    pinned = parse_docker_reference(f"myreg:5000/group/app:tag@sha256:{SHA}")
    assert pinned.familiar() == pinned.canonical() == f"myreg:5000/group/app:tag@sha256:{SHA}"
    assert pinned.manifest_ref == f"sha256:{SHA}"
    assert pinned.repository_path == "group/app"


def test_docker_hub_path_that_looks_like_a_registry_keeps_its_registry() -> None:
    reference = DockerReference(HUB, "foo.bar/app", "1", None)
    assert reference.familiar() == "registry-1.docker.io/foo.bar/app:1"
    assert parse_docker_reference(reference.familiar()) == reference


def test_another_default_registry() -> None:
    mirror = "mirror.example.org:443"
    reference = parse_docker_reference("app", default_registry=mirror)
    assert reference == DockerReference(mirror, "app", "latest", None)
    assert reference.familiar() == "mirror.example.org:443/app:latest"
    assert parse_docker_reference("app", default_registry="docker.io").registry == HUB


def test_a_default_registry_must_look_like_one() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_docker_reference("app", default_registry="mirror")
    assert str(caught.value) == (
        "invalid default registry 'mirror': a registry must contain '.' or ':' or be 'localhost'"
    )


def test_reference_needs_a_tag_or_a_digest() -> None:
    with pytest.raises(ValueError, match="needs a tag, a digest or both"):
        DockerReference(HUB, "library/a", None, None)


def test_docker_hub_spellings() -> None:
    assert {alias for alias in DOCKER_HUB_ALIASES if is_docker_hub(alias.upper())} == {
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
    }
    assert not is_docker_hub("docker.io:443")
    assert [looks_like_registry(c) for c in ("a.b", "a:1", "localhost", "lo")] == [
        True,
        True,
        True,
        False,
    ]


def test_name_length_limit_is_255_with_the_registry() -> None:
    prefix = "registry.example.org/"  # 21 characters
    fits = prefix + "a" * (255 - len(prefix))
    assert parse_docker_reference(fits).name == fits
    with pytest.raises(ImageReferenceError) as caught:
        parse_docker_reference(fits + "a")
    assert str(caught.value).endswith(f"the name '{fits}a' is longer than 255 characters")


def test_tag_length_limit_is_128() -> None:
    assert parse_docker_reference("a:" + "t" * 128).tag == "t" * 128
    with pytest.raises(ImageReferenceError) as caught:
        parse_docker_reference("a:" + "t" * 129)
    assert str(caught.value).endswith(": the tag is 129 characters long, more than 128")


DIGEST_PROBLEM = (
    "must be ALGORITHM:HEX with a lowercase algorithm and at least 32 lowercase hex digits"
)
COMPONENT_PROBLEM = (
    "must be lowercase letters and digits, separated by single '.', '_' or '__', or by dashes"
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        ("Ubuntu", "repository names must be lowercase, found 'U'"),
        ("group/MyApp:1", "repository names must be lowercase, found 'M'"),
        ("ubuntu:", "the tag after ':' is empty"),
        (
            "ubuntu:.hidden",
            "tag '.hidden' must be letters, digits, '_', '.' and '-', and must "
            "not start with '.' or '-'",
        ),
        (
            "ubuntu:-x",
            "tag '-x' must be letters, digits, '_', '.' and '-', and must not start "
            "with '.' or '-'",
        ),
        ("a..b", f"path component 'a..b' {COMPONENT_PROBLEM}"),
        ("a___b", f"path component 'a___b' {COMPONENT_PROBLEM}"),
        ("-a", f"path component '-a' {COMPONENT_PROBLEM}"),
        ("a_/b", f"path component 'a_' {COMPONENT_PROBLEM}"),
        ("a+b", f"path component 'a+b' {COMPONENT_PROBLEM}"),
        ("a//b", "it has an empty path component (a '/' at the end or '//')"),
        ("group/", "it has an empty path component (a '/' at the end or '//')"),
        ("quay.io/", "the repository name is empty"),
        (":latest", "the repository name is empty"),
        (f"@sha256:{SHA}", "the repository name is empty"),
        ("ubuntu@", f"digest '' {DIGEST_PROBLEM}"),
        ("ubuntu@sha256:abc", f"digest 'sha256:abc' {DIGEST_PROBLEM}"),
        (f"ubuntu@sha256:{SHA.upper()}", f"digest 'sha256:{SHA.upper()}' {DIGEST_PROBLEM}"),
        (f"ubuntu@SHA256:{SHA}", f"digest 'SHA256:{SHA}' {DIGEST_PROBLEM}"),
        (f"ubuntu@{SHA}", f"digest '{SHA}' {DIGEST_PROBLEM}"),
        (f"a@sha256:{SHA}@sha256:{SHA}", f"digest 'sha256:{SHA}@sha256:{SHA}' {DIGEST_PROBLEM}"),
        (f"ubuntu@sha256:{SHA[:40]}", "a sha256 digest has 64 hex digits, found 40"),
        (f"ubuntu@sha512:{SHA}", "a sha512 digest has 128 hex digits, found 64"),
        ("reg.example.org:99999/app", "registry port '99999' is not a number from 1 to 65535"),
        ("reg.example.org:0/app", "registry port '0' is not a number from 1 to 65535"),
        ("reg.example.org:/app", "registry port '' is not a number from 1 to 65535"),
        ("reg.example.org:http/app", "registry port 'http' is not a number from 1 to 65535"),
        ("app:tag/x", "registry port 'tag' is not a number from 1 to 65535"),
        (
            "-bad.example.org/app",
            "registry host '-bad.example.org' is not a host name or a bracketed IPv6 address",
        ),
        ("a..b.org/app", "registry host 'a..b.org' is not a host name or a bracketed IPv6 address"),
        ("[::1/app", "registry host '[::1' is not a host name or a bracketed IPv6 address"),
        ("[::1]x/app", "registry host '[::1]x' is not a host name or a bracketed IPv6 address"),
        ("[::g]:5000/app", "registry host '[::g]' is not a host name or a bracketed IPv6 address"),
        (
            "my_reg.org/app",
            "registry host 'my_reg.org' is not a host name or a bracketed IPv6 address",
        ),
        ("app@sha256:x/y", f"digest 'sha256:x/y' {DIGEST_PROBLEM}"),
        ("ubuntu\t", "character '\\t' at position 7 is not allowed"),
        ("a$b", "character '$' at position 2 is not allowed"),
    ],
)
def test_invalid_docker_references(text: str, problem: str) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_docker_reference(text)
    assert str(caught.value) == f"invalid image reference {text!r}: {problem}"
    assert caught.value.hint is not None
    assert caught.value.hint.startswith("expected docker:[REGISTRY[:PORT]/]NAME[:TAG]")


# --- gateway locations ----------------------------------------------------------------------

LOCATIONS = ("registry-1.docker.io", "urltest", "myalias", "quay.io", "localhost:5000")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ubuntu:16.04", ("registry-1.docker.io", "ubuntu", "16.04")),
        ("ubuntu", ("registry-1.docker.io", "ubuntu", "latest")),
        ("dmjacobsen/mpitest:latest", ("registry-1.docker.io", "dmjacobsen/mpitest", "latest")),
        ("urltest/ubuntu:latest", ("urltest", "ubuntu", "latest")),
        ("myalias/group/app:tag", ("myalias", "group/app", "tag")),
        ("myalias", ("registry-1.docker.io", "myalias", "latest")),
        ("quay.io/biocontainers/barrnap:0.9--3", ("quay.io", "biocontainers/barrnap", "0.9--3")),
        ("QUAY.IO/org/app", ("quay.io", "org/app", "latest")),
        ("localhost:5000/app:1", ("localhost:5000", "app", "1")),
        ("docker.io/library/ubuntu", ("registry-1.docker.io", "library/ubuntu", "latest")),
        ("index.docker.io/ubuntu:1", ("registry-1.docker.io", "ubuntu", "1")),
        (f"app:1@sha256:{SHA}", ("registry-1.docker.io", "app", f"sha256:{SHA}")),
        (f"urltest/app@sha256:{SHA}", ("urltest", "app", f"sha256:{SHA}")),
    ],
)
def test_split_location(text: str, expected: tuple[str, str, str]) -> None:
    assert split_location(text, LOCATIONS, "registry-1.docker.io") == LocationSplit(*expected)


def test_split_location_finds_docker_hub_under_any_of_its_names() -> None:
    split = split_location("docker.io/ubuntu", ["index.docker.io", "quay.io"], "quay.io")
    assert split == LocationSplit("index.docker.io", "ubuntu", "latest")


def test_split_location_default_need_not_be_listed() -> None:
    assert split_location("app", ["quay.io"], "site") == LocationSplit("site", "app", "latest")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app", ("registry-1.docker.io", "app", "latest")),
        ("nvcr.io/nvidia/cuda:12", ("nvcr.io", "nvidia/cuda", "12")),
        ("Reg.Example.org:05000/a/b", ("reg.example.org:5000", "a/b", "latest")),
        ("docker.io/ubuntu", ("registry-1.docker.io", "ubuntu", "latest")),
        ("alias/app", ("registry-1.docker.io", "alias/app", "latest")),
    ],
)
def test_without_locations_any_registry_is_its_own_location(
    text: str, expected: tuple[str, str, str]
) -> None:
    assert split_location(text, [], "registry-1.docker.io") == LocationSplit(*expected)


def test_without_locations_a_registry_must_still_be_valid() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        split_location("reg.example.org:0/app", [], "registry-1.docker.io")
    assert str(caught.value) == (
        "invalid image reference 'reg.example.org:0/app': registry port '0' is not a number "
        "from 1 to 65535"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nvcr.io/nvidia/cuda:12",
            "invalid image reference 'nvcr.io/nvidia/cuda:12': registry 'nvcr.io' is not a "
            "location of this image gateway",
        ),
        (
            "docker.io/ubuntu",
            "invalid image reference 'docker.io/ubuntu': registry 'docker.io' is not a "
            "location of this image gateway",
        ),
        ("urltest/", "invalid image reference 'urltest/': the repository name is empty"),
        (
            "urltest/Ubuntu",
            "invalid image reference 'urltest/Ubuntu': repository names must be "
            "lowercase, found 'U'",
        ),
        ("", "invalid image reference '': it is empty"),
    ],
)
def test_split_location_errors(text: str, message: str) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        split_location(text, ["quay.io", "urltest"], "quay.io")
    assert str(caught.value) == message


def test_unknown_registry_hint_lists_the_locations() -> None:
    with pytest.raises(ImageReferenceError) as caught:
        split_location("nvcr.io/x", ["quay.io", "urltest"], "quay.io")
    assert caught.value.hint == (
        "use one of the configured locations (quay.io, urltest) or ask your site to add "
        "'nvcr.io' under \"Locations\" in imagemanager.json"
    )


# --- properties -----------------------------------------------------------------------------

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
