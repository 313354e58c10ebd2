"""The benchmark's input images: their layers, built once and cached, and pushing them.

Two inputs:

- `debian`: a real Debian bookworm minbase root filesystem made by `debootstrap` from the
  machine's Debian mirror, packed as one gzip layer (what `debian:bookworm` looks like: no
  apt lists, no downloaded packages, empty /dev, /proc and /sys).
- `synthetic`: 50,000 small files of deterministic text in three layers (a tar bomb of the
  ordinary kind: metadata-heavy, little data).

Both are cached under the bench cache directory (`rootfs/` holds the debootstrap tree,
`layers/` the gzip blobs with a JSON index written last), so reruns skip the slow part.
Layers are gzip level 6 with a zero header time, as Docker and most registries' images are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from shifter.errors import ShifterError
from shifter.ocibuild.image import Flavor, RunConfig, built_image, single_image
from shifter.ocibuild.layer import Compression, Dir, Entry, File, Layer, tar_bytes
from shifter.ocibuild.push import push_image
from shifter.proc import run

CACHE_VERSION = "v1"  # bump when the layer recipes change: old caches are then ignored
GZIP_LEVEL = 6
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# Left out of the layer, as in Docker's debian images: the contents of these directories.
EMPTIED_DIRS = ("dev", "proc", "sys", "run", "var/lib/apt/lists", "tmp")
DROPPED_SUFFIXES = (("var/cache/apt/archives/", ".deb"), ("var/cache/apt/", ".bin"))

IMAGE_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SYNTHETIC_FILES = 50_000
SYNTHETIC_LAYERS = (20_000, 20_000, 10_000)  # files per layer, bottom first
FILES_PER_DIR = 250
SYNTHETIC_SEED = 20_250_101
WORDS = (
    "shifter", "image", "layer", "squashfs", "registry", "manifest", "blob", "digest",
    "gateway", "runtime", "mount", "volume", "user", "group", "module", "slurm", "node", "rank",
    "job", "step", "buffer", "cache", "config", "parse", "value", "return", "import", "class",
    "def", "self", "none", "true", "false", "error", "warning", "info", "debug", "path", "file",
)


@dataclass(frozen=True)
class LayerFiles:
    """Cached gzip layer blobs, bottom first, with the digests a manifest and config need."""

    paths: tuple[Path, ...]
    digests: tuple[str, ...]
    diff_ids: tuple[str, ...]


@dataclass(frozen=True)
class BenchImage:
    """One input: its cached gzip layers (bottom first) and where it is pushed."""

    key: str  # short name used in the table: "debian", "synthetic"
    description: str
    repository: str
    tag: str
    layers: LayerFiles

    def reference(self, netloc: str) -> str:
        return f"{netloc}/{self.repository}:{self.tag}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_layers(directory: Path, key: str, tars: Iterator[bytes]) -> LayerFiles:
    """Gzip each tar into `directory/<key>-N.tar.gz`, then write the index (last)."""
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for number, tar in enumerate(tars, start=1):
        blob = gzip.compress(tar, compresslevel=GZIP_LEVEL, mtime=0)
        path = directory / f"{key}-{number}.tar.gz"
        partial = path.with_suffix(".partial")
        partial.write_bytes(blob)
        partial.rename(path)
        records.append({"file": path.name, "digest": _sha256(blob), "diff_id": _sha256(tar)})
    (directory / f"{key}.json").write_text(json.dumps(records, indent=1) + "\n")
    found = _read_index(directory, key)
    assert found is not None, "the index just written lists the layers just written"
    return found


def _read_index(directory: Path, key: str) -> LayerFiles | None:
    index = directory / f"{key}.json"
    if not index.exists():
        return None
    records = json.loads(index.read_text())
    paths = tuple(directory / record["file"] for record in records)
    if not all(path.exists() for path in paths):
        return None
    return LayerFiles(
        paths,
        tuple(record["digest"] for record in records),
        tuple(record["diff_id"] for record in records),
    )


def _cached_layers(cache: Path, key: str, make_tars: Callable[[], Iterator[bytes]]) -> LayerFiles:
    directory = cache / "layers"
    found = _read_index(directory, f"{key}-{CACHE_VERSION}")
    if found is not None:
        return found
    print(f"bench: building the {key} layers (cached in {directory})", flush=True)
    return _write_layers(directory, f"{key}-{CACHE_VERSION}", make_tars())


def debian_mirror(sources: Path = SOURCES_FILE) -> str:
    """The first `URIs:` of the deb822 stanza that lists the bookworm suite."""
    try:
        text = sources.read_text()
    except OSError:
        return FALLBACK_MIRROR
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            name, sep, value = line.partition(":")
            if sep and not line.startswith(("#", " ")):
                fields[name.strip()] = value.strip()
        if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
            return fields["URIs"].split()[0]
    return FALLBACK_MIRROR


def debootstrap_rootfs(cache: Path) -> Path:
    """`debootstrap --variant=minbase bookworm`, once: later runs reuse the tree."""
    rootfs = cache / "rootfs" / f"{SUITE}-minbase"
    if rootfs.is_dir():
        return rootfs
    partial = rootfs.with_name(rootfs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    print(f"bench: debootstrap --variant=minbase {SUITE} from {mirror} (once)", flush=True)
    try:
        run(["debootstrap", "--variant=minbase", SUITE, partial, mirror], timeout=1800)
    except ShifterError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(rootfs)
    return rootfs


def _keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    name = info.name
    if any(name.startswith(f"{d}/") for d in EMPTIED_DIRS):
        return None
    if any(name.startswith(p) and name.endswith(s) for p, s in DROPPED_SUFFIXES):
        return None
    info.uname = info.gname = ""
    return info


def rootfs_tar(rootfs: Path) -> bytes:
    """The tree as one PAX tar, sorted, names relative (`etc/passwd`), numeric owners."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for child in sorted(rootfs.iterdir()):
            archive.add(child, arcname=child.name, recursive=True, filter=_keep)
    return buffer.getvalue()


