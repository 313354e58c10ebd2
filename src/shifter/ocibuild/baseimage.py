"""What every test image of the catalog is made of: the busybox base and the outcome values.

Every image starts from the same busybox layer (the host's static `/bin/busybox`, a few
applet links, minimal /etc), so a registry stores that blob once. `Expected` is what the
flattened tree must look like; a `CatalogImage` pairs it with the builder of its image.
`on_base` builds the usual shape: the busybox layer, then layers of entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shifter.errors import ShifterError
from shifter.ocibuild.image import BuiltImage, Flavor, RunConfig, built_image, single_image
from shifter.ocibuild.layer import (
    Compression,
    Dir,
    Entry,
    File,
    Layer,
    Symlink,
    build_layer,
    with_parents,
)

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "ls", "id", "env", "true", "echo", "sleep")
DEFAULT_PATH = "PATH=/usr/local/bin:/usr/bin:/bin"
OS_RELEASE = (
    b'NAME="Shifter test image"\nID=shifter-test\nVERSION_ID=1\n'
    b'PRETTY_NAME="Shifter test image (busybox)"\n'
)
PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"shifter:x:1000:1000:shifter test user:/home/shifter:/bin/sh\n"
    b"nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
)
GROUP = b"root:x:0:\nshifter:x:1000:\nnobody:x:65534:\n"


@dataclass(frozen=True)
class Expected:
    """What the flattened image must hold; `error` set means conversion must fail instead,
    with a message containing that text.

    `modes` are permission bits (`stat.S_IMODE`). `owners` are the uid/gid a layer records,
    kept when the engine preserves ownership (an all-root image has 0:0 everywhere).
    `file_counts` counts regular files under a directory, recursively. `run` is the run
    config the image metadata must carry.
    """

    outcome: str
    error: str | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    modes: Mapping[str, int] = field(default_factory=dict)
    hardlinks: tuple[tuple[str, str], ...] = ()
    owners: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    no_xattrs: tuple[str, ...] = ()
    file_counts: Mapping[str, int] = field(default_factory=dict)
    run: RunConfig | None = None


@dataclass(frozen=True)
class CatalogImage:
    name: str
    expected: Expected
    builder: Callable[[Path], BuiltImage]


def read_busybox(path: Path = BUSYBOX) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ShifterError(
            f"cannot read the busybox binary {path}: {exc.strerror}",
            hint="install Debian's busybox-static (apt-get install busybox-static)",
        ) from exc


def base_entries(busybox: bytes) -> list[Entry]:
    """The root filesystem every test image starts from."""
    return with_parents(
        [
            File("bin/busybox", busybox, mode=0o755),
            *(Symlink(f"bin/{applet}", "busybox") for applet in APPLETS),
            File("etc/os-release", OS_RELEASE),
            File("etc/passwd", PASSWD),
            File("etc/group", GROUP),
            Dir("home/shifter", uid=1000, gid=1000),
            Dir("root", mode=0o700),
            Dir("tmp", mode=0o1777),
        ]
    )


def base_layer(busybox: Path, compression: Compression = Compression.GZIP) -> Layer:
    return build_layer(base_entries(read_busybox(busybox)), compression, comment="busybox base")


def base_files() -> dict[str, bytes]:
    return {"/etc/os-release": OS_RELEASE, "/etc/passwd": PASSWD}


def on_base(
    name: str, *upper: Sequence[Entry], compression: Compression = Compression.GZIP
) -> Callable[[Path], BuiltImage]:
    """An OCI image: the busybox layer, then one layer per entry list, written as listed."""

    def build(busybox: Path) -> BuiltImage:
        layers = [base_layer(busybox, compression)]
        layers += [
            build_layer(entries, compression, comment=f"{name} layer {number}")
            for number, entries in enumerate(upper, start=2)
        ]
        image = single_image(layers, run=RunConfig(env=(DEFAULT_PATH,)))
        return built_image(name, image, Flavor.OCI)

    return build
