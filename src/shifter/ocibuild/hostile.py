"""The hostile test images: layers that try to escape the image root or smuggle in what
flattening must drop, and a tar bomb.

The rule behind every hostile case is the same: a path in a layer (member name, hard-link
target, or a symlink met on the way) is resolved as if the image root were `/`, so `..`
stops at the root and nothing is ever written outside it. Device nodes, fifos and extended
attributes are dropped; a hard link to a file the image lacks fails the conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from shifter.ocibuild.baseimage import BUSYBOX, CatalogImage, Expected, on_base
from shifter.ocibuild.image import BuiltImage
from shifter.ocibuild.layer import Device, Dir, Entry, Fifo, File, HardLink, Symlink

TAR_BOMB_FILES = 20_000
# cap_net_raw in the permitted and effective sets (vfs_cap_data revision 2, little endian).
CAP_NET_RAW = (0x02000001).to_bytes(4, "little") + (1 << 13).to_bytes(4, "little") + bytes(12)


def tar_bomb(file_count: int = TAR_BOMB_FILES, *, busybox: Path = BUSYBOX) -> BuiltImage:
    """`file_count` tiny files under /bomb, a thousand per directory."""
    entries: list[Entry] = [Dir("bomb")]
    for number in range(file_count):
        if number % 1000 == 0:
            entries.append(Dir(f"bomb/d{number // 1000:03d}"))
        entries.append(File(f"bomb/d{number // 1000:03d}/f{number:06d}", f"{number}\n".encode()))
    return on_base("tarbomb", entries)(busybox)


def _hostile(name: str, entries: Sequence[Entry], expected: Expected) -> CatalogImage:
    """An image whose second layer holds `entries` next to a marker file that must survive."""
    marker = f"{name} converted\n".encode()
    layer = [Dir("hostile"), File("hostile/ok.txt", marker), *entries]
    if expected.error is None:
        expected = replace(expected, files={"/hostile/ok.txt": marker, **expected.files})
    return CatalogImage(name, expected, on_base(name, layer))


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


def hostile_images() -> tuple[CatalogImage, ...]:
    """The hostile-* images, then the tar bomb, in the catalog's order."""
    return (
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
            on_base(
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
