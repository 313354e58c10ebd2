"""Asking the node's image mount helper (`shifter-mountd`, mountd.py) for a kernel mount
of a squashfs image: the launcher's side (udiRoot.conf `mountHelperSocket`).

The helper, as root, mounts the image (its node-wide loop device, read-only, nosuid,
nodev) in a fresh directory that only the caller may search, in a tmpfs whose mounts
propagate nowhere, and answers with that path. The launcher then makes its
mount namespace (a copy of the host's, into which the kernel copies the image mount with
its flags locked: the user cannot loosen them, nor unmount it to look beneath), binds the
copy at loopMount, and says it is done; the helper detaches its own, and the container
keeps the launcher's. The image is then the kernel's squashfs, as in a setupRoot
container: no squashfuse to start, decompression on every CPU, the page cache shared.

The protocol, one line each way: `mount <image id>` -> `ok <path>` | `error <why>`; then
`done` (or the connection closing). The helper must be root (SO_PEERCRED): a socket left
by anyone else is not asked. Any failure is reported to the caller as a reason, and the
launch starts squashfuse as before.

The launch path: `_socket` only (the `socket` module costs its enums).
"""

from __future__ import annotations

import _socket
import struct

CONNECT_TIMEOUT_S = 10.0  # the helper may wait for a loop device on a busy node
LINE_MAX = 4096
PEER_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid (SO_PEERCRED)
SO_PEERCRED = 17


class HelperMount:
    """The helper's mount of the image at `path` (the host's, until `release`)."""

    __slots__ = ("connection", "path")

    def __init__(self, connection: _socket.socket, path: str) -> None:
        self.connection = connection
        self.path = path

    def release(self) -> None:
        """Tell the helper that this process has its copy (or will not use it)."""
        try:
            self.connection.sendall(b"done\n")
        except OSError:
            pass  # the helper detaches when the connection closes anyway
        finally:
            self.connection.close()


def request_mount(socket_path: str, image_id: str) -> HelperMount | str:
    """The image mounted by the helper at `socket_path`, or why not (for --verbose)."""
    try:
        connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    except OSError as error:
        return f"no socket: {error.strerror}"
    try:
        connection.settimeout(CONNECT_TIMEOUT_S)
        connection.connect(socket_path)
        _, uid, _ = PEER_CREDENTIALS.unpack(
            connection.getsockopt(_socket.SOL_SOCKET, SO_PEERCRED, PEER_CREDENTIALS.size)
        )
        if uid != 0:
            raise _Refused(f"{socket_path} is served by uid {uid}, not root")
        connection.sendall(f"mount {image_id}\n".encode())
        reply = _read_line(connection)
        if reply.startswith("ok /"):
            return HelperMount(connection, reply[3:])
        raise _Refused(reply.removeprefix("error ") or "no answer")
    except (OSError, _Refused, UnicodeDecodeError) as error:
        connection.close()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        return f"the mount helper at {socket_path}: {reason}"


class _Refused(Exception):
    pass


def _read_line(connection: _socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(LINE_MAX)
        if not chunk:
            break
        data += chunk
        if len(data) > LINE_MAX:
            raise _Refused("its answer is too long")
    return data.decode().rstrip("\n")
