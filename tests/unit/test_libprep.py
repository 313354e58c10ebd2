"""shifter-prep-libs' pure parts: the ELF header checks, ldconfig -p, module names."""

from __future__ import annotations

import struct

import pytest

from shifter.libprep.elf import ElfError, describe_abi, parse_elf
from shifter.libprep.loader import expand_origin, is_libc_family, parse_ldconfig
from shifter.libprep.prep import PrepError, check_module_name, module_rpath

pytestmark = pytest.mark.unit


def test_a_script_is_not_elf() -> None:
    with pytest.raises(ElfError, match=r"^run\.sh is not an ELF file$"):
        parse_elf(b"#!/bin/sh\necho hi\n", "run.sh")


def test_a_truncated_header_is_refused() -> None:
    with pytest.raises(ElfError, match="truncated"):
        parse_elf(b"\x7fELF\x02\x01\x01" + b"\0" * 9, "short.so")


def test_an_object_file_is_not_a_library() -> None:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HH", header, 16, 1, 62)  # ET_REL
    with pytest.raises(ElfError, match="not a shared library"):
        parse_elf(bytes(header), "x.o")


def test_abi_descriptions() -> None:
    assert describe_abi((2, 62)) == "64-bit x86-64"
    assert describe_abi((1, 3)) == "32-bit i386"
    assert describe_abi((2, 999)) == "64-bit machine 999"


def test_ldconfig_output_keeps_every_path_in_order() -> None:
    text = (
        "3 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\n"
        "\tlibz.so.1 (libc6) => /lib/i386-linux-gnu/libz.so.1\n"
        "\tlibnuma.so.1 (libc6,x86-64, OS ABI: Linux 2.6.0) => /usr/lib/libnuma.so.1\n"
    )
    assert parse_ldconfig(text) == {
        "libz.so.1": ("/lib/x86_64-linux-gnu/libz.so.1", "/lib/i386-linux-gnu/libz.so.1"),
        "libnuma.so.1": ("/usr/lib/libnuma.so.1",),
    }


def test_origin_is_expanded_in_both_spellings() -> None:
    assert expand_origin("$ORIGIN/../lib:${ORIGIN}/x", "/a/b") == "/a/b/../lib:/a/b/x"


@pytest.mark.parametrize("name", ["libc.so.6", "ld-linux-x86-64.so.2", "libm.so.6",
                                  "libpthread.so.0", "libnss_files.so.2"])
def test_the_libc_family_is_left_to_the_image(name: str) -> None:
    assert is_libc_family(name)


@pytest.mark.parametrize("name", ["libmpich.so.12", "libcrypt.so.1", "libmunge.so.2"])
def test_other_libraries_are_not_libc(name: str) -> None:
    assert not is_libc_family(name)


@pytest.mark.parametrize("name", ["none", "NONE", "a/b", "", "mp ich", "x_y"])
def test_bad_module_names(name: str) -> None:
    with pytest.raises(PrepError, match="is not a module name"):
        check_module_name(name)


def test_rpath_of_a_module() -> None:
    check_module_name("cray-mpich.8")
    assert module_rpath("mpich") == "/opt/udiImage/modules/mpich/lib64/dep"
