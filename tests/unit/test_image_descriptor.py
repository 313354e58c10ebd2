"""Image descriptors (`docker:`, `custom:`, `id:`, `local:`): what users may type, its normal
form, every message."""

from __future__ import annotations

import pytest

from shifter.errors import ImageReferenceError, ParseError
from shifter.image.descriptor import ImageDescriptor, ImageType, parse_descriptor
from shifter.image.reference import DockerReference
from tests.unit.test_image_reference import HUB, SHA

pytestmark = pytest.mark.unit


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
