"""Docker references and gateway locations: what users may type, its normal form, every message.

Descriptors (`type:name`) are tested in `test_image_descriptor`, generated and random text
in `test_image_reference_properties`."""

from __future__ import annotations

import pytest

from shifter.errors import ImageReferenceError
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
