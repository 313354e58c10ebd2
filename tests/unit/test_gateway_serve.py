"""The gateway's own listening socket (`--workers N`) and its per-minute user cache."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from shifter.cli.imagegw_serve import listening_socket
from shifter.errors import ShifterError
from shifter.gateway.authn import RequesterCache


def test_connections_accepted_on_the_listening_socket_have_tcp_nodelay() -> None:
    """Without IPPROTO_TCP on the listening socket asyncio leaves Nagle on, and every
    keep-alive reply waits for the client's delayed ACK (~40 ms)."""
    sock = listening_socket("127.0.0.1", 0)
    seen: list[int] = []

    async def main() -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("socket")
            seen.append(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=sock)
        async with server:
            port = sock.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_a_port_in_use_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(ShifterError, match=r"cannot listen on 127\.0\.0\.1:"):
            listening_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_requesters_are_read_again_after_the_ttl() -> None:
    now = [0.0]
    cache = RequesterCache(60.0, clock=lambda: now[0])
    uid, gid = os.getuid(), os.getgid()
    first = cache.get(uid, gid)
    assert first.uid == uid and first.gid == gid and first.user is not None
    now[0] = 59.0
    assert cache.get(uid, gid) is first
    now[0] = 61.0
    again = cache.get(uid, gid)
    assert again == first and again is not first
