"""Where the dynamic loader (ld.so) would find each DT_NEEDED library, without running it
(`ldd` runs the libraries' loader, and fails or lies for a foreign architecture).

For a name without a slash, ld.so tries, in order: the DT_RPATH of the object that needs it
and of the objects that loaded that one (only when the needing object has no DT_RUNPATH),
LD_LIBRARY_PATH (ignored here: the closure must not depend on the admin's shell), the
object's own DT_RUNPATH, the ld.so.cache (`ldconfig -p`), then the default directories.
A candidate of another class or machine is skipped, as ld.so skips it. `$ORIGIN` in a path
is the directory of the object that carries it.

The libc family (glibc's own libraries and the loader) is left out: every image brings its
own, matching its own C library, and mixing two glibcs in one process does not work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from shifter.libprep.elf import ElfError, ElfInfo, read_abi, read_elf

# glibc's libraries: the image's own are used (its loader, its libc).
LIBC_FAMILY = (
    "ld-linux", "ld64.so", "ld.so", "libc.so", "libm.so", "libmvec.so", "libpthread.so",
    "libdl.so", "librt.so", "libutil.so", "libresolv.so", "libanl.so", "libnsl.so",
    "libBrokenLocale.so", "libthread_db.so", "libnss_", "libmemusage.so", "libpcprofile.so",
    "libc_malloc_debug.so",
)  # fmt: skip
DEFAULT_DIRS = {
    # Debian's multiarch directories come first in its loader's built-in list.
    (2, 62): ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"),
    (2, 183): ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64"),
    (2, 21): ("/lib/powerpc64le-linux-gnu", "/usr/lib/powerpc64le-linux-gnu", "/lib64",
              "/usr/lib64"),
    (1, 3): ("/lib/i386-linux-gnu", "/usr/lib/i386-linux-gnu", "/lib", "/usr/lib"),
}  # fmt: skip
FALLBACK_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib")


class MissingLibraryError(ElfError):
    """A DT_NEEDED library is nowhere the loader would look."""


def is_libc_family(name: str) -> bool:
    return name.startswith(LIBC_FAMILY)


def parse_ldconfig(text: str) -> dict[str, tuple[str, ...]]:
    """`ldconfig -p`'s output: each library name and its paths, in the cache's order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        left, arrow, path = line.partition(" => ")
        if not arrow or not line.startswith(("\t", " ")):
            continue  # the "N libs found in cache" header
        name = left.strip().split(" ", 1)[0]
        found.setdefault(name, []).append(path.strip())
    return {name: tuple(paths) for name, paths in found.items()}


def system_cache() -> dict[str, tuple[str, ...]]:
    """The host's ld.so.cache, through `ldconfig -p`."""
    from shifter import proc

    ldconfig = "/sbin/ldconfig" if os.path.exists("/sbin/ldconfig") else "ldconfig"
    result = proc.run([ldconfig, "-p"])
    return parse_ldconfig(result.stdout.decode("utf-8", "surrogateescape"))


def expand_origin(path: str, origin_dir: str) -> str:
    for token in ("${ORIGIN}", "$ORIGIN"):
        path = path.replace(token, origin_dir)
    return path


class Dependency:
    """One library of the closure: its DT_NEEDED name, where it was found, who needs it."""

    __slots__ = ("info", "name", "needed_by", "path")

    def __init__(self, name: str, path: str, info: ElfInfo, needed_by: str) -> None:
        self.name = name
        self.path = path
        self.info = info
        self.needed_by = needed_by


class Resolver:
    """Finds libraries for one ABI (class, machine) as ld.so would."""

    def __init__(
        self,
        abi: tuple[int, int],
        cache: Callable[[], dict[str, tuple[str, ...]]] = system_cache,
        default_dirs: Sequence[str] | None = None,
    ) -> None:
        self.abi = abi
        self._cache_loader = cache
        self._cache: dict[str, tuple[str, ...]] | None = None
        self.default_dirs = tuple(default_dirs or DEFAULT_DIRS.get(abi, FALLBACK_DIRS))

    def cache(self) -> dict[str, tuple[str, ...]]:
        if self._cache is None:
            self._cache = self._cache_loader()
        return self._cache

    def find(
        self, name: str, needer: str, info: ElfInfo, inherited_rpath: Sequence[str]
    ) -> str | None:
        """The path ld.so would load for `name` needed by `needer` (an `info` object),
        `inherited_rpath`: the DT_RPATHs of the objects that loaded `needer`, expanded."""
        if "/" in name:
            return name if read_abi(name) == self.abi else None
        origin = os.path.dirname(os.path.realpath(needer))
        own_rpath = [expand_origin(p, origin) for p in info.rpath]
        directories: list[str] = []
        if not info.runpath:
            directories += [*own_rpath, *inherited_rpath]
        directories += [expand_origin(p, origin) for p in info.runpath]
        candidates = [os.path.join(d, name) for d in directories]
        candidates += list(self.cache().get(name, ()))
        candidates += [os.path.join(d, name) for d in self.default_dirs]
        for candidate in candidates:
            if read_abi(candidate) == self.abi:
                return candidate
        return None

    def closure(self, roots: Sequence[tuple[str, ElfInfo]]) -> list[Dependency]:
        """Every library the `roots` (path, info) need, directly or not, breadth first as
        ld.so loads them, minus the libc family and minus the roots themselves."""
        provided = {os.path.basename(path) for path, _ in roots}
        provided |= {info.soname for _, info in roots if info.soname}
        found: dict[str, Dependency] = {}
        queue: list[tuple[str, ElfInfo, tuple[str, ...]]] = []
        for path, info in roots:
            origin = os.path.dirname(os.path.realpath(path))
            rpath = () if info.runpath else tuple(expand_origin(p, origin) for p in info.rpath)
            queue.append((path, info, rpath))
        while queue:
            needer, info, inherited = queue.pop(0)
            for name in info.needed:
                if name in provided or name in found or is_libc_family(name):
                    continue
                path = self.find(name, needer, info, inherited)
                if path is None:
                    raise MissingLibraryError(
                        f"{name}, needed by {needer}, is nowhere the loader would look",
                        hint="install it, or add its directory to /etc/ld.so.conf.d and run "
                        "ldconfig",
                    )
                dep_info = read_elf(path)
                found[name] = Dependency(name, path, dep_info, needer)
                origin = os.path.dirname(os.path.realpath(path))
                own = () if dep_info.runpath else tuple(
                    expand_origin(p, origin) for p in dep_info.rpath
                )
                queue.append((path, dep_info, own + inherited))
        return list(found.values())
