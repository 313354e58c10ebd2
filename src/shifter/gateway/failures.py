"""Errors of gateway requests, each with the HTTP status the API answers it with.

The manager raises these without knowing about HTTP; the API turns any `RequestError` into
the original's error body with this status. Other `ShifterError`s that reach the API are
mapped by `http_status_for`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from shifter.errors import ConfigError, ImageReferenceError, PermissionDeniedError, ShifterError

# The reply to (and the FAILURE message of) anything that went wrong inside the gateway.
INTERNAL_ERROR = "internal error in the gateway; see its log"


class RequestError(ShifterError):
    """A request the gateway refuses; `http_status` says how."""

    http_status = 500


class BadRequest(RequestError):
    http_status = 400


class Unauthorized(RequestError):
    http_status = 401


class Forbidden(RequestError, PermissionDeniedError):
    http_status = 403


class NotFound(RequestError):
    http_status = 404


class Unavailable(RequestError):
    http_status = 503


def http_status_for(error: ShifterError) -> int:
    """The status for any error a request can end with."""
    if isinstance(error, RequestError):
        return error.http_status
    if isinstance(error, ImageReferenceError):
        return 400
    if isinstance(error, PermissionDeniedError):
        return 403
    if isinstance(error, ConfigError):
        return 400  # an unknown system or location named in the request
    return 500


def error_body(status: int, error: str, url: str) -> dict[str, Any]:
    """The original's error document."""
    return {"status": status, "error": error, "message": f"{HTTPStatus(status).phrase}: {url}"}


def describe(error: ShifterError) -> str:
    """An error's text for a reply: one line, with its hint."""
    text = " ".join(str(error).split())
    return f"{text} (hint: {error.hint})" if error.hint else text
