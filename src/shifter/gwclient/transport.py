"""One HTTP exchange with one gateway.

A plain `http://` gateway reached without a proxy (the usual site: a gateway on the
cluster's network) gets a minimal HTTP/1.1 exchange on a socket (`plainhttp.py`):
`http.client` with `email.parser` costs ~15 ms to import, as much as the rest of a
`docker:` launch's lookup. https and proxies go through the standard library's
`http.client`, imported on the first such request, not when `shifter.gwclient` is
imported. https uses the system's CA store (OpenSSL's default paths, so
`SSL_CERT_FILE`/`SSL_CERT_DIR` work as for curl).

`gatewayTimeout` bounds the whole exchange with one gateway, as CURLOPT_TIMEOUT did: each
socket operation gets only what is left of it, so a gateway dribbling bytes cannot hold a
launch for longer.
"""

from __future__ import annotations

import os
import time

from shifter.frozen import Frozen
from shifter.gwclient.proxy import proxy_for
from shifter.gwclient.urls import GatewayURL

TYPE_CHECKING = False
if TYPE_CHECKING:
    import http.client
    import ssl
    from collections.abc import Mapping

# A list reply of ten thousand images is a few MiB; anything near this is not our gateway.
MAX_REPLY_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


class Reply(Frozen):
    """A complete HTTP reply: `status`, `media_type` (lower case, no parameters), `body`."""

    status: int
    media_type: str
    body: bytes

    @property
    def is_json(self) -> bool:
        return self.media_type == "application/json"


class TransportError(Exception):
    """No complete reply arrived; `problem` says why in a few words. `unreachable`: the
    gateway did not answer at all (refused, unreachable, silent past the answer timeout),
    worth remembering as down (downlist.py)."""

    def __init__(self, problem: str, *, unreachable: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.unreachable = unreachable


def exchange(
    gateway: GatewayURL,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    timeout: float | None = None,
    answer_timeout: float | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Reply:
    """Send one request to `gateway` and read the whole reply, or raise `TransportError`.

    `timeout` bounds the whole exchange; `answer_timeout` the connection and the first
    byte of the reply (a gateway answers every request at once, so a silent one is hung)."""
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    answer = None if answer_timeout is None else now + answer_timeout
    try:
        if gateway.scheme == "http" and proxy_for(gateway, environ) is None:
            from shifter.gwclient.plainhttp import plain_exchange

            status, media_type, data = plain_exchange(
                gateway.host, gateway.port, method, gateway.prefix + path,
                headers=headers, body=body, deadline=deadline, limit=MAX_REPLY_BYTES,
                answer_deadline=answer,
            )  # fmt: skip
            return Reply(status, media_type, data)
        return _library_exchange(gateway, method, path, headers, body, timeout, deadline,
                                 environ, answer)  # fmt: skip
    except TimeoutError as exc:
        if type(exc).__name__ == "NoAnswer":
            raise TransportError(f"no answer within {answer_timeout:g} s "
                                 "(gatewayConnectTimeout)", unreachable=True) from None
        raise TransportError(f"no complete reply within {timeout:g} s (gatewayTimeout)") from None
    except ConnectionRefusedError:
        raise TransportError("connection refused", unreachable=True) from None
    except OSError as exc:
        raise TransportError(_describe_os_error(exc),
                             unreachable=getattr(exc, "reason", None) is None) from None
    except Exception as exc:
        if not _is_broken_reply(exc):
            raise
        raise TransportError(f"broken HTTP reply ({type(exc).__name__}: {exc})") from None


def _is_broken_reply(exc: Exception) -> bool:
    """Whether `exc` is either client's word for a reply that is not HTTP (neither module
    is imported for it: a launch that used one has not imported the other)."""
    import sys

    for module, name in (("shifter.gwclient.plainhttp", "BrokenReply"),
                         ("http.client", "HTTPException")):  # fmt: skip
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(exc, getattr(loaded, name)):
            return True
    return False


def _library_exchange(
    gateway: GatewayURL, method: str, path: str, headers: Mapping[str, str],
    body: bytes | None, timeout: float | None, deadline: float | None,
    environ: Mapping[str, str], answer: float | None,
) -> Reply:  # fmt: skip
    """The exchange through `http.client` (https, proxies)."""
    first = deadline if answer is None or (deadline is not None and deadline < answer) \
        else answer
    connect_timeout = None if first is None else max(first - time.monotonic(), 0.001)
    connection, target = _connection(gateway, path, connect_timeout, environ)
    try:
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            _shrink_timeout(connection, first)
            response = connection.getresponse()
        except TimeoutError:
            if first is deadline:
                raise
            from shifter.gwclient.plainhttp import NoAnswer

            raise NoAnswer from None
        data = _read_body(connection, response, deadline)
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        return Reply(response.status, media_type, data)
    finally:
        connection.close()


def _connection(
    gateway: GatewayURL, path: str, timeout: float | None, environ: Mapping[str, str]
) -> tuple[http.client.HTTPConnection, str]:
    import http.client

    proxy = proxy_for(gateway, environ)
    if gateway.scheme == "https":
        context = _tls_context()
        if proxy is None:
            return http.client.HTTPSConnection(
                gateway.host, gateway.port, timeout=timeout, context=context
            ), gateway.prefix + path
        tunnel = http.client.HTTPSConnection(
            proxy.host, proxy.port, timeout=timeout, context=context
        )
        tunnel.set_tunnel(gateway.host, gateway.port)
        return tunnel, gateway.prefix + path
    if proxy is None:
        return http.client.HTTPConnection(
            gateway.host, gateway.port, timeout=timeout
        ), gateway.prefix + path
    # A plain-HTTP proxy takes the absolute URL as the request target.
    return http.client.HTTPConnection(proxy.host, proxy.port, timeout=timeout), gateway.url(path)


def _tls_context() -> ssl.SSLContext:
    import ssl

    return ssl.create_default_context()


def _shrink_timeout(connection: http.client.HTTPConnection, deadline: float | None) -> None:
    if deadline is None or connection.sock is None:
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    connection.sock.settimeout(left)


def _read_body(
    connection: http.client.HTTPConnection,
    response: http.client.HTTPResponse,
    deadline: float | None,
) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        _shrink_timeout(connection, deadline)
        chunk = response.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise TransportError(f"reply larger than {MAX_REPLY_BYTES} bytes")
        parts.append(chunk)


def _describe_os_error(exc: OSError) -> str:
    # ssl.SSLError is an OSError; its reason reads better than its errno.
    reason = getattr(exc, "reason", None)
    verify = getattr(exc, "verify_message", None)
    if verify:
        return f"TLS certificate not trusted ({verify})"
    if reason:
        return f"TLS failed ({reason})"
    if exc.strerror:
        return f"cannot connect ({exc.strerror})"
    return f"cannot connect ({type(exc).__name__}: {exc})"
