"""Which image, volumes and modules a launch uses: the command line, then the environment.

Image, highest first (issue 5; the seed's documented order, except that `--image` wins as
in the original's code):

1. `--image=TYPE:IMAGE`;
2. `SHIFTER=TYPE:IMAGE` (the seed documents it; the original never reads it);
3. `SHIFTER_IMAGE` + `SHIFTER_IMAGETYPE`, both set and non-empty;
4. `SLURM_SPANK_SHIFTER_IMAGE` + `SLURM_SPANK_SHIFTER_IMAGETYPE` (the batch system's
   defaults; `SHIFTER_*` beats them so `srun shifter` in a job finds the job's `id:` image);
5. `SHIFTER_IMAGEREQUEST`, then `SLURM_SPANK_SHIFTER_IMAGEREQUEST` (a `TYPE:IMAGE` text).

Each pair is taken whole or not at all (the original mixed a type from one pair with an
image from the other). The request, exported as `SHIFTER_IMAGEREQUEST` in the container,
is the raw `--image` or `SHIFTER` text, else the inherited request variable.

Pure functions: environment mapping in, values out.

`pick_image`, `choose_volumes` and `module_names` only read strings: the path that enters
a setupRoot container uses them without loading the image grammar or the configuration.
"""

from __future__ import annotations

from shifter.errors import ImageReferenceError, ShifterError

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from shifter.image.descriptor import ImageDescriptor

IMAGE_PAIRS = (
    ("SHIFTER_IMAGETYPE", "SHIFTER_IMAGE"),
    ("SLURM_SPANK_SHIFTER_IMAGETYPE", "SLURM_SPANK_SHIFTER_IMAGE"),
)
REQUEST_VARIABLES = ("SHIFTER_IMAGEREQUEST", "SLURM_SPANK_SHIFTER_IMAGEREQUEST")
VOLUME_VARIABLES = ("SHIFTER_VOLUME", "SLURM_SPANK_SHIFTER_VOLUME")
MODULE_VARIABLES = ("SHIFTER_MODULE", "SLURM_SPANK_SHIFTER_MODULE")
NO_MODULES = "none"  # a module selection that activates none (any letter case)
NO_IMAGE_HINT = (
    "use --image=TYPE:IMAGE (e.g. --image=docker:ubuntu:22.04), or set SHIFTER_IMAGETYPE "
    "and SHIFTER_IMAGE"
)


class ImageChoice:
    """The image a launch asked for, where that came from, and the request to export.

    A plain class, not a dataclass: creating a dataclass costs the launch path about a
    millisecond (the same reason as `config.keys.KeySpec`).
    """

    __slots__ = ("descriptor", "origin", "request")

    def __init__(self, descriptor: ImageDescriptor, origin: str, request: str | None) -> None:
        self.descriptor = descriptor
        self.origin = origin  # "--image", "SHIFTER", "SHIFTER_IMAGETYPE/SHIFTER_IMAGE", ...
        self.request = request

    def __repr__(self) -> str:
        return f"ImageChoice({self.descriptor}, origin={self.origin!r})"


def _parse(text: str, origin: str, default_type: str | None) -> ImageDescriptor:
    from shifter.image.descriptor import parse_descriptor

    try:
        return parse_descriptor(text, default_type)
    except ImageReferenceError as error:
        # Say where the text came from: an inherited variable is easy to forget.
        raise ImageReferenceError(f"{origin}: {error.message}", hint=error.hint) from None


def _first_set(environ: Mapping[str, str], names: Sequence[str]) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "")
        if value:
            return name, value
    return None


def pick_image(
    option: str | None, environ: Mapping[str, str]
) -> tuple[str, str, str | None, bool] | None:
    """The text that names this launch's image, unparsed: `(text, origin, request, typed)`;
    a pair gives `TYPE:IMAGE` and `typed` (no default type applies). None: nothing names one.
    """
    inherited = _first_set(environ, REQUEST_VARIABLES)
    inherited_request = inherited[1] if inherited else None
    if option is not None:
        return option, "--image", option, False
    shifter = environ.get("SHIFTER", "")
    if shifter:
        return shifter, "SHIFTER", shifter, False
    for type_name, image_name in IMAGE_PAIRS:
        image_type, image = environ.get(type_name, ""), environ.get(image_name, "")
        if image_type and image:
            return f"{image_type}:{image}", f"{type_name}/{image_name}", inherited_request, True
    if inherited is not None:
        name, text = inherited
        return text, name, text, False
    return None


def choose_image(
    option: str | None, environ: Mapping[str, str], default_type: str | None
) -> ImageChoice:
    """The image of this launch; `ShifterError` when none is named anywhere."""
    picked = pick_image(option, environ)
    if picked is None:
        raise ShifterError("no image specified", hint=NO_IMAGE_HINT)
    text, origin, request, typed = picked
    return ImageChoice(_parse(text, origin, None if typed else default_type), origin, request)


def choose_volumes(options: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str]:
    """The volume text and where it came from. Command-line volumes *replace* the
    environment's, as in the original."""
    if options:
        return ";".join(options), "--volume"
    found = _first_set(environ, VOLUME_VARIABLES)
    return (found[1], found[0]) if found else ("", "")


def choose_modules(option: str | None, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The module selection text (None: the configured defaults) and its origin."""
    if option is not None:
        return option, "--module"
    found = _first_set(environ, MODULE_VARIABLES)
    return (found[1], found[0]) if found else (None, "defaultModules")


def module_names(selection: str | None, defaults: Sequence[str]) -> list[str]:
    """The module names a selection asks for, in order (None: the defaults); whether they
    exist and may be combined is `modules.select_modules`'s business."""
    if selection is None:
        return list(defaults)
    if selection.strip().lower() == NO_MODULES:
        return []
    return [name.strip() for name in selection.split(",")]
