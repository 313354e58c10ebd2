"""The node's image mount helper (`shifter-mountd`, root): kernel mounts of squashfs images
for launches without setupRoot (the launcher's side and the reasons: helper.py).

One request per connection, from any local user (the socket is 0666): `mount <image id>`.
What the user controls is that line and nothing else; the helper then:

1. takes the peer's uid from the socket (SO_PEERCRED), its groups from the user database;
2. accepts only an image id (64 hex digits): the image is `<imagePath>/<id>.squashfs`
   with its `.meta`, read as root exactly as setupRoot reads them, and must be squashfs;
3. refuses a private image to a user in none of its access lists (check_acl);
4. mounts it read-only, nosuid, nodev on the node-wide loop device of its file (loopdev.py,
   shared with setupRoot's containers) at `<mounts>/<random name>/image`, in a root-owned
   0711 tmpfs whose mounts propagate nowhere (nothing of it appears in any other
   namespace). `<random name>` is root's, 0700, with an ACL entry that lets the requester
   alone search it: the host's mount table shows the path to every user, but only the
   requester (and root) can go through it;
5. answers `ok <path>`, waits for `done` or the end of the connection (at most
   `HOLD_S`), and detaches it. The requester's namespace, copied meanwhile, keeps its
   own copy, with the flags locked by the kernel.

The helper also keeps each image it mounted mounted once more, in a root-only directory,
until `keep_s` seconds (default 60) after its last request: the image's superblock, and
with it the page cache of everything the containers read from it, outlives the launches
(the next launch of the image, or every rank of an MPI job after the first, finds the
command decompressed already), and the node's loop device of the image stays attached
meanwhile.

At most `PER_USER` requests of one uid are in flight. Errors are answered as `error
<message>` and logged on stderr, a line per request.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import re
import secrets
import socket
import struct
import sys
import threading
import time

from shifter.errors import ShifterError
from shifter.image.descriptor import parse_descriptor
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.image.loopdev import mount_image
from shifter.runtime.image.source import check_acl, find_image
from shifter.sys.libc import SyscallError
from shifter.sys.mount import MountFlag, UmountFlag, mount, umount

IMAGE_ID = re.compile(rb"mount ([0-9a-f]{64})\n")
REQUEST_MAX = 128  # `mount ` + 64 hex digits + newline, with room to spare
READ_S = 5.0  # to send the request
HOLD_S = 30.0  # to copy the mount and say done
PER_USER = 256  # an MPI job may start a rank per core at once
PEER = struct.Struct("3i")
KEEP_S = 60.0
IMAGE_DIR = "image"  # the mount point, below its gate
ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


class MountHelperError(ShifterError):
    """The helper cannot start or serve."""


class MountHelper:
    """Serves `socket_path` until `stop`; mounts below `mounts` beside it."""

    def __init__(self, config: UdiRootConfig, socket_path: str, keep_s: float = KEEP_S) -> None:
        self.config = config
        self.socket_path = socket_path
        self.mounts = os.path.join(os.path.dirname(socket_path), "mounts")
        self.kept = os.path.join(self.mounts, "kept")  # root-only: image id -> its mount
        self.keep_s = keep_s
        self.listener: socket.socket | None = None
        self.in_flight: dict[int, int] = {}
        self.last_use: dict[str, float] = {}  # kept image id -> when it was last mounted
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def start(self) -> None:
        """The mounts directory (a private tmpfs) and the listening socket."""
        directory = os.path.dirname(self.socket_path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        info = os.lstat(directory)
        if info.st_uid != 0 or info.st_mode & 0o022:
            raise MountHelperError(
                f"{directory} must be root's and writable by root only",
                hint="mountHelperSocket names a socket in a directory only root may change",
            )
        os.makedirs(self.mounts, mode=0o711, exist_ok=True)
        if os.path.ismount(self.mounts):  # left by a helper that was killed: start clean
            umount(self.mounts, UmountFlag.DETACH)
        flags = MountFlag.NOSUID | MountFlag.NODEV | MountFlag.NOEXEC
        mount("shifter-mountd", self.mounts, "tmpfs", flags, "mode=0711")
        mount(None, self.mounts, None, MountFlag.PRIVATE)
        os.makedirs(self.kept, mode=0o700, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        listener.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)  # any user may ask; the peer's uid decides
        listener.listen(128)
        self.listener = listener

    def serve(self) -> None:
        """Accept until `stop`: a thread per connection, and one that lets kept images go."""
        assert self.listener is not None
        if self.keep_s > 0:
            threading.Thread(target=self._release_idle, daemon=True).start()
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    def stop(self) -> None:
        """Stop accepting; detach what is still mounted and the tmpfs."""
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        if os.path.ismount(self.mounts):
            umount(self.mounts, UmountFlag.DETACH)

    def handle(self, connection: socket.socket) -> None:
        with connection:
            _, uid, _ = PEER.unpack(
                connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER.size)
            )
            if not self._enter(uid):
                _answer(connection, f"error more than {PER_USER} requests of uid {uid} at once")
                return
            try:
                self._serve(connection, uid)
            finally:
                self._leave(uid)

    def _serve(self, connection: socket.socket, uid: int) -> None:
        began = time.monotonic()
        try:
            image_id = _read_request(connection)
            target = self.mount_for(uid, image_id)
        except OSError as error:
            _log(f"uid {uid}: failed: {error}")
            _answer(connection, f"error {error.strerror or error}")
            return
        except ShifterError as error:
            _log(f"uid {uid}: refused: {error}")
            _answer(connection, f"error {error}")
            return
        try:
            _answer(connection, f"ok {target}")
            _log(f"uid {uid}: image {image_id} at {target} "
                 f"({(time.monotonic() - began) * 1000:.1f} ms)")  # fmt: skip
            connection.settimeout(HOLD_S)
            with contextlib.suppress(OSError):
                connection.recv(16)  # `done`, or the end of the connection
        finally:
            self._detach(target)

    def mount_for(self, uid: int, image_id: str) -> str:
        """Mount image `image_id` for `uid` at a new directory; its path."""
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            raise MountHelperError(f"uid {uid} has no passwd entry") from None
        descriptor = parse_descriptor(f"id:{image_id}", None)
        image = find_image(descriptor, self.config, environ={})
        if image.format != "squashfs":
            raise MountHelperError(f"image {image_id} is {image.format}, not squashfs")
        check_acl(image, uid, os.getgrouplist(user.pw_name, user.pw_gid))
        if self.keep_s > 0:
            self._keep(image_id, image.path)
        # The mount points are in the host's mount table, which every user may read: the
        # random name hides nothing. What keeps others out is the directory above the
        # mount, root's, 0700, and searchable by the requester alone (an ACL entry).
        gate = os.path.join(self.mounts, secrets.token_hex(16))
        os.mkdir(gate, 0o700)
        target = os.path.join(gate, IMAGE_DIR)
        try:
            os.setxattr(gate, ACL_XATTR, search_only_acl(uid))
            os.mkdir(target, 0o700)
            mount_image(self.config, image.path, "squashfs", target)
        except BaseException:
            _remove_gate(gate)
            raise
        return target

    def _keep(self, image_id: str, path: str) -> None:
        """The image's kept mount (made now if there is none), marked used."""
        kept = os.path.join(self.kept, image_id)
        with self.lock:
            known = image_id in self.last_use
            self.last_use[image_id] = time.monotonic()
            if known:
                return
            os.makedirs(kept, mode=0o700, exist_ok=True)
            try:
                mount_image(self.config, path, "squashfs", kept)
            except BaseException:
                del self.last_use[image_id]
                os.rmdir(kept)
                raise

    def _release_idle(self) -> None:
        while not self.stopping.wait(min(self.keep_s, 5.0)):
            now = time.monotonic()
            with self.lock:
                idle = [key for key, used in self.last_use.items() if now - used > self.keep_s]
                for image_id in idle:
                    del self.last_use[image_id]
                    self._detach(os.path.join(self.kept, image_id), gate=False)

    def _detach(self, target: str, gate: bool = True) -> None:
        try:
            umount(target, UmountFlag.DETACH)
        except SyscallError as error:
            if error.errno != errno.EINVAL:
                _log(f"cannot detach {target}: {error}")
        try:
            if gate:
                _remove_gate(os.path.dirname(target))
            else:
                os.rmdir(target)
        except OSError as error:
            _log(f"cannot remove {target}: {error.strerror}")

    def _enter(self, uid: int) -> bool:
        with self.lock:
            if self.in_flight.get(uid, 0) >= PER_USER:
                return False
            self.in_flight[uid] = self.in_flight.get(uid, 0) + 1
            return True

    def _leave(self, uid: int) -> None:
        with self.lock:
            self.in_flight[uid] -= 1
            if not self.in_flight[uid]:
                del self.in_flight[uid]


