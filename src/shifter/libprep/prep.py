"""A module's library tree (the seed's `prep_cray_mpi_libs.py`, generalised): the given
libraries and their symlinks in `TARGET/lib64`, their dependency closure in
`TARGET/lib64/dep`, and on every copied library a DT_RPATH of
`/opt/udiImage/modules/<name>/lib64/dep`.

DT_RPATH, not DT_RUNPATH: ld.so uses a RUNPATH only for the object's own DT_NEEDED, while
an RPATH also serves the libraries those pull in, so the whole closure comes from `dep`.
Only `lib64` goes on the container's LD_LIBRARY_PATH; the dependencies stay out of the
application's sight (no bleed-through of, say, the site's libhwloc into the image's tools).

First a plan (what would be copied and linked, checked), then the apply: each file is
copied to a temporary name, patched, and renamed over the old one only when it differs,
so a second run changes nothing and a failed run leaves no half-patched library behind.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence

from shifter.errors import ShifterError
from shifter.libprep.elf import (
    HOST_MACHINES,
    ElfError,
    ElfInfo,
    describe_abi,
    read_abi,
    read_elf,
)
from shifter.libprep.loader import Resolver

MODULE_ROOT = "/opt/udiImage/modules"
MODULE_NAME = re.compile(r"[A-Za-z0-9.+-]+")  # udiRoot.conf's rule for module names
TEMP_SUFFIX = ".shifter-prep"


class PrepError(ShifterError):
    """The library tree cannot be prepared as asked."""


class Step:
    """One entry of the tree: a library copied (`source` a file) or a symlink made
    (`source` its target name). `dest` is relative to TARGET. (Plain class.)"""

    __slots__ = ("dest", "kind", "needed_by", "source")

    def __init__(self, kind: str, dest: str, source: str, needed_by: str | None = None) -> None:
        self.kind = kind  # "copy" or "link"
        self.dest = dest
        self.source = source
        self.needed_by = needed_by

    def describe(self, target: str) -> str:
        dest = os.path.join(target, self.dest)
        if self.kind == "link":
            return f"link {dest} -> {self.source}"
        why = f" (needed by {os.path.basename(self.needed_by)})" if self.needed_by else ""
        return f"copy {self.source} -> {dest}{why}"


def module_rpath(name: str) -> str:
    return f"{MODULE_ROOT}/{name}/lib64/dep"


def check_module_name(name: str) -> None:
    if not MODULE_NAME.fullmatch(name) or name.lower() == "none":
        raise PrepError(
            f"--module {name!r} is not a module name",
            hint="letters, digits, '.', '+' and '-', as in udiRoot.conf; not 'none'",
        )


def host_abi() -> tuple[int, int]:
    machine = os.uname().machine
    if machine not in HOST_MACHINES:
        raise PrepError(f"this host's architecture {machine} is not supported")
    return HOST_MACHINES[machine]


def _library_chain(path: str) -> tuple[list[Step], str]:
    """The symlink hops from `path` to its file, as lib64 entries, and the file."""
    if not os.path.lexists(path):
        raise PrepError(f"library {path} does not exist", hint="give existing files")
    steps: list[Step] = []
    current = path
    for _ in range(40):  # ELOOP's bound in the kernel
        if not os.path.islink(current):
            break
        target = os.path.join(os.path.dirname(current), os.readlink(current))
        if not os.path.lexists(target):
            raise PrepError(
                f"library {path}: {current} is a broken symlink (to {os.readlink(current)})",
                hint="fix or leave out the link",
            )
        steps.append(Step("link", f"lib64/{os.path.basename(current)}",
                          os.path.basename(target)))  # fmt: skip
        current = target
    else:
        raise PrepError(f"library {path}: too many levels of symlinks")
    if not os.path.isfile(current):
        raise PrepError(f"library {path}: {current} is not a regular file")
    return steps, current


def plan(
    name: str, libraries: Sequence[str], *, resolver: Resolver | None = None,
    abi: tuple[int, int] | None = None,
) -> list[Step]:  # fmt: skip
    """The steps that build the tree; `PrepError`/`ElfError` for unusable input."""
    check_module_name(name)
    if not libraries:
        raise PrepError("no libraries given", hint="name the libraries to prepare")
    abi = abi or host_abi()
    steps: dict[str, Step] = {}
    roots: list[tuple[str, ElfInfo]] = []
    for library in libraries:
        links, file = _library_chain(library)
        # The header's class and machine first: a foreign library's dynamic section may
        # not even parse with this host's layout.
        found = read_abi(file)
        if found is not None and found != abi:
            raise ElfError(
                f"{library} is a {describe_abi(found)} library; this host runs "
                f"{describe_abi(abi)} programs",
                hint="give libraries built for this machine",
            )
        info = read_elf(file)
        roots.append((file, info))
        for step in [*links, Step("copy", f"lib64/{os.path.basename(file)}", file)]:
            _add(steps, step)
    resolver = resolver or Resolver(abi)
    for dependency in resolver.closure(roots):
        dest = f"lib64/dep/{dependency.name}"
        _add(steps, Step("copy", dest, os.path.realpath(dependency.path), dependency.needed_by))
    return list(steps.values())


def _add(steps: dict[str, Step], step: Step) -> None:
    earlier = steps.get(step.dest)
    if earlier is None:
        steps[step.dest] = step
    elif (earlier.kind, earlier.source) != (step.kind, step.source):
        raise PrepError(
            f"two libraries want {step.dest}: {earlier.source} and {step.source}",
            hint="give only one of them",
        )


def apply(name: str, target: str, steps: Sequence[Step]) -> list[tuple[str, Step]]:
    """Make the tree; returns each step with "copied", "linked" or "unchanged"."""
    from shifter import proc

    rpath = module_rpath(name)
    os.makedirs(os.path.join(target, "lib64", "dep"), mode=0o755, exist_ok=True)
    results: list[tuple[str, Step]] = []
    for step in steps:
        dest = os.path.join(target, step.dest)
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise PrepError(f"{dest} is a directory", hint="remove it or choose another TARGET")
        temp = dest + TEMP_SUFFIX
        if os.path.lexists(temp):
            os.unlink(temp)  # a leftover of an interrupted run
        if step.kind == "link":
            if os.path.islink(dest) and os.readlink(dest) == step.source:
                results.append(("unchanged", step))
                continue
            os.symlink(step.source, temp)
            os.replace(temp, dest)
            results.append(("linked", step))
            continue
        try:
            shutil.copyfile(step.source, temp)
            os.chmod(temp, 0o755)
            proc.run(["patchelf", "--force-rpath", "--set-rpath", rpath, temp])
            if _same_file_content(temp, dest):
                os.unlink(temp)
                results.append(("unchanged", step))
                continue
            os.replace(temp, dest)
        except BaseException:
            if os.path.lexists(temp):
                os.unlink(temp)
            raise
        results.append(("copied", step))
    return results


def _same_file_content(new: str, old: str) -> bool:
    if os.path.islink(old) or not os.path.isfile(old):
        return False
    if os.path.getsize(new) != os.path.getsize(old):
        return False
    with open(new, "rb") as a, open(old, "rb") as b:
        while True:
            chunk = a.read(1 << 20)
            if chunk != b.read(1 << 20):
                return False
            if not chunk:
                return True
