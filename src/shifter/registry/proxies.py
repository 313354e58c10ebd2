"""Proxies from the environment, decided per request.

httpx's own `trust_env` handling gets three things wrong for a gateway: `no_proxy=.site.org`
does not cover `site.org` itself, CIDR entries (`10.0.0.0/8`) match nothing, and a registry
redirecting a blob to another host keeps the proxy chosen for the first. Here every request
asks `proxy_for` (a pure function, the curl/wget convention) and `ProxyRouter` sends it
through a transport for that proxy, or directly.

Variables, lower case first: `https_proxy`, `http_proxy` (upper case ignored in a CGI
context, the "httpoxy" rule), `all_proxy` as the fallback for both, and `no_proxy`; the
rules are `shifter.proxyenv`'s, shared with the gateway client. Proxy schemes: http,
https, socks5 and socks5h.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping

import httpx

from shifter.errors import ConfigError
from shifter.proxyenv import proxy_in_environ

PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def proxy_for(scheme: str, host: str, port: int | None, environ: Mapping[str, str]) -> str | None:
    """The proxy URL for a request to scheme://host:port, or None to connect directly."""
    chosen = proxy_in_environ(
        scheme,
        host,
        port or _DEFAULT_PORTS.get(scheme),
        environ,
        upper_http_proxy="REQUEST_METHOD" not in environ,
    )
    if chosen is None:
        return None
    proxy_scheme = chosen.split("://", 1)[0].lower()
    if proxy_scheme not in PROXY_SCHEMES:
        raise ConfigError(
            f"unsupported proxy {chosen!r} in the environment",
            hint=f"use a proxy URL with scheme {', '.join(PROXY_SCHEMES)}",
        )
    return chosen


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
