"""Which proxy, if any, carries a request to a gateway: the environment, read as curl reads it.

The original client was libcurl, so sites that reach their gateway through a proxy (a gateway
outside the cluster's firewall) set `http_proxy`/`https_proxy`, and sites whose login nodes
set a proxy for the outside world list the gateway in `no_proxy`. Both keep working:

- `http_proxy` (lower case only: curl ignores `HTTP_PROXY`, which a CGI-style caller could
  set from a request header), `https_proxy`/`HTTPS_PROXY`, then `all_proxy`/`ALL_PROXY`;
- `no_proxy`/`NO_PROXY`: `*`, or comma-separated host names (matching the host and its
  subdomains, with or without a leading `.`), IP addresses and CIDR blocks, each with an
  optional `:port` (the rules are `shifter.proxyenv`'s, shared with the registry client).

Only `http://` proxies are supported (an https gateway is reached through a CONNECT
tunnel); a SOCKS or https proxy is refused with a hint rather than silently bypassed.
"""

from __future__ import annotations

from shifter.gwclient.errors import GatewayError
from shifter.gwclient.urls import GatewayURL, parse_gateway_url
from shifter.proxyenv import proxy_in_environ

TYPE_CHECKING = False  # `collections` costs `shifterimg lookup` ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping


def proxy_for(gateway: GatewayURL, environ: Mapping[str, str]) -> GatewayURL | None:
    """The http:// proxy for requests to `gateway`, or None to connect directly."""
    chosen = proxy_in_environ(
        gateway.scheme, gateway.host, gateway.port, environ, upper_http_proxy=False
    )
    if chosen is None:
        return None
    if not chosen.lower().startswith("http://"):
        raise GatewayError(
            f"the proxy {chosen!r} from the environment is not an http:// proxy",
            hint=f"shifterimg only uses http:// proxies; add {gateway.host} to no_proxy "
            "to reach the gateway directly",
        )
    try:
        return parse_gateway_url(chosen)
    except GatewayError as error:
        raise GatewayError(
            f"the proxy {chosen!r} from the environment is not a usable URL",
            hint=f"fix http_proxy/https_proxy, or add {gateway.host} to no_proxy",
        ) from error
