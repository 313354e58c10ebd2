"""Proxies for gateway requests, from the environment as curl reads it (the `no_proxy` rules
are tested with `shifter.proxyenv`)."""

from __future__ import annotations

import pytest

from shifter.gwclient.errors import GatewayError
from shifter.gwclient.proxy import proxy_for
from shifter.gwclient.urls import parse_gateway_url

pytestmark = pytest.mark.unit

HTTP_GW = parse_gateway_url("http://imagegw.site.org:5000")
HTTPS_GW = parse_gateway_url("https://imagegw.site.org")


def test_proxy_by_scheme_with_all_proxy_as_fallback() -> None:
    environ = {"https_proxy": "proxy:3128", "all_proxy": "http://fallback:8080"}
    https_proxy = proxy_for(HTTPS_GW, environ)
    assert https_proxy is not None and (https_proxy.host, https_proxy.port) == ("proxy", 3128)
    http_proxy = proxy_for(HTTP_GW, environ)
    assert http_proxy is not None and http_proxy.host == "fallback"
    assert proxy_for(HTTP_GW, {}) is None
    assert proxy_for(HTTP_GW, {**environ, "no_proxy": "site.org"}) is None


def test_upper_case_http_proxy_is_ignored_as_by_curl() -> None:
    assert proxy_for(HTTP_GW, {"HTTP_PROXY": "http://attacker:1"}) is None
    chosen = proxy_for(HTTPS_GW, {"HTTPS_PROXY": "http://proxy:1"})
    assert chosen is not None and chosen.host == "proxy"


@pytest.mark.parametrize("proxy", ["socks5://socks:1080", "https://proxy:443"])
def test_proxies_we_cannot_speak_are_refused_not_bypassed(proxy: str) -> None:
    with pytest.raises(GatewayError, match="not an http:// proxy") as caught:
        proxy_for(HTTP_GW, {"all_proxy": proxy})
    assert caught.value.hint is not None and "no_proxy" in caught.value.hint
