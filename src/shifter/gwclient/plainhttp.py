"""A minimal HTTP/1.1 client exchange on a socket: one request, `Connection: close`, the
whole reply read and checked. For plain `http://` gateways without a proxy (transport.py).

What it sends is what `http.client` sent for the same call (request line, `Host`,
`Accept-Encoding: identity`, the caller's headers, `Content-Length` when there is a body
or the method expects one), so a gateway cannot tell them apart. What it reads: the
status line, the headers, then a body delimited by `Content-Length`, by chunked transfer
coding, or by the end of the connection. Anything else is a `BrokenReply`.

`deadline` (time.monotonic()) bounds the whole exchange: each socket operation gets only
what is left of it, as with gatewayTimeout before.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Mapping

_CHUNK = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
METHODS_WITH_BODY = ("PATCH", "POST", "PUT")


class BrokenReply(Exception):
    """The reply does not follow HTTP/1.1; the message says how."""


class NoAnswer(TimeoutError):
    """No connection, or not the first byte of a reply, before the answer deadline."""


def request_bytes(
    host: str, port: int, method: str, target: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request's bytes: the head, then the body."""
    shown = f"[{host}]" if ":" in host else host
    lines = [f"{method} {target} HTTP/1.1", f"Host: {shown if port == 80 else f'{shown}:{port}'}",
             "Accept-Encoding: identity"]  # fmt: skip
    if body is not None or method in METHODS_WITH_BODY:
        lines.append(f"Content-Length: {len(body or b'')}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names lower case; repeated ones joined with ", ")."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise BrokenReply(f"status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BrokenReply(f"header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return int(code), headers


def dechunk(data: bytes) -> bytes:
    """A chunked body (RFC 9112 section 7.1) decoded; trailers are ignored."""
    parts = []
    position = 0
    while True:
        end = data.find(b"\r\n", position)
        if end < 0:
            raise BrokenReply("a chunk size line is cut off")
        size_text = data[position:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BrokenReply(f"chunk size {size_text[:20]!r}") from None
        if size == 0:
            return b"".join(parts)
        start = end + 2
        if len(data) < start + size + 2 or data[start + size : start + size + 2] != b"\r\n":
            raise BrokenReply("a chunk is cut off")
        parts.append(data[start : start + size])
        position = start + size + 2


def _complete(data: bytes, chunked: bool) -> bytes | None:
    """A chunked body once its last chunk is in (the server need not close first)."""
    if not chunked or not data.endswith(b"\r\n\r\n"):
        return None
    try:
        return dechunk(data)
    except BrokenReply:
        return None  # not complete yet


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _receive(sock: _socket.socket, deadline: float | None) -> bytes:
    sock.settimeout(_left(deadline))
    return sock.recv(_CHUNK)


def connect(host: str, port: int, deadline: float | None) -> _socket.socket:
    """A TCP connection to the first address of `host` that accepts one.

    `_socket`, not `socket`: the Python module turns its constants into enums on import
    (~1.5 ms); and the name goes to getaddrinfo as bytes, which spares the `idna` codec
    (~1.5 ms) for the ASCII names gateways have.
    """
    import _socket

    name: str | bytes = host.encode("ascii") if host.isascii() else host
    error: OSError | None = None
    for family, kind, protocol, _, address in _socket.getaddrinfo(
        name, port, 0, _socket.SOCK_STREAM
    ):
        sock = _socket.socket(family, kind, protocol)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {host}")


def plain_exchange(
    host: str,
    port: int,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    deadline: float | None = None,
    limit: int,
    answer_deadline: float | None = None,
) -> tuple[int, str, bytes]:
    """Send the request and read the reply: (status, media type in lower case without
    parameters, body). Raises OSError (TimeoutError past `deadline`, NoAnswer when there is
    no connection or no first byte of the reply by `answer_deadline`) or `BrokenReply`."""
    first = deadline if answer_deadline is None or (
        deadline is not None and deadline < answer_deadline) else answer_deadline
    try:
        sock = connect(host, port, first)
    except TimeoutError:
        raise NoAnswer from None
    try:
        sock.settimeout(_left(deadline))
        sock.sendall(request_bytes(host, port, method, target, headers, body))
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD_BYTES:
                raise BrokenReply(f"a head longer than {MAX_HEAD_BYTES} bytes")
            try:
                chunk = _receive(sock, deadline if data else first)
            except TimeoutError:
                if data or first is deadline:
                    raise
                raise NoAnswer from None
            if not chunk:
                raise BrokenReply("the connection closed before the end of the head")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, fields = parse_head(head)
        length_text = fields.get("content-length")
        chunked = "chunked" in fields.get("transfer-encoding", "").lower()
        length = None
        if length_text is not None and not chunked:
            if not length_text.isdigit():
                raise BrokenReply(f"Content-Length {length_text[:20]!r}")
            length = int(length_text)
        if length is not None and length > limit:
            raise BrokenReply(f"a reply larger than {limit} bytes")
        parts = [rest]
        size = len(rest)
        decoded = _complete(rest, chunked)
        while decoded is None and (length is None or size < length):
            chunk = _receive(sock, deadline)
            if not chunk:
                break
            size += len(chunk)
            if size > limit + (MAX_HEAD_BYTES if chunked else 0):
                raise BrokenReply(f"a reply larger than {limit} bytes")
            parts.append(chunk)
            decoded = _complete(b"".join(parts), chunked)
    finally:
        sock.close()
    payload = b"".join(parts)
    if length is not None:
        if len(payload) < length:
            raise BrokenReply(f"the body ended after {len(payload)} of {length} bytes")
        payload = payload[:length]
    elif chunked:
        payload = decoded if decoded is not None else dechunk(payload)
    media_type = fields.get("content-type", "").split(";")[0].strip().lower()
    return status, media_type, payload
