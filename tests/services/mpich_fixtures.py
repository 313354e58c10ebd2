"""An MPI image and a prepared mpich module for the runtime's MPI tests.

The image is built with `shifter.ocibuild` (a layer: busybox, an MPI hello/allreduce program
compiled with Debian's mpicc, and the program's whole library closure from the host, its
own libmpich and libc included) and flattened to squashfs with `shifter.convert`, then
named in the imagePath by an `id:` .meta. The module is the host's MPICH prepared with
`shifter-prep-libs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.convert.engine import build_image
from shifter.image.meta import format_meta
from shifter.ocibuild.baseimage import base_entries, read_busybox
from shifter.ocibuild.layer import Entry, File, Symlink, tar_bytes, with_parents

DATA = Path(__file__).resolve().parents[1] / "root" / "data"
PREP = Path(sys.executable).parent / "shifter-prep-libs"
MPICH = Path("/usr/lib/x86_64-linux-gnu/libmpich.so.12")
PROGRAM = "/app/hello"
# UCX's CMA transport, a plugin no DT_NEEDED names: passed to shifter-prep-libs like a
# library, and UCX pointed at the module for it (UCX_MODULE_DIR), as docs/mpi.md has it.
UCX_CMA = "/usr/lib/x86_64-linux-gnu/ucx/libuct_cma.so.0"


@contextlib.contextmanager
def shared_temp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory the test users can reach (pytest's tmp_path is 0700 root's),
    removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        base.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base)


def compile_hello(out: Path) -> Path:
    """The MPI test program, built with Debian's mpicc (libmpich-dev)."""
    binary = out / "hello"
    try:
        subprocess.run(["mpicc", "-O1", "-o", str(binary), str(DATA / "mpi_hello.c")],
                       check=True, capture_output=True)  # fmt: skip
    except FileNotFoundError:
        pytest.fail("mpicc is missing: run sudo scripts/install.sh (libmpich-dev)")
    return binary


def library_closure(binary: Path) -> list[Path]:
    """The paths ld.so loads for `binary` (ldd), as the image holds them."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in out.splitlines():
        path = next((word for word in line.split() if word.startswith("/")), None)
        if path is not None:
            paths.append(Path(path))
    return paths


def image_entries(binary: Path, *, program: str = PROGRAM) -> list[Entry]:
    """Busybox, `binary` at `program`, and the libraries it loads at their host paths."""
    entries: list[Entry] = [File(program.lstrip("/"), binary.read_bytes(), mode=0o755)]
    for library in library_closure(binary):
        name = str(library).lstrip("/")
        real = library.resolve()
        if real != library and real.parent == library.parent:
            entries.append(Symlink(name, real.name))
            entries.append(File(str(real).lstrip("/"), real.read_bytes(), mode=0o755))
        else:
            entries.append(File(name, real.read_bytes(), mode=0o755))
    return with_parents([*base_entries(read_busybox()), *entries])


def build_squashfs_image(entries: list[Entry], image_path: Path, work: Path, tag: str) -> str:
    """Flatten `entries` into `<image_path>/<id>.squashfs` with its .meta; returns the id."""
    work.mkdir(parents=True, exist_ok=True)
    layer = work / f"{tag}.tar"
    layer.write_bytes(tar_bytes(entries))
    image_id = hashlib.sha256(f"shifter-mpi-test-{tag}".encode()).hexdigest()
    result = build_image([layer], image_path, image_id)
    result.path.chmod(0o644)
    text, _ = format_meta("squashfs", env=["PATH=/app:/usr/bin:/bin"], workdir="/")
    (image_path / f"{image_id}.meta").write_text(text)
    return image_id


def prepare_module(target: Path, *plugins: str) -> Path:
    """The host's MPICH as the `mpich` module tree, with the ABI userhook (and `plugins`,
    libraries nothing links to, such as UCX's transports, copied the same way)."""
    subprocess.run([str(PREP), "--module", "mpich", "--mpich-abi-hook", str(target), str(MPICH),
                    *plugins], check=True, capture_output=True)  # fmt: skip
    for path in (target, *target.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o755)
    return target


class MpiFiles:
    """The session's MPI images (in their own imagePath) and the prepared module."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.image_path = base / "images"
        self.module = base / "module"
        self.ids: dict[str, str] = {}

    def ref(self, name: str) -> str:
        return f"id:{self.ids[name]}"

    def module_lines(self) -> tuple[str, ...]:
        """The seed's mpich module, as docs/mpi.md tells a site to write it."""
        return (
            f"module_mpich_copyPath={self.module}",
            "module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64",
            "module_mpich_siteEnv=SHIFTER_MODULE_MPICH=1 "
            "UCX_MODULE_DIR=/opt/udiImage/modules/mpich/lib64",
            "module_mpich_userhook=/opt/udiImage/modules/mpich/bin/init.sh",
            "defaultModules=mpich",
        )


def make_mpi_files(base: Path) -> MpiFiles:
    """`hello` (MPICH ABI), `openmpi` (an Open MPI soname: libmpi.so.40) and `nompi`."""
    files = MpiFiles(base)
    files.image_path.mkdir(mode=0o755)
    work = base / "work"
    work.mkdir()
    binary = compile_hello(work)
    foreign = (File("usr/lib/x86_64-linux-gnu/libmpi.so.40", b"an Open MPI library\n"),)
    for name, entries in (
        ("hello", image_entries(binary)),
        ("openmpi", with_parents([*base_entries(read_busybox()), *foreign])),
        ("nompi", base_entries(read_busybox())),
    ):
        files.ids[name] = build_squashfs_image(entries, files.image_path, work, name)
    prepare_module(files.module, UCX_CMA)
    return files
