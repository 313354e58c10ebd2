"""What the dynamic loader reads from a shared library: its class, byte order, machine,
DT_NEEDED, DT_RPATH, DT_RUNPATH and DT_SONAME.

The dynamic section is found the way the loader finds it, through the program headers
(PT_DYNAMIC), and its string table's address is turned into a file offset through the
PT_LOAD segments: section headers are optional in a shared object (and stripped tools drop
them), program headers are not. Pure: bytes in, an `ElfInfo` or `ElfError` out.
"""

from __future__ import annotations

import struct

from shifter.errors import ShifterError

MAGIC = b"\x7fELF"
CLASS_32, CLASS_64 = 1, 2
DATA_LSB, DATA_MSB = 1, 2
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29
ET_EXEC, ET_DYN = 2, 3

# e_machine values of the architectures a site is likely to run (elf.h); others show as
# their number.
MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 40: "arm", 62: "x86-64",
            183: "aarch64", 243: "riscv"}  # fmt: skip
# os.uname().machine to (class, e_machine): the host's own libraries.
HOST_MACHINES = {
    "x86_64": (CLASS_64, 62),
    "aarch64": (CLASS_64, 183),
    "ppc64le": (CLASS_64, 21),
    "riscv64": (CLASS_64, 243),
    "i686": (CLASS_32, 3),
}


class ElfError(ShifterError):
    """A file is not an ELF shared object the loader could use."""


class ElfInfo:
    """The loader-relevant facts of one ELF file. (Plain class.)"""

    __slots__ = ("elf_class", "machine", "needed", "rpath", "runpath", "soname")

    def __init__(
        self,
        elf_class: int,
        machine: int,
        needed: tuple[str, ...],
        rpath: tuple[str, ...],
        runpath: tuple[str, ...],
        soname: str | None,
    ) -> None:
        self.elf_class = elf_class  # CLASS_32 or CLASS_64
        self.machine = machine  # e_machine
        self.needed = needed  # DT_NEEDED, in order
        self.rpath = rpath  # DT_RPATH entries (unexpanded: $ORIGIN stays)
        self.runpath = runpath  # DT_RUNPATH entries
        self.soname = soname

    @property
    def abi(self) -> tuple[int, int]:
        return (self.elf_class, self.machine)


def describe_abi(abi: tuple[int, int]) -> str:
    elf_class, machine = abi
    bits = "64" if elf_class == CLASS_64 else "32"
    return f"{bits}-bit {MACHINES.get(machine, f'machine {machine}')}"


def parse_elf(data: bytes, name: str) -> ElfInfo:
    """Parse `data` (the whole file); `name` is used in messages."""
    if data[:4] != MAGIC:
        raise ElfError(f"{name} is not an ELF file", hint="give shared libraries (.so files)")
    if len(data) < 0x34 or data[4] not in (CLASS_32, CLASS_64) or data[5] not in (1, 2):
        raise ElfError(f"{name}: truncated or unknown ELF header")
    is64 = data[4] == CLASS_64
    order = "<" if data[5] == DATA_LSB else ">"
    try:
        return _parse(data, name, is64, order)
    except struct.error:
        raise ElfError(f"{name}: truncated ELF file") from None


def _parse(data: bytes, name: str, is64: bool, order: str) -> ElfInfo:
    if is64:
        e_type, e_machine = struct.unpack_from(order + "HH", data, 16)
        (e_phoff,) = struct.unpack_from(order + "Q", data, 32)
        e_phentsize, e_phnum = struct.unpack_from(order + "HH", data, 54)
        phdr = order + "IIQQQQQQ"  # type flags offset vaddr paddr filesz memsz align
        dyn = order + "qQ"
    else:
        e_type, e_machine = struct.unpack_from(order + "HH", data, 16)
        (e_phoff,) = struct.unpack_from(order + "I", data, 28)
        e_phentsize, e_phnum = struct.unpack_from(order + "HH", data, 42)
        phdr = order + "IIIIIIII"  # type offset vaddr paddr filesz memsz flags align
        dyn = order + "iI"
    if e_type not in (ET_DYN, ET_EXEC):
        raise ElfError(f"{name} is an ELF file but not a shared library or executable")
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dynamic: tuple[int, int] | None = None  # (offset, size)
    for index in range(e_phnum):
        fields = struct.unpack_from(phdr, data, e_phoff + index * e_phentsize)
        if is64:
            p_type, _, p_offset, p_vaddr, _, p_filesz = fields[:6]
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = fields[:5]
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    entries: list[tuple[int, int]] = []
    if dynamic is not None:
        step = struct.calcsize(dyn)
        offset, size = dynamic
        for position in range(offset, offset + size - step + 1, step):
            tag, value = struct.unpack_from(dyn, data, position)
            if tag == DT_NULL:
                break
            entries.append((tag, value))
    strtab = next((value for tag, value in entries if tag == DT_STRTAB), None)

    def string(value: int) -> str:
        if strtab is None:
            raise ElfError(f"{name}: dynamic section without a string table")
        start = _file_offset(loads, strtab, name) + value
        end = data.index(b"\0", start)
        return data[start:end].decode("utf-8", "surrogateescape")

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    sonames = [string(v) for t, v in entries if t == DT_SONAME]
    return ElfInfo(
        CLASS_64 if is64 else CLASS_32,
        e_machine,
        tuple(string(v) for t, v in entries if t == DT_NEEDED),
        paths(DT_RPATH),
        paths(DT_RUNPATH),
        sonames[0] if sonames else None,
    )


def _file_offset(loads: list[tuple[int, int, int]], address: int, name: str) -> int:
    for vaddr, filesz, offset in loads:
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    raise ElfError(f"{name}: the dynamic string table lies outside every loaded segment")


def read_elf(path: str) -> ElfInfo:
    """`parse_elf` of the file at `path` (symlinks followed)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as error:
        raise ElfError(f"cannot read {path}: {error.strerror}") from None
    return parse_elf(data, path)


def read_abi(path: str) -> tuple[int, int] | None:
    """(class, machine) from the first 20 bytes, or None when `path` is not ELF: cheap
    enough to try every candidate directory, as the loader does."""
    try:
        with open(path, "rb") as file:
            head = file.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != MAGIC or head[5] not in (1, 2):
        return None
    order = "<" if head[5] == DATA_LSB else ">"
    (machine,) = struct.unpack_from(order + "H", head, 18)
    return (head[4], machine)