def search_only_acl(uid: int) -> bytes:
    """`system.posix_acl_access` of a root-owned 0700 directory that `uid` may also
    search (`u::rwx,u:UID:--x,g::---,m::--x,o::---`; include/uapi/linux/posix_acl_xattr.h)."""
    entries = ((ACL_USER_OBJ, 7, ACL_UNDEFINED_ID), (ACL_USER, 1, uid),
               (ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID), (ACL_MASK, 1, ACL_UNDEFINED_ID),
               (ACL_OTHER, 0, ACL_UNDEFINED_ID))  # fmt: skip
    return struct.pack("<I", ACL_VERSION) + b"".join(
        struct.pack("<HHI", tag, perm, who) for tag, perm, who in entries
    )


def _remove_gate(gate: str) -> None:
    image = os.path.join(gate, IMAGE_DIR)
    if os.path.isdir(image):
        os.rmdir(image)
    os.rmdir(gate)


def _read_request(connection: socket.socket) -> str:
    connection.settimeout(READ_S)
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) <= REQUEST_MAX:
            chunk = connection.recv(REQUEST_MAX)
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise MountHelperError(f"no request: {error.strerror or error}") from None
    match = IMAGE_ID.fullmatch(data)
    if match is None:
        raise MountHelperError("the request must be `mount <image id>` (64 hex digits)")
    return match.group(1).decode()


def _answer(connection: socket.socket, line: str) -> None:
    with contextlib.suppress(OSError):  # the requester left; it falls back to squashfuse
        connection.sendall(line.replace("\n", " ").encode() + b"\n")


def _log(line: str) -> None:
    sys.stderr.write(f"shifter-mountd: {line}\n")
    sys.stderr.flush()
