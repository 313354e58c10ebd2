"""`shifter-prep-libs` on Debian's real MPICH (libmpich-dev): the tree, the RPATHs, the
closure checked against the loader's own answer (ldd), idempotence, the dry run, and
the refusals (missing library, broken symlink, non-ELF, foreign architecture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shifter.libprep.elf import read_elf
from shifter.libprep.loader import is_libc_family

pytestmark = pytest.mark.root

PREP = Path(sys.executable).parent / "shifter-prep-libs"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
MPICH = LIBDIR / "libmpich.so.12"
RPATH = ("/opt/udiImage/modules/mpich/lib64/dep",)


def prep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PREP), *args], capture_output=True, text=True, timeout=120)


def ldd_closure(library: Path) -> set[str]:
    """The names ld.so itself loads for `library`, minus the libc family and the vdso."""
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in out.stdout.splitlines() if "=>" in line}
    return {name for name in names if not is_libc_family(name)}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    if not MPICH.exists():
        pytest.fail(f"{MPICH} is missing: run sudo scripts/install.sh (libmpich-dev)")
    return tmp_path / "mpich"


def test_prepares_mpich_as_the_loader_resolves_it(target: Path) -> None:
    result = prep("--module", "mpich", str(target), str(MPICH))
    assert result.returncode == 0, result.stderr
    lib64 = target / "lib64"
    real = MPICH.resolve().name
    assert os.readlink(lib64 / "libmpich.so.12") == real
    assert (lib64 / real).is_file() and not (lib64 / real).is_symlink()
    assert {p.name for p in (lib64 / "dep").iterdir()} == ldd_closure(MPICH)
    copied = [lib64 / real, *(lib64 / "dep").iterdir()]
    for library in copied:
        info = read_elf(str(library))
        assert (info.rpath, info.runpath) == (RPATH, ()), library
    # The copy is the host's library but for its RPATH: same dependencies, same soname.
    assert read_elf(str(lib64 / real)).needed == read_elf(str(MPICH)).needed
    assert not any(is_libc_family(p.name) for p in (lib64 / "dep").iterdir())


def test_a_second_run_changes_nothing(target: Path) -> None:
    assert prep("--module", "mpich", str(target), str(MPICH)).returncode == 0
    # Files and links, not directories (the temporary copies come and go in them).
    stamps = {p: (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in target.rglob("*")
              if not p.is_dir()}
    again = prep("--module", "mpich", str(target), str(MPICH))
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()[1:]
    assert lines and all(line.startswith("unchanged: ") for line in lines), again.stdout
    assert {p: (p.lstat().st_ino, p.lstat().st_mtime_ns) for p in target.rglob("*")
            if not p.is_dir()} == stamps


def test_a_changed_copy_is_replaced(target: Path) -> None:
    assert prep("--module", "mpich", str(target), str(MPICH)).returncode == 0
    numa = target / "lib64" / "dep" / "libnuma.so.1"
    numa.write_bytes(b"damaged")
    again = prep("--module", "mpich", str(target), str(MPICH))
    assert again.returncode == 0, again.stderr
    assert "copied: copy" in again.stdout and "libnuma.so.1" in again.stdout
    assert read_elf(str(numa)).rpath == RPATH


def test_the_dry_run_lists_and_touches_nothing(target: Path) -> None:
    result = prep("--module", "mpich", "--dry-run", "--mpich-abi-hook", str(target), str(MPICH))
    assert result.returncode == 0, result.stderr
    assert not target.exists()
    assert f"link {target}/lib64/libmpich.so.12 -> {MPICH.resolve().name}" in result.stdout
    for name in ldd_closure(MPICH):
        assert f"{target}/lib64/dep/{name}" in result.stdout
    assert f"write {target}/bin/init.sh" in result.stdout


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("shifter-prep-libs: "), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_a_missing_library(target: Path, tmp_path: Path) -> None:
    refused(prep("--module", "mpich", str(target), str(tmp_path / "libnothere.so")),
            "libnothere.so does not exist")  # fmt: skip
    assert not target.exists()


def test_a_broken_symlink(target: Path, tmp_path: Path) -> None:
    link = tmp_path / "libgone.so.1"
    link.symlink_to("libgone.so.1.0")
    refused(prep("--module", "mpich", str(target), str(link)),
            "is a broken symlink (to libgone.so.1.0)")  # fmt: skip


def test_a_non_elf_file(target: Path, tmp_path: Path) -> None:
    script = tmp_path / "libfake.so"
    script.write_text("#!/bin/sh\n")
    refused(prep("--module", "mpich", str(target), str(script)),
            f"{script} is not an ELF file", "hint: give shared libraries")  # fmt: skip


@pytest.mark.parametrize(("offset", "value", "described"), [
    (18, b"\xb7\x00", "64-bit aarch64"),  # e_machine EM_AARCH64
    (4, b"\x01", "32-bit x86-64"),  # EI_CLASS ELFCLASS32
])  # fmt: skip
def test_a_foreign_architecture(
    target: Path, tmp_path: Path, offset: int, value: bytes, described: str
) -> None:
    foreign = tmp_path / "libnuma.so.1"
    shutil.copyfile(LIBDIR / "libnuma.so.1", foreign)
    with open(foreign, "r+b") as file:
        file.seek(offset)
        file.write(value)
    refused(prep("--module", "mpich", str(target), str(foreign)),
            f"is a {described} library; this host runs 64-bit x86-64 programs")  # fmt: skip


def test_a_missing_dependency(target: Path, tmp_path: Path) -> None:
    # A real library whose DT_NEEDED names one that exists nowhere.
    library = tmp_path / "libneedy.so"
    shutil.copyfile(LIBDIR / "libnuma.so.1", library)
    subprocess.run(["patchelf", "--add-needed", "libabsent.so.7", str(library)], check=True)
    refused(prep("--module", "mpich", str(target), str(library)),
            "libabsent.so.7, needed by", "is nowhere the loader would look")  # fmt: skip


def test_the_mpich_abi_hook_is_written(target: Path) -> None:
    result = prep("--module", "mpich", "--mpich-abi-hook", str(target), str(MPICH))
    assert result.returncode == 0, result.stderr
    hook = target / "bin" / "init.sh"
    assert hook.read_text().startswith("#!/bin/sh\n")
    assert f"written: {hook}" in result.stdout
