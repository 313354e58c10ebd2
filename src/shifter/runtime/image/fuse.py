"""Mounting a squashfs image without privilege: squashfuse on a /dev/fuse descriptor that
the launcher opened and mounted itself (facts: ../shared/notes/rootless-and-squashfs.md).

The order is forced by the kernel:

1. in the new *user* namespace (not yet the mount namespace), open /dev/fuse: the fuse
   mount accepts only a descriptor opened by a process of the namespace that mounts it;
2. fork the server process now, so it stays in the host's mount namespace. It detaches
   (double fork, own session: terminal signals do not reach it, and it is not a child of
   the user's command, which might wait for all its children) and waits on a pipe;
3. the launcher unshares its mount namespace and mounts `fuse.squashfuse` with `fd=N`;
4. the launcher tells the server to go: it execs `squashfuse -f IMAGE /dev/fd/N`.

The server lives outside the container's mount namespace, so it does not keep that
namespace alive: when the container's last process exits, the namespace and its mounts
go, the kernel aborts the fuse connection, and squashfuse exits. Nothing to clean up.
If the launcher dies before step 4, the pipe closes and the server exits without running.

While the launcher builds the container, a thread of it reads the command's file through
the new mount (`Prefetch`), so that the command starts from the page cache. Left to demand
paging, the exec costs more than everything else in a cold launch: each page fault asks for
a 128 KiB window centred on the fault, which straddles two squashfs blocks, and squashfuse
(no block cache) decompresses both for every request, ~0.6 ms each. Read in order, each
request is one block, decompressed once, on the other core while the launcher works.

squashfuse is found in fixed system directories, never through the caller's PATH.
"""

from __future__ import annotations

import _thread  # `threading` costs the launch path its import for one thread
import os
import stat

from shifter.errors import ShifterError
from shifter.sys.mount import MountFlag, mount

SEARCH_DIRS = ("/usr/local/bin", "/usr/bin", "/bin")
# The low-level implementation first: fewer copies per request. Same options, same package.
SERVERS = ("squashfuse_ll", "squashfuse")
FILESYSTEM = "fuse.squashfuse"
FUSE_DEVICE = "/dev/fuse"
IMAGE_MOUNT_FLAGS = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.RDONLY
GO = b"1"
# At most this much of the command's file is read ahead (the launch waits for it): a block
# read in order costs half what demand paging pays for it (see above), so reading up to
# the cap pays off unless the program touches less than half of it.
PREFETCH_LIMIT = 8 << 20
PREFETCH_CHUNK = 1 << 20


class FuseError(ShifterError):
    """The image could not be mounted with squashfuse."""


def find_squashfuse() -> str:
    for name in SERVERS:
        for directory in SEARCH_DIRS:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    raise FuseError(
        f"squashfuse is not installed (looked in {', '.join(SEARCH_DIRS)})",
        hint="install the squashfuse package: unprivileged launches mount images with it",
    )


