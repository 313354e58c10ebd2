"""Proxies named by the environment, read as curl reads them: which variable, and `no_proxy`.

Shared by the registry client (httpx, in the gateway) and the gateway client (`http.client`,
on the runtime's image-lookup path), so this leaf imports only the standard library, and
`ipaddress` only when a `no_proxy` entry or the host is an address.

- `proxy_in_environ`: `<scheme>_proxy`, then `all_proxy`; lower case first, then upper case
  (except `HTTP_PROXY` where the caller says a request header could have set it, the
  "httpoxy" rule); a value without `scheme://` is an `http://` proxy. Which proxy schemes a
  client can speak is the client's business.
- `bypasses_proxy`: `no_proxy` is `*`, or comma- (or space-) separated host names (matching
  the host and every subdomain, with or without a leading `.` or `*.`), IP addresses and
  CIDR blocks, each with an optional `:port`. An address host matches only address entries.
"""

from __future__ import annotations

TYPE_CHECKING = False  # on the runtime's image-lookup path: no `typing`, no `collections.abc`
if TYPE_CHECKING:
    from collections.abc import Mapping


def _variable(environ: Mapping[str, str], name: str, *, upper_too: bool = True) -> str:
    """The variable `name` (lower case), else its upper-case spelling, stripped; "" if unset."""
    value = environ.get(name)
    if value is None and upper_too:
        value = environ.get(name.upper())
    return (value or "").strip()


def proxy_in_environ(
    scheme: str,
    host: str,
    port: int | None,
    environ: Mapping[str, str],
    *,
    upper_http_proxy: bool,
) -> str | None:
    """The proxy URL the environment names for scheme://host:port, or None to go direct.

    `upper_http_proxy`: whether `HTTP_PROXY` counts (curl never reads it; a CGI-style caller
    could have set it from a request's `Proxy:` header).
    """
    if bypasses_proxy(host, port, _variable(environ, "no_proxy")):
        return None
    upper_too = scheme != "http" or upper_http_proxy
    chosen = _variable(environ, f"{scheme}_proxy", upper_too=upper_too)
    chosen = chosen or _variable(environ, "all_proxy")
    if not chosen:
        return None
    return chosen if "://" in chosen else f"http://{chosen}"


def bypasses_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether `no_proxy` says host:port is reached directly."""
    host = host.strip("[]").rstrip(".").lower()
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
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
    """`host:port`, `[v6]:port`; a bare IPv6 address has colons but no port."""
    if entry.startswith("["):
        address, _, after = entry[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
        return address, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def _host_matches(host: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("*").removeprefix(".").rstrip(".")
    if not pattern:
        return False
    if "/" in pattern or _looks_like_address(pattern) or _looks_like_address(host):
        return _address_matches(host, pattern)
    return host == pattern or host.endswith("." + pattern)


def _looks_like_address(text: str) -> bool:
    return ":" in text or text.replace(".", "").isdigit()


def _address_matches(host: str, pattern: str) -> bool:
    # ipaddress costs an import: only hosts and entries that look like addresses pay it.
    import ipaddress

    try:
        address = ipaddress.ip_address(host)
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return host == pattern
    return address in network