def debian_image(cache: Path) -> BenchImage:
    def tars() -> Iterator[bytes]:
        yield rootfs_tar(debootstrap_rootfs(cache))

    return BenchImage(
        "debian",
        f"Debian {SUITE} minbase (debootstrap), 1 gzip layer",
        "bench/debian",
        f"{SUITE}-minbase",
        _cached_layers(cache, f"{SUITE}-minbase", tars),
    )


def _text_pool(rng: random.Random, size: int = 1 << 16) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word + ("\n" if rng.random() < 0.1 else " "))
        length += len(words[-1]) + 1
    return "".join(words)


def synthetic_entries(
    counts: tuple[int, ...] = SYNTHETIC_LAYERS, seed: int = SYNTHETIC_SEED
) -> Iterator[list[Entry]]:
    """Per layer: directories of `FILES_PER_DIR` files of 32 B - 4 KiB of pseudo-text."""
    rng = random.Random(seed)
    pool = _text_pool(rng)
    number = 0
    for layer, count in enumerate(counts, start=1):
        entries: list[Entry] = [Dir("data"), Dir(f"data/layer{layer}")]
        for _ in range(count):
            if number % FILES_PER_DIR == 0:
                directory = f"data/layer{layer}/d{number // FILES_PER_DIR:04d}"
                entries.append(Dir(directory))
            size = rng.randrange(32, 4096)
            start = rng.randrange(0, len(pool) - size)
            body = f"file {number}\n{pool[start : start + size]}".encode()
            entries.append(File(f"{directory}/f{number:06d}.txt", body))
            number += 1
        yield entries


def synthetic_image(cache: Path) -> BenchImage:
    def tars() -> Iterator[bytes]:
        for entries in synthetic_entries():
            yield tar_bytes(entries)

    return BenchImage(
        "synthetic",
        f"{SYNTHETIC_FILES:,} small files (32 B - 4 KiB), {len(SYNTHETIC_LAYERS)} gzip layers",
        "bench/synthetic",
        "50k",
        _cached_layers(cache, "synthetic-50k", tars),
    )


IMAGES: dict[str, Callable[[Path], BenchImage]] = {
    "debian": debian_image,
    "synthetic": synthetic_image,
}


def push(image: BenchImage, registry_url: str, ca_file: Path | None) -> str:
    """Push `image` as an OCI image; return its manifest digest."""
    files = image.layers
    layers = [
        Layer(path.read_bytes(), Compression.GZIP, diff_id, digest, comment=path.name)
        for path, digest, diff_id in zip(files.paths, files.digests, files.diff_ids, strict=True)
    ]
    run_config = RunConfig(env=(IMAGE_PATH,), cmd=("/bin/sh",))
    built = built_image(image.key, single_image(layers, run=run_config), Flavor.OCI)
    return push_image(built, registry_url, image.repository, image.tag, ca_file=ca_file)


def extract_tree(image: BenchImage, target: Path) -> Path:
    """The flattened tree (layers extracted bottom first): the floor's input. Untimed."""
    target.mkdir(parents=True)
    for layer in image.layers.paths:
        run(["tar", "-xzf", layer, "-C", target, "--numeric-owner"])
    return target
