"""The named test images, each with the one outcome a correct pull and flatten must give.

Every image starts from the same busybox layer (`baseimage`), so a registry stores that
blob once. `expected(name)` says what the flattened tree must look like; the engine's tests
assert exactly that, and `docs/test-images.md` explains each decision. The ordinary images
(busybox, layered, multi-arch, compressions) are here, the hostile ones and the tar bomb in
`hostile`.

Paths in `Expected` are absolute paths inside the flattened image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from shifter.ocibuild.baseimage import (
    APPLETS,
    BUSYBOX,
    DEFAULT_PATH,
    OS_RELEASE,
    CatalogImage,
    Expected,
    base_files,
    base_layer,
    on_base,
)
from shifter.ocibuild.hostile import TAR_BOMB_FILES, hostile_images, tar_bomb
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
    Dir,
    Entry,
    File,
    HardLink,
    Opaque,
    Symlink,
    Whiteout,
    build_layer,
    with_parents,
)

__all__ = [
    "APPLETS",
    "BUSYBOX",
    "DEFAULT_PATH",
    "OS_RELEASE",
    "TAR_BOMB_FILES",
    "CatalogImage",
    "Expected",
    "build",
    "entries",
    "entry",
    "expected",
    "names",
    "tar_bomb",
]


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
        image = single_image([base_layer(busybox)], run=_busybox_run(), flavor=flavor)
        return built_image("busybox", image, flavor)

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
                    [base_layer(busybox), marker],
                    platform=platform,
                    run=RunConfig(env=(DEFAULT_PATH,)),
                    flavor=flavor,
                )
            )
        return built_index("multiarch", images, flavor)

    return build


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
            **base_files(),
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
    return CatalogImage("layered", expected, on_base("layered", fill, delete, replace_, link_only))


def _catalog() -> tuple[CatalogImage, ...]:
    busybox_expected = Expected(
        "a runnable busybox with the run config below in its metadata",
        files=base_files(),
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
                    files={**base_files(), "/etc/arch": b"amd64\n"},
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
                    files={**base_files(), "/compression.txt": compression.value.encode()},
                ),
                on_base(
                    f"compression-{compression.value}",
                    [File("compression.txt", compression.value.encode())],
                    compression=compression,
                ),
            )
            for compression in Compression
        ),
        *hostile_images(),
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