def open_fuse_device() -> int:
    try:
        return os.open(FUSE_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        raise FuseError(
            f"cannot open {FUSE_DEVICE}: {error.strerror}",
            hint=f"the site must make {FUSE_DEVICE} usable by users (mode 0666)",
        ) from None


class SquashfuseServer:
    """A squashfuse process prepared for one image (steps 1-2), mounted by `mount`."""

    def __init__(
        self, image: str, *, verbose: bool = False, prefetch: tuple[str, ...] = ()
    ) -> None:
        self.image = image
        self.target = ""
        self.intermediate = 0
        self.prefetch_paths = prefetch  # where the command may be, in the image
        self.prefetch: Prefetch | None = None
        program = find_squashfuse()
        self.fuse_fd = open_fuse_device()
        read_end, self.gate = os.pipe2(os.O_CLOEXEC)
        try:
            self._fork(program, read_end, verbose)
        finally:
            os.close(read_end)

    def _fork(self, program: str, read_end: int, verbose: bool) -> None:
        child = os.fork()
        if child == 0:
            status = 1
            try:
                os.setsid()
                if os.fork() == 0:
                    self._serve(program, read_end, verbose)  # never returns
                status = 0
            finally:
                os._exit(status)
        # Reaped in `wait_ready`: waiting here would put two forks on the critical path.
        self.intermediate = child

    def _serve(self, program: str, read_end: int, verbose: bool) -> None:
        # The detached server: any failure here must end this process, never return.
        # Everything but the exec is done before the launcher's GO: after it, squashfuse's
        # start-up is on the launch's critical path.
        try:
            os.close(self.gate)
            null = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1) if verbose else (0, 1, 2):
                os.dup2(null, target)
            os.chdir("/")  # hold no host directory busy
            fd = self.fuse_fd
            os.set_inheritable(fd, True)
            # Keep only the FUSE descriptor and the gate's read end (close-on-exec).
            low, high = sorted((fd, read_end))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, max(os.sysconf("SC_OPEN_MAX"), high + 1))
            if os.read(read_end, 1) != GO:
                os._exit(0)  # the launcher gave up or died
            os.execv(program, [program, "-f", self.image, f"/dev/fd/{fd}"])
        finally:
            os._exit(127)

    def mount(self, target: str, uid: int, gid: int) -> None:
        """Steps 3-4: mount the fuse filesystem at `target` (in the launcher's new mount
        namespace) and start the server; it gets ready while the caller goes on."""
        options = (
            f"fd={self.fuse_fd},rootmode=40000,user_id={uid},group_id={gid},default_permissions"
        )
        self.target = target
        try:
            mount("squashfuse", target, FILESYSTEM, IMAGE_MOUNT_FLAGS, options)
            os.write(self.gate, GO)
        finally:
            self.close()
        if self.prefetch_paths:
            self.prefetch = Prefetch(target, self.prefetch_paths)
        # The server was just woken on this CPU (the scheduler keeps a wakee near its
        # waker) while the other one idles: yielding lets it start now instead of after the
        # launcher's next slice or a migration; the launcher, whose remaining work is off
        # the critical path, is the one that moves (measured: the read-ahead ends ~1 ms
        # sooner when the launcher goes on planning after the mount).
        os.sched_yield()

    def abandon(self) -> None:
        """Done with the server, built or not: release the descriptors, collect the
        intermediate process, join the read-ahead (no second thread may be left at the
        privilege drop and the exec). A server never told to go exits by itself."""
        self.close()
        self.reap()
        self.finish_prefetch()

    def finish_prefetch(self) -> None:
        """Wait for the read-ahead of the command (before the privilege drop and the exec:
        no second thread may be left then)."""
        if self.prefetch is not None:
            self.prefetch.wait()
            self.prefetch = None

    def wait_ready(self) -> None:
        """Block until the server answers (its FUSE_INIT reply comes before any other)."""
        self.reap()
        try:
            os.stat(self.target)
        except OSError as error:
            raise FuseError(
                f"squashfuse could not serve {self.image}: {error.strerror}",
                hint="check the image file (run with --verbose to see squashfuse's messages)",
            ) from None

    def reap(self) -> None:
        """Collect the short-lived intermediate process of the double fork."""
        if self.intermediate > 0:
            os.waitpid(self.intermediate, 0)
            self.intermediate = 0

    def close(self) -> None:
        """Release the launcher's descriptors; before `mount`, this makes the server exit."""
        for fd in (self.gate, self.fuse_fd):
            if fd >= 0:
                os.close(fd)
        self.gate = self.fuse_fd = -1


class Prefetch:
    """Reads the first of `paths` (resolved inside the image mounted at `root`) that is a
    regular file into the page cache, on a thread; `wait` joins it. Best effort: anything
    that goes wrong only means the command pages itself in as before."""

    __slots__ = ("finished", "others")

    def __init__(self, root: str, paths: tuple[str, ...]) -> None:
        self.finished = _thread.allocate_lock()
        self.finished.acquire()
        self.others = _thread._count()  # the launcher's other threads: none
        _thread.start_new_thread(self._run, (root, paths))

    def _run(self, root: str, paths: tuple[str, ...]) -> None:
        try:
            fd = _open_in_image(root, paths)
            if fd >= 0:
                try:
                    _read_ahead(fd)
                finally:
                    os.close(fd)
        except (OSError, ShifterError):
            pass
        finally:
            self.finished.release()

    def wait(self) -> None:
        """Until the thread is gone, not only done: a launch that is refused after the
        mount exits at once, and an interpreter that finalizes while a thread of its own
        is still on its way out can abort (seen once under load: exit 134)."""
        self.finished.acquire()
        while _thread._count() > self.others:
            os.sched_yield()


def _open_in_image(root: str, paths: tuple[str, ...]) -> int:
    """A descriptor of the first regular file among `paths`, resolved as if `root` were
    `/` (an image's absolute symlinks point into the image), else -1. The first access
    waits until squashfuse answers."""
    from shifter.sys.path import Resolve, openat2

    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in paths:
            try:
                # O_NONBLOCK: a FIFO must not block the open (it is skipped below).
                fd = openat2(root_fd, path, os.O_RDONLY | os.O_NONBLOCK,
                             Resolve.IN_ROOT | Resolve.NO_MAGICLINKS)  # fmt: skip
            except ShifterError:
                continue
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return fd
            os.close(fd)
    finally:
        os.close(root_fd)
    return -1


def _read_ahead(fd: int) -> None:
    # sendfile to /dev/null: the kernel reads in order, and no buffer crosses into Python.
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        offset = 0
        while offset < PREFETCH_LIMIT:
            sent = os.sendfile(null, fd, offset, PREFETCH_CHUNK)
            if sent <= 0:
                return
            offset += sent
    finally:
        os.close(null)
