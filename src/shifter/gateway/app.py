"""The gateway's ASGI application.

`create_app(config)` builds the FastAPI app; its lifespan starts and stops one
`GatewayService` (store, workers) per process. `create_app_from_env()` reads the config
named by GWCONFIG (else /etc/shifter/imagemanager.json) and is the factory for servers:

    shifter-imagegw serve --config /etc/shifter/imagemanager.json
    uvicorn --factory shifter.gateway.app:create_app_from_env --host 0.0.0.0 --port 5000
    gunicorn -k uvicorn_worker.UvicornWorker -b 0.0.0.0:5000 \
        'shifter.gateway.app:create_app_from_env()'

`RequestGuard` wraps every request: it gives it an id (logged with every line written while
it runs), reads the whole body up front, refusing one larger than `max_body_bytes` (413)
or slower than `body_timeout_s` (408), and logs one line per request with its status, user
and image (at DEBUG for polls: a pull re-POSTed while in flight, the queue, `/healthz`,
`/metrics`). Logging is `logsetup`'s. Errors keep the original's body, `{"status",
"error", "message"}`, with a proper status (400, 401, 403, 404, 413, 503...).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import URL
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shifter.errors import ShifterError
from shifter.gateway.api import router
from shifter.gateway.config import GatewayConfig, load_gateway_config
from shifter.gateway.failures import INTERNAL_ERROR, describe, error_body, http_status_for
from shifter.gateway.hotpath import HotRoutes
from shifter.gateway.logsetup import REQUEST_ID, configure_logging
from shifter.gateway.service import GatewayService
from shifter.gateway.settings import ServiceSettings

log = logging.getLogger(__name__)
access_log = logging.getLogger("shifter.gateway.access")

# Methods counted by name; any other (clients may send any token) is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Threads that run blocking request work (munge, the store): anyio's default is 40.
REQUEST_THREADS = 8
POLLED_PATHS = frozenset({"/healthz", "/health", "/metrics"})
class RequestGuard:
    """Pure ASGI middleware: request id, body limits, access log line, request metrics."""

    def __init__(self, app: ASGIApp, *, settings: ServiceSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:12]
        token = REQUEST_ID.set(request_id)
        started = time.monotonic()
        scope.setdefault("state", {})
        outcome = {"status": 499}  # nginx's "client closed the request", if nothing is sent

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            body = await self._read_body(scope, receive, watch)
            if body is not None:
                await self.app(scope, _replay(body, receive), watch)
        finally:
            self._finish(scope, outcome["status"], time.monotonic() - started)
            REQUEST_ID.reset(token)

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None after answering 413/408 (or a client that left)."""
        limit = self.settings.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(scope, send, 413, f"the request body is larger than {limit} bytes")
            return None
        body = bytearray()
        deadline = time.monotonic() + self.settings.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                await _refuse(scope, send, 408, "the request body arrived too slowly")
                return None
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                await _refuse(scope, send, 413, f"the request body is larger than {limit} bytes")
                return None
            if not message.get("more_body", False):
                return bytes(body)

    def _finish(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        service: GatewayService | None = getattr(
            getattr(scope.get("app"), "state", None), "service", None
        )
        if service is not None:
            method = scope["method"] if scope["method"] in _METHODS else "other"
            service.metrics.requests.labels(route, method, str(status)).inc()
            service.metrics.latency.labels(route).observe(seconds)
        state = scope.get("state") or {}
        # Polls (a pull re-POSTed while in flight, the queue, probes) would drown the rest.
        polled = state.get("poll") or scope["path"] in POLLED_PATHS or route.startswith(
            "/api/queue")
        access_log.log(
            logging.DEBUG if polled else logging.INFO,
            "request method=%s path=%s status=%d user=%s image=%s ms=%d",
            _printable(scope["method"]), _printable(scope["path"]), status,
            state.get("user", "-"), _printable(state.get("image", "-")), int(seconds * 1000),
        )


def _printable(text: str) -> str:
    """Caller-chosen text for a log line: the path is percent-decoded, so a `%0A` in a URL
    must not start a forged line of its own."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # only a disconnect can come now

    return replay


async def _refuse(scope: Scope, send: Send, status: int, error: str) -> None:
    payload = json.dumps(error_body(status, error, str(URL(scope=scope))),
                         separators=(",", ":")).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": payload})


def _install_error_handlers(app: FastAPI) -> None:
    def reply(request: Request, status: int, error: str) -> JSONResponse:
        return JSONResponse(error_body(status, error, str(request.url)), status_code=status)

    @app.exception_handler(ShifterError)
    async def shifter_error(request: Request, error: ShifterError) -> JSONResponse:
        status = http_status_for(error)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, error)
        return reply(request, status, describe(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg')}"
            for item in error.errors()
        )
        return reply(request, 400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        text = "not found" if error.status_code == 404 else str(error.detail)
        return reply(request, error.status_code, text)

    @app.exception_handler(Exception)
    async def crashed(request: Request, error: Exception) -> JSONResponse:
        log.exception("%s %s crashed", request.method, request.url.path)
        return reply(request, 500, INTERNAL_ERROR)


def create_app(
    config: GatewayConfig,
    *,
    settings: ServiceSettings | None = None,
    worker_threads: int | None = None,
) -> ASGIApp:
    """The gateway app; its service starts with the app's lifespan (once per process)."""
    settings = settings or ServiceSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = GatewayService(config, settings, worker_threads=worker_threads)
        await asyncio.to_thread(service.start)
        # Request threads beyond a few only contend for the GIL and the store's pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
        app.state.service = service
        # What start-up made lives as long as the process: out of the collector's sight, the
        # full collections that requests trigger now and then stay short (latency tail).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)
            gc.unfreeze()  # an app that stops in a process that goes on (tests) leaks nothing

    app = FastAPI(
        title="Shifter image gateway",
        version="1",
        lifespan=lifespan,
        description="Pulls images from registries and converts them for the shifter runtime.",
    )
    app.include_router(router)
    _install_error_handlers(app)
    # Outside FastAPI, so that lookups and pulls skip its middleware as well as its routing.
    return RequestGuard(HotRoutes(app), settings=settings)


def create_app_from_env() -> ASGIApp:
    """The app from the config in GWCONFIG (or /etc/shifter/imagemanager.json) and
    SHIFTER_IMAGEGW_* settings: the factory for uvicorn --factory and gunicorn."""
    config = load_gateway_config()
    configure_logging(config.log_level, log_file=config.log_file, log_format=config.log_format)
    return create_app(config, settings=ServiceSettings.from_environ())
