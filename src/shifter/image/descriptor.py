"""Image descriptors: the `TYPE:SPEC` text of `shifter --image`, `SHIFTER_IMAGE*`, `shifterimg`.

The type is the text before the first ':' when that is one of docker, custom, id, local;
otherwise the whole text is the spec and the site's `defaultImageType` is the type, so with
`defaultImageType=docker` both `ubuntu:22.04` and `docker:ubuntu:22.04` name the same image.
Each type has its own grammar and normal form (`docs/image-references.md`). Where the original
deleted characters it did not allow, we refuse the text and name the character.

This module is on the `shifter` launch path: standard library only.
"""

from __future__ import annotations

from shifter.errors import ImageReferenceError
from shifter.frozen import Frozen
from shifter.image.reference import (
    ASCII_ALNUM,
    DEFAULT_TAG,
    DOCKER_HINT,
    DOCKER_HUB,
    LOWER_HEX,
    TEXT_MAX,
    DockerReference,
    first_disallowed,
    is_tag,
    made_of,
    parse_docker_reference,
    reference_error,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator


class _ImageTypes(type):
    """What an `enum.StrEnum` class gives `ImageType`: iteration over the members and
    `ImageType("docker")`. Not `enum` itself: with the `functools` and `collections` it
    imports it costs `shifterimg lookup`, called in loops, ~2.5 ms."""

    _members: tuple[ImageType, ...]

    def __iter__(cls) -> Iterator[ImageType]:
        return iter(cls._members)

    def __call__(cls, value: object) -> ImageType:  # type: ignore[override]
        for member in cls._members:
            if member == value:
                return member
        raise ValueError(f"{value!r} is not a valid ImageType")


class ImageType(str, metaclass=_ImageTypes):
    """The image types the runtime and the gateway know, exactly the original's four.
    Members are the strings themselves (like a StrEnum's), one object per type: compare
    with `is` or `==`."""

    __slots__ = ()
    DOCKER: ImageType
    CUSTOM: ImageType
    ID: ImageType
    LOCAL: ImageType

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def name(self) -> str:
        return self.value.upper()

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"<ImageType.{self.name}: {self.value!r}>"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return ImageType, (self.value,)


ImageType._members = tuple(
    str.__new__(ImageType, value) for value in ("docker", "custom", "id", "local")
)
for _member in ImageType._members:
    setattr(ImageType, _member.name, _member)
del _member

TYPE_NAMES = tuple(member.value for member in ImageType)
DESCRIPTOR_HINT = (
    "expected TYPE:IMAGE with TYPE one of docker, custom, id, local, e.g. docker:ubuntu:22.04"
)
CUSTOM_HINT = (
    "expected custom:NAME[:TAG] with NAME of letters, digits, '_', '.', '+', '-', "
    "e.g. custom:load_test:v1"
)
ID_HINT = "expected id:HEX with the 64 lowercase hex digits that shifterimg lookup prints"
LOCAL_HINT = (
    "expected local:/ABSOLUTE/PATH of letters, digits, '_', '.', '+', '-', '@', ':', e.g. local:/"
)
ID_LENGTH = 64

# Character sets, not regular expressions: `re` costs the launch path about 2 ms.
_CUSTOM_NAME_CHARS = ASCII_ALNUM | frozenset("_.+-")
_CUSTOM_CHARS = _CUSTOM_NAME_CHARS | {":"}
# The original's character set for local paths: we keep what it kept, refuse what it dropped.
_LOCAL_CHARS = ASCII_ALNUM | frozenset("_.+@:/-")


# Frozen, not a dataclass: `dataclasses` costs the launch path ~10 ms (see shifter.frozen).
class ImageDescriptor(Frozen):
    """An image as a user names it: a type and that type's normal form of the spec.

    docker: the familiar reference (`ubuntu:22.04`, `quay.io/org/app:1@sha256:...`);
    custom: `NAME:TAG`; id: 64 lowercase hex digits; local: a normalised absolute path.
    """

    type: ImageType
    spec: str

    def __str__(self) -> str:
        return f"{self.type}:{self.spec}"

    @property
    def needs_lookup(self) -> bool:
        """Whether the gateway must turn this into an image id (id and local are used as-is)."""
        return self.type in (ImageType.DOCKER, ImageType.CUSTOM)

    def docker_reference(self, *, default_registry: str = DOCKER_HUB) -> DockerReference:
        """The parsed reference of a docker descriptor."""
        if self.type is not ImageType.DOCKER:
            raise ValueError(f"{self} is not a docker image")
        return parse_docker_reference(self.spec, default_registry=default_registry)


def parse_descriptor(text: str, default_type: str | None) -> ImageDescriptor:
    """Parse `[TYPE:]SPEC`; raise `ImageReferenceError` if it names no valid image."""
    if not text:
        raise reference_error("image", text, "it is empty", DESCRIPTOR_HINT)
    if len(text) > TEXT_MAX:
        problem = f"it is {len(text)} characters long, more than {TEXT_MAX}"
        raise reference_error("image", text[:64] + "...", problem, DESCRIPTOR_HINT)
    prefix, colon, rest = text.partition(":")
    if colon and prefix in TYPE_NAMES:
        return _parse_typed(ImageType(prefix), rest, text)
    # `Docker:ubuntu` is far more likely a mistyped type than an image called `Docker`.
    miscased = bool(colon) and prefix.lower() in TYPE_NAMES
    if default_type is None:
        if miscased:
            raise _miscased_type(prefix, rest, text)
        raise reference_error(
            "image",
            text,
            "it names no image type and no default type is configured",
            f"{DESCRIPTOR_HINT}, or set defaultImageType in udiRoot.conf",
        )
    if default_type not in TYPE_NAMES:
        raise reference_error(
            "default image type",
            default_type,
            f"it is not one of {', '.join(TYPE_NAMES)}",
            "set defaultImageType in udiRoot.conf to docker, custom, id or local",
        )
    try:
        return _parse_typed(ImageType(default_type), text, text)
    except ImageReferenceError as error:
        if miscased:
            raise _miscased_type(prefix, rest, text) from error
        raise


def _miscased_type(prefix: str, rest: str, text: str) -> ImageReferenceError:
    return reference_error(
        "image",
        text,
        f"image type {prefix!r} is unknown; types are lowercase",
        f"write {prefix.lower()}:{rest}",
    )


def _parse_typed(image_type: ImageType, spec: str, text: str) -> ImageDescriptor:
    if not spec:
        hint = {
            ImageType.DOCKER: DOCKER_HINT,
            ImageType.CUSTOM: CUSTOM_HINT,
            ImageType.ID: ID_HINT,
            ImageType.LOCAL: LOCAL_HINT,
        }[image_type]
        raise reference_error("image", text, f"nothing follows '{image_type}:'", hint)
    if image_type is ImageType.DOCKER:
        normal = parse_docker_reference(spec).familiar()
    elif image_type is ImageType.CUSTOM:
        normal = _normal_custom(spec)
    elif image_type is ImageType.ID:
        normal = _normal_id(spec)
    else:
        normal = _normal_local(spec)
    return ImageDescriptor(image_type, normal)


def _is_custom_name(name: str) -> bool:
    """`[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}`."""
    return 0 < len(name) <= 255 and name[0] in ASCII_ALNUM and made_of(name, _CUSTOM_NAME_CHARS)


def _normal_custom(spec: str) -> str:
    bad = first_disallowed(spec, _CUSTOM_CHARS)
    if bad is not None:
        raise reference_error("custom image", spec, bad, CUSTOM_HINT)
    name, colon, tag = spec.partition(":")
    if not _is_custom_name(name):
        problem = (
            "the name is empty"
            if not name
            else "the name must start with a letter or digit and be at most 255 characters"
        )
        raise reference_error("custom image", spec, problem, CUSTOM_HINT)
    if not colon:
        return f"{name}:{DEFAULT_TAG}"
    if not is_tag(tag):
        problem = (
            f"tag {tag!r} must be 1 to 128 letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
        raise reference_error("custom image", spec, problem, CUSTOM_HINT)
    return f"{name}:{tag}"


def _normal_id(spec: str) -> str:
    # Digests are often copied with their algorithm; the gateway's ids are the bare hex.
    start = len("sha256:") if spec.startswith("sha256:") else 0
    upper = next((char for char in spec[start:] if char in "ABCDEF"), None)
    if upper is not None:
        raise reference_error("image id", spec, f"ids are lowercase hex, found {upper!r}", ID_HINT)
    bad = first_disallowed(spec, LOWER_HEX, start)
    if bad is not None:
        raise reference_error("image id", spec, bad, ID_HINT)
    digits = spec[start:]
    if len(digits) != ID_LENGTH:
        problem = f"an id has {ID_LENGTH} hex digits, found {len(digits)}"
        raise reference_error("image id", spec, problem, ID_HINT)
    return digits


def _normal_local(spec: str) -> str:
    bad = first_disallowed(spec, _LOCAL_CHARS)
    if bad is not None:
        raise reference_error("local image path", spec, bad, LOCAL_HINT)
    if not spec.startswith("/"):
        raise reference_error("local image path", spec, "the path must be absolute", LOCAL_HINT)
    parts = [part for part in spec.split("/") if part not in ("", ".")]
    # Folding `a/..` away by text is wrong when `a` is a symlink, and a `..` in a path the
    # setuid runtime binds is more likely an attack than a convenience: refuse it.
    if ".." in parts:
        raise reference_error("local image path", spec, "'..' is not allowed in it", LOCAL_HINT)
    return "/" + "/".join(parts)
