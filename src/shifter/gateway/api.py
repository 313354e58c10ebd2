"""The REST API: the original's paths, methods and JSON (gateway contract §1).

    GET  /                                         text: the API's verbs
    GET  /api/list/{system}/                       {"list": [record, ...]}
    GET  /api/lookup/{system}/{type}/{tag}/        record (404: none the caller may read)
    POST /api/pull/{system}/{type}/{tag}/          record (INIT, in flight, or READY)
    POST /api/doimport/{system}/{type}/{tag}/      record
    GET  /api/expire/{system}/{type}/{tag}/        {"status": true | null}      (admins)
    GET  /api/autoexpire/{system}/                 {"status": [id, ...]}         (admins)
    GET  /api/metrics/{system}/?limit=N            [row, ...]                    (admins)
    GET  /api/queue/{system}/                      {"list": [{"status", "image"}]}
    GET  /metrics                                  Prometheus text
    GET  /healthz                                  {"status": "ok"} or 503 with "problems"

The tag is a path parameter: the server percent-decodes the URL before routing, so the C
client's `org%2Frepo%3Atag` arrives as `org/repo:tag`. Blocking work (the munge decoding,
the store) never runs on the event loop: most handlers are plain functions that FastAPI
runs in its thread pool after the `session` dependency (also run there). Lookup and pull
are answered by `hotpath.HotRoutes` before FastAPI sees them; their routes here answer the
same way (`replies`) and describe them in the OpenAPI pages. Every JSON reply has
`Content-Type: application/json` (no charset) and a Content-Length, which the C client
requires.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from shifter.gateway import replies
from shifter.gateway.authn import HEADER, Session
from shifter.gateway.failures import BadRequest
from shifter.gateway.metrics import CONTENT_TYPE
from shifter.gateway.records import to_response
from shifter.gateway.service import GatewayService

TAGGED = "/{system}/{imgtype}/{tag:path}/"


async def service(request: Request) -> GatewayService:
    return request.app.state.service  # type: ignore[no-any-return]


Service = Annotated[GatewayService, Depends(service)]


def session(request: Request, system: str, gateway: Service) -> Session:
    """The authenticated caller (a sync dependency: it runs in the thread pool)."""
    return replies.authenticated(gateway, _state(request), system, request.headers.get(HEADER))


def _state(request: Request) -> dict[str, Any]:
    return request.scope.setdefault("state", {})  # type: ignore[no-any-return]


Caller = Annotated[Session, Depends(session)]


async def json_body(request: Request) -> Any:
    """The request's JSON document; None for an empty body; BadRequest if unparsable."""
    return replies.json_document(await request.body())


async def optional_json_body(request: Request) -> Any:
    """A pull's body: None when it cannot be parsed (`replies.optional_json_document`)."""
    return replies.optional_json_document(await request.body())


def _noted(request: Request, imgtype: str, tag: str) -> None:
    _state(request)["image"] = f"{imgtype}:{tag}"


router = APIRouter()


@router.get("/", response_class=PlainTextResponse)
def index() -> str:
    return "{lookup,pull,expire,list}"


@router.get("/healthz")
@router.get("/health", include_in_schema=False)
def healthz(gateway: Service) -> JSONResponse:
    """200 when the store answers and every platform's munged decodes (`health`); 503
    naming what fails otherwise. No credential needed."""
    problems = gateway.health.problems()
    if problems:
        return JSONResponse({"status": "failing", "problems": list(problems)}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/api/list/{system}/")
async def list_images(request: Request, system: str, gateway: Service) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(
        replies.list_images, gateway, _state(request), system, request.headers.get(HEADER),
    ))


@router.get("/api/lookup" + TAGGED)
async def lookup(
    request: Request, system: str, imgtype: str, tag: str, gateway: Service
) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(
        replies.lookup, gateway, _state(request), system, imgtype, tag,
        request.headers.get(HEADER),
    ))


@router.post("/api/pull" + TAGGED)
async def pull(
    request: Request,
    system: str,
    imgtype: str,
    tag: str,
    gateway: Service,
    body: Annotated[Any, Depends(optional_json_body)],
) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(
        replies.pull, gateway, _state(request), system, imgtype, tag,
        request.headers.get(HEADER), body,
    ))


@router.post("/api/doimport" + TAGGED)
def doimport(
    request: Request,
    system: str,
    imgtype: str,
    tag: str,
    caller: Caller,
    gateway: Service,
    body: Annotated[Any, Depends(json_body)],
) -> JSONResponse:
    _noted(request, imgtype, tag)
    if not isinstance(body, dict):
        raise BadRequest('the body must be {"filepath": "/path/image.squashfs", '
                         '"format": "squashfs"}')
    record, shown = gateway.manager.doimport(
        system, imgtype, tag, caller.requester,
        filepath=body.get("filepath"), fmt=body.get("format"),
    )
    return JSONResponse(to_response(record, caller.requester, status=shown))


@router.get("/api/expire" + TAGGED)
def expire(
    request: Request, system: str, imgtype: str, tag: str, caller: Caller, gateway: Service
) -> JSONResponse:
    _noted(request, imgtype, tag)
    return JSONResponse({"status": gateway.manager.expire(system, imgtype, tag,
                                                          caller.requester)})


@router.get("/api/autoexpire/{system}/")
def autoexpire(system: str, caller: Caller, gateway: Service) -> JSONResponse:
    return JSONResponse({"status": gateway.manager.autoexpire(system, caller.requester)})


@router.get("/api/metrics/{system}/")
def usage_metrics(
    system: str,
    caller: Caller,
    gateway: Service,
    limit: Annotated[int, Query()] = 10,
) -> JSONResponse:
    return JSONResponse(gateway.manager.metrics(system, caller.requester, limit))


@router.get("/api/queue/{system}/")
def queue(system: str, gateway: Service) -> JSONResponse:
    return JSONResponse({"list": gateway.manager.queue(system)})


@router.get("/metrics")
def prometheus(gateway: Service) -> Response:
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE)
