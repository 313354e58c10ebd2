"""Which proxy, if any, carries a request to a gateway: the environment, read as curl reads it.

The original client was libcurl, so sites that reach their gateway through a proxy (a gateway
outside the cluster's firewall) set `http_proxy`/`https_proxy`, and sites whose login nodes
set a proxy for the outside world list the gateway in `no_proxy`. Both keep working:

- `http_proxy` (lower case only: curl ignores `HTTP_PROXY`, which a CGI-style caller could
  set from a request header), `https_proxy`/`HTTPS_PROXY`, then `all_proxy`/`ALL_PROXY`;
- `no_proxy`/`NO_PROXY`: `*`, or comma-separated host names (matching the host and its
  subdomains, with or without a leading `.`), IP addresses and CIDR blocks, each with an
  optional `:port`.

Only `http://` proxies are supported (an https gateway is reached through a CONNECT
tunnel); a SOCKS or https proxy is refused with a hint rather than silently bypassed.
"""

from __future__ import annotations

from collections.abc import Mapping

from shifter.gwclient.errors import GatewayError
from shifter.gwclient.urls import GatewayURL, parse_gateway_url


def _variable(environ: Mapping[str, str], lower: str, *, upper_too: bool = True) -> str:
    value = environ.get(lower)
    if value is None and upper_too:
        value = environ.get(lower.upper())
    return (value or "").strip()


def proxy_for(gateway: GatewayURL, environ: Mapping[str, str]) -> GatewayURL | None:
    """The http:// proxy for requests to `gateway`, or None to connect directly."""
    if bypasses_proxy(gateway.host, gateway.port, _variable(environ, "no_proxy")):
        return None
    if gateway.scheme == "http":
        chosen = _variable(environ, "http_proxy", upper_too=False)
    else:
        chosen = _variable(environ, "https_proxy")
    chosen = chosen or _variable(environ, "all_proxy")
    if not chosen:
        return None
    if "://" not in chosen:
        chosen = f"http://{chosen}"
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


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether `no_proxy` says host:port is reached directly."""
    host = host.strip("[]").rstrip(".").lower()
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        pattern, wanted_port = _split_entry(entry)
        if wanted_port is not None and wanted_port != port:
            continue
        if _host_matches(host, pattern):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        address, _, after = entry[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
        return address, int(port) if port.isdigit() else None
    if entry.count(":") == 1:  # host:port; more colons is a bare IPv6 address
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("*").removeprefix(".").rstrip(".")
    if not pattern:
        return False
    if "/" in pattern or _is_address(pattern) or _is_address(host):
        return _address_matches(host, pattern)
    return host == pattern or host.endswith("." + pattern)


def _is_address(text: str) -> bool:
    return ":" in text or text.replace(".", "").isdigit()


def _address_matches(host: str, pattern: str) -> bool:
    # ipaddress costs an import; only no_proxy entries with addresses pay it.
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return host == pattern
    return address in network
