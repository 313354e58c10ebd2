"""Proxies from the environment, decided per request.

httpx's own `trust_env` handling gets three things wrong for a gateway: `no_proxy=.site.org`
does not cover `site.org` itself, CIDR entries (`10.0.0.0/8`) match nothing, and a registry
redirecting a blob to another host keeps the proxy chosen for the first. Here every request
asks `proxy_for` (a pure function, the curl/wget convention) and `ProxyRouter` sends it
through a transport for that proxy, or directly.

Variables, lower case first: `https_proxy`, `http_proxy` (upper case ignored in a CGI
context, the "httpoxy" rule), `all_proxy` as the fallback for both, and `no_proxy`:
comma-separated host names (matching the host and every subdomain, with or without a
leading `.` or `*.`), IP addresses, CIDR blocks, optional `:port`, or `*` for none at all.
Proxy schemes: http, https, socks5 and socks5h.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Mapping

import httpx

from shifter.errors import ConfigError

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _variable(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name.lower())
    if value is None and not (name == "http_proxy" and "REQUEST_METHOD" in environ):
        value = environ.get(name.upper())
    return (value or "").strip()


def proxy_for(scheme: str, host: str, port: int | None, environ: Mapping[str, str]) -> str | None:
    """The proxy URL for a request to scheme://host:port, or None to connect directly."""
    if bypasses_proxy(host, port or _DEFAULT_PORTS.get(scheme), _variable(environ, "no_proxy")):
        return None
    chosen = _variable(environ, f"{scheme}_proxy") or _variable(environ, "all_proxy")
    if not chosen:
        return None
    if "://" not in chosen:
        chosen = f"http://{chosen}"
    proxy_scheme = chosen.split("://", 1)[0].lower()
    if proxy_scheme not in PROXY_SCHEMES:
        raise ConfigError(
            f"unsupported proxy {chosen!r} in the environment",
            hint=f"use a proxy URL with scheme {', '.join(PROXY_SCHEMES)}",
        )
    return chosen


def bypasses_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether `no_proxy` says host:port is reached directly."""
    host = host.strip("[]").rstrip(".").lower()
    address = _ip(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _entry_matches(name, host, address):
            return True
    return False


def _entry_matches(
    name: str, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> bool:
    if address is not None and ("/" in name or _ip(name) is not None):
        try:
            return address in ipaddress.ip_network(name, strict=False)
        except ValueError:
            return False
    name = name.removeprefix("*").removeprefix(".").rstrip(".")
    return bool(name) and (host == name or host.endswith("." + name))


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`; a bare IPv6 address has colons but no port."""
    if entry.startswith("["):
        close = entry.find("]")
        rest = entry[close + 1 :]
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        return entry[1:close], port
    if entry.count(":") == 1:
        name, _, port_text = entry.partition(":")
        if port_text.isdigit():
            return name, int(port_text)
    return entry, None


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ProxyRouter(httpx.BaseTransport):
    """An httpx transport that routes each request by `proxy_for`, one pool per proxy."""

    def __init__(self, *, verify: ssl.SSLContext, environ: Mapping[str, str]) -> None:
        self._verify = verify
        self._environ = dict(environ)
        self._transports: dict[str | None, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def transport_for(self, url: httpx.URL) -> httpx.HTTPTransport:
        proxy = proxy_for(url.scheme, url.host, url.port, self._environ)
        with self._lock:
            transport = self._transports.get(proxy)
            if transport is None:
                transport = httpx.HTTPTransport(verify=self._verify, proxy=proxy, retries=0)
                self._transports[proxy] = transport
            return transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.transport_for(request.url).handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            transport.close()
