"""Lookup, pull and list answered as plain ASGI, ahead of FastAPI.

Every `shifter --image=...` start looks its image up, `shifterimg pull` re-POSTs every
half second until the image is READY, and workflow tools call `shifterimg lookup` and
`shifterimg images` in loops, so these requests are most of a busy gateway's traffic.
FastAPI's routing, dependency resolution and middleware cost more than answering them
(about as much again as the munge decode and the store read together), so `HotRoutes`
recognises their paths itself and answers with the same functions as the FastAPI routes
(`replies`), the same JSON bytes and the same error bodies. Anything else, and any path it
does not parse, goes on to FastAPI. `RequestGuard` wraps both (request id, body limits,
access log, metrics).

The blocking part (munge decode, store) runs in the event loop's default thread pool with
the request's context (its request id reaches log lines written there).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import URL
from starlette.types import Receive, Scope, Send

from shifter.errors import ShifterError
from shifter.gateway import replies
from shifter.gateway.authn import HEADER
from shifter.gateway.failures import INTERNAL_ERROR, describe, error_body, http_status_for

log = logging.getLogger(__name__)

_HEADER = HEADER.encode()


@dataclass(frozen=True)
class HotRoute:
    """What `RequestGuard` reads of a matched route: its path template (a metrics label,
    the same as FastAPI's route for these paths)."""

    path: str
    method: str
    prefix: str


LOOKUP = HotRoute("/api/lookup/{system}/{imgtype}/{tag:path}/", "GET", "/api/lookup/")
PULL = HotRoute("/api/pull/{system}/{imgtype}/{tag:path}/", "POST", "/api/pull/")
LIST = HotRoute("/api/list/{system}/", "GET", "/api/list/")


def match(method: str, path: str) -> tuple[HotRoute, str, str, str] | None:
    """(route, system, image type, tag) of a lookup or pull path, as FastAPI would match
    `/{system}/{imgtype}/{tag:path}/`, or (LIST, system, "", "") of a list path
    (`/{system}/`); None for anything else."""
    for route in (LOOKUP, PULL):
        if method == route.method and path.startswith(route.prefix) and path.endswith("/"):
            parts = path[len(route.prefix):-1].split("/", 2)
            # The route's `{tag:path}` is the regex `.*`, which stops at a newline.
            if len(parts) == 3 and all(parts) and "\n" not in parts[2]:
                return route, parts[0], parts[1], parts[2]
    if method == LIST.method and path.startswith(LIST.prefix) and path.endswith("/"):
        system = path[len(LIST.prefix):-1]
        if system and "/" not in system:  # `{system}` is `[^/]+`
            return LIST, system, "", ""
    return None


class HotRoutes:
    """ASGI app: lookup, pull and list here, everything else (and the lifespan) to `api`."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = match(scope["method"], scope["path"]) if scope["type"] == "http" else None
        gateway = getattr(self.api.state, "service", None)
        if found is None or gateway is None:
            await self.api(scope, receive, send)
            return
        route, system, imgtype, tag = found
        scope["app"] = self.api  # as FastAPI would set it: RequestGuard counts by it
        scope["route"] = route
        state = scope.setdefault("state", {})
        credential = _header(scope, _HEADER)
        answer: Callable[[], dict[str, Any]]
        if route is LOOKUP:
            def answer() -> dict[str, Any]:
                return replies.lookup(gateway, state, system, imgtype, tag, credential)
        elif route is LIST:
            def answer() -> dict[str, Any]:
                return replies.list_images(gateway, state, system, credential)
        else:
            document = replies.optional_json_document(await _body(receive))

            def answer() -> dict[str, Any]:
                return replies.pull(gateway, state, system, imgtype, tag, credential,
                                    document)
        try:
            context = contextvars.copy_context()
            reply = await asyncio.get_running_loop().run_in_executor(None, context.run, answer)
            status = 200
        except ShifterError as error:
            status = http_status_for(error)
            if status >= 500:
                log.error("%s %s: %s", scope["method"], scope["path"], error)
            reply = error_body(status, describe(error), str(URL(scope=scope)))
        except Exception:
            log.exception("%s %s crashed", scope["method"], scope["path"])
            status = 500
            reply = error_body(status, INTERNAL_ERROR, str(URL(scope=scope)))
        # The same bytes and headers as the FastAPI routes' replies (the C client parses them).
        await JSONResponse(reply, status_code=status)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client left; the reply goes nowhere
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
