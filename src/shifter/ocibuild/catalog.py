"""The named test images, each with the one outcome a correct pull and flatten must give.

Every image starts from the same busybox layer (the host's static `/bin/busybox`, a few
applet links, minimal /etc), so a registry stores that blob once. `expected(name)` says
what the flattened tree must look like; the engine's tests assert exactly that, and
`docs/test-images.md` explains each decision.

Paths in `Expected` are absolute paths inside the flattened image. The rule behind every
hostile case is the same: a path in a layer (member name, hard-link target, or a symlink
met on the way) is resolved as if the image root were `/`, so `..` stops at the root and
nothing is ever written outside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from shifter.errors import ShifterError
from shifter.ocibuild.image import (
    BuiltImage,
    Flavor,
    Platform,
    RunConfig,
    built_image,
    built_index,
    single_image,
)
from shifter.ocibuild.layer import (
    Compression,
    Device,
    Dir,
    Entry,
    Fifo,
    File,
    HardLink,
    Layer,
    Opaque,
    Symlink,
    Whiteout,
    build_layer,
    with_parents,
)

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "cat", "ls", "id", "env", "true", "echo", "sleep")
TAR_BOMB_FILES = 20_000
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
# cap_net_raw in the permitted and effective sets (vfs_cap_data revision 2, little endian).
CAP_NET_RAW = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)


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


def _base(busybox: Path, compression: Compression = Compression.GZIP) -> Layer:
    return build_layer(base_entries(read_busybox(busybox)), compression, comment="busybox base")


def _base_files() -> dict[str, bytes]:
    return {"/etc/os-release": OS_RELEASE, "/etc/passwd": PASSWD}


def _busybox_run() -> RunConfig:
    return RunConfig(
        env=(DEFAULT_PATH, "SHIFTER_TEST_IMAGE=busybox"),
        entrypoint=("/bin/echo", "shifter-test-entrypoint"),
        cmd=("default-cmd",),
        working_dir="/home/shifter",
        user="1000:1000",
        labels={"org.opencontainers.image.title": "shifter busybox", "io.shifter.test": "yes"},
    )


def _busybox(flavor: Flavor) -> Callable[[Path], BuiltImage]:
    def build(busybox: Path) -> BuiltImage:
        image = single_image([_base(busybox)], run=_busybox_run(), flavor=flavor)
        return built_image("busybox", image, flavor)

    return build


def _on_base(
    name: str, *upper: Sequence[Entry], compression: Compression = Compression.GZIP
) -> Callable[[Path], BuiltImage]:
    """An OCI image: the busybox layer, then one layer per entry list, written as listed."""

    def build(busybox: Path) -> BuiltImage:
        layers = [_base(busybox, compression)]
        layers += [
            build_layer(entries, compression, comment=f"{name} layer {number}")
            for number, entries in enumerate(upper, start=2)
        ]
        image = single_image(layers, run=RunConfig(env=(DEFAULT_PATH,)))
        return built_image(name, image, Flavor.OCI)

    return build


def _multiarch(flavor: Flavor) -> Callable[[Path], BuiltImage]:
    def build(busybox: Path) -> BuiltImage:
        images = []
        for platform in (Platform("amd64"), Platform("arm64", variant="v8")):
            marker = build_layer(
                [Dir("etc"), File("etc/arch", f"{platform.architecture}\n".encode())]
            )
            images.append(
                single_image(
                    [_base(busybox), marker],
                    platform=platform,
                    run=RunConfig(env=(DEFAULT_PATH,)),
                    flavor=flavor,
                )
            )
        return built_index("multiarch", images, flavor)

    return build


def tar_bomb(file_count: int = TAR_BOMB_FILES, *, busybox: Path = BUSYBOX) -> BuiltImage:
    """`file_count` tiny files under /bomb, a thousand per directory."""
    entries: list[Entry] = [Dir("bomb")]
    for number in range(file_count):
        if number % 1000 == 0:
            entries.append(Dir(f"bomb/d{number // 1000:03d}"))
        entries.append(File(f"bomb/d{number // 1000:03d}/f{number:06d}", f"{number}\n".encode()))
    return _on_base("tarbomb", entries)(busybox)


def _layered() -> CatalogImage:
    """Whiteouts, opaque directories, replacements and links across five layers."""
    fill = with_parents(
        [
            File("opt/app/keep.txt", b"kept\n"),
            File("opt/app/gone.txt", b"whited out by layer 3\n"),
            File("opt/opaque/a.txt", b"hidden by the opaque marker\n"),
            File("opt/opaque/b.txt", b"hidden by the opaque marker\n"),
            File("opt/recreated/old.txt", b"must not come back\n"),
            File("opt/data/original.txt", b"linked content\n"),
            HardLink("opt/data/same-layer-link", "opt/data/original.txt"),
            File("opt/lower/target.txt", b"lower target\n"),
            File("opt/setuid-tool", b"#!/bin/sh\necho setuid\n", mode=0o4755),
            File("opt/setgid-tool", b"#!/bin/sh\necho setgid\n", mode=0o2755),
            Dir("home/user1000", uid=1000, gid=1000),
            File("home/user1000/owned.txt", b"mine\n", uid=1000, gid=1000, mode=0o600),
            File("données/naïve-文件.txt", "unicode ✓\n".encode()),
            File("opt/dir-to-file/x.txt", b"gone with its directory\n"),
            File("opt/file-to-dir", b"was a file\n"),
            Symlink("opt/links/relative", "../data/original.txt"),
            Symlink("opt/links/absolute", "/opt/data/original.txt"),
        ]
    )
    delete: list[Entry] = [
        Whiteout("opt/app/gone.txt"),
        Opaque("opt/opaque"),
        File("opt/opaque/c.txt", b"only c\n"),
        Whiteout("opt/recreated"),
    ]
    replace_: list[Entry] = [
        Dir("opt/recreated"),
        File("opt/recreated/new.txt", b"new\n"),
        File("opt/dir-to-file", b"now a file\n"),
        Dir("opt/file-to-dir"),
        File("opt/file-to-dir/inner.txt", b"now a directory\n"),
        # Within one layer the later entry wins.
        File("opt/same-layer-dir", b"first a file\n"),
        Dir("opt/same-layer-dir"),
        File("opt/same-layer-dir/child.txt", b"then a directory\n"),
        Dir("opt/same-layer-file"),
        File("opt/same-layer-file/child.txt", b"replaced with its directory\n"),
        File("opt/same-layer-file", b"then a file\n"),
    ]
    link_only: list[Entry] = [HardLink("opt/lower-link", "opt/lower/target.txt")]
    expected = Expected(
        "whiteouts, opaque markers and replacements applied oldest layer first; "
        "hard links kept; setuid/setgid bits stripped; ownership kept",
        files={
            **_base_files(),
            "/opt/app/keep.txt": b"kept\n",
            "/opt/opaque/c.txt": b"only c\n",
            "/opt/recreated/new.txt": b"new\n",
            "/opt/data/original.txt": b"linked content\n",
            "/opt/lower-link": b"lower target\n",
            "/opt/dir-to-file": b"now a file\n",
            "/opt/file-to-dir/inner.txt": b"now a directory\n",
            "/opt/same-layer-dir/child.txt": b"then a directory\n",
            "/opt/same-layer-file": b"then a file\n",
            "/données/naïve-文件.txt": "unicode ✓\n".encode(),
            "/home/user1000/owned.txt": b"mine\n",
        },
        dirs=("/opt/recreated", "/opt/file-to-dir", "/opt/same-layer-dir"),
        symlinks={
            "/opt/links/relative": "../data/original.txt",
            "/opt/links/absolute": "/opt/data/original.txt",
        },
        absent=(
            "/opt/app/gone.txt",
            "/opt/opaque/a.txt",
            "/opt/opaque/b.txt",
            "/opt/recreated/old.txt",
            "/opt/dir-to-file/x.txt",
            "/opt/same-layer-file/child.txt",
            "/opt/app/.wh.gone.txt",
            "/opt/opaque/.wh..wh..opq",
        ),
        modes={
            "/opt/setuid-tool": 0o755,
            "/opt/setgid-tool": 0o755,
            "/home/user1000/owned.txt": 0o600,
        },
        hardlinks=(
            ("/opt/data/original.txt", "/opt/data/same-layer-link"),
            ("/opt/lower/target.txt", "/opt/lower-link"),
        ),
        owners={"/home/user1000": (1000, 1000), "/home/user1000/owned.txt": (1000, 1000)},
    )
    return CatalogImage("layered", expected, _on_base("layered", fill, delete, replace_, link_only))


def _hostile(name: str, entries: Sequence[Entry], expected: Expected) -> CatalogImage:
    """An image whose second layer holds `entries` next to a marker file that must survive."""
    marker = f"{name} converted\n".encode()
    layer = [Dir("hostile"), File("hostile/ok.txt", marker), *entries]
    if expected.error is None:
        expected = replace(expected, files={"/hostile/ok.txt": marker, **expected.files})
    return CatalogImage(name, expected, _on_base(name, layer))


def _missing_link(name: str, target: str) -> CatalogImage:
    return _hostile(
        name,
        [HardLink("hostile/leak", target)],
        Expected(
            f"conversion fails with an error naming {target!r}: the link target is not in the "
            "image, and a host file is never linked in",
            error="etc/shadow",
        ),
    )


def _catalog() -> tuple[CatalogImage, ...]:
    busybox_expected = Expected(
        "a runnable busybox with the run config below in its metadata",
        files=_base_files(),
        symlinks={f"/bin/{applet}": "busybox" for applet in APPLETS},
        dirs=("/home/shifter", "/tmp"),
        modes={"/bin/busybox": 0o755, "/tmp": 0o1777},
        run=_busybox_run(),
    )
    return (
        CatalogImage("busybox", busybox_expected, _busybox(Flavor.OCI)),
        CatalogImage("busybox-docker", busybox_expected, _busybox(Flavor.DOCKER)),
        _layered(),
        *(
            CatalogImage(
                f"multiarch{suffix}",
                Expected(
                    "pulled for linux/amd64, /etc/arch reads amd64 (the linux/arm64/v8 manifest "
                    "has arm64 there and is never run)",
                    files={**_base_files(), "/etc/arch": b"amd64\n"},
                ),
                _multiarch(flavor),
            )
            for suffix, flavor in (("", Flavor.OCI), ("-docker", Flavor.DOCKER))
        ),
        *(
            CatalogImage(
                f"compression-{compression.value}",
                Expected(
                    f"both layers {compression.value}-compressed; the marker file is present",
                    files={**_base_files(), "/compression.txt": compression.value.encode()},
                ),
                _on_base(
                    f"compression-{compression.value}",
                    [File("compression.txt", compression.value.encode())],
                    compression=compression,
                ),
            )
            for compression in Compression
        ),
        _hostile(
            "hostile-dotdot",
            [File("../../escape", b"dotdot\n"), File("hostile/../../../escape-deep", b"deep\n")],
            Expected(
                "`..` stops at the image root: the members land at /escape and /escape-deep",
                files={"/escape": b"dotdot\n", "/escape-deep": b"deep\n"},
            ),
        ),
        _hostile(
            "hostile-absolute",
            [File("/abs/file", b"absolute\n")],
            Expected(
                "an absolute member name is taken relative to the image root: /abs/file",
                files={"/abs/file": b"absolute\n"},
            ),
        ),
        _hostile(
            "hostile-symlink-etc",
            [Symlink("evil", "/etc"), File("evil/passwd", b"hostile passwd\n")],
            Expected(
                "evil/passwd is written through the symlink inside the image: the image's "
                "/etc/passwd is replaced, the host's is untouched",
                files={"/etc/passwd": b"hostile passwd\n"},
                symlinks={"/evil": "/etc"},
            ),
        ),
        _hostile(
            "hostile-symlink-up",
            [Symlink("up", "../../.."), File("up/escaped", b"up\n")],
            Expected(
                "up -> ../../.. resolves to the image root: up/escaped lands at /escaped",
                files={"/escaped": b"up\n"},
                symlinks={"/up": "../../.."},
            ),
        ),
        _missing_link("hostile-hardlink-absolute-missing", "/etc/shadow"),
        _missing_link("hostile-hardlink-dotdot-missing", "../../../etc/shadow"),
        CatalogImage(
            "hostile-hardlink-present",
            Expected(
                "links to /etc/shadow and ../../etc/shadow both become hard links to the "
                "image's own /etc/shadow",
                files={"/etc/shadow": b"image shadow\n", "/leak-absolute": b"image shadow\n"},
                hardlinks=(
                    ("/etc/shadow", "/leak-absolute"),
                    ("/etc/shadow", "/leak-dotdot"),
                ),
            ),
            _on_base(
                "hostile-hardlink-present",
                [Dir("etc"), File("etc/shadow", b"image shadow\n", mode=0o640)],
                [
                    HardLink("leak-absolute", "/etc/shadow"),
                    HardLink("leak-dotdot", "../../etc/shadow"),
                ],
            ),
        ),
        _hostile(
            "hostile-devices",
            [Device("hostile/null", 1, 3), Device("hostile/sda", 8, 0, block=True)],
            Expected(
                "device nodes are skipped; the rest of the layer converts",
                absent=("/hostile/null", "/hostile/sda"),
            ),
        ),
        _hostile(
            "hostile-fifo",
            [Fifo("hostile/fifo")],
            Expected(
                "fifos are skipped; the rest of the layer converts", absent=("/hostile/fifo",)
            ),
        ),
        _hostile(
            "hostile-xattrs",
            [
                File(
                    "hostile/capped",
                    b"#!/bin/sh\n",
                    mode=0o755,
                    xattrs={"security.capability": CAP_NET_RAW, "user.shifter": b"test"},
                ),
                Dir("hostile/overlay", xattrs={"trusted.overlay.opaque": b"y"}),
            ],
            Expected(
                "every extended attribute is dropped, security.capability included",
                files={"/hostile/capped": b"#!/bin/sh\n"},
                no_xattrs=("/hostile/capped", "/hostile/overlay"),
            ),
        ),
        CatalogImage(
            "tarbomb",
            Expected(
                f"all {TAR_BOMB_FILES} tiny files under /bomb are present",
                files={"/bomb/d000/f000000": b"0\n"},
                file_counts={"/bomb": TAR_BOMB_FILES},
            ),
            lambda busybox: tar_bomb(busybox=busybox),
        ),
    )


def entries() -> tuple[CatalogImage, ...]:
    return _catalog()


def names() -> tuple[str, ...]:
    return tuple(entry.name for entry in _catalog())


def entry(name: str) -> CatalogImage:
    for candidate in _catalog():
        if candidate.name == name:
            return candidate
    raise KeyError(f"no test image named {name!r}; known: {', '.join(names())}")


def expected(name: str) -> Expected:
    return entry(name).expected


def build(name: str, *, busybox: Path = BUSYBOX) -> BuiltImage:
    """Build the named image in memory (the tar bomb too: about 1 MB compressed)."""
    return replace(entry(name).builder(busybox), name=name)
