"""From an image descriptor to the image on disk: its id, its `.meta` file, its file or
directory, and the access check.

- `id:` is the id; `docker:` and `custom:` are looked up at the image gateway (lookup.py);
  `local:/path` is a host directory, allowed only with
  `allowLocalChroot=1` (which the original forgot to enforce) and has no `.meta`.
- `<imagePath>/<id>.meta` must exist and parse (the gateway writes it last, so a missing
  file also means "not ready yet"); the image is `<imagePath>/<id>.<format>`, or the
  directory `<imagePath>/<id>` for format VFS (the original's `<id>.` with a bare dot).
- A private image (USERACL/GROUPACL in the meta) is refused to a user who is not in it,
  whether or not the user could read the file. The gateway gives a private image's files
  mode 0600 and a read ACL entry per allowed user and group, so a `.meta` the user cannot
  read in a searchable imagePath is the same refusal. Access belongs to each tag; the
  `.meta` lists the union of the access lists of every tag of that id.

"""

from __future__ import annotations

import os

from shifter.errors import PermissionDeniedError, ShifterError
from shifter.image.descriptor import ImageDescriptor, ImageType
from shifter.image.meta import ImageMeta, read_meta
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.image.lookup import gateway_lookup

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

FILE_FORMATS = ("squashfs", "ext4", "cramfs", "xfs")
DIRECTORY_FORMAT = "VFS"
LOCAL_FORMAT = "local"
PULL_HINT = "pull it first (shifterimg pull IMAGE), or check the id with shifterimg lookup"
PRIVATE_HINT = (
    "access belongs to each tag of the image: someone a tag admits can add you "
    "(shifterimg pull --user/--group), or pull the tag with your own registry login "
    "(shifterimg login)"
)


class ImageNotFoundError(ShifterError):
    """No usable image for the descriptor (unknown, not ready, or its files missing)."""


class Image:
    """The image a container is built from. `path` is the image file, or the directory for
    VFS and `local:` images. (Plain class: launch path.)"""

    __slots__ = ("descriptor", "format", "id", "meta", "path")

    def __init__(
        self,
        descriptor: ImageDescriptor,
        image_id: str,
        image_format: str,
        path: str,
        meta: ImageMeta | None,
    ) -> None:
        self.descriptor = descriptor
        self.id = image_id
        self.format = image_format
        self.path = path
        self.meta = meta

    @property
    def is_directory(self) -> bool:
        return self.format in (DIRECTORY_FORMAT, LOCAL_FORMAT)

    def __repr__(self) -> str:
        return f"Image({self.descriptor}, {self.format}, {self.path!r})"


def check_acl(image: Image, uid: int, gids: Sequence[int]) -> None:
    """Refuse a private image to a user in neither its USERACL nor its GROUPACL."""
    meta = image.meta
    if meta is None or not (meta.user_acl or meta.group_acl):
        return
    if uid in meta.user_acl or any(gid in meta.group_acl for gid in gids):
        return
    raise private_image_error(image.descriptor)


def private_image_error(descriptor: ImageDescriptor) -> PermissionDeniedError:
    """The refusal of a private image to a user in none of its tags' access lists."""
    return PermissionDeniedError(
        f"permission denied to image {descriptor}: it is private and you are not in its "
        "access list",
        hint=PRIVATE_HINT,
    )


def _local_image(descriptor: ImageDescriptor, config: UdiRootConfig) -> Image:
    if not config.allow_local_chroot:
        raise PermissionDeniedError(
            f"local image {descriptor.spec} requested, but the site does not allow local images",
            hint=f"allowLocalChroot=1 in {config.source} enables them",
        )
    if not os.path.isdir(descriptor.spec):
        raise ImageNotFoundError(f"local image {descriptor.spec} is not a directory")
    return Image(descriptor, descriptor.spec, LOCAL_FORMAT, descriptor.spec, None)


def _read(path: str, descriptor: ImageDescriptor) -> ImageMeta:
    try:
        return read_meta(path)
    except FileNotFoundError:
        raise ImageNotFoundError(
            f"image {descriptor} not found (no {path}), or not ready yet", hint=PULL_HINT
        ) from None
    except PermissionError:
        if os.access(os.path.dirname(path), os.X_OK):
            raise private_image_error(descriptor) from None
        raise ImageNotFoundError(
            f"cannot read {path}: permission denied",
            hint="imagePath must be readable by every shifter user",
        ) from None
    except OSError as error:
        raise ImageNotFoundError(f"cannot read {path}: {error.strerror}") from None


def _image_path(config: UdiRootConfig, image_id: str, image_format: str) -> str:
    if image_format == DIRECTORY_FORMAT:
        return os.path.join(config.image_path, image_id)
    if image_format not in FILE_FORMATS:
        raise ImageNotFoundError(
            f"image {image_id} has an unknown format ({image_format!r} in its .meta file)",
            hint="pull the image again",
        )
    return os.path.join(config.image_path, f"{image_id}.{image_format}")


def find_image(
    descriptor: ImageDescriptor,
    config: UdiRootConfig,
    *,
    environ: Mapping[str, str],
) -> Image:
    """The image `descriptor` names, with its `.meta` (not yet access-checked)."""
    if descriptor.type is ImageType.LOCAL:
        return _local_image(descriptor, config)
    if descriptor.type is ImageType.ID:
        image_id = descriptor.spec
    else:
        image_id = gateway_lookup(descriptor, config, environ)
    if not image_id or "/" in image_id or image_id.startswith("."):
        raise ImageNotFoundError(f"the image gateway returned an unusable id {image_id!r}")
    meta = _read(os.path.join(config.image_path, f"{image_id}.meta"), descriptor)
    return Image(
        descriptor, image_id, meta.format, _image_path(config, image_id, meta.format), meta
    )


def check_readable(image: Image) -> None:
    """The image file (or directory) must be there and readable by the caller."""
    mode = os.R_OK | (os.X_OK if image.is_directory else 0)
    if not os.path.exists(image.path):
        raise ImageNotFoundError(f"image {image.descriptor}: {image.path} is missing")
    if not os.access(image.path, mode):
        raise PermissionDeniedError(
            f"image {image.descriptor}: {image.path} is not readable by you",
            hint="image files must be readable by the users allowed to run them",
        )
