"""What the authenticated requests answer, apart from HTTP: shared by the FastAPI routes
(`api.py`) and the plain-ASGI hot paths (`hotpath.py`), so both answer alike.

Each function is blocking (munge decodes through munged's socket, the store is a database)
and runs in a thread. `state` is the request's ASGI `scope["state"]`: the caller and the
image are noted there for the access log line.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from shifter.gateway.authn import Session
from shifter.gateway.failures import BadRequest, RequestError
from shifter.gateway.records import IN_FLIGHT, parse_id_list, to_response
from shifter.gateway.service import GatewayService


def json_document(raw: bytes) -> Any:
    """A request body's JSON document; None for an empty body; BadRequest if unparsable."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None


def optional_json_document(raw: bytes) -> Any:
    """A pull's body: the original logged and ignored one it could not parse."""
    try:
        return json_document(raw)
    except BadRequest:
        return None


def authenticated(
    gateway: GatewayService, state: MutableMapping[str, Any], system: str,
    credential: str | None,
) -> Session:
    """The caller of a request to `system`, from its munge credential."""
    try:
        found = gateway.authenticator.authenticate(system, credential)
    except RequestError as error:
        # 401/403 messages are a fixed few; anything else (an unknown system) could carry
        # caller-chosen text into a label, so it is counted by kind.
        fixed = error.http_status in (401, 403)
        gateway.metrics.auth_failures.labels(error.message if fixed else type(error).__name__
                                             ).inc()
        raise
    state["user"] = found.requester.describe()
    return found


def lookup(
    gateway: GatewayService, state: MutableMapping[str, Any], system: str, imgtype: str,
    tag: str, credential: str | None,
) -> dict[str, Any]:
    caller = authenticated(gateway, state, system, credential)
    state["image"] = f"{imgtype}:{tag}"
    record = gateway.manager.lookup(system, imgtype, tag, caller.requester)
    return to_response(record, caller.requester)


def list_images(
    gateway: GatewayService, state: MutableMapping[str, Any], system: str,
    credential: str | None,
) -> dict[str, Any]:
    """The images of `system` the caller may see."""
    caller = authenticated(gateway, state, system, credential)
    found = gateway.manager.list(system, caller.requester)
    return {"list": [to_response(record, caller.requester) for record in found]}


def pull(
    gateway: GatewayService, state: MutableMapping[str, Any], system: str, imgtype: str,
    tag: str, credential: str | None, document: Any,
) -> dict[str, Any]:
    """A pull; `document` is the request's JSON body (anything but an object is ignored, as
    the original ignored a body it could not parse)."""
    caller = authenticated(gateway, state, system, credential)
    state["image"] = f"{imgtype}:{tag}"
    options = document if isinstance(document, dict) else {}
    try:
        user_acl = parse_id_list(options.get("allowed_uids"), "allowed_uids")
        group_acl = parse_id_list(options.get("allowed_gids"), "allowed_gids")
    except ValueError as error:
        raise BadRequest(str(error)) from None
    record, shown = gateway.manager.pull(
        system, imgtype, tag, caller.requester,
        user_acl=user_acl, group_acl=group_acl, authorized=caller.authorized,
    )
    if shown is None and record.status in IN_FLIGHT:
        state["poll"] = True  # a client re-POSTing while it waits: logged at DEBUG
    return to_response(record, caller.requester, status=shown)
