"""The image gateway's client: lookup, pull, list, expire and import over its REST API.

`GatewayClient(gateways, system, timeout=..., munge_socket=...)` takes the values of
udiRoot.conf's `imageGateway`, `system` and `gatewayTimeout` (this package imports only the
leaves, `image` and `munge`, so the runtime and the CLIs build it from their own config).
It is on the `shifter` launch path: importing it loads no HTTP, TLS, JSON or munge code;
the first request does.

- `client`: `GatewayClient`, `Acl`; failover and a fresh munge credential per request.
- `records`: `ImageRecord`, the gateway's image record, parsed.
- `transport`: one HTTP exchange on `http.client`; `proxy`: the environment's proxies.
- `urls`: the original's URL escaping; `logins`: the registry logins `shifterimg login` saves.
- `errors`: what the client raises (all `ShifterError`s).
"""

from shifter.gwclient.client import Acl, GatewayClient
from shifter.gwclient.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayForbiddenError,
    GatewayReplyError,
    GatewayRequestError,
    GatewayUnavailableError,
    ImageNotFoundError,
    ImageOperationError,
    NotAdminError,
)
from shifter.gwclient.records import ImageRecord

# libmunge's own default socket is used unless this names another (tests, sites with a
# second munged for the gateway).
MUNGE_SOCKET_ENV = "SHIFTER_MUNGE_SOCKET"

__all__ = [
    "MUNGE_SOCKET_ENV",
    "Acl",
    "GatewayAuthError",
    "GatewayClient",
    "GatewayError",
    "GatewayForbiddenError",
    "GatewayReplyError",
    "GatewayRequestError",
    "GatewayUnavailableError",
    "ImageNotFoundError",
    "ImageOperationError",
    "ImageRecord",
    "NotAdminError",
]
