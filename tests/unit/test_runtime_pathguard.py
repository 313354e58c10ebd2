"""The path guard against random trees full of hostile symlinks: it must resolve exactly as
the kernel's openat2(RESOLVE_IN_ROOT) does, never leave the root, and never leak a
descriptor. Plus the original's own `shifter_realpath` cases (spec item 117)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shifter.runtime.volumes.pathguard import ContainerPathError, resolve, resolve_path
from shifter.sys.libc import SyscallError
from shifter.sys.path import Resolve, openat2

pytestmark = pytest.mark.unit

NAMES = ("a", "b", "c")
HOSTILE_TARGETS = ("/etc", "../../../../../../etc", "/", "..", ".", "/..", "a/../../..", "/a/..")
component = st.sampled_from(NAMES)
query_component = st.sampled_from((*NAMES, "..", "."))
relative_target = st.lists(query_component, min_size=1, max_size=4).map("/".join)
absolute_target = st.lists(query_component, max_size=4).map(lambda parts: "/" + "/".join(parts))
link_target = st.one_of(relative_target, absolute_target, st.sampled_from(HOSTILE_TARGETS))
entry = st.tuples(
    st.lists(component, min_size=1, max_size=3),
    st.sampled_from(("dir", "file", "link")),
    link_target,
)
tree = st.lists(entry, max_size=14)
query = st.tuples(st.booleans(), st.lists(query_component, max_size=6))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shifter-pathguard-"))
    yield path
    shutil.rmtree(path)


def build(root: Path, entries: list[tuple[list[str], str, str]]) -> None:
    for parts, kind, target in entries:
        parent = root.joinpath(*parts[:-1])
        if any(
            p.is_symlink() or (p.exists() and not p.is_dir()) for p in (parent, *parent.parents)
        ):
            continue
        parent.mkdir(parents=True, exist_ok=True)
        path = parent / parts[-1]
        if path.is_symlink() or path.exists():
            continue
        if kind == "dir":
            path.mkdir()
        elif kind == "file":
            path.write_text("x")
        else:
            path.symlink_to(target)


def kernel(root_fd: int, root: Path, text: str) -> str:
    """The oracle: the container path, or the errno name of the failure."""
    try:
        fd = openat2(root_fd, text, os.O_PATH, Resolve.IN_ROOT)
    except SyscallError as error:
        return errno.errorcode[error.errno]
    try:
        host = os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    relative = os.path.relpath(host, root)
    return "/" if relative == "." else "/" + relative


def ours(root_fd: int, text: str) -> str:
    try:
        resolved = resolve(root_fd, text)
    except ContainerPathError as error:
        if "too many levels of symbolic links" in error.message:
            return "ELOOP"
        if "is not a directory" in error.message:
            return "ENOTDIR"
        raise
    try:
        if resolved.missing:
            return "ENOENT"
        host = os.readlink(f"/proc/self/fd/{resolved.fd}")
        assert resolved.path == "/" + "/".join(p for p in resolved.path.split("/") if p)
        return resolved.path, host  # type: ignore[return-value]
    finally:
        resolved.close()


def _openat2_works(directory: Path) -> bool:
    fd = os.open(directory, os.O_PATH)
    try:
        os.close(openat2(fd, ".", os.O_PATH, Resolve.IN_ROOT))
        return True
    except SyscallError as error:
        if error.errno == errno.ENOSYS:
            return False
        raise
    finally:
        os.close(fd)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=tree, queries=st.lists(query, min_size=1, max_size=8))
def test_resolves_like_the_kernel_and_stays_inside(
    scratch: Path, entries: list[tuple[list[str], str, str]], queries: list[tuple[bool, list[str]]]
) -> None:
    if not _openat2_works(scratch):
        pytest.skip("this kernel has no openat2 (Linux < 5.6): no reference to compare with")
    root = Path(tempfile.mkdtemp(dir=scratch))
    build(root, entries)
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        for absolute, parts in queries:
            text = ("/" if absolute else "") + "/".join(parts) or "."  # "" is ENOENT to openat2
            expected = kernel(root_fd, root, text)
            got = ours(root_fd, text)
            if isinstance(got, tuple):
                path, host = got
                assert path == expected, text
                # The descriptor is really the resolved file, inside the root.
                assert host == str(root) or host.startswith(f"{root}/"), text
                assert os.path.relpath(host, root) == (path.lstrip("/") or "."), text
            else:
                assert got == expected, text
        assert len(os.listdir("/proc/self/fd")) == fds_before
    finally:
        os.close(root_fd)
        shutil.rmtree(root)


def test_the_originals_realpath_cases(tmp_path: Path) -> None:
    (tmp_path / "test" / "path").mkdir(parents=True)
    (tmp_path / "test" / "path" / "rellink").symlink_to("../../../../../../../../test")
    (tmp_path / "abslink").symlink_to("/test/path")
    assert resolve_path(str(tmp_path), "test/path") == "/test/path"
    assert resolve_path(str(tmp_path), "test/path/rellink/path") == "/test/path"
    assert resolve_path(str(tmp_path), "abslink") == "/test/path"
    assert resolve_path(str(tmp_path), "/../../../test/./path/../path") == "/test/path"


def test_missing_components_come_back_unresolved(tmp_path: Path) -> None:
    (tmp_path / "data").symlink_to("/real")
    (tmp_path / "real").mkdir()
    root_fd = os.open(tmp_path, os.O_PATH)
    try:
        resolved = resolve(root_fd, "/data/new/deeper")
        assert (resolved.path, resolved.missing) == ("/real", ("new", "deeper"))
        assert resolved.full_path == "/real/new/deeper"
        resolved.close()
    finally:
        os.close(root_fd)


def test_final_symlink_may_be_left_alone(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc")
    assert resolve_path(str(tmp_path), "link", follow_final=False) == "/link"
    assert resolve_path(str(tmp_path), "link") == "/etc"


def test_a_symlink_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ContainerPathError, match="too many levels of symbolic links"):
        resolve_path(str(tmp_path), "/loop/x")
