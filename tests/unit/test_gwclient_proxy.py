"""Proxies for gateway requests, from the environment as curl reads it."""

from __future__ import annotations

import pytest

from shifter.gwclient.errors import GatewayError
from shifter.gwclient.proxy import bypasses_proxy, proxy_for
from shifter.gwclient.urls import parse_gateway_url

pytestmark = pytest.mark.unit

HTTP_GW = parse_gateway_url("http://imagegw.site.org:5000")
HTTPS_GW = parse_gateway_url("https://imagegw.site.org")


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("imagegw.site.org", 5000, "site.org", True),
        ("site.org", 5000, "site.org", True),
        ("imagegw.site.org", 5000, ".site.org", True),
        ("imagegw.site.org", 5000, "*.site.org", True),
        ("badsite.org", 5000, "site.org", False),
        ("site.org.evil.net", 5000, "site.org", False),
        ("IMAGEGW.Site.ORG", 5000, "site.org", True),
        ("imagegw.site.org", 5000, "other.org, site.org", True),
        ("imagegw.site.org", 5000, "imagegw.site.org:5000", True),
        ("imagegw.site.org", 443, "imagegw.site.org:5000", False),
        ("10.1.2.3", 5000, "10.0.0.0/8", True),
        ("11.1.2.3", 5000, "10.0.0.0/8", False),
        ("127.0.0.1", 5000, "127.0.0.1", True),
        ("::1", 5000, "::1", True),
        ("::1", 5000, "[::1]:5000", True),
        ("anything", 80, "*", True),
        ("imagegw.site.org", 5000, "", False),
        ("imagegw.site.org", 5000, " , ,", False),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


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
