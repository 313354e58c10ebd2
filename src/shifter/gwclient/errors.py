"""What can go wrong talking to the image gateway, as `ShifterError`s a CLI can print."""

from __future__ import annotations

from shifter.errors import PermissionDeniedError, ShifterError
from shifter.frozen import Frozen


class GatewayError(ShifterError):
    """Base of every gateway-client error."""


class GatewayReplyError(GatewayError):
    """A gateway answered 200 with a body that is not what the API promises."""


# Small values are Frozen, not dataclasses or named tuples: a dataclass costs about a
# millisecond to create at import, a named tuple the import of `collections`, and this
# package is imported on every `shifter` launch and `shifterimg lookup`.
class Attempt(Frozen):
    """One gateway's answer to one request that did not succeed.

    `gateway` (the URL as configured), `problem` (a few words), `status` (the HTTP status,
    None when no reply arrived), `error` (the gateway's own error text, when it sent one).
    """

    gateway: str
    problem: str
    status: int | None = None
    error: str | None = None


class GatewayUnavailableError(GatewayError):
    """Every configured gateway failed the request; `attempts` says how, gateway by gateway."""

    def __init__(
        self, message: str, attempts: list[Attempt], *, hint: str | None = None,
        details: bool = True,
    ) -> None:
        lines = [f"{a.gateway}: {a.problem}" for a in attempts] if details else []
        super().__init__("\n".join([message, *lines]), hint=hint)
        self.attempts = attempts


class ImageNotFoundError(GatewayUnavailableError):
    """The gateways answered, and none has a READY image of that name this user may read."""


class GatewayAuthError(GatewayUnavailableError):
    """The gateways refused the munge credential (wrong key, expired): HTTP 401."""


class GatewayRequestError(GatewayUnavailableError):
    """A gateway answered that the request itself is wrong (400: an unknown system or
    registry, a bad image name): its reason, not "is the gateway running?"."""


class GatewayForbiddenError(GatewayUnavailableError, PermissionDeniedError):
    """The gateway knows the caller and refuses the request (not an admin, may not import)."""


class ImageOperationError(GatewayError):
    """The gateway did the request but the image operation failed (pull FAILURE, ...)."""


class NotAdminError(PermissionDeniedError, GatewayError):
    """The gateway answered that only its admins may do this (expire, autoexpire)."""
