"""Helpers shared by the test_pull_* modules (this module holds no tests).

Pushing catalog images to a registry fixture, pull options with a fast retry policy, and
the check of a converted image against its catalog outcome: the squashfs is unpacked with
`unsquashfs` (as root it keeps owners, modes and hard links) and every documented fact is
asserted file by file; extended attributes are read from the image with `rdsquashfs -x`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shifter import proc
from shifter.engine.pull import PulledImage, PullOptions
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.ocibuild.image import BuiltImage, Flavor, RunConfig, built_image, single_image
from shifter.ocibuild.layer import Compression, File, build_layer
from shifter.ocibuild.push import push_image
from shifter.registry.retry import RetryPolicy
from tests.services.registries import RegistryEndpoint

# Fast enough for tests, still exponential: 0.05, 0.1, 0.2 s.
FAST_RETRY = RetryPolicy(attempts=4, first_delay_s=0.05, max_delay_s=0.2, deadline_s=20.0)


def push(
    endpoint: RegistryEndpoint,
    name: str,
    repository: str,
    *,
    tag: str = "v1",
    user: str | None = None,
    built: BuiltImage | None = None,
) -> BuiltImage:
    """Push catalog image `name` (or `built`) as repository:tag; returns what was pushed."""
    built = built or catalog.build(name)
    credentials = (user, endpoint.credentials[user]) if user else None
    push_image(
        built, endpoint.url, repository, tag, credentials=credentials, ca_file=endpoint.ca_file
    )
    return built


def options(cache_dir: Path, **overrides: Any) -> PullOptions:
    """Pull options for a loopback registry: http allowed, quick retries."""
    settings: dict[str, Any] = {"cache_dir": cache_dir, "insecure": True, "retry": FAST_RETRY}
    settings.update(overrides)
    return PullOptions(**settings)


def extract(image: Path, dest: Path) -> Path:
    """Unpack a squashfs image (never mounted) into `dest`; returns the root."""
    proc.run(["unsquashfs", "-no-xattrs", "-q", "-n", "-d", str(dest), str(image)])
    return dest


def xattrs(image: Path, path: str) -> str:
    return proc.run(["rdsquashfs", "-x", path, str(image)]).stdout.decode().strip()


def _inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def check_tree(image: Path, root: Path, expected: catalog.Expected, *, owners_kept: bool) -> None:
    """Assert every fact of `expected` about the unpacked tree at `root`."""
    for path, content in expected.files.items():
        inside = _inside(root, path)
        assert stat.S_ISREG(inside.lstat().st_mode), f"{path} is not a regular file"
        assert inside.read_bytes() == content, f"{path} has the wrong content"
    for path in expected.dirs:
        assert stat.S_ISDIR(_inside(root, path).lstat().st_mode), f"{path} is not a directory"
    for path, target in expected.symlinks.items():
        assert os.readlink(_inside(root, path)) == target, f"{path} does not point to {target}"
    for path in expected.absent:
        assert not os.path.lexists(_inside(root, path)), f"{path} should be absent"
    for path, mode in expected.modes.items():
        actual = stat.S_IMODE(_inside(root, path).lstat().st_mode)
        assert actual == mode, f"{path} has mode {actual:o}, expected {mode:o}"
    for first, second in expected.hardlinks:
        a, b = _inside(root, first).lstat(), _inside(root, second).lstat()
        assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino), f"{first} and {second} not linked"
    for path, (uid, gid) in expected.owners.items():
        info = _inside(root, path).lstat()
        wanted = (uid, gid) if owners_kept else (0, 0)
        assert (info.st_uid, info.st_gid) == wanted, f"{path} owned by {info.st_uid}:{info.st_gid}"
    for path in expected.no_xattrs:
        assert xattrs(image, path) == "", f"{path} kept extended attributes"
    for path, count in expected.file_counts.items():
        files = sum(
            1
            for directory, _, names in os.walk(_inside(root, path))
            for name in names
            if stat.S_ISREG(os.lstat(os.path.join(directory, name)).st_mode)
        )
        assert files == count, f"{path} holds {files} files, expected {count}"


def check_run_config(pulled: PulledImage, run: RunConfig) -> None:
    """The meta file carries the run config the runtime needs; the sidecar the rest."""
    meta = read_meta(str(pulled.meta_path))
    assert meta.format == pulled.image_format
    assert meta.env == tuple(run.env)
    assert meta.entrypoint == (tuple(run.entrypoint) if run.entrypoint else None)
    assert meta.cmd == (tuple(run.cmd) if run.cmd else None)
    assert meta.workdir == run.working_dir
    assert meta.unknown_keys == ()
    document = json.loads(pulled.sidecar_path.read_text())
    assert document["labels"] == dict(run.labels)
    assert document["user"] == run.user


def check_files(pulled: PulledImage, mode: int = 0o644) -> None:
    """The three files exist with `mode`, and nothing temporary is left beside them."""
    for path in (pulled.image_path, pulled.meta_path, pulled.sidecar_path):
        assert stat.S_IMODE(path.stat().st_mode) == mode, f"{path.name} mode"
    leftovers = [p.name for p in pulled.image_path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def cache_state(cache_dir: Path) -> tuple[list[str], list[str]]:
    """(complete blob names, partial file names) in a layer cache."""
    blobs = sorted(p.name for p in (cache_dir / "sha256").iterdir())
    partials = sorted(p.name for p in (cache_dir / "partial").iterdir())
    return blobs, partials


def layer_digests(built: BuiltImage) -> list[str]:
    """Digests of the layer blobs of a single-platform built image (config left out)."""
    manifest = json.loads(built.top.data)
    return [layer["digest"] for layer in manifest["layers"]]


def replace(pulled_options: PullOptions, **changes: Any) -> PullOptions:
    return dataclasses.replace(pulled_options, **changes)


def big_image(size: int = 3 << 20, seed: int = 1) -> BuiltImage:
    """One layer holding `size` bytes that do not compress (fills a small file system)."""
    content = bytearray()
    block = seed.to_bytes(8, "little")
    while len(content) < size:
        block = hashlib.sha256(block).digest()
        content += block
    layer = build_layer([File("big.bin", bytes(content[:size]))], Compression.NONE)
    return built_image("big", single_image([layer]), Flavor.OCI)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m", *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at `path` for the block (a full or read-only disk); always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    flags = f"size={size},mode=0755" + (",ro" if read_only else "")
    proc.run(["mount", "-t", "tmpfs", "-o", flags, "shifter-test-tmpfs", str(path)])
    try:
        yield path
    finally:
        proc.run(["umount", str(path)])
